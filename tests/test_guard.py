"""
Before the upgrade, and while closing: every phase of a connection is
bounded, over real loopback sockets, for the bare factory and for the
twisted.web site C{twistd webwire} serves (timers on a L{Clock}).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from benchmarks._stressload import frame
from tests.helpers import (
    UPGRADE_REQUEST,
    LoopbackServer,
    h,
    ident,
    listeningPort,
    portNumber,
    sleepRequest,
)
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.sessions import MemorySessionManager
from webwire.web import WebWireRoot, makeSite


class RawTCP(Protocol):
    """A TCP client that sends what it is told and records what it gets."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred[bytes] = Deferred()
        self._waiters: list[tuple[bytes, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        ready = [d for marker, d in self._waiters if marker in self.data]
        self._waiters = [(m, d) for m, d in self._waiters if m not in self.data]
        for d in ready:
            d.callback(None)

    def received(self, marker: bytes) -> Deferred[None]:
        """Fire once C{marker} has arrived."""
        d: Deferred[None] = Deferred()
        if marker in self.data:
            d.callback(None)
        else:
            self._waiters.append((marker, d))
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(self.data)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def stopReading(self) -> None:
        cast(Any, self.transport).pauseProducing()


async def connectTCP(port: int) -> RawTCP:
    """A raw TCP connection to 127.0.0.1:C{port}."""
    client = RawTCP()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoint.connect(cast(Any, Factory.forProtocol(lambda: client)))
    return client


def signalMe(n: int, payload: bytes) -> bytes:
    return wire.encodeRequest(ident(n), "signal-me", payload, wire.Encoding.BINARY)


class _Servers:
    """The two ways a WebWire server listens: bare factory, web site."""

    def __init__(self, testCase: TestCase, options: ServerOptions) -> None:
        self.testCase = testCase
        self.options = options
        self.clock = Clock()

    def bare(self) -> int:
        server = LoopbackServer(
            self.testCase, ConformanceApplication(), self.options, self.clock
        )
        return server.portNumber

    async def site(self) -> int:
        factory = WebWireServerFactory(
            ConformanceApplication(),
            self.options,
            sessionManager=MemorySessionManager(),
            reactor=self.clock,
        )
        service = WebWireService(
            factory,
            ["tcp:0:interface=127.0.0.1"],
            site=makeSite(WebWireRoot(factory)),
        )
        service.startService()
        self.testCase.addCleanup(service.stopService)
        return portNumber(await listeningPort(service))


class BeforeUpgradeTests(TestCase):
    """
    Nothing before the upgrade holds a socket for long, in either kind of
    server.
    """

    timeout = 30

    async def check(self, mode: str, test: Any) -> None:
        servers = _Servers(self, ServerOptions(maxConnections=2))
        port = servers.bare() if mode == "bare" else await servers.site()
        await test(servers.clock, port)

    async def _dribbler(self, clock: Clock, port: int) -> None:
        silent = await connectTCP(port)
        dribbler = await connectTCP(port)
        for i in range(4):
            dribbler.send(UPGRADE_REQUEST[i : i + 1])
            clock.advance(1.2)
        self.assertNoResult(silent.lost)
        self.assertNoResult(dribbler.lost)
        clock.advance(0.2)
        await silent.lost
        await dribbler.lost

    async def test_dribblerBare(self) -> None:
        """
        The bare factory drops a silent client and one that dribbles its
        upgrade request after the opening handshake timeout from the accept.
        """
        await self.check("bare", self._dribbler)

    async def test_dribblerSite(self) -> None:
        """The twisted.web site does too; each byte restarts nothing."""
        await self.check("site", self._dribbler)

    async def _limit(self, clock: Clock, port: int) -> None:
        halves = [await connectTCP(port) for _ in range(2)]
        for half in halves:
            half.send(UPGRADE_REQUEST[:20])
        refused = await connectTCP(port)
        refused.send(UPGRADE_REQUEST)
        response = await refused.lost
        self.assertTrue(response.startswith(b"HTTP/1.1 503"), response)
        for half in halves:
            self.assertNoResult(half.lost)
        clock.advance(5)
        for half in halves:
            await half.lost
        accepted = await connectTCP(port)
        accepted.send(UPGRADE_REQUEST)
        await accepted.received(b"101 Switching Protocols")

    async def test_limitBare(self) -> None:
        """
        Connections in the handshake count against maxConnections: past
        it, the bare factory answers 503 at once; once they are gone a new
        one is served.
        """
        await self.check("bare", self._limit)

    async def test_limitSite(self) -> None:
        """The site counts from the accept too."""
        await self.check("site", self._limit)

    async def _body(self, clock: Clock, port: int) -> None:
        client = await connectTCP(port)
        head = UPGRADE_REQUEST[:-2] + b"Content-Length: 64000000\r\n\r\n"
        client.send(head + b"\x00" * 65536)
        await client.received(b"\r\n\r\n")
        self.assertTrue(client.data.startswith(b"HTTP/1.1 400"), client.data)
        chunked = await connectTCP(port)
        chunked.send(UPGRADE_REQUEST[:-2] + b"Transfer-Encoding: chunked\r\n\r\n")
        await chunked.received(b"\r\n\r\n")
        self.assertTrue(chunked.data.startswith(b"HTTP/1.1 400"), chunked.data)
        # The client that neither stops sending nor closes is aborted.
        client.send(b"\x00" * 65536)
        clock.advance(5)
        await client.lost
        await chunked.lost

    async def test_bodyBare(self) -> None:
        """An upgrade request with a body gets 400 from the bare factory."""
        await self.check("bare", self._body)

    async def test_bodySite(self) -> None:
        """The site answers 400 before reading the body."""
        await self.check("site", self._body)

    async def _headers(self, clock: Clock, port: int) -> None:
        big = await connectTCP(port)
        big.send(UPGRADE_REQUEST[:-2] + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
        many = await connectTCP(port)
        lines = b"".join(b"X-%d: 1\r\n" % n for n in range(600))
        many.send(UPGRADE_REQUEST[:-2] + lines + b"\r\n")
        for client in (big, many):
            await client.received(b"\r\n\r\n")
            self.assertRegex(client.data, rb"^HTTP/1.1 4(00|31)")
            clock.advance(5)
            await client.lost

    async def test_headersBare(self) -> None:
        """More than 16 KiB or 500 header lines: the bare factory says 431."""
        await self.check("bare", self._headers)

    async def test_headersSite(self) -> None:
        """The site holds twisted.web's same limits (400)."""
        await self.check("site", self._headers)

    async def test_keepAliveSite(self) -> None:
        """
        A plain request on the site is answered however long that takes;
        the next request on the same connection has the timeout again.
        """
        servers = _Servers(self, ServerOptions())
        port = await servers.site()
        client = await connectTCP(port)
        client.send(b"GET /webwire.js HTTP/1.1\r\nHost: x\r\n\r\n")
        await client.received(b"export")
        servers.clock.advance(4.9)
        self.assertNoResult(client.lost)
        servers.clock.advance(0.1)
        await client.lost


class CloseTests(TestCase):
    """Every close completes, and the size limit holds while closing."""

    timeout = 30

    async def test_queuedRequestsAnsweredThenClosed(self) -> None:
        """
        Five requests and a malformed message in one write: the five are
        answered, then Close 1002 arrives; a client that does not read
        cannot hold the connection beyond the close timeout.
        """
        clock = Clock()
        server = LoopbackServer(self, ConformanceApplication(), clock=clock)
        client = await server.connectAccepted()
        payload = b"p" * 8000
        client.transport.write(  # type: ignore[union-attr]
            b"".join(frame(2, signalMe(n, payload)) for n in range(1, 6))
            + frame(2, h("C8"))
        )
        wasClean, code, reason = await client.closed
        self.assertEqual(code, 1002)
        replies = [m for m in client.received if m[:1] == h("BF")]
        self.assertEqual([m[1:9] for m in replies], [ident(n) for n in range(1, 6)])

        stalled = await server.connectAccepted()
        protocol = server.serverProtocols()[-1]
        stalled.stopReading()
        stalled.transport.write(  # type: ignore[union-attr]
            b"".join(frame(2, signalMe(n, payload)) for n in range(1, 40))
            + frame(2, h("C8"))
        )
        while not protocol.isLingering:
            await server.tick()
        self.assertFalse(protocol.isDisconnected)
        clock.advance(5)
        while not protocol.isDisconnected:
            await server.tick()

    async def test_oversizedWhileClosing(self) -> None:
        """
        While the application closes a connection (a request still runs),
        a frame declaring 1 GiB is discarded as it arrives; the running
        request is answered and the close carries 1009.
        """
        sleepClock = Clock()
        server = LoopbackServer(self, ConformanceApplication(sleepClock))
        client = await server.connectAccepted()
        client.send(sleepRequest(1, 100))
        protocol = server.serverProtocols()[0]
        while not protocol.runningHandlers:
            await server.tick()
        assert protocol.connection is not None
        closed = protocol.connection.close()
        head = bytes((0x82, 0xFF)) + (1 << 30).to_bytes(8, "big") + b"\0" * 4
        client.transport.write(head)  # type: ignore[union-attr]
        for _ in range(32):
            client.transport.write(b"\0" * 65536)  # type: ignore[union-attr]
        while (
            protocol.current_frame is None
            or protocol.current_frame_masker.pointer() < (1 << 21)
        ):
            await server.tick()
        buffered = len(protocol.data) + sum(map(len, protocol.frame_data or []))
        self.assertLess(buffered, 1 << 17)
        sleepClock.advance(0.1)
        await closed
        wasClean, code, reason = await client.closed
        self.assertEqual(code, 1009)
        self.assertEqual(client.received[1:], [h("C0") + ident(1) + b"100"])

    async def test_shutdownBoundedWithNonReader(self) -> None:
        """
        A shutdown ends within the close timeout even when a client never
        reads what is queued for it.
        """
        clock = Clock()
        server = LoopbackServer(self, ConformanceApplication(), clock=clock)
        client = await server.connectAccepted()
        client.stopReading()
        payload = b"p" * 8000
        client.send(*(signalMe(n, payload) for n in range(1, 40)))
        protocol = server.serverProtocols()[0]
        while not protocol.isWriteCongested:
            await server.tick()
        done = server.factory.shutdown()
        while not protocol.isLingering:
            await server.tick()
        self.assertNoResult(done)
        clock.advance(5)
        await done
