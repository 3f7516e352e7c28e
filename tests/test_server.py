"""
Unit tests of L{webwire.server}: the protocol and its factory, driven in
memory with no sockets and no real time.

Each test connects an Autobahn client to a L{WebWireServerFactory} through
L{twisted.test.iosim}, and moves time only with L{MemoryReactorClock.advance}
(which also drives Autobahn's timers, through txaio's loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.compress import PerMessageDeflateOffer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import (
    StringTransport,
)
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import captureLogs, h, ident, webwireEvents
from webwire import wire
from webwire.application import Application
from webwire.errors import Disconnected, RequestError
from webwire.guard import GuardedConnection
from webwire.interfaces import IConnection, RequestResult
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory, WebWireServerProtocol
from webwire.testing import MemoryServer, MemoryTransport, Pair

DEFAULT_ACCEPT_CONF = bytes.fromhex("17 02 00 60 EA 00 00 00 20 00 00")
HEARTBEAT = bytes.fromhex("21")

UPGRADE_REQUEST = (
    b"GET / HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


# In-memory client/server pairs ---------------------------------------------


def request(n: int, payload: bytes = b"", name: str = "r") -> bytes:
    """A binary request number C{n}."""
    return wire.encodeRequest(ident(n), name, payload, wire.Encoding.BINARY)


def reply(n: int, payload: bytes = b"") -> bytes:
    """The binary reply to request number C{n}."""
    return wire.encodeReply(ident(n), payload, wire.Encoding.BINARY)


def special(kind: wire.MessageType, n: int) -> bytes:
    """A header-only reply (shutdown, internal error, ...) to request C{n}."""
    return wire.encodeSpecialReply(kind, ident(n))


def signal(name: str = "s", payload: bytes = b"") -> bytes:
    """A binary signal."""
    return wire.encodeSignal(name, payload, wire.Encoding.BINARY)


def maskedFrames(*messages: bytes) -> bytes:
    """
    Client-to-server binary frames (masked with a zero key) for
    C{messages} of up to 125 bytes, to feed a server protocol directly.
    """
    return b"".join(
        bytes((0x82, 0x80 | len(m))) + b"\x00\x00\x00\x00" + m for m in messages
    )


class LenientStringTransport(StringTransport):
    """
    A L{StringTransport} that, like TCP transports, lets a protocol
    unregister a producer it never registered (Autobahn does that when it
    refuses a handshake).
    """

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class ServerHarness(MemoryServer):
    """A L{MemoryServer} whose Autobahn timers run on its clock."""

    def __init__(
        self,
        testCase: SynchronousTestCase,
        application: Application,
        options: ServerOptions | None = None,
    ) -> None:
        super().__init__(application, options, testCase=testCase)
        self.application = application


class ControlledApplication(Application):
    """
    An application whose hooks the test controls and records.

    Requests are answered by C{self.handler}, which echoes the payload
    unless replaced; L{deferRequests} makes every request wait for a
    Deferred the test fires.
    """

    def __init__(self) -> None:
        self.connected: list[IConnection] = []
        self.disconnected: list[tuple[IConnection, Failure]] = []
        self.requests: list[wire.Request] = []
        self.signals: list[wire.Signal] = []
        self.pending: dict[bytes, Deferred[Any]] = {}
        # What the next onClientConnected returns.
        self.connectResult: Deferred[None] | None = None
        self.onConnected: Callable[[IConnection], None] | None = None
        self.handler: Callable[[IConnection, wire.Request], RequestResult] = (
            lambda connection, request: request.payload
        )
        self.signalHandler: Callable[[IConnection, wire.Signal], Any] = (
            lambda connection, signal: None
        )
        self.disconnectError: Exception | None = None

    def deferRequests(self) -> None:
        """Answer every request with a Deferred kept in C{self.pending}."""

        def handler(connection: IConnection, request: wire.Request) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            self.pending[request.identifier] = d
            return d

        self.handler = handler

    def started(self) -> list[int]:
        """The numbers of the requests whose handler was called, in order."""
        return [int.from_bytes(r.identifier, "little") for r in self.requests]

    def onClientConnected(self, connection: IConnection) -> Deferred[None] | None:
        self.connected.append(connection)
        if self.onConnected is not None:
            self.onConnected(connection)
        result, self.connectResult = self.connectResult, None
        return result

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        self.disconnected.append((connection, reason))
        if self.disconnectError is not None:
            raise self.disconnectError

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> RequestResult:
        self.requests.append(request)
        return self.handler(connection, request)

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> Any:
        self.signals.append(signal)
        return self.signalHandler(connection, signal)


def rawHandshake(factory: WebWireServerFactory) -> bytes:
    """
    Feed a raw WebSocket upgrade request to a new protocol of C{factory},
    on a L{StringTransport}; return every byte the server wrote.
    """
    protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
    transport = LenientStringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(UPGRADE_REQUEST)
    written: bytes = transport.value()
    return written


class ServerTestCase(SynchronousTestCase):
    """
    A test case with a fresh L{ControlledApplication}, and L{harness} to
    serve it.
    """

    def setUp(self) -> None:
        self.app = ControlledApplication()

    def harness(self, options: ServerOptions | None = None) -> ServerHarness:
        """Serve C{self.app} with C{options} in memory."""
        return ServerHarness(self, self.app, options)


# Tests ---------------------------------------------------------------------


class HandshakeTests(ServerTestCase):
    """
    The opening of a connection: AcceptConf, then the application's hook.
    """

    def test_acceptConfFirst(self) -> None:
        """
        The first message the client gets is AcceptConf with the default
        settings, and the connection is open.
        """
        pair = self.harness().connect()
        self.assertEqual(pair.client.received, [DEFAULT_ACCEPT_CONF])
        self.assertTrue(pair.server.isActive)

    def test_configuredAcceptConf(self) -> None:
        """
        AcceptConf advertises the configured read timeout and sub-protocol.
        """
        options = ServerOptions(readTimeout=3, subProtocol="chat")
        pair = self.harness(options).connect()
        self.assertEqual(
            pair.client.received, [h("17 02 00 B8 0B 00 00 00 20 00 00 63 68 61 74")]
        )

    def test_connectHookAfterAcceptConf(self) -> None:
        """
        C{onClientConnected} is called once, with the connection, after
        AcceptConf was written; what it sends follows AcceptConf.
        """
        harness = self.harness()
        written: list[bytes] = []

        def onConnected(connection: IConnection) -> None:
            [protocol] = harness.factory.servedProtocols
            transport: object = protocol.transport
            assert isinstance(transport, MemoryTransport)
            written.append(b"".join(transport.stream))
            connection.signal("hello", b"!")

        self.app.onConnected = onConnected
        pair = harness.connect()
        self.assertEqual(len(self.app.connected), 1)
        self.assertIs(self.app.connected[0], pair.server.connection)
        # An unmasked binary frame of 11 bytes: 0x82 0x0B, then AcceptConf.
        self.assertTrue(written[0].endswith(h("82 0B") + DEFAULT_ACCEPT_CONF))
        self.assertEqual(
            pair.client.received, [DEFAULT_ACCEPT_CONF, signal("hello", b"!")]
        )

    def test_connectHookBlocksProcessing(self) -> None:
        """
        Until the Deferred returned by C{onClientConnected} fires, nothing
        is dispatched and the transport is paused; then the waiting
        messages are processed in order.
        """
        hook: Deferred[None] = Deferred()
        self.app.connectResult = hook
        pair = self.harness().connect()
        self.assertEqual(pair.serverTransport.producerState, "paused")
        pair.send(request(1, b"a"), request(2, b"b"))
        self.assertEqual(self.app.requests, [])
        hook.callback(None)
        pair.flush()
        self.assertEqual(pair.replies, [reply(1, b"a"), reply(2, b"b")])
        self.assertEqual(pair.serverTransport.producerState, "producing")

    def test_readWhileConnectHookRunsWaits(self) -> None:
        """
        Messages already read while C{onClientConnected} runs wait in the
        queue, and are dispatched in order once it has finished.
        """
        hook: Deferred[None] = Deferred()
        self.app.connectResult = hook
        pair = self.harness().connect()
        pair.server.dataReceived(maskedFrames(request(1, b"a"), request(2, b"b")))
        self.assertEqual(self.app.requests, [])
        self.assertEqual(pair.server.dispatcher.queued, 2)
        hook.callback(None)
        pair.flush()
        self.assertEqual(self.app.started(), [1, 2])
        self.assertEqual(pair.replies, [reply(1, b"a"), reply(2, b"b")])

    def test_connectHookFailure(self) -> None:
        """
        If C{onClientConnected} fails, the failure is logged and the
        connection closed with 1011.
        """
        self.app.connectResult = fail(ValueError("no thanks"))
        pair = self.harness().connect()
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(pair.client.closeCode, 1011)
        self.assertEqual(len(self.app.disconnected), 1)

    def test_connectionAttributes(self) -> None:
        """
        The connection holds the handshake request, the peer and a creation
        time taken from the factory's clock.
        """
        harness = self.harness()
        harness.clock.advance(1000)
        pair = harness.connect()
        connection = self.app.connected[0]
        self.assertEqual(connection.request.path, "/")
        self.assertEqual(connection.request.host, "localhost")
        self.assertIs(connection.peer, pair.serverTransport.getPeer())
        self.assertEqual(connection.creation.timestamp(), 1000)


class ReadDeadlineTests(ServerTestCase):
    """
    The read deadline (PROTOCOL.md section 8): silence for the read timeout
    drops the connection; anything the client sends renews it; time spent
    waiting on the connection's own handlers does not count.
    """

    def assertDropped(self, pair: Pair) -> None:
        """The server aborted C{pair}'s transport and reported it."""
        self.assertTrue(pair.serverTransport.aborted)
        self.assertEqual(len(self.app.disconnected), 1)
        connection, reason = self.app.disconnected[0]
        self.assertIs(connection, self.app.connected[0])
        self.assertIsInstance(reason, Failure)
        self.assertEqual(pair.client.closeCode, 1006)

    def assertAlive(self, pair: Pair) -> None:
        """C{pair} is still connected."""
        self.assertFalse(pair.serverTransport.disconnecting)
        self.assertEqual(self.app.disconnected, [])
        self.assertEqual(pair.client.closes, [])

    def test_silence(self) -> None:
        """
        After exactly the read timeout of silence, the transport is aborted,
        C{onClientDisconnected} is called and one warning logged.
        """
        observer = captureLogs(self)
        harness = self.harness()
        pair = harness.connect()
        harness.advance(59)
        self.assertAlive(pair)
        harness.advance(1)
        self.assertDropped(pair)
        self.assertTrue(self.app.disconnected[0][1].check(ConnectionLost))
        [warning] = webwireEvents(observer, LogLevel.warn)
        self.assertIn("no message from", warning["log_format"])

    def test_configuredTimeout(self) -> None:
        """The deadline follows L{ServerOptions.readTimeout}."""
        harness = self.harness(ServerOptions(readTimeout=2.5))
        pair = harness.connect()
        harness.advance(2.4)
        self.assertAlive(pair)
        harness.advance(0.1)
        self.assertDropped(pair)

    def assertRenewedBy(self, renew: Callable[[Pair], None]) -> None:
        """
        What C{renew} does with the client 50 seconds in renews the deadline
        to 60 seconds from then.
        """
        harness = self.harness()
        pair = harness.connect()
        harness.advance(50)
        renew(pair)
        pair.flush()
        harness.advance(50)
        self.assertAlive(pair)
        harness.advance(9)
        self.assertAlive(pair)
        harness.advance(1)
        self.assertDropped(pair)

    def test_renewedByRequest(self) -> None:
        """A request renews the deadline."""
        self.assertRenewedBy(lambda pair: pair.send(request(1, b"x")))
        self.assertEqual(self.app.started(), [1])

    def test_renewedBySignal(self) -> None:
        """A signal renews the deadline."""
        self.assertRenewedBy(lambda pair: pair.send(signal()))
        self.assertEqual(len(self.app.signals), 1)

    def test_renewedByHeartbeat(self) -> None:
        """A heartbeat renews the deadline, and gets no answer."""
        self.assertRenewedBy(lambda pair: pair.send(HEARTBEAT))
        self.assertEqual(self.app.requests, [])

    def test_renewedByPing(self) -> None:
        """A WebSocket ping renews the deadline (and is answered)."""
        pongs: list[bytes] = []

        def ping(pair: Pair) -> None:
            pair.client.sendPing(b"p")
            pair.flush()
            pongs.extend(pair.client.pongs)

        self.assertRenewedBy(ping)
        self.assertEqual(pongs, [b"p"])

    def test_renewedByPong(self) -> None:
        """An unsolicited WebSocket pong renews the deadline."""
        self.assertRenewedBy(lambda pair: pair.client.sendPong(b"p"))

    def test_heldAtConcurrencyLimit(self) -> None:
        """
        While the connection is at its concurrency limit, waiting on its own
        handler, the deadline does not expire however long that takes; once
        the handler has finished, a full read timeout of silence is needed.
        """
        self.app.deferRequests()
        harness = self.harness(ServerOptions(concurrency=1))
        pair = harness.connect()
        pair.send(request(1))
        for _ in range(10):
            harness.advance(60)
        self.assertAlive(pair)
        self.app.pending[ident(1)].callback(b"done")
        pair.flush()
        self.assertEqual(pair.replies, [reply(1, b"done")])
        harness.advance(59)
        self.assertAlive(pair)
        harness.advance(1)
        self.assertDropped(pair)

    def test_heldByConnectHook(self) -> None:
        """
        While C{onClientConnected} has not finished, the deadline does not
        expire.
        """
        hook: Deferred[None] = Deferred()
        self.app.connectResult = hook
        harness = self.harness()
        pair = harness.connect()
        for _ in range(10):
            harness.advance(60)
        self.assertAlive(pair)
        hook.callback(None)
        harness.advance(59)
        self.assertAlive(pair)
        harness.advance(1)
        self.assertDropped(pair)

    def test_runsBelowConcurrencyLimit(self) -> None:
        """
        Below the concurrency limit the server keeps reading, so a running
        handler does not hold the deadline of a silent client.
        """
        self.app.deferRequests()
        harness = self.harness(ServerOptions(concurrency=2))
        pair = harness.connect()
        pair.send(request(1))
        harness.advance(60)
        self.assertDropped(pair)

    def test_oneTimer(self) -> None:
        """
        One open connection has exactly one timer scheduled, and none once
        it is closed.
        """
        harness = self.harness()
        pair = harness.connect()
        self.assertEqual(len(harness.clock.getDelayedCalls()), 1)
        pair.client.sendClose(1000)
        pair.flush()
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class HeartbeatTests(ServerTestCase):
    """
    Heartbeats cost O(1) (PROTOCOL.md section 8): clients may send one
    every millisecond.
    """

    def test_thousandHeartbeats(self) -> None:
        """
        After 1000 heartbeats, one per millisecond, the number of scheduled
        calls is unchanged, nothing waits in the protocol's queue, nothing
        was sent or logged, and requests are still served.
        """
        observer = captureLogs(self)
        harness = self.harness()
        pair = harness.connect()
        calls = len(harness.clock.getDelayedCalls())
        for _ in range(1000):
            pair.client.sendMessage(HEARTBEAT, isBinary=True)
            harness.advance(0.001)
        self.assertEqual(len(harness.clock.getDelayedCalls()), calls)
        self.assertEqual(pair.server.dispatcher.queued, 0)
        self.assertEqual(pair.replies, [])
        self.assertEqual(webwireEvents(observer), [])
        pair.send(request(1, b"x"))
        self.assertEqual(pair.replies, [reply(1, b"x")])

    def test_burst(self) -> None:
        """
        1000 heartbeats arriving at once leave no timer and no queue entry
        behind.
        """
        harness = self.harness()
        pair = harness.connect()
        calls = len(harness.clock.getDelayedCalls())
        pair.send(*[HEARTBEAT] * 1000)
        self.assertEqual(len(harness.clock.getDelayedCalls()), calls)
        self.assertEqual(pair.server.dispatcher.queued, 0)
        self.assertEqual(pair.replies, [])

    def test_heartbeatsWhileConnectHookRuns(self) -> None:
        """
        Heartbeats are not queued even while the connection waits for
        C{onClientConnected}.
        """
        self.app.connectResult = Deferred()
        harness = self.harness()
        pair = harness.connect()
        pair.server.dataReceived(maskedFrames(*[HEARTBEAT] * 100))
        self.assertEqual(pair.server.dispatcher.queued, 0)


class ConcurrencyTests(ServerTestCase):
    """
    At most L{ServerOptions.concurrency} handlers of one connection run at
    once (PROTOCOL.md section 10); the others wait in arrival order while
    the server stops reading.
    """

    def test_limit(self) -> None:
        """
        With a limit of 2, only 2 handlers run; further requests wait in the
        queue and the transport is paused; each handler that finishes starts
        the next waiting request, in arrival order.
        """
        self.app.deferRequests()
        pair = self.harness(ServerOptions(concurrency=2)).connect()
        pair.send(*(request(n) for n in range(1, 6)))
        self.assertEqual(self.app.started(), [1, 2])
        self.assertEqual(pair.server.dispatcher.queued, 3)
        self.assertEqual(pair.serverTransport.producerState, "paused")

        self.app.pending[ident(2)].callback(b"two")
        pair.flush()
        self.assertEqual(self.app.started(), [1, 2, 3])
        self.assertEqual(pair.replies, [reply(2, b"two")])
        self.assertEqual(pair.serverTransport.producerState, "paused")

        self.app.pending[ident(1)].callback(b"one")
        pair.flush()
        self.assertEqual(self.app.started(), [1, 2, 3, 4])

        self.app.pending[ident(3)].callback(b"three")
        pair.flush()
        self.assertEqual(self.app.started(), [1, 2, 3, 4, 5])
        self.assertEqual(pair.server.dispatcher.queued, 0)
        # Two handlers (4 and 5) run: still at the limit.
        self.assertEqual(pair.serverTransport.producerState, "paused")

        self.app.pending[ident(5)].callback(b"five")
        pair.flush()
        self.assertEqual(pair.serverTransport.producerState, "producing")
        self.app.pending[ident(4)].callback(b"four")
        pair.flush()
        self.assertEqual(
            pair.replies,
            [
                reply(2, b"two"),
                reply(1, b"one"),
                reply(3, b"three"),
                reply(5, b"five"),
                reply(4, b"four"),
            ],
        )

    def test_pausedAsSoonAsLimitReached(self) -> None:
        """
        The transport is paused as soon as the handlers that run reach the
        limit, not only when one more message has been read; it reads again
        when one of them finishes.
        """
        self.app.deferRequests()
        pair = self.harness(ServerOptions(concurrency=2)).connect()
        pair.send(request(1), request(2))
        self.assertEqual(self.app.started(), [1, 2])
        self.assertEqual(pair.serverTransport.producerState, "paused")
        self.app.pending[ident(1)].callback(None)
        self.assertEqual(pair.serverTransport.producerState, "producing")

    def test_notReadWhilePaused(self) -> None:
        """
        What the client sends while the server has paused at its limit stays
        unread until a handler finishes.
        """
        self.app.deferRequests()
        pair = self.harness(ServerOptions(concurrency=1)).connect()
        pair.send(request(1), request(2))
        self.assertEqual(pair.serverTransport.producerState, "paused")
        pair.send(request(3))
        self.assertEqual(self.app.started(), [1])
        self.assertEqual(pair.server.dispatcher.queued, 1)
        # The request waits on the client's side, as it would in the kernel.
        self.assertNotEqual(pair.clientTransport.stream, [])
        self.app.pending[ident(1)].callback(None)
        pair.flush()
        self.assertEqual(self.app.started(), [1, 2])
        self.assertEqual(pair.server.dispatcher.queued, 0)
        self.app.pending[ident(2)].callback(None)
        pair.flush()
        self.assertEqual(self.app.started(), [1, 2, 3])
        self.assertEqual(pair.replies, [reply(1), reply(2)])

    def test_signalsTakeSlots(self) -> None:
        """
        Signal handlers that return Deferreds count against the limit like
        requests, and keep the arrival order.
        """
        signals: list[Deferred[None]] = []

        def onSignal(connection: IConnection, signal: wire.Signal) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            signals.append(d)
            return d

        self.app.signalHandler = onSignal
        self.app.deferRequests()
        pair = self.harness(ServerOptions(concurrency=1)).connect()
        pair.send(signal("a"), request(1), signal("b"))
        self.assertEqual([s.name for s in self.app.signals], ["a"])
        self.assertEqual(self.app.requests, [])
        signals[0].callback(None)
        pair.flush()
        self.assertEqual(self.app.started(), [1])
        self.app.pending[ident(1)].callback(None)
        pair.flush()
        self.assertEqual([s.name for s in self.app.signals], ["a", "b"])
        self.assertEqual(pair.replies, [reply(1)])

    def test_sequential(self) -> None:
        """
        With a limit of 1, replies leave in request order even when the
        first handler is the slowest.
        """
        self.app.deferRequests()
        pair = self.harness(ServerOptions(concurrency=1)).connect()
        pair.send(request(1), request(2), request(3))
        for n in (1, 2, 3):
            self.assertEqual(self.app.started()[-1], n)
            self.app.pending[ident(n)].callback(bytes([n]))
            pair.flush()
        self.assertEqual(pair.replies, [reply(n, bytes([n])) for n in (1, 2, 3)])

    def test_unlimited(self) -> None:
        """
        With no limit, every handler runs at once and the transport keeps
        reading.
        """
        self.app.deferRequests()
        pair = self.harness(ServerOptions(concurrency=None)).connect()
        pair.send(*(request(n) for n in range(1, 201)))
        self.assertEqual(self.app.started(), list(range(1, 201)))
        self.assertEqual(pair.server.dispatcher.queued, 0)
        self.assertEqual(pair.serverTransport.producerState, "producing")
        for n in reversed(range(1, 201)):
            self.app.pending[ident(n)].callback(None)
        pair.flush()
        self.assertEqual(pair.replies, [reply(n) for n in reversed(range(1, 201))])

    def test_synchronousResultsDoNotHoldSlots(self) -> None:
        """
        Handlers that answer at once free their slot at once: with a limit
        of 1, many such requests in one read are all answered.
        """
        pair = self.harness(ServerOptions(concurrency=1)).connect()
        pair.send(*(request(n, b"x") for n in range(1, 51)))
        self.assertEqual(pair.replies, [reply(n, b"x") for n in range(1, 51)])
        self.assertEqual(pair.serverTransport.producerState, "producing")


class FlowControlTests(ServerTestCase):
    """
    A client that does not read what the server writes makes the server
    stop reading from it, and is cut off once too much is queued for it.
    """

    def congest(self, pair: Pair) -> None:
        """Tell the server its transport's write buffer is full."""
        producer = pair.serverTransport.producer
        assert producer is not None
        producer.pauseProducing()

    def decongest(self, pair: Pair) -> None:
        """Tell the server its transport's write buffer drained."""
        producer = pair.serverTransport.producer
        assert producer is not None
        producer.resumeProducing()

    def test_producerRegistered(self) -> None:
        """
        The protocol registers a streaming producer with its transport.
        """
        pair = self.harness().connect()
        self.assertIsNotNone(pair.serverTransport.producer)
        self.assertTrue(pair.serverTransport.streamingProducer)

    def test_congestionStopsReading(self) -> None:
        """
        While the transport's write buffer is full, the protocol stops
        reading; when it drains, it reads again and serves what waited.
        """
        pair = self.harness().connect()
        self.congest(pair)
        self.assertEqual(pair.serverTransport.producerState, "paused")
        pair.send(request(1, b"x"))
        self.assertEqual(self.app.requests, [])
        self.decongest(pair)
        self.assertEqual(pair.serverTransport.producerState, "producing")
        pair.flush()
        self.assertEqual(pair.replies, [reply(1, b"x")])

    def test_congestionAndLimit(self) -> None:
        """
        Reading resumes only when neither congestion nor the concurrency
        limit holds it.
        """
        self.app.deferRequests()
        pair = self.harness(ServerOptions(concurrency=1)).connect()
        pair.send(request(1))
        self.congest(pair)
        self.decongest(pair)
        # Drained, but still at the limit.
        self.assertEqual(pair.serverTransport.producerState, "paused")
        self.congest(pair)
        self.app.pending[ident(1)].callback(None)
        # Below the limit, but congested.
        self.assertEqual(pair.serverTransport.producerState, "paused")
        self.decongest(pair)
        self.assertEqual(pair.serverTransport.producerState, "producing")

    def test_sendBufferLimit(self) -> None:
        """
        While congested, signals are accepted up to C{maxSendBuffer} bytes;
        the one that goes past it aborts the connection with one warning,
        and C{signal} raises L{Disconnected} from then on.
        """
        observer = captureLogs(self)
        size = len(signal("data", b"x" * 100))
        pair = self.harness(ServerOptions(maxSendBuffer=3 * size)).connect()
        connection = self.app.connected[0]
        self.congest(pair)
        for _ in range(3):
            connection.signal("data", b"x" * 100)
        self.assertFalse(pair.serverTransport.aborted)
        self.assertRaises(Disconnected, connection.signal, "data", b"x" * 100)
        self.assertTrue(pair.serverTransport.aborted)
        self.assertRaises(Disconnected, connection.signal, "data", b"x")
        pair.flush()
        self.assertEqual(len(self.app.disconnected), 1)
        [warning] = webwireEvents(observer, LogLevel.warn)
        self.assertIn("does not read", warning["log_format"])

    def test_drainResetsCount(self) -> None:
        """
        Only bytes queued during one congested period count: once the
        buffer drained, the count starts again.
        """
        size = len(signal("data", b"x" * 100))
        pair = self.harness(ServerOptions(maxSendBuffer=3 * size)).connect()
        connection = self.app.connected[0]
        for _ in range(3):
            self.congest(pair)
            for _ in range(3):
                connection.signal("data", b"x" * 100)
            self.decongest(pair)
        pair.flush()
        self.assertFalse(pair.serverTransport.aborted)
        self.assertEqual(len(pair.replies), 9)

    def test_notCongested(self) -> None:
        """
        Without congestion, any number of bytes may be sent.
        """
        pair = self.harness(ServerOptions(maxSendBuffer=0)).connect()
        for _ in range(10):
            self.app.connected[0].signal("data", b"x" * 1000)
        pair.flush()
        self.assertEqual(len(pair.replies), 10)


class ShutdownTests(ServerTestCase):
    """
    L{WebWireServerFactory.shutdown} (PROTOCOL.md section 9).
    """

    def test_noConnections(self) -> None:
        """Without connections, shutdown completes at once."""
        harness = self.harness()
        self.assertIsNone(self.successResultOf(harness.factory.shutdown()))
        self.assertTrue(harness.factory.isShuttingDown)

    def test_idleConnectionsClosed(self) -> None:
        """
        Without running handlers, every connection is closed with 1001 and
        the shutdown completes once they are gone.
        """
        harness = self.harness()
        pairs = [harness.connect(), harness.connect()]
        done = harness.factory.shutdown()
        harness.flush()
        self.successResultOf(done)
        self.assertEqual([p.client.closeCode for p in pairs], [1001, 1001])
        self.assertEqual(harness.factory.connections, [])
        self.assertEqual(len(self.app.disconnected), 2)

    def test_waitsForRunningHandler(self) -> None:
        """
        With a handler running, the shutdown waits; meanwhile new requests
        on every connection get ReplyShutdown at once, session requests too,
        and signals are dropped. Once the handler finishes, its reply is
        delivered, every connection is closed with 1001 and the Deferred
        fires.
        """
        self.app.deferRequests()
        harness = self.harness()
        busy = harness.connect()
        idle = harness.connect()
        busy.send(request(1))
        done = harness.factory.shutdown()
        harness.flush()
        self.assertNoResult(done)

        busy.send(request(2))
        idle.send(request(3), signal("dropped"))
        idle.send(wire.encodeRestoreSession(ident(4), "key"))
        idle.send(wire.encodeCloseSession(ident(5)))
        self.assertEqual(busy.replies, [special(wire.MessageType.REPLY_SHUTDOWN, 2)])
        self.assertEqual(busy.replies[0], h("01") + ident(2))
        self.assertEqual(
            idle.replies,
            [special(wire.MessageType.REPLY_SHUTDOWN, n) for n in (3, 4, 5)],
        )
        self.assertEqual(self.app.started(), [1])
        self.assertEqual(self.app.signals, [])
        self.assertIsNone(busy.client.closeCode)
        self.assertIsNone(idle.client.closeCode)
        self.assertNoResult(done)

        self.app.pending[ident(1)].callback(b"last")
        harness.flush()
        self.assertEqual(busy.replies[-1], reply(1, b"last"))
        self.assertEqual(busy.client.closeCode, 1001)
        self.assertEqual(idle.client.closeCode, 1001)
        self.assertIsNone(self.successResultOf(done))

    def test_queuedRequestsAnswered(self) -> None:
        """
        Requests waiting for a free slot when the shutdown begins are
        answered with ReplyShutdown at once, and queued signals dropped.
        """
        self.app.deferRequests()
        harness = self.harness(ServerOptions(concurrency=1))
        pair = harness.connect()
        pair.send(request(1), request(2), signal("queued"), request(3))
        self.assertEqual(pair.server.dispatcher.queued, 3)
        done = harness.factory.shutdown()
        pair.flush()
        self.assertEqual(
            pair.replies,
            [special(wire.MessageType.REPLY_SHUTDOWN, n) for n in (2, 3)],
        )
        self.assertEqual(self.app.signals, [])
        self.app.pending[ident(1)].callback(None)
        pair.flush()
        self.assertEqual(pair.replies[-1], reply(1))
        self.successResultOf(done)

    def test_newRequestsAnsweredAtLimit(self) -> None:
        """
        A request that arrives during the shutdown gets ReplyShutdown at
        once even on a connection that is at its concurrency limit: the
        shutdown makes the server read again.
        """
        self.app.deferRequests()
        harness = self.harness(ServerOptions(concurrency=1))
        pair = harness.connect()
        pair.send(request(1))
        done = harness.factory.shutdown()
        pair.send(request(2))
        self.assertEqual(pair.replies, [special(wire.MessageType.REPLY_SHUTDOWN, 2)])
        self.app.pending[ident(1)].callback(None)
        pair.flush()
        self.successResultOf(done)

    def test_timeoutCancelsHandlers(self) -> None:
        """
        With C{shutdownTimeout=5}, a handler that never finishes is
        cancelled after 5 seconds; its request gets an internal-error reply
        and the shutdown completes.
        """
        self.app.deferRequests()
        harness = self.harness(ServerOptions(shutdownTimeout=5))
        pair = harness.connect()
        pair.send(request(1))
        done = harness.factory.shutdown()
        harness.advance(4)
        self.assertNoResult(done)
        self.assertEqual(pair.replies, [])
        harness.advance(1)
        self.assertEqual(
            pair.replies, [special(wire.MessageType.REPLY_INTERNAL_ERROR, 1)]
        )
        self.assertEqual(pair.replies[0], h("02") + ident(1))
        self.assertEqual(pair.client.closeCode, 1001)
        self.assertIsNone(self.successResultOf(done))

    def test_timerCancelledWhenDrained(self) -> None:
        """
        A shutdown that completes before its timeout leaves no timer
        behind.
        """
        self.app.deferRequests()
        harness = self.harness(ServerOptions(shutdownTimeout=5))
        pair = harness.connect()
        pair.send(request(1))
        done = harness.factory.shutdown()
        self.app.pending[ident(1)].callback(None)
        pair.flush()
        self.successResultOf(done)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_noTimeout(self) -> None:
        """
        With C{shutdownTimeout=None}, running handlers are never cancelled.
        """
        self.app.deferRequests()
        harness = self.harness(ServerOptions(shutdownTimeout=None, readTimeout=1e6))
        pair = harness.connect()
        pair.send(request(1))
        done = harness.factory.shutdown()
        harness.advance(1e5)
        self.assertNoResult(done)
        self.app.pending[ident(1)].callback(b"finally")
        pair.flush()
        self.assertEqual(pair.replies, [reply(1, b"finally")])
        self.successResultOf(done)

    def test_secondCall(self) -> None:
        """
        Each call returns a new Deferred; all fire when the shutdown
        completes, and a call after that fires at once.
        """
        self.app.deferRequests()
        harness = self.harness()
        pair = harness.connect()
        pair.send(request(1))
        first = harness.factory.shutdown()
        second = harness.factory.shutdown()
        self.assertIsNot(first, second)
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.app.pending[ident(1)].callback(None)
        pair.flush()
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))
        third = harness.factory.shutdown()
        self.assertIsNot(third, first)
        self.assertIsNone(self.successResultOf(third))

    def test_newHandshakeRefused(self) -> None:
        """
        During a shutdown, new WebSocket handshakes are refused with HTTP
        503 and the application never hears of them.
        """
        self.app.deferRequests()
        harness = self.harness()
        pair = harness.connect()
        pair.send(request(1))
        done = harness.factory.shutdown()
        written = rawHandshake(harness.factory)
        self.assertTrue(written.startswith(b"HTTP/1.1 503"), written)
        self.assertEqual(len(self.app.connected), 1)
        self.assertNoResult(done)

    def test_handshakeAccepted(self) -> None:
        """
        Before a shutdown, the same raw handshake is answered with 101 and
        AcceptConf.
        """
        harness = self.harness()
        written = rawHandshake(harness.factory)
        self.assertTrue(written.startswith(b"HTTP/1.1 101"), written)
        self.assertTrue(written.endswith(h("82 0B") + DEFAULT_ACCEPT_CONF), written)
        self.assertEqual(len(self.app.connected), 1)


class FactoryTests(ServerTestCase):
    """
    What L{WebWireServerFactory} checks and sets up.
    """

    def test_refusesNonApplication(self) -> None:
        """
        An application that does not provide L{IWebWireServer} is refused
        with L{TypeError}.
        """

        class NotAnApplication:
            def onRequest(self, connection: IConnection, request: wire.Request) -> None:
                pass

        self.assertRaises(TypeError, WebWireServerFactory, NotAnApplication())
        self.assertRaises(TypeError, WebWireServerFactory, object())

    def test_protocol(self) -> None:
        """
        The factory builds L{WebWireServerProtocol}s, under its guard when
        for a port it listens on.
        """
        harness = self.harness()
        self.assertIs(harness.factory.protocol, WebWireServerProtocol)
        address = IPv4Address("TCP", "10.0.0.1", 1)
        guarded = harness.factory.buildProtocol(address)
        self.assertIsInstance(guarded, GuardedConnection)
        self.assertIsInstance(guarded.wrappedProtocol, WebWireServerProtocol)
        protocol = harness.factory.buildWebSocketProtocol(address)
        self.assertIsInstance(protocol, WebWireServerProtocol)

    def test_defaultOptions(self) -> None:
        """Without options, the L{ServerOptions} defaults apply."""
        harness = self.harness()
        self.assertEqual(harness.factory.options, ServerOptions())
        self.assertEqual(harness.factory.acceptConf, DEFAULT_ACCEPT_CONF)

    def test_autobahnOptions(self) -> None:
        """
        Autobahn's limits follow the options: message and frame size are
        the message buffer size, no close handshake wait, the configured
        opening handshake timeout and connection limit, any origin.
        """
        options = ServerOptions(
            messageBufferSize=4096, openHandshakeTimeout=7, maxConnections=3
        )
        factory = self.harness(options).factory
        self.assertEqual(factory.maxMessagePayloadSize, 4096)
        self.assertEqual(factory.maxFramePayloadSize, 4096)
        self.assertEqual(
            factory.maxMessagePayloadSize, factory.options.messageBufferSize
        )
        self.assertEqual(factory.closeHandshakeTimeout, 0)
        self.assertEqual(factory.openHandshakeTimeout, 7)
        self.assertEqual(factory.maxConnections, 3)
        self.assertTrue(factory.allowNullOrigin)

    def test_noCompression(self) -> None:
        """
        The factory accepts no permessage-deflate offer: a client that
        offers it gets a connection without any extension.
        """
        factory = self.harness().factory
        offer = PerMessageDeflateOffer()
        self.assertIsNone(factory.perMessageCompressionAccept([offer]))
        clientFactory = WebSocketClientFactory("ws://localhost/")
        clientFactory.setProtocolOptions(perMessageCompressionOffers=[offer])
        harness = ServerHarness(self, self.app)
        pair = harness.connect(clientFactory)
        self.assertEqual(pair.server.websocket_extensions_in_use, [])
        self.assertEqual(pair.client.websocket_extensions_in_use, [])
        self.assertEqual(pair.client.received, [DEFAULT_ACCEPT_CONF])

    def test_connections(self) -> None:
        """
        C{connections} lists the open connections, and forgets closed ones.
        """
        harness = self.harness()
        first = harness.connect()
        harness.connect()
        self.assertEqual(set(harness.factory.connections), set(self.app.connected))
        first.client.sendClose(1000)
        first.flush()
        self.assertEqual(harness.factory.connections, [self.app.connected[1]])


class RequestTests(ServerTestCase):
    """
    What a request handler returns or raises becomes exactly one reply.
    """

    def test_results(self) -> None:
        """
        bytes, str, None, a Payload and a Deferred each become a reply in
        the right encoding; a RequestError an error reply.
        """
        results: dict[bytes, Any] = {
            ident(1): b"b",
            ident(2): "s",
            ident(3): None,
            ident(4): wire.Payload.fromText("u", wire.Encoding.UTF16),
        }

        def handler(connection: IConnection, request: wire.Request) -> Any:
            if request.identifier == ident(5):
                raise RequestError("CODE", "message")
            return results[request.identifier]

        self.app.handler = handler
        pair = self.harness().connect()
        pair.send(*(request(n) for n in range(1, 6)))
        self.assertEqual(
            pair.replies,
            [
                h("BF") + ident(1) + b"b",
                h("C0") + ident(2) + b"s",
                h("BF") + ident(3),
                h("C1") + ident(4) + h("00 7500"),
                h("00") + ident(5) + b"\x04CODEmessage",
            ],
        )

    def test_unsendablePlainResults(self) -> None:
        """
        A plain result returned at once that cannot be encoded (text with a
        lone surrogate, bytes beyond the message buffer size, an odd UTF-16
        payload) becomes an internal-error reply, and is logged as
        unsendable; the connection goes on answering.
        """
        observer = captureLogs(self)
        results: dict[bytes, Any] = {
            ident(1): "\ud800",
            ident(2): b"x" * 8192,
            ident(3): wire.Payload(b"abc", wire.Encoding.UTF16),
            ident(4): "fine",
        }
        self.app.handler = lambda connection, request: results[request.identifier]
        pair = self.harness().connect()
        pair.send(*(request(n) for n in range(1, 5)))
        self.assertEqual(
            pair.replies,
            [
                h("02") + ident(1),
                h("02") + ident(2),
                h("02") + ident(3),
                h("C0") + ident(4) + b"fine",
            ],
        )
        errors = webwireEvents(observer, LogLevel.error)
        self.assertEqual(len(errors), 1)  # the first; the rest are counted
        self.assertIn("cannot be sent", errors[0]["log_format"])
        self.assertIn("surrogate", str(errors[0]["error"]))

    def test_unexpectedException(self) -> None:
        """
        Any other exception becomes an internal-error reply and is logged;
        its text never reaches the client.
        """

        def handler(connection: IConnection, request: wire.Request) -> None:
            raise ZeroDivisionError("secret")

        self.app.handler = handler
        pair = self.harness().connect()
        pair.send(request(1))
        self.assertEqual(pair.replies, [h("02") + ident(1)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_sessionRequestsDisabled(self) -> None:
        """
        Restore- and close-session requests get ReplySessionsDisabled when
        the server has no sessions.
        """
        pair = self.harness(ServerOptions(sessions=False)).connect()
        pair.send(
            wire.encodeRestoreSession(ident(1), "k"), wire.encodeCloseSession(ident(2))
        )
        self.assertEqual(pair.replies, [h("05") + ident(1), h("05") + ident(2)])


class ViolationTests(ServerTestCase):
    """
    A malformed message closes the connection once running handlers are
    done, without a reply.
    """

    def test_violationWaitsForHandlers(self) -> None:
        """
        After an unknown type byte, the running handler's reply is still
        delivered, a later request is not answered, and the connection is
        closed with 1002.
        """
        self.app.deferRequests()
        pair = self.harness().connect()
        pair.send(request(1), h("C8"), request(2))
        self.assertEqual(self.app.started(), [1])
        self.assertIsNone(pair.client.closeCode)
        self.app.pending[ident(1)].callback(b"ok")
        pair.flush()
        self.assertEqual(pair.replies, [reply(1, b"ok")])
        self.assertEqual(pair.client.closeCode, 1002)

    def test_violationWaitsForSlowHandler(self) -> None:
        """
        After a violation, a running handler that takes longer than the read
        timeout still gets its reply out (PROTOCOL.md section 3.3: handlers
        already running finish and their replies are written; section 8:
        handler run time does not count).
        """
        self.app.deferRequests()
        harness = self.harness()
        pair = harness.connect()
        pair.send(request(1), h("C8"))
        harness.advance(60)
        self.app.pending[ident(1)].callback(b"slow")
        pair.flush()
        self.assertEqual(pair.replies, [reply(1, b"slow")])
        self.assertEqual(pair.client.closeCode, 1002)

    def test_textMessage(self) -> None:
        """A text message closes the connection with 1003."""
        pair = self.harness().connect()
        pair.client.sendMessage(b"hello", isBinary=False)
        pair.flush()
        self.assertEqual(pair.client.closeCode, 1003)
        self.assertEqual(pair.replies, [])


class HookFailureTests(ServerTestCase):
    """
    Failures of the application's hooks are logged, and the client learns
    nothing of them.
    """

    def test_disconnectHookFailure(self) -> None:
        """
        An exception raised by C{onClientDisconnected} is logged.
        """
        self.app.disconnectError = ValueError("oops")
        pair = self.harness().connect()
        pair.client.sendClose(1000)
        pair.flush()
        self.assertEqual(len(self.app.disconnected), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_signalHookRaises(self) -> None:
        """
        An exception raised by C{onSignal} is logged, nothing is sent to the
        client, and the connection keeps working.
        """

        def onSignal(connection: IConnection, signal: wire.Signal) -> None:
            raise ValueError("bad signal")

        self.app.signalHandler = onSignal
        pair = self.harness().connect()
        written = pair.serverTransport.bytesWritten
        pair.send(signal("x", b"y"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(pair.serverTransport.bytesWritten, written)
        self.assertEqual(pair.client.received, [DEFAULT_ACCEPT_CONF])
        self.assertIsNone(pair.client.closeCode)
        pair.send(request(1, b"still"))
        self.assertEqual(pair.replies, [reply(1, b"still")])

    def test_signalHookFails(self) -> None:
        """
        A Deferred returned by C{onSignal} that fails is logged, and nothing
        is sent to the client.
        """
        self.app.signalHandler = lambda connection, signal: fail(KeyError("gone"))
        pair = self.harness().connect()
        written = pair.serverTransport.bytesWritten
        pair.send(signal("x"))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertEqual(pair.serverTransport.bytesWritten, written)
        self.assertEqual(pair.client.received, [DEFAULT_ACCEPT_CONF])
        self.assertIsNone(pair.client.closeCode)

    def test_signalDelivered(self) -> None:
        """
        C{onSignal} gets the parsed signal.
        """
        pair = self.harness().connect()
        pair.send(signal("name", b"data"))
        self.assertEqual(
            self.app.signals, [wire.Signal("name", b"data", wire.Encoding.BINARY)]
        )
        self.assertEqual(pair.replies, [])
