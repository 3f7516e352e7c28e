"""
Test support: a WebWire server on a real loopback socket and a raw client
that sends exact bytes and records exact bytes; the message builders the
tests share; real connections from an in-memory server, for calling
handlers directly.
"""

from __future__ import annotations

from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from webwire import wire
from webwire._reactor import IWebWireReactor
from webwire.application import Application
from webwire.client import ClientOptions, WebWireClient
from webwire.errors import RequestError
from webwire.interfaces import (
    IConnection,
    IServerCluster,
    ISessionKeyGenerator,
    ISessionManager,
    IWebWireClientHooks,
    IWebWireServer,
)
from webwire.metrics import IServerObserver
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory, WebWireServerProtocol
from webwire.sessions.memory import MemorySessionManager
from webwire.testing import MemoryServer

DEFAULT_ACCEPT_CONF = bytes.fromhex("17 02 00 60 EA 00 00 00 20 00 00")


def h(text: str) -> bytes:
    """Bytes from hex, ignoring spaces and line breaks."""
    return bytes.fromhex("".join(text.split()))


def ident(n: int) -> bytes:
    """
    The Go client's identifier of its n-th request (a little-endian
    uint64).
    """
    return n.to_bytes(8, "little")


def echoRequest(n: int, payload: bytes, name: str = "echo") -> bytes:
    """A binary request number C{n}, by default one that echoes."""
    return wire.encodeRequest(ident(n), name, payload, wire.Encoding.BINARY)


def sleepRequest(n: int, ms: int) -> bytes:
    """A UTF-8 request number C{n} to the conformance application's C{sleep}."""
    return wire.encodeRequest(ident(n), "sleep", str(ms).encode(), wire.Encoding.UTF8)


def captureLogs(testCase: SynchronousTestCase) -> EventLoggingObserver:
    """
    Record every log event until the end of C{testCase} (as
    L{EventLoggingObserver.createWithCleanup}, for a synchronous test).
    """
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    testCase.addCleanup(globalLogPublisher.removeObserver, observer)
    return observer


def webwireEvents(
    observer: EventLoggingObserver, level: LogLevel = LogLevel.debug
) -> list[Any]:
    """The events of C{observer} logged by webwire at C{level} or above."""
    return [
        e
        for e in observer
        if e.get("log_namespace", "").startswith("webwire") and e["log_level"] >= level
    ]


# Handlers called directly ---------------------------------------------------


def conn(peer: IAddress | None = None) -> IConnection:
    """
    A real, open connection from a server in memory (see
    L{webwire.testing}), to call handlers and middleware with.

    :param peer: The client's address; see L{MemoryServer.connect}.
    """
    return MemoryServer(Application()).connect(peer=peer).connection


def req(name: str, payload: bytes = b"") -> wire.Request:
    """A UTF-8 request named C{name}, as handlers get it."""
    return wire.Request(b"\x00" * 8, name, payload, wire.Encoding.UTF8)


def sig(name: str, payload: bytes = b"") -> wire.Signal:
    """A UTF-8 signal named C{name}, as handlers get it."""
    return wire.Signal(name, payload, wire.Encoding.UTF8)


async def requestError(result: Deferred[Any]) -> RequestError:
    """Await C{result}, which must fail with L{RequestError}; return it."""
    try:
        await result
    except RequestError as e:
        return e
    raise AssertionError(f"no RequestError: {result!r}")


class RawClientProtocol(WebSocketClientProtocol):
    """
    A WebSocket client that sends whatever it is given and records every
    message it receives, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []
        self.textReceived: list[str] = []
        self._waiters: list[tuple[int, Deferred[list[bytes]]]] = []
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()
        self.closeCode: int | None = None
        self._pongWaiters: list[Deferred[None]] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.textReceived.append(payload.decode("utf-8"))
            return
        self.received.append(payload)
        ready = [(n, d) for n, d in self._waiters if len(self.received) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.received) < n]
        for n, d in ready:
            d.callback(self.received[:n])

    def onPong(self, payload: bytes) -> None:
        waiters, self._pongWaiters = self._pongWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def ping(self) -> Deferred[None]:
        """Send a WebSocket ping; fire when the pong comes back."""
        d: Deferred[None] = Deferred()
        self._pongWaiters.append(d)
        self.sendPing()
        return d

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closeCode = code
        if not self.closed.called:
            self.closed.callback((wasClean, code, reason))

    def stopReading(self) -> None:
        """Stop reading from the socket, as a client that hangs would."""
        cast(IPushProducer, self.transport).pauseProducing()

    def startReading(self) -> None:
        """Read from the socket again."""
        cast(IPushProducer, self.transport).resumeProducing()

    def send(self, *messages: bytes) -> None:
        """Send each of C{messages} as one binary WebSocket message."""
        for message in messages:
            self.sendMessage(message, isBinary=True)

    def receivedCount(self, n: int) -> Deferred[list[bytes]]:
        """Fire with the first C{n} messages once that many have arrived."""
        d: Deferred[list[bytes]] = Deferred()
        if len(self.received) >= n:
            d.callback(self.received[:n])
        else:
            self._waiters.append((n, d))
        return d

    async def message(self, index: int) -> bytes:
        """The message at C{index} (0 is AcceptConf), once it arrived."""
        return (await self.receivedCount(index + 1))[index]

    async def roundTrip(self, message: bytes) -> bytes:
        """Send C{message} and return the next message that arrives."""
        index = len(self.received)
        self.send(message)
        return await self.message(index)


async def connectRaw(port: int, path: str = "/") -> RawClientProtocol:
    """
    Connect a raw client to 127.0.0.1:C{port} and wait for its WebSocket
    handshake.
    """
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}")
    factory.protocol = RawClientProtocol
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = cast(RawClientProtocol, await endpoint.connect(factory))
    await client.is_open
    return client


def makeClient(
    testCase: TestCase,
    port: int,
    path: str = "/",
    hooks: IWebWireClientHooks | None = None,
) -> WebWireClient:
    """
    A client of 127.0.0.1:C{port} that does not reconnect by itself, closed
    at the end of the test.
    """
    client = WebWireClient(
        f"ws://127.0.0.1:{port}{path}", hooks, ClientOptions(autoconnect=False)
    )
    testCase.addCleanup(client.close)
    return client


async def failsWithCode(testCase: TestCase, d: Deferred[Any], code: str) -> None:
    """C{d} fails with an error reply of C{code}."""
    try:
        await d
    except RequestError as e:
        testCase.assertEqual(e.code, code)
    else:
        testCase.fail(f"no {code} error")


class LoopbackServer:
    """
    A L{WebWireServerFactory} listening on 127.0.0.1 with a free port, and
    the clients connected to it. Everything is shut down and waited for at
    the end of the test.
    """

    def __init__(
        self,
        testCase: TestCase,
        application: IWebWireServer,
        options: ServerOptions | None = None,
        clock: IReactorTime | None = None,
        sessionManager: ISessionManager | None = None,
        keyGenerator: ISessionKeyGenerator | None = None,
        port: int = 0,
        cluster: IServerCluster | None = None,
        observer: IServerObserver | None = None,
    ) -> None:
        """
        Sessions are kept in memory unless C{sessionManager} says otherwise
        (or C{options} disables them). C{port} 0 picks a free port.
        """
        self.testCase = testCase
        if sessionManager is None and (options is None or options.sessions):
            sessionManager = MemorySessionManager()
        self.factory = WebWireServerFactory(
            application,
            options,
            sessionManager=sessionManager,
            keyGenerator=keyGenerator,
            cluster=cluster,
            reactor=clock if clock is not None else reactor,
            observer=observer,
        )
        self.port: IListeningPort = reactor.listenTCP(
            port, self.factory, interface="127.0.0.1"
        )
        self.portNumber: int = self.port.getHost().port  # type: ignore[attr-defined]
        self.clients: list[RawClientProtocol] = []
        self._ticker: RawClientProtocol | None = None
        testCase.addCleanup(self.stop)

    async def tick(self) -> None:
        """
        One ping round trip on a connection of its own: lets the reactor
        (and so the server) run, without involving the application.
        """
        if self._ticker is None:
            self._ticker = await self.connect()
        await self._ticker.ping()

    async def connect(self, path: str = "/") -> RawClientProtocol:
        """Connect a raw client and wait for its WebSocket handshake."""
        client = await connectRaw(self.portNumber, path)
        self.clients.append(client)
        return client

    async def connectAccepted(self, path: str = "/") -> RawClientProtocol:
        """Connect a raw client and wait for (and check) AcceptConf."""
        client = await self.connect(path)
        self.testCase.assertEqual(await client.message(0), DEFAULT_ACCEPT_CONF)
        return client

    def serverProtocols(self) -> list[WebWireServerProtocol]:
        """
        The server's protocols of the connections that are open, oldest
        first.
        """
        open = [p for p in self.factory.servedProtocols if not p.isDisconnected]
        assert all(p.connection is not None for p in open)
        return sorted(open, key=lambda p: p.connection.creation)  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Shut down, wait for every connection to close, stop listening."""
        shutdown = self.factory.shutdown()
        self.factory.cancelHandlers()
        await shutdown
        for client in self.clients:
            if client.state != client.STATE_CLOSED:
                client.dropConnection(abort=True)
        await DeferredList([c.closed for c in self.clients])
        await maybeDeferred(self.port.stopListening)


class WatchedClock(Clock):
    """
    A L{Clock} that tells when something is scheduled on it, so a test can
    wait for a server-side timer to exist before advancing time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any:
        call = super().callLater(delay, callable, *args, **kw)
        self._wake()
        return call

    def _wake(self) -> None:
        count = len(self.getDelayedCalls())
        ready = [d for n, d in self._waiters if count >= n]
        self._waiters = [(n, d) for n, d in self._waiters if count < n]
        for d in ready:
            # On a later reactor turn: never re-enter the code that scheduled.
            reactor.callLater(0, d.callback, None)

    def pending(self, count: int = 1) -> Deferred[None]:
        """Fire once at least C{count} calls are scheduled."""
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        self._wake()
        return d

    async def runUntil(self, result: Deferred[Any], step: float) -> Any:
        """
        Advance by C{step} whenever something is scheduled, until C{result}
        fires; return its result.
        """
        while not result.called:
            await DeferredList([self.pending(), result], fireOnOneCallback=True)
            self.advance(step)
        return await result


class _HTTPRecorder(Protocol):
    def __init__(self, request: bytes, untilHeaders: bool) -> None:
        self.request = request
        self.untilHeaders = untilHeaders
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.untilHeaders and b"\r\n\r\n" in self.data:
            cast(ITCPTransport, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.data)


UPGRADE_REQUEST = (
    b"GET / HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


async def rawHTTP(
    port: int, request: bytes = UPGRADE_REQUEST, untilHeaders: bool = False
) -> bytes:
    """
    Send raw bytes to C{port} and return everything the server sends back
    before it closes the connection (or, with C{untilHeaders}, up to the end
    of the response headers, after which the connection is aborted).
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    recorder = _HTTPRecorder(request, untilHeaders)
    factory: Any = Factory.forProtocol(lambda: recorder)
    await endpoint.connect(factory)
    return await recorder.done


async def listeningPort(service: MultiService) -> IListeningPort:
    """
    The port the (started) C{service} listens on; it must have one endpoint.
    """
    [child] = [s for s in service if isinstance(s, StreamServerEndpointService)]
    # Not awaited directly: awaiting a Deferred takes its result, and
    # stopService() needs the port from it.
    port: Deferred[IListeningPort] = Deferred()

    def copy(listening: IListeningPort) -> IListeningPort:
        port.callback(listening)
        return listening

    assert child._waitingForPort is not None  # set by startService()
    child._waitingForPort.addCallback(copy)
    return await port


def portNumber(port: IListeningPort) -> int:
    """The number of the TCP C{port}."""
    return cast(IPv4Address, port.getHost()).port


def asReactor(reactor: object) -> IWebWireReactor:
    """
    C{reactor} (a L{MemoryReactorClock}, say) as the reactor type WebWire's
    parts take: it provides the parts of it a test exercises.
    """
    return cast(IWebWireReactor, reactor)
