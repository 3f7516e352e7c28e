"""
Tests for L{webwire.logonce}: what a client can repeat is logged a bounded
number of times per connection, then counted and summarised, and, end to
end, a client flooding the server with hostile messages over a socket
makes a bounded number of log events.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.helpers import LoopbackServer, ident
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.logonce import FAILURE_LIMIT, RepeatedEvents, eventsOf
from webwire.router import Router


def _clientSide(event: LogEvent) -> bool:
    """Whether C{event} is about the test's own client, not the server."""
    client = (WebSocketClientFactory, WebSocketClientProtocol)
    return isinstance(event.get("factory"), client) or isinstance(
        event.get("log_source"), client
    )


def capture(testCase: SynchronousTestCase) -> list[LogEvent]:
    """
    Every log event from now on (of any level), but those of the test's own
    client (its factory stopping, say), which the server does not log.
    """
    events: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if not _clientSide(event):
            events.append(event)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    testCase.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


def localLogger() -> tuple[Logger, list[LogEvent]]:
    """A logger whose events go to a list only."""
    publisher = LogPublisher()
    events: list[LogEvent] = []
    publisher.addObserver(cast(ILogObserver, events.append))
    return Logger(observer=publisher), events


class RepeatedEventsTests(SynchronousTestCase):
    """
    L{RepeatedEvents} logs each kind of event once (failures up to
    C{failureLimit} times) and summarises the rest.
    """

    def test_onceThenCounted(self) -> None:
        """
        The first event of a kind is logged, saying that repeats are
        counted; the repeats are not logged; another kind is logged on its
        own; the summary gives the counts of what was not logged, once.
        """
        log, events = localLogger()
        repeated = RepeatedEvents("peer-1")
        for n in range(1000):
            repeated.emit(log, "a", LogLevel.debug, "event a {n}", n=n)
        repeated.emit(log, "b", LogLevel.info, "event b")
        texts = [formatEvent(e) for e in events]
        self.assertEqual(len(texts), 2)
        self.assertIn("event a 0", texts[0])
        self.assertIn("counted, not logged", texts[0])
        self.assertEqual(repeated.count("a"), 1000)
        repeated.summarise()
        self.assertEqual(len(events), 3)
        summary = events[-1]
        self.assertEqual(summary["counts"], {"a": 999})
        self.assertEqual(summary["log_level"], LogLevel.debug)
        self.assertIn("peer-1", formatEvent(summary))
        self.assertIn("a x999", formatEvent(summary))
        repeated.summarise()
        self.assertEqual(len(events), 3)  # nothing new to summarise

    def test_failures(self) -> None:
        """
        Failures log their traceback C{failureLimit} times per kind; the
        summary of the rest is a warning, never critical.
        """
        log, events = localLogger()
        repeated = RepeatedEvents("peer", failureLimit=3)
        for n in range(50):
            repeated.failure(log, "boom", "failed {n}", Failure(ValueError(n)), n=n)
        self.assertEqual(len(events), 3)
        self.assertTrue(all("log_failure" in e for e in events))
        self.assertEqual(events[0]["log_level"], LogLevel.critical)
        repeated.summarise()
        self.assertEqual(len(events), 4)
        self.assertNotIn("log_failure", events[-1])
        self.assertEqual(events[-1]["log_level"], LogLevel.warn)
        self.assertEqual(events[-1]["counts"], {"boom": 47})

    def test_eventsOfOtherConnections(self) -> None:
        """
        A connection that is not the server's gets a L{RepeatedEvents} of
        its own, which logs everything it is given once.
        """
        self.assertIsInstance(eventsOf(object()), RepeatedEvents)
        repeated = RepeatedEvents("x")

        class Owner:
            events = repeated

        self.assertIs(eventsOf(Owner()), repeated)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The repository root, where C{python -m benchmarks...} runs."""

HOSTILE = 1000
"""How many of each hostile message the end-to-end tests send."""


def serverOnly(n: int) -> bytes:
    """One of the messages only servers send."""
    messages = [
        wire.encodeReply(ident(n), b"x", wire.Encoding.BINARY),
        wire.encodeErrorReply(ident(n), "E", "e"),
        wire.encodeSpecialReply(wire.MessageType.REPLY_SHUTDOWN, ident(n)),
        wire.encodeSessionClosed(),
        wire.encodeAcceptConf(60000, 8192),
    ]
    return messages[n % len(messages)]


class FloodTests(TestCase):
    """
    A client sends thousands of hostile messages over a socket; the server
    answers what needs an answer and logs a bounded number of events.
    """

    async def flood(
        self, application: Any, messages: list[bytes], replies: int
    ) -> list[LogEvent]:
        """
        Send C{messages} on one connection, wait for C{replies} replies and
        for the close, and return what was logged meanwhile (but for the
        line of the client's factory stopping, which is no server's).
        """
        server = LoopbackServer(self, application)
        client = await server.connectAccepted()
        events = capture(self)
        client.send(*messages)
        await client.receivedCount(1 + replies)
        [protocol] = server.serverProtocols()
        closed: Deferred[None] = protocol.closeGracefully(1000, "")
        await closed
        # What the server logged: not the test client's factory stopping.
        return [e for e in events if "Stopping factory" not in formatEvent(e)]

    def assertBounded(self, events: list[LogEvent], limit: int) -> None:
        texts = "\n".join(formatEvent(e) for e in events)
        self.assertLessEqual(len(events), limit, texts)
        critical = [e for e in events if e["log_level"] == LogLevel.critical]
        self.assertEqual(critical, [], texts)

    async def test_serverOnlyMessages(self) -> None:
        """
        Messages only servers send are ignored: one debug event on the
        connection, and their count in the summary at close.
        """
        messages = [serverOnly(n) for n in range(HOSTILE)]
        echo = wire.encodeRequest(ident(1), "echo", b"end", wire.Encoding.BINARY)
        events = await self.flood(ConformanceApplication(), [*messages, echo], 1)
        self.assertBounded(events, 3)
        [summary] = [e for e in events if "counts" in e]
        self.assertEqual(summary["counts"], {"server-only message": HOSTILE - 1})

    async def test_emptyUTF16Signal(self) -> None:
        """
        C{signal-me} with an empty UTF-16 payload (no signal can carry it)
        is answered with error BAD_REQUEST every time, with nothing logged:
        no traceback, nothing critical.
        """
        request = wire.encodeRequest(ident(7), "signal-me", b"", wire.Encoding.UTF16)
        events = await self.flood(
            ConformanceApplication(), [request] * HOSTILE, HOSTILE
        )
        self.assertBounded(events, 0)

    async def test_emptyUTF16SignalReply(self) -> None:
        """The reply to it names the problem (the conformance application)."""
        server = LoopbackServer(self, ConformanceApplication())
        client = await server.connectAccepted()
        request = wire.encodeRequest(ident(7), "signal-odd", b"", wire.Encoding.UTF16)
        reply = wire.parse(await client.roundTrip(request))
        assert isinstance(reply, wire.ErrorReply), reply
        self.assertEqual(reply.code, "BAD_REQUEST")

    async def test_failingHandler(self) -> None:
        """
        A handler that fails on every request (C{internal}) is answered
        with an internal error every time; its traceback is logged at most
        L{FAILURE_LIMIT} times on the connection, then counted.
        """
        request = wire.encodeRequest(ident(7), "internal", b"", wire.Encoding.BINARY)
        events = await self.flood(
            ConformanceApplication(), [request] * HOSTILE, HOSTILE
        )
        self.flushLoggedErrors()
        tracebacks = [e for e in events if "log_failure" in e]
        self.assertEqual(len(tracebacks), FAILURE_LIMIT)
        [summary] = [e for e in events if "counts" in e]
        self.assertEqual(
            summary["counts"], {"request handler failed": HOSTILE - FAILURE_LIMIT}
        )
        self.assertLessEqual(len(events), FAILURE_LIMIT + 1)

    async def test_unknownSignals(self) -> None:
        """
        A router ignores unknown signals with one debug event per
        connection.
        """
        router = Router()
        signal = wire.encodeSignal("nobody-listens", b"x", wire.Encoding.BINARY)
        echo = wire.encodeRequest(ident(1), "nothing", b"", wire.Encoding.BINARY)
        events = await self.flood(router, [signal] * HOSTILE + [echo], 1)
        self.assertBounded(events, 3)
        [summary] = [e for e in events if "counts" in e]
        self.assertEqual(summary["counts"], {"unknown signal": HOSTILE - 1})

    async def test_repliesToDepartedClient(self) -> None:
        """
        A client that leaves with many requests running: their replies are
        dropped with one debug event and a count, not a line each.
        """
        sleeps = WatchedSleeps()
        server = LoopbackServer(self, sleeps)
        client = await server.connectAccepted()
        events = capture(self)
        client.send(
            *(
                wire.encodeRequest(ident(n), "wait", b"", wire.Encoding.BINARY)
                for n in range(60)
            )
        )
        await sleeps.started(60)
        [protocol] = server.serverProtocols()
        assert client.transport is not None
        client.transport.abortConnection()  # type: ignore[attr-defined]
        await protocol.closeGracefully(1000, "")
        for d in sleeps.pending:
            d.callback(b"late")
        self.assertBounded(events, 4)
        dropped = [e for e in events if e.get("counts", {}).get("reply dropped")]
        self.assertEqual([e["counts"]["reply dropped"] for e in dropped], [59])


class WatchedSleeps(ConformanceApplication):
    """
    Requests named C{wait} wait until the test fires them; the test can
    wait for a number of them to have started.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[bytes]] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def onRequest(self, connection: Any, request: wire.Request) -> Any:
        if request.name != "wait":
            return super().onRequest(connection, request)
        d: Deferred[bytes] = Deferred()
        self.pending.append(d)
        ready = [w for n, w in self._waiting if len(self.pending) >= n]
        self._waiting = [(n, w) for n, w in self._waiting if len(self.pending) < n]
        for waiter in ready:
            waiter.callback(None)
        return d

    def started(self, count: int) -> Deferred[None]:
        """Fire once C{count} requests are waiting."""
        d: Deferred[None] = Deferred()
        if len(self.pending) >= count:
            d.callback(None)
        else:
            self._waiting.append((count, d))
        return d


class LogFloodBenchmarkTests(TestCase):
    """
    C{python -m benchmarks.logflood}, as documented, in a short run.
    """

    timeout = 120

    async def test_shortRun(self) -> None:
        """
        A short run reports every scenario and exits with status 0: no
        scenario logs without bound.
        """
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "benchmarks.logflood", "--messages", "300"],
            env=dict(os.environ),
            path=ROOT,
        )
        self.assertEqual(code, 0, err)
        table = out.decode()
        for scenario in ["server-only", "signal-me", "internal", "departed"]:
            self.assertIn(scenario, table)
