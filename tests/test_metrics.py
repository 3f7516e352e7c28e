"""
Prometheus metrics (L{webwire.metrics}): what a scrape over HTTP shows after
real clients did real things over loopback sockets.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from tests.helpers import (
    LoopbackServer,
    captureLogs,
    connectRaw,
    echoRequest,
    h,
    ident,
    portNumber,
    rawHTTP,
)
from tests.test_server import UPGRADE_REQUEST, LenientStringTransport, maskedFrames
from tests.test_twistd import LISTEN, TWISTD, startServer
from webwire import wire
from webwire.application import Application
from webwire.conformance import ConformanceApplication
from webwire.errors import RequestError
from webwire.guard import LIMIT_WARNING_INTERVAL
from webwire.interfaces import IConnection
from webwire.metrics import (
    DURATION_BUCKETS,
    OTHER,
    IServerObserver,
    NullObserver,
    ReplyTally,
    ServerMetrics,
    metricsRoot,
)
from webwire.options import ServerOptions
from webwire.router import Router
from webwire.server import WebWireServerFactory
from webwire.testing import MemoryServer
from webwire.traffic import Traffic

ROOT = FilePath(__file__).parent().parent()
DASHBOARD = ROOT.child("examples").child("grafana-dashboard.json")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parseScrape(text: str) -> Samples:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(port: int) -> str:
    """GET /metrics from 127.0.0.1:C{port}; the body, checked to be a 200."""
    response = await rawHTTP(port, b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    assert b"content-type: text/plain" in head.lower(), head
    return body.decode("utf-8")


def serveMetrics(testCase: TestCase, registry: CollectorRegistry) -> int:
    """Serve C{registry} at /metrics on a free loopback port."""
    site: Any = Site(metricsRoot(registry))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    return portNumber(port)


def request(n: int, name: str, payload: bytes = b"") -> bytes:
    return wire.encodeRequest(ident(n), name, payload, wire.Encoding.BINARY)


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


class ObserverTests(SynchronousTestCase):
    """The observer interface and its two implementations."""

    def test_provided(self) -> None:
        """Both observers provide L{IServerObserver}; a server has one."""
        from zope.interface.verify import verifyObject

        verifyObject(IServerObserver, NullObserver())
        verifyObject(IServerObserver, ServerMetrics(None))
        factory = WebWireServerFactory(ConformanceApplication())
        self.assertIsInstance(factory.observer, NullObserver)

    def test_nullObserverSubclassIsCalled(self) -> None:
        """
        The do-nothing L{NullObserver} itself is not called per request, but
        a subclass of it is, like any observer. A connection counts the
        requests it answers at once in a tally, once it has one for their
        name: the first such request asks for one; until it has one, and
        for other names, it tells C{replied}, once per read and name. The
        rest is told to C{requestDone} once per request. Reads are timed
        with the observer's C{clock}, read as each read starts and as one
        with such requests ends.
        """
        readings = iter(range(1, 100))

        class Recording(NullObserver):
            def __init__(self) -> None:
                self.calls: list[tuple[Any, ...]] = []

            @staticmethod
            def clock() -> float:
                return float(next(readings))

            def tally(self, name: str) -> ReplyTally:
                self.calls.append(("tally", name))
                return ReplyTally(name, name.upper(), 10.0)

            def tallyDone(self, tally: ReplyTally) -> None:
                self.calls.append(("tallyDone", tally.name, tally.count, tally.seconds))

            def replied(self, name: str, count: int, seconds: float) -> None:
                self.calls.append(("replied", name, count, seconds))

            def requestDone(
                self,
                name: str,
                reply: bytes,
                started: float | None,
                cancelled: bool = False,
            ) -> None:
                self.calls.append(("done", name, reply, started, cancelled))

        observer = Recording()
        pair = MemoryServer(ConformanceApplication(), observer=observer).connect()
        # Read 1 was the handshake, at 1.
        pair.send(echoRequest(1, b"hi"), echoRequest(2, b"ho", "echo-binary"))
        binary = "echo-binary"
        pair.send(echoRequest(3, b"a", binary), echoRequest(4, b"b", binary))
        pair.send(echoRequest(5, b"c", binary), echoRequest(6, b"", "no such"))
        pair.send(echoRequest(7, b"x"))
        self.assertEqual(len(pair.replies), 7)
        notFound = pair.replies[5]
        pair.close()
        self.assertEqual(
            observer.calls,
            [
                # Read 2, from 2 to 3: no tally yet.
                ("replied", "echo", 1, 1.0),
                ("replied", "echo-binary", 1, 1.0),
                ("tally", "echo-binary"),
                # Read 3, from 4 to 5: in the tally, told nothing.
                # Read 4, from 6 to 7: an error reply is told at once.
                ("done", "no such", notFound, 6.0, False),
                # Read 5, from 8 to 9: another name.
                ("replied", "echo", 1, 1.0),
                ("tallyDone", "echo-binary", 3, 3.0),
                ("tally", "echo"),
                # The close.
                ("tallyDone", "echo", 0, 0.0),
            ],
        )

    def test_nullObserverTalliesNothing(self) -> None:
        """
        The tallies of a L{NullObserver} take no reply: a subclass that
        overrides only C{replied} is told of every reply made at once.
        """

        class Replied(NullObserver):
            def __init__(self) -> None:
                self.replies: list[tuple[str, int]] = []

            def replied(self, name: str, count: int, seconds: float) -> None:
                self.replies.append((name, count))

        observer = Replied()
        pair = MemoryServer(ConformanceApplication(), observer=observer).connect()
        for n in range(3):
            pair.send(echoRequest(2 * n, b"a"), echoRequest(2 * n + 1, b"b"))
        self.assertEqual(observer.replies, [("echo", 2)] * 3)

    def test_badBuckets(self) -> None:
        """Bucket bounds must be given, and increase."""
        for buckets in [(), (0.1, 0.1), (0.2, 0.1)]:
            self.assertRaises(ValueError, ServerMetrics, None, buckets=buckets)

    def test_registryOnce(self) -> None:
        """
        One registry takes one L{ServerMetrics}; another registry is
        separate.
        """
        registry = CollectorRegistry()
        ServerMetrics(registry)
        self.assertRaises(ValueError, ServerMetrics, registry)
        other = ServerMetrics(CollectorRegistry())
        other.connectionOpened()
        self.assertEqual(
            registry.get_sample_value("webwire_connections_accepted_total"), 0
        )

    def test_allowList(self) -> None:
        """
        With C{requestNames}, exactly those names are labels, whatever the
        application knows.
        """
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry, requestNames={"a"})
        WebWireServerFactory(ConformanceApplication(), observer=metrics)
        reply = wire.encodeReply(ident(1), b"", wire.Encoding.BINARY)
        for name in ("a", "echo", "b"):
            metrics.requestDone(name, reply, None)
        total = "webwire_requests_total"
        self.assertEqual(
            registry.get_sample_value(total, {"name": "a", "outcome": "reply"}), 1
        )
        self.assertEqual(
            registry.get_sample_value(total, {"name": OTHER, "outcome": "reply"}), 2
        )


def _router(release: Deferred[None]) -> Router:
    router = Router()

    @router.request("ok")
    def ok(connection: IConnection, request: wire.Request) -> bytes:
        return b"fine"

    @router.request("fail")
    def fail(connection: IConnection, request: wire.Request) -> bytes:
        raise RequestError("NOPE", "no")

    @router.request("boom")
    def boom(connection: IConnection, request: wire.Request) -> bytes:
        raise ValueError("deliberate")

    @router.request("login")
    async def login(connection: IConnection, request: wire.Request) -> str:
        session = await connection.createSession()
        return session.key

    @router.request("wait")
    async def wait(connection: IConnection, request: wire.Request) -> bytes:
        await release
        return b"done"

    @router.signal("note")
    def note(connection: IConnection, signal: wire.Signal) -> None:
        pass

    return router


class DurationTests(SynchronousTestCase):
    """
    Request durations run from the start of the read that brought the
    request to its reply; the replies made while a read is processed are
    written, and timed, at its end.
    """

    def setUp(self) -> None:
        self.serve(DURATION_BUCKETS)

    def serve(self, buckets: tuple[float, ...]) -> None:
        """Serve an application that answers at once, counting with C{buckets}."""
        self.registry = CollectorRegistry()
        self.clock = Clock()
        self.metrics = ServerMetrics(
            self.registry, clock=self.clock.seconds, buckets=buckets
        )
        self.release: Deferred[bytes] = Deferred()
        test = self

        class Answering(Application):
            """
            Answers at once (the synchronous reply path) but for C{wait};
            knows C{tick}, C{wait} and C{ok}.
            """

            def knowsRequest(self, name: str) -> bool:
                return name in ("tick", "wait", "ok")

            def onRequest(
                self, connection: IConnection, request: wire.Request
            ) -> bytes | Deferred[bytes]:
                if request.name == "tick":
                    test.clock.advance(0.002)
                elif request.name == "wait":
                    return test.release
                elif request.name != "ok":
                    raise RequestError("UNKNOWN", "no such request")
                return b"fine"

        self.server = MemoryServer(
            Answering(),
            ServerOptions(concurrency=1),
            clock=MemoryReactorClock(),
            observer=self.metrics,
        )
        self.pair = self.server.connect()

    def sample(self, metric: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(f"webwire_{metric}", labels)

    def assertOneReplyEach(self, names: list[str], seconds: float) -> None:
        """Each of C{names} was answered once, with a reply that took C{seconds}."""
        for name in names:
            self.assertEqual(
                self.sample("requests_total", name=name, outcome="reply"), 1
            )
            self.assertAlmostEqual(
                self.sample("request_duration_seconds_sum", name=name) or 0, seconds
            )

    def assertEachCounted(self, names: list[str], seconds: dict[str, float]) -> None:
        """
        The requests C{names} were answered and counted under their labels:
        C{ok} and C{tick} with replies whose durations add up to
        C{seconds[name]}, the unknown C{nope} as an error of L{OTHER}.
        """
        self.assertEqual(len(self.pair.replies), len(names))
        for name in ("ok", "tick"):
            count = names.count(name)
            self.assertEqual(
                self.sample("requests_total", name=name, outcome="reply"), count
            )
            self.assertEqual(
                self.sample("request_duration_seconds_count", name=name), count
            )
            self.assertAlmostEqual(
                self.sample("request_duration_seconds_sum", name=name) or 0,
                seconds[name],
            )
        self.assertEqual(
            self.sample("requests_total", name=OTHER, outcome="error"),
            names.count("nope"),
        )

    def test_toTheEndOfTheRead(self) -> None:
        """
        Requests answered at once during one read all take until its end:
        three handlers of 2 ms each make three durations of 6 ms.
        """
        self.pair.send(*(request(n, "tick") for n in range(3)))
        self.assertEqual(len(self.pair.replies), 3)
        self.assertEqual(self.sample("requests_total", name="tick", outcome="reply"), 3)
        self.assertEqual(self.sample("request_duration_seconds_count", name="tick"), 3)
        self.assertAlmostEqual(
            self.sample("request_duration_seconds_sum", name="tick") or 0, 0.018
        )
        bucket = "request_duration_seconds_bucket"
        self.assertEqual(self.sample(bucket, name="tick", le="0.005"), 0)
        self.assertEqual(self.sample(bucket, name="tick", le="0.01"), 3)

    def test_queuedFromTheirRead(self) -> None:
        """
        A request that waits for a handler slot is timed from its read, not
        from when its handler starts: it is answered outside any read.
        """
        self.pair.send(request(1, "wait"), request(2, "ok"))
        self.assertEqual(self.pair.replies, [])
        self.clock.advance(0.3)
        self.release.callback(b"done")
        self.pair.flush()
        self.assertEqual(len(self.pair.replies), 2)
        self.assertOneReplyEach(["wait", "ok"], 0.3)

    def test_requestsInTheHandshakeRead(self) -> None:
        """
        Requests that come in the same read as the upgrade request (a
        client that does not wait for the handshake's answer) are counted
        and timed like any.
        """
        protocol = self.server.factory.buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 50000)
        )
        transport = LenientStringTransport()
        protocol.makeConnection(transport)
        frames = maskedFrames(request(1, "tick"), request(2, "ok"))
        protocol.dataReceived(UPGRADE_REQUEST + frames)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertOneReplyEach(["tick", "ok"], 0.002)

    def test_mixedNames(self) -> None:
        """
        One read with several names, some of them unknown, counts each
        under its own label.
        """
        names = ["ok", "tick", "ok", "nope", "ok"]
        self.pair.send(*(request(n, name) for n, name in enumerate(names)))
        # All five take until the end of the read, after one tick (2 ms).
        self.assertEachCounted(names, {"ok": 3 * 0.002, "tick": 0.002})

    def test_tallied(self) -> None:
        """
        Once a connection has a tally for a name, the replies it makes at
        once to requests of that name, in reads that took up to the first
        bucket's bound, are counted in it; those of longer reads are told
        as they happen. A scrape counts both; the tally of a closed
        connection is counted once.
        """
        self.serve((0.005, 0.05))
        # 2 ms (told: the first), 4 ms twice (tallied), 6 ms three times
        # (told: longer than the first bucket's 5 ms).
        for n, ticks in enumerate([1, 2, 3]):
            self.pair.send(*(request(10 * n + k, "tick") for k in range(ticks)))
        self.assertEqual(len(self.pair.replies), 6)

        def scrape() -> list[float | None]:
            return [
                self.sample("requests_total", name="tick", outcome="reply"),
                self.sample("request_duration_seconds_count", name="tick"),
                self.sample("request_duration_seconds_bucket", name="tick", le="0.005"),
                self.sample("request_duration_seconds_bucket", name="tick", le="0.05"),
            ]

        expected: list[float | None] = [6, 6, 3, 6]
        self.assertEqual(scrape(), expected)
        total = self.sample("request_duration_seconds_sum", name="tick")
        self.assertAlmostEqual(total or 0, 0.002 + 2 * 0.004 + 3 * 0.006)
        self.pair.close()
        self.assertEqual(scrape(), expected)
        total2 = self.sample("request_duration_seconds_sum", name="tick")
        self.assertEqual(total2, total)
        # Another connection's tally adds to what the closed one counted.
        pair = self.server.connect()
        pair.send(request(1, "tick"))
        pair.send(request(2, "tick"))
        self.assertEqual(scrape(), [8, 8, 5, 8])

    def test_tallyFollowsTheName(self) -> None:
        """
        A connection whose requests change name counts them under their
        own labels, told or tallied, however often the name changes.
        """
        names = ["ok", "ok", "tick", "ok", "tick", "tick", "nope", "ok", "ok"]
        for n, name in enumerate(names):
            self.pair.send(request(n, name))
        # One request per read: only ticks take time, 2 ms each.
        self.assertEachCounted(names, {"ok": 0.0, "tick": 3 * 0.002})


class TrafficTests(SynchronousTestCase):
    """
    Every server counts its messages, their bytes and the signals in its
    L{Traffic}, whichever way they went: the fast path or Autobahn's, in a
    read's coalesced write or on their own.
    """

    def test_bothPaths(self) -> None:
        """
        Fast-path frames, a fragmented message (Autobahn's path), replies
        written during a read and one written outside any, and signals both
        ways.
        """
        release: Deferred[None] = Deferred()
        server = MemoryServer(_router(release), ServerOptions(sessions=False))
        pair = server.connect()
        traffic = server.factory.traffic
        self.assertIsInstance(traffic, Traffic)
        received = [request(1, "ok"), request(2, "wait")]
        pair.send(*received)
        fragmented = request(3, "ok", b"x" * 100)
        pair.client.sendMessage(fragmented, isBinary=True, fragmentSize=30)
        signal = wire.encodeSignal("note", b"hi", wire.Encoding.BINARY)
        pair.send(signal)
        received += [fragmented, signal]
        self.assertEqual(traffic.signalsReceived, 1)
        pair.connection.signal("back", b"12345")
        release.callback(None)  # a reply outside any read
        pair.flush()
        sent = pair.client.received
        self.assertEqual(len(sent), 5)  # AcceptConf, 3 replies, the signal
        self.assertEqual(traffic.messagesReceived, len(received))
        self.assertEqual(traffic.bytesReceived, sum(map(len, received)))
        self.assertEqual(traffic.messagesSent, len(sent))
        self.assertEqual(traffic.bytesSent, sum(map(len, sent)))
        self.assertEqual(traffic.signalsSent, 1)
        self.assertEqual(
            repr(traffic),
            f"Traffic(bytesReceived={traffic.bytesReceived}, "
            f"bytesSent={traffic.bytesSent}, messagesReceived=4, messagesSent=5, "
            "signalsReceived=1, signalsSent=1)",
        )


class ScrapeTests(TestCase):
    """A scrape over HTTP shows exactly what clients did."""

    timeout = 30

    async def test_scriptedMix(self) -> None:
        """
        Requests of every outcome, signals, sessions, protocol violations
        and refused handshakes: each is counted exactly once, the gauges
        show the state at the scrape, and durations land in their buckets.
        """
        release: Deferred[None] = Deferred()
        clock = Clock()
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry, clock=clock.seconds)
        server = LoopbackServer(self, _router(release), observer=metrics)
        metricsPort = serveMetrics(self, registry)

        a = await server.connectAccepted()
        sent: list[bytes] = []

        async def roundTrip(client: Any, message: bytes) -> bytes:
            sent.append(message)
            reply: bytes = await client.roundTrip(message)
            return reply

        for n in range(3):
            self.assertEqual(
                await roundTrip(a, request(n, "ok")), h("BF") + ident(n) + b"fine"
            )
        for n in range(3, 5):
            self.assertEqual((await roundTrip(a, request(n, "fail")))[0], 0)
        self.assertEqual(await roundTrip(a, request(5, "boom")), h("02") + ident(5))
        self.assertEqual((await roundTrip(a, request(6, "no such")))[0], 0)
        signal = wire.encodeSignal("note", b"x", wire.Encoding.BINARY)
        a.send(signal, signal)
        sent += [signal, signal]
        heartbeat = wire.encodeHeartbeat()
        a.send(heartbeat)
        sent.append(heartbeat)

        # A session: created on one connection, restored on another; a
        # restore of an unknown key fails.
        created = await roundTrip(a, request(7, "login"))
        self.assertEqual(created[0], wire.MessageType.NOTIFY_SESSION_CREATED)
        parsed = wire.parse(await a.message(len(a.received)))
        assert isinstance(parsed, wire.Reply)
        key = parsed.text()
        b = await server.connectAccepted()
        restored = await roundTrip(b, wire.encodeRestoreSession(ident(8), key))
        self.assertEqual(restored[0], wire.MessageType.REPLY_UTF8)
        missing = await roundTrip(b, wire.encodeRestoreSession(ident(9), "k" * 32))
        self.assertEqual(missing, h("03") + ident(9))

        # One handler still running at the scrape; it takes 0.3 seconds.
        waiting = request(10, "wait")
        b.send(waiting)
        sent.append(waiting)

        # Violations: a text message (1003) and a malformed one (1002).
        for message, code in [(None, 1003), (b"\xff", 1002)]:
            before = set(server.serverProtocols())
            violator = await server.connectAccepted()
            [protocol] = set(server.serverProtocols()) - before
            if message is None:
                violator.sendMessage(b"text", isBinary=False)
                sent.append(b"text")
            else:
                violator.send(message)
                sent.append(message)
            self.assertEqual((await violator.closed)[1], code)
            await protocol.closeGracefully(1000, "")  # fires once it is gone

        # Refused handshakes: a foreign origin and a malformed upgrade.
        foreign = (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.assertIn(b" 403 ", await rawHTTP(server.portNumber, foreign))
        self.assertIn(
            b" 400 ",
            await rawHTTP(
                server.portNumber, foreign.replace(b"Sec-WebSocket-Key", b"X")
            ),
        )
        await server.tick()  # the ticker is one more accepted connection

        samples = parseScrape(await scrape(metricsPort))

        def total(metric: str, **labels: str) -> float:
            return value(samples, f"webwire_{metric}", **labels)

        requests = {
            (labels[0][1], labels[1][1]): count
            for (name, labels), count in samples.items()
            if name == "webwire_requests_total"
        }
        self.assertEqual(
            requests,
            {
                ("ok", "reply"): 3,
                ("fail", "error"): 2,
                ("boom", "internal_error"): 1,
                (OTHER, "error"): 1,
                ("login", "reply"): 1,
            },
        )
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(total("handlers_running"), 1)
        self.assertEqual(total("connections_accepted_total"), 5)
        self.assertEqual(total("connections_open"), 3)  # a, b, the ticker
        self.assertEqual(total("signals_received_total"), 2)
        self.assertEqual(total("messages_received_total"), len(sent))
        self.assertEqual(total("received_bytes_total"), sum(len(m) for m in sent))
        replies = [m for c in server.clients for m in c.received]
        self.assertEqual(total("messages_sent_total"), len(replies))
        self.assertEqual(total("sent_bytes_total"), sum(len(m) for m in replies))
        self.assertEqual(total("signals_sent_total"), 0)
        self.assertEqual(total("sessions_created_total"), 1)
        self.assertEqual(total("sessions_restored_total"), 1)
        self.assertEqual(total("sessions_active"), 1)
        self.assertEqual(total("session_restore_failures_total", reason="not_found"), 1)
        self.assertEqual(total("session_restore_failures_total", reason="limit"), 0)
        self.assertEqual(total("protocol_violations_total", code="1002"), 1)
        self.assertEqual(total("protocol_violations_total", code="1003"), 1)
        self.assertEqual(total("protocol_violations_total", code="1009"), 0)
        self.assertEqual(total("handshakes_refused_total", reason="origin"), 1)
        self.assertEqual(total("handshakes_refused_total", reason="invalid"), 1)
        self.assertEqual(total("handshakes_refused_total", reason="path"), 0)
        self.assertEqual(total("send_buffer_cutoffs_total"), 0)
        self.assertEqual(total("request_duration_seconds_count", name="ok"), 3)
        self.assertEqual(
            total("request_duration_seconds_bucket", name="ok", le="0.0005"), 3
        )

        clock.advance(0.3)
        release.callback(None)
        self.assertEqual(await b.message(3), h("BF") + ident(10) + b"done")
        samples = parseScrape(await scrape(metricsPort))
        self.assertEqual(total("handlers_running"), 0)
        samples = parseScrape(await scrape(metricsPort))
        self.assertEqual(total("handlers_running"), 0)
        self.assertEqual(total("requests_total", name="wait", outcome="reply"), 1)
        self.assertEqual(total("request_duration_seconds_count", name="wait"), 1)
        self.assertAlmostEqual(total("request_duration_seconds_sum", name="wait"), 0.3)
        self.assertEqual(
            total("request_duration_seconds_bucket", name="wait", le="0.25"), 0
        )
        self.assertEqual(
            total("request_duration_seconds_bucket", name="wait", le="0.5"), 1
        )

    async def test_refusedPathAndShutdown(self) -> None:
        """
        Upgrades on a path not served and during a shutdown are counted by
        reason; requests during a shutdown are counted as such.
        """
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry)
        options = ServerOptions(paths=("/ws",))
        release: Deferred[None] = Deferred()
        server = LoopbackServer(self, _router(release), options, observer=metrics)
        upgrade = (
            b"GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.assertIn(b" 404 ", await rawHTTP(server.portNumber, upgrade))
        client = await server.connectAccepted("/ws")
        client.send(request(1, "wait"))
        self.assertEqual(metrics.accepted, 1)
        # The running handler keeps the shutdown draining.
        while not server.factory.runningHandlers:
            await client.ping()
        server.factory.shutdown()
        self.assertEqual(await client.roundTrip(request(2, "ok")), h("01") + ident(2))
        ws = upgrade.replace(b"/other", b"/ws")
        self.assertIn(b" 503 ", await rawHTTP(server.portNumber, ws))
        release.callback(None)
        await client.closed
        self.assertEqual(
            registry.get_sample_value(
                "webwire_handshakes_refused_total", {"reason": "path"}
            ),
            1,
        )
        self.assertEqual(
            registry.get_sample_value(
                "webwire_handshakes_refused_total", {"reason": "shutdown"}
            ),
            1,
        )
        self.assertEqual(
            registry.get_sample_value(
                "webwire_requests_total", {"name": "ok", "outcome": "shutdown"}
            ),
            1,
        )

    async def test_refusedAtLimit(self) -> None:
        """
        Connections refused at C{maxConnections} (from the TCP accept, before
        any upgrade) are counted as C{limit}, each of them, while the warning
        that the limit refuses clients is logged at most once a minute.
        """
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry)
        clock = Clock()
        events = captureLogs(self)
        server = LoopbackServer(
            self,
            _router(Deferred()),
            ServerOptions(maxConnections=1, readTimeout=3600),
            clock,
            observer=metrics,
        )
        held = await server.connect("/")
        await held.message(0)  # AcceptConf: the connection is open
        heldConnection = server.serverProtocols()[0].connection
        upgrade = (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

        def warnings() -> list[str]:
            return [
                formatEvent(e)
                for e in events
                if "connections reached" in formatEvent(e)
            ]

        for _ in range(3):
            refused = await rawHTTP(server.portNumber, upgrade, untilHeaders=True)
            self.assertIn(b" 503 ", refused)
        self.assertEqual(len(warnings()), 1)
        clock.advance(LIMIT_WARNING_INTERVAL)
        refused = await rawHTTP(server.portNumber, upgrade, untilHeaders=True)
        self.assertIn(b" 503 ", refused)
        self.assertEqual(len(warnings()), 2)
        self.assertIn("refused 3 with HTTP 503", warnings()[1])
        self.assertEqual(
            registry.get_sample_value(
                "webwire_handshakes_refused_total", {"reason": "limit"}
            ),
            4,
        )
        self.assertEqual(server.serverProtocols()[0].connection, heldConnection)

    async def test_randomNames(self) -> None:
        """
        A flood of random request names adds no series: each is counted as
        C{other}; only the router's names are labels.
        """
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry)
        server = LoopbackServer(self, _router(Deferred()), observer=metrics)
        client = await server.connectAccepted()
        names = [os.urandom(8).hex() for _ in range(300)] + ["ok"]
        client.send(*(request(n, name) for n, name in enumerate(names)))
        await client.receivedCount(len(names) + 1)
        samples = parseScrape(await scrape(serveMetrics(self, registry)))
        labelled = {
            dict(labels)["name"]
            for (name, labels), _ in samples.items()
            if name.startswith(("webwire_requests", "webwire_request_duration"))
        }
        self.assertEqual(labelled, {"ok", OTHER})
        self.assertEqual(
            value(samples, "webwire_requests_total", name=OTHER, outcome="error"), 300
        )
        self.assertEqual(len(metrics._labels), 1)


_METRIC = re.compile(r"\b((?:webwire|process|python)_[a-z_]+)")


class TwistdMetricsTests(TestCase):
    """
    C{twistd webwire --metrics}: the process serves its metrics, and the
    Grafana dashboard in C{examples/} uses only metrics it serves.
    """

    timeout = 60

    async def test_dashboard(self) -> None:
        """
        Every metric the dashboard's queries name is in a scrape of a real
        C{twistd webwire --metrics}, and every WebWire metric family is on
        the dashboard.
        """
        argv = [*TWISTD, "webwire", *LISTEN, "--sessions=memory"]
        argv += ["--metrics", "tcp:0:interface=127.0.0.1"]
        process, transport, port = await startServer(self, argv)
        match = await process.match(re.compile(rb"\bSite starting on (\d+)"), 2)
        metricsPort = int(match.group(1))
        client = await connectRaw(port)
        await client.message(0)
        reply = await client.roundTrip(request(1, "echo", b"hi"))
        self.assertEqual(reply, h("BF") + ident(1) + b"hi")
        text = await scrape(metricsPort)
        samples = parseScrape(text)
        self.assertEqual(
            value(samples, "webwire_requests_total", name="echo", outcome="reply"), 1
        )
        scraped = {name for name, _ in samples}
        families = {f.name for f in text_string_to_metric_families(text)}
        dashboard = json.loads(DASHBOARD.getContent())
        queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        referenced = {m for q in queries for m in _METRIC.findall(q)}
        self.assertTrue(referenced)
        self.assertEqual(referenced - scraped, set())
        ours = {f for f in families if f.startswith("webwire_")}
        onDashboard = {
            f for f in ours if any(r == f or r.startswith(f + "_") for r in referenced)
        }
        self.assertEqual(ours - onDashboard, set())
        client.sendClose()
        await client.closed
