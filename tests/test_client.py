"""
The Python client against our own server over loopback: replies and errors,
cancellation and timeouts, signals, sessions, reconnection and backoff, the
dial timeout, AcceptConf checks and heartbeats.

Timers of the client (timeouts, backoff, heartbeats, dial timeout) run on a
L{WatchedClock} where a test is about them; sockets are always real.
"""

from __future__ import annotations

from typing import Any, TypeVar

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.application.internet import backoffPolicy
from twisted.internet import reactor
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    maybeDeferred,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.helpers import LoopbackServer, WatchedClock, h, portNumber
from webwire import wire
from webwire.client import ClientHooks, ClientOptions, WebWireClient
from webwire.conformance import ConformanceApplication, DeliberateInternalError
from webwire.errors import (
    BufferSizeMismatch,
    Disconnected,
    IncompatibleProtocolVersion,
    InternalError,
    MaxSessionConnections,
    RequestError,
    RequestTimeout,
    ServerShutdown,
    SessionActive,
    SessionNotFound,
    SessionsDisabled,
    SubProtocolMismatch,
    UnexpectedFirstMessage,
)
from webwire.options import ServerOptions
from webwire.sessions import MemorySessionManager, Session


class RecordingHooks(ClientHooks):
    """Client hooks that record every event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._waiters: list[tuple[str, Deferred[Any]]] = []

    def _record(self, kind: str, value: Any = None) -> None:
        self.events.append((kind, value))
        ready = [d for k, d in self._waiters if k == kind]
        self._waiters = [(k, d) for k, d in self._waiters if k != kind]
        for d in ready:
            d.callback(value)

    def next(self, kind: str) -> Deferred[Any]:
        """Fire with the value of the next C{kind} event."""
        d: Deferred[Any] = Deferred()
        self._waiters.append((kind, d))
        return d

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def onConnected(self, client: WebWireClient) -> None:
        self._record("connected")

    def onDisconnected(self, client: WebWireClient, reason: Failure) -> None:
        self._record("disconnected", reason.value)

    def onSignal(self, client: WebWireClient, signal: wire.Signal) -> None:
        self._record("signal", signal)

    def onSessionCreated(self, client: WebWireClient, session: Session) -> None:
        self._record("sessionCreated", session)

    def onSessionClosed(self, client: WebWireClient) -> None:
        self._record("sessionClosed")

    def onSessionLost(
        self, client: WebWireClient, session: Session, reason: Failure
    ) -> None:
        self._record("sessionLost", reason.value)


def noJitter(initialDelay: float = 0.5, maxDelay: float = 30.0) -> Any:
    return backoffPolicy(initialDelay, maxDelay, factor=2.0, jitter=lambda: 0.0)


class ClientTestCase(TestCase):
    timeout = 30

    def makeClient(
        self,
        port: int,
        hooks: RecordingHooks | None = None,
        clock: Any = None,
        path: str = "/",
        **options: Any,
    ) -> WebWireClient:
        client = WebWireClient(
            f"ws://127.0.0.1:{port}{path}",
            hooks if hooks is not None else RecordingHooks(),
            ClientOptions(**options),
            clock=clock,
        )
        self.addCleanup(client.close)
        return client

    def conformance(self, clock: Any = None, **options: Any) -> LoopbackServer:
        return LoopbackServer(
            self, ConformanceApplication(clock), ServerOptions(**options)
        )


class ReplyTests(ClientTestCase):
    """
    Every kind of reply becomes a result or a distinct exception.
    """

    async def test_replies(self) -> None:
        """
        Binary, UTF-8 and UTF-16 replies (also with an odd request name)
        and empty replies arrive with their encoding.
        """
        server = self.conformance()
        client = self.makeClient(server.portNumber)
        reply = await client.request("echo", b"\x00\xff")
        self.assertEqual(
            (reply.payload, reply.encoding), (b"\x00\xff", wire.Encoding.BINARY)
        )
        reply = await client.request("echo", "héllo")
        self.assertEqual((reply.text(), reply.encoding), ("héllo", wire.Encoding.UTF8))
        reply = await client.request("oddecho", "𝄞 odd", wire.Encoding.UTF16)
        self.assertEqual((reply.text(), reply.encoding), ("𝄞 odd", wire.Encoding.UTF16))
        reply = await client.request("logout")
        self.assertEqual((reply.payload, reply.encoding), (b"", wire.Encoding.BINARY))
        reply = await client.request("", wire.Payload(b"p", wire.Encoding.UTF8))
        self.assertEqual(reply.payload, b"p")

    async def test_errors(self) -> None:
        """
        An error reply raises RequestError with code and message; an
        internal error InternalError.
        """
        server = self.conformance()
        client = self.makeClient(server.portNumber)
        error = await failsWith(client.request("error"), RequestError)
        self.assertEqual((error.code, error.message), ("TEST_ERROR", "test error"))
        await failsWith(client.request("internal"), InternalError)
        self.flushLoggedErrors(DeliberateInternalError)
        unknown = await failsWith(client.request("nope"), RequestError)
        self.assertEqual(unknown.code, "UNKNOWN_REQUEST")

    async def test_refusedBeforeSending(self) -> None:
        """
        A request with neither name nor payload, a bad name or an odd
        UTF-16 payload is refused without connecting.
        """
        server = self.conformance()
        client = self.makeClient(server.portNumber)
        self.failureResultOf(client.request(), wire.InvalidMessage)
        self.failureResultOf(client.request("bad\nname"), wire.InvalidMessage)
        odd = client.request("x", b"abc", wire.Encoding.UTF16)
        self.failureResultOf(odd, wire.InvalidMessage)
        self.assertEqual(client.status, "disconnected")
        self.assertEqual(server.factory.connections, [])

    async def test_shutdown(self) -> None:
        """A request during a server shutdown raises ServerShutdown."""
        clock = WatchedClock()
        server = self.conformance(clock)
        # Not reconnecting once the shutdown closed the connection: the
        # server has stopped serving, and the test ends there.
        client = self.makeClient(server.portNumber, autoconnect=False)
        sleeping = client.request("sleep", "100")
        await clock.pending()
        done = server.factory.shutdown()
        await failsWith(client.request("echo", "x"), ServerShutdown)
        clock.advance(0.1)
        self.assertEqual((await sleeping).text(), "100")
        await done

    async def test_concurrent(self) -> None:
        """100 concurrent requests each get their own reply."""
        clock = WatchedClock()
        server = self.conformance(clock)
        client = self.makeClient(server.portNumber)
        calls = [client.request("sleep", str(n % 7)) for n in range(100)]
        replies = await clock.runUntil(gatherResults(calls), 0.001)
        self.assertEqual([r.text() for r in replies], [str(n % 7) for n in range(100)])


class CancellationTests(ClientTestCase):
    """
    Cancelled and timed-out calls; late replies are dropped.
    """

    async def test_cancel(self) -> None:
        """
        Cancelling a request fails it with CancelledError at once; its late
        reply is dropped and the client goes on working.
        """
        sleepClock = WatchedClock()
        server = self.conformance(sleepClock)
        client = self.makeClient(server.portNumber)
        pending = client.request("sleep", "50")
        await sleepClock.pending()
        self.assertEqual(client.pendingRequests, 1)
        pending.cancel()
        self.failureResultOf(pending, CancelledError)
        self.assertEqual(client.pendingRequests, 0)
        sleepClock.advance(0.05)
        self.assertEqual((await client.request("echo", "after")).text(), "after")

    async def test_timeout(self) -> None:
        """
        A request without a reply in time fails with RequestTimeout (a
        TimeoutError); the default timeout applies when none is given.
        """
        sleepClock = WatchedClock()
        clientClock = WatchedClock()
        server = self.conformance(sleepClock)
        client = self.makeClient(server.portNumber, clock=clientClock, requestTimeout=7)
        await client.connect()
        explicit = client.request("sleep", "5000", timeout=1)
        default = client.request("sleep", "5000")
        await sleepClock.pending(2)
        clientClock.advance(1)
        error = self.failureResultOf(explicit, RequestTimeout).value
        self.assertIsInstance(error, TimeoutError)
        self.assertNoResult(default)
        clientClock.advance(6)
        self.failureResultOf(default, RequestTimeout)
        self.assertEqual(client.pendingRequests, 0)


class SignalTests(ClientTestCase):
    """
    Signals in both directions.
    """

    async def test_bothWays(self) -> None:
        """
        A client signal reaches the server (echo-signal comes back as
        echoed); a signal a handler sends arrives before its reply.
        """
        server = self.conformance()
        hooks = RecordingHooks()
        client = self.makeClient(server.portNumber, hooks)
        echoed = hooks.next("signal")
        await client.signal("echo-signal", "hey")
        signal = await echoed
        self.assertEqual(signal, wire.Signal("echoed", b"hey", wire.Encoding.UTF8))
        reply = await client.request("signal-odd", "yo", wire.Encoding.UTF16)
        self.assertEqual(
            hooks.events[-1][1],
            wire.Signal("odd", "yo".encode("utf-16-le"), wire.Encoding.UTF16),
        )
        self.assertEqual(reply.text(), "yo")
        self.failureResultOf(client.signal(), wire.InvalidMessage)


class SessionTests(ClientTestCase):
    """
    The client keeps the session the server gives it.
    """

    async def test_createdRestoredClosed(self) -> None:
        """
        login gives the client a session (hook first, then the reply);
        another client restores it; closing it on the client keeps it
        for the other; the server closing it tells the client.
        """
        server = self.conformance()
        hooksA, hooksB = RecordingHooks(), RecordingHooks()
        a = self.makeClient(server.portNumber, hooksA)
        b = self.makeClient(server.portNumber, hooksB)
        key = (await a.request("login", "ada")).text()
        self.assertEqual(hooksA.kinds()[-1], "sessionCreated")
        assert a.session is not None
        self.assertEqual((a.session.key, a.session.info), (key, {"user": "ada"}))
        session = await b.restoreSession(key)
        self.assertEqual((session.key, b.session), (key, session))
        self.failureResultOf(b.restoreSession(key), SessionActive)
        await b.closeSession()
        self.assertIsNone(b.session)
        self.assertEqual((await b.request("whoami")).text(), "")
        self.assertEqual((await a.request("whoami")).text(), key)
        closed = hooksA.next("sessionClosed")
        await a.request("logout")
        await closed
        self.assertIsNone(a.session)
        await failsWith(b.restoreSession(key), SessionNotFound)

    async def test_sessionErrors(self) -> None:
        """
        Restoring past the server's limit raises MaxSessionConnections; on a
        server without sessions, SessionsDisabled.
        """
        server = self.conformance(maxSessionConnections=1)
        a = self.makeClient(server.portNumber)
        key = (await a.request("login", "ada")).text()
        b = self.makeClient(server.portNumber)
        await failsWith(b.restoreSession(key), MaxSessionConnections)
        off = self.conformance(sessions=False)
        c = self.makeClient(off.portNumber)
        await failsWith(c.restoreSession("key"), SessionsDisabled)


class ReconnectionTests(ClientTestCase):
    """
    Connection loss, reconnection with backoff, and the session across it.
    """

    async def test_reconnectRestoresSession(self) -> None:
        """
        When the server goes away and comes back on the same port, the
        client reconnects after its backoff delay and restores its session
        by itself; a request made while disconnected waits for that.
        """
        manager = MemorySessionManager()
        first = LoopbackServer(self, ConformanceApplication(), sessionManager=manager)
        port = first.portNumber
        hooks = RecordingHooks()
        clock = WatchedClock()
        policy = RecordingPolicy(noJitter())
        client = self.makeClient(port, hooks, clock, retryPolicy=policy)
        key = (await client.request("login", "grace")).text()
        disconnected = hooks.next("disconnected")
        firstRetry = policy.nextDelay()
        await first.stop()
        await disconnected
        waiting = client.request("whoami", timeout=60)
        # The attempt made while the server was down failed; the client now
        # waits its first backoff delay before the next one.
        delay = await firstRetry
        second = LoopbackServer(
            self, ConformanceApplication(), sessionManager=manager, port=port
        )
        self.assertEqual(second.portNumber, port)
        restored = hooks.next("sessionCreated")
        clock.advance(delay)
        reply = await waiting
        self.assertEqual(reply.text(), key)
        self.assertEqual((await restored).key, key)
        self.assertIn("connected", hooks.kinds())

    async def test_lostSession(self) -> None:
        """
        If the server forgot the session, the reconnected client drops it
        and says so (onSessionLost).
        """
        first = LoopbackServer(self, ConformanceApplication())
        port = first.portNumber
        hooks = RecordingHooks()
        clock = WatchedClock()
        policy = RecordingPolicy(noJitter())
        client = self.makeClient(port, hooks, clock, retryPolicy=policy)
        await client.request("login", "ada")
        disconnected = hooks.next("disconnected")
        firstRetry = policy.nextDelay()
        await first.stop()
        await disconnected
        delay = await firstRetry
        LoopbackServer(self, ConformanceApplication(), port=port)
        lost = hooks.next("sessionLost")
        clock.advance(delay)
        reason = await lost
        self.assertIsInstance(reason, SessionNotFound)
        self.assertIsNone(client.session)

    async def keptThroughFailedRestore(self, mode: str) -> None:
        """
        The client logged in; its server went away; the next server it
        reaches accepts the upgrade, reads the restore and then fails it as
        C{mode} says; then the real server comes back. The client kept the
        session throughout (onSessionLost never called), and restores it on
        the real server.
        """
        manager = MemorySessionManager()
        first = LoopbackServer(self, ConformanceApplication(), sessionManager=manager)
        port = first.portNumber
        hooks = RecordingHooks()
        clock = WatchedClock()
        policy = RecordingPolicy(noJitter())
        client = self.makeClient(
            port, hooks, clock, retryPolicy=policy, requestTimeout=10
        )
        key = (await client.request("login", "grace")).text()
        disconnected = hooks.next("disconnected")
        firstRetry = policy.nextDelay()
        await first.stop()
        await disconnected
        delay = await firstRetry
        recorder = Recorder()
        impostor = reactor.listenTCP(
            port, _RestoreFailer(recorder, mode), interface="127.0.0.1"
        )
        self.addCleanup(impostor.stopListening)
        nextRetry = policy.nextDelay()
        restoring = recorder.next()
        clock.advance(delay)
        restore = wire.parse(await restoring)
        # Gone before the client can come back to it.
        stopped = maybeDeferred(impostor.stopListening)
        assert isinstance(restore, wire.RestoreSession), restore
        self.assertEqual(restore.key, key)
        if mode == "silent":
            clock.advance(10)  # the restore's timeout
        delay = await nextRetry
        await stopped
        self.assertIsNotNone(client.session)
        assert client.session is not None
        self.assertEqual(client.session.key, key)
        second = LoopbackServer(
            self, ConformanceApplication(), sessionManager=manager, port=port
        )
        self.assertEqual(second.portNumber, port)
        restored = hooks.next("sessionCreated")
        clock.advance(delay)
        self.assertEqual((await restored).key, key)
        self.assertEqual((await client.request("whoami")).text(), key)
        self.assertNotIn("sessionLost", hooks.kinds())

    async def test_sessionKeptWhenRestoreDropped(self) -> None:
        """
        A peer that reads the restore and drops the connection does not make
        the client forget its session.
        """
        await self.keptThroughFailedRestore("drop")

    async def test_sessionKeptWhenRestoreTimesOut(self) -> None:
        """
        A peer that never answers the restore: after the request timeout the
        client drops that connection, keeps the session, and tries again.
        """
        await self.keptThroughFailedRestore("silent")

    async def test_sessionKeptWhenShuttingDown(self) -> None:
        """
        A server that answers the restore with ReplyShutdown (and closes)
        does not make the client forget its session.
        """
        await self.keptThroughFailedRestore("shutdown")

    async def test_pendingFailOnDisconnect(self) -> None:
        """
        Requests waiting for a reply fail at once with Disconnected when the
        connection is lost, not at their timeout.
        """
        sleepClock = WatchedClock()
        server = self.conformance(sleepClock)
        client = self.makeClient(server.portNumber, clock=WatchedClock())
        pending = client.request("sleep", "1000")
        await sleepClock.pending()
        for protocol in server.serverProtocols():
            protocol.transport.abortConnection()  # type: ignore[union-attr]
        await failsWith(pending, Disconnected)

    async def test_backoffSchedule(self) -> None:
        """
        While the server is unreachable, attempts are spaced by the retry
        policy (here 0.5, 1, 2, then capped at 3 seconds): no attempt comes
        before its delay is over.
        """
        clock = WatchedClock()
        policy = RecordingPolicy(noJitter(maxDelay=3.0))
        client = self.makeClient(closedPort(), clock=clock, retryPolicy=policy)
        nextDelay = policy.nextDelay()
        connecting = client.connect()
        for expected in [0.5, 1.0, 2.0, 3.0, 3.0]:
            delay = await nextDelay
            self.assertEqual(delay, expected)
            nextDelay = policy.nextDelay()
            attempts = len(policy.attempts)
            clock.advance(delay - 0.01)
            self.assertEqual(
                (client.status, len(policy.attempts)), ("connecting", attempts)
            )
            clock.advance(0.01)
        await nextDelay
        self.assertEqual(policy.attempts, [0, 1, 2, 3, 4, 5])
        connecting.cancel()
        self.failureResultOf(connecting, CancelledError)

    async def test_noAutoconnect(self) -> None:
        """
        Without autoconnect, a call to an unreachable server fails at once
        with Disconnected.
        """
        client = self.makeClient(closedPort(), autoconnect=False)
        await failsWith(client.request("echo", "x"), Disconnected)
        self.assertEqual(client.status, "disconnected")

    async def test_closeWithSilentServer(self) -> None:
        """
        close() does not wait for ever for a server that ignores the Close
        frame: the connection is cut off after the dial timeout.
        """
        port = scriptedServer(self, wire.encodeAcceptConf(60000, 8192), silent=True)
        clock = WatchedClock()
        client = self.makeClient(port, clock=clock, dialTimeout=3)
        await client.connect()
        closing = client.close()
        clock.advance(2.5)
        self.assertNoResult(closing)
        clock.advance(0.5)
        await closing
        self.assertEqual(client.status, "disabled")

    async def test_closeThenReconnect(self) -> None:
        """
        close() disconnects; calls waiting meanwhile fail with
        Disconnected; the next call connects again.
        """
        server = self.conformance()
        hooks = RecordingHooks()
        client = self.makeClient(server.portNumber, hooks)
        await client.connect()
        await client.close()
        self.assertEqual(client.status, "disabled")
        self.assertEqual((await client.request("echo", "again")).text(), "again")
        self.assertEqual(hooks.kinds().count("connected"), 2)


class DialTests(ClientTestCase):
    """
    Connecting: the dial timeout and the AcceptConf checks.
    """

    async def test_dialTimeout(self) -> None:
        """
        A server that accepts TCP but never completes the WebSocket
        handshake makes the dial fail after the dial timeout.
        """
        accepted: Deferred[None] = Deferred()

        class Silent(Protocol):
            def connectionMade(self) -> None:
                accepted.callback(None)

        silent = ServerFactory()
        silent.protocol = Silent
        port = reactor.listenTCP(0, silent, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        clock = WatchedClock()
        client = self.makeClient(
            portNumber(port), clock=clock, autoconnect=False, dialTimeout=5
        )
        connecting = client.connect()
        await accepted
        clock.advance(4.9)
        self.assertNoResult(connecting)
        clock.advance(0.1)
        error = await failsWith(connecting, Disconnected)
        self.assertEqual(str(error), "cannot connect: no connection within 5 seconds")

    async def test_acceptConfChecks(self) -> None:
        """
        A wrong first message, another major version, another
        sub-protocol or another buffer size each fail with their own
        error, and the client does not retry.
        """
        cases: list[tuple[bytes, dict[str, Any], type[Exception]]] = [
            (wire.encodeSessionClosed(), {}, UnexpectedFirstMessage),
            (
                wire.encodeAcceptConf(60000, 8192, majorVersion=3),
                {},
                IncompatibleProtocolVersion,
            ),
            (wire.encodeAcceptConf(60000, 8192, b"chat"), {}, SubProtocolMismatch),
            (
                wire.encodeAcceptConf(60000, 8192),
                {"subProtocol": "chat"},
                SubProtocolMismatch,
            ),
            (wire.encodeAcceptConf(60000, 4096), {}, BufferSizeMismatch),
        ]
        for first, options, error in cases:
            port = scriptedServer(self, first)
            client = self.makeClient(port, **options)
            await failsWith(client.request("x", "y"), error)
            self.assertEqual(client.status, "disconnected")
        minorOk = scriptedServer(
            self, wire.encodeAcceptConf(60000, 8192, b"chat", 2, 7)
        )
        await self.makeClient(minorOk, subProtocol="chat").connect()

    async def test_heartbeat(self) -> None:
        """
        A heartbeat goes out after 3/4 of the server's read timeout of
        silence; anything sent restarts that interval.
        """
        recorder = Recorder()
        port = scriptedServer(self, wire.encodeAcceptConf(4000, 8192), recorder)
        clock = WatchedClock()
        client = self.makeClient(port, clock=clock)
        await client.connect()
        # Read timeout 4 s: a heartbeat after 3 s of silence. Steps are exact
        # in binary, so that the clock's sums are exact too.
        clock.advance(2.5)
        await client.signal("s", "1")
        self.assertEqual(await recorder.next(), h("40 01 73 31"))
        for sentAt in [5.5, 8.5]:
            beat = recorder.next()
            clock.advance(2.75)
            # Nothing sent yet: the one timer left is the heartbeat, due 3 s
            # after what was sent last.
            self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [sentAt])
            clock.advance(0.25)
            self.assertEqual(clock.getDelayedCalls()[0].getTime(), sentAt + 3)
            self.assertEqual(await beat, b"\x21")
        self.assertEqual(recorder.messages, [h("40 01 73 31"), b"\x21", b"\x21"])


E = TypeVar("E", bound=BaseException)


async def failsWith(d: Deferred[Any], kind: type[E]) -> E:
    """Wait for C{d} to fail with C{kind}; return the exception."""
    try:
        result = await d
    except kind as e:
        return e
    raise AssertionError(f"expected {kind.__name__}, got the result {result!r}")


def closedPort() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class RecordingPolicy:
    """A retry policy that records the attempts it is asked about."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.attempts: list[int] = []
        self.delays: list[float] = []
        self.waiters: list[Deferred[float]] = []

    def __call__(self, attempt: int) -> float:
        delay: float = self.policy(attempt)
        self.attempts.append(attempt)
        self.delays.append(delay)
        if self.waiters:
            reactor.callLater(0, self.waiters.pop(0).callback, delay)
        return delay

    def nextDelay(self) -> Deferred[float]:
        """Fire with the delay of the next failed attempt."""
        d: Deferred[float] = Deferred()
        self.waiters.append(d)
        return d


class Recorder:
    """The messages a scripted server received, with a way to wait for more."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._waiters: list[Deferred[bytes]] = []

    def add(self, message: bytes) -> None:
        self.messages.append(message)
        if self._waiters:
            self._waiters.pop(0).callback(message)

    def next(self) -> Deferred[bytes]:
        """Fire with the next message the server receives."""
        d: Deferred[bytes] = Deferred()
        self._waiters.append(d)
        return d


class _ScriptedFactory(WebSocketServerFactory):
    def __init__(self, first: bytes, recorder: Recorder, silent: bool) -> None:
        super().__init__()
        self.protocol = _Scripted
        self.first = first
        self.recorder = recorder
        self.silent = silent


class _Scripted(WebSocketServerProtocol):
    factory: _ScriptedFactory

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        if self.factory.silent:
            return True  # neither answers nor closes
        result: bool | None = super().onCloseFrame(code, reasonRaw)
        return result

    def onOpen(self) -> None:
        self.sendMessage(self.factory.first, isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.recorder.add(payload)


class _RestoreFailer(WebSocketServerFactory):
    """
    A WebWire server that accepts the upgrade and fails the first message
    it gets (the client's restore) as C{mode} says: C{"drop"} the TCP
    connection, stay C{"silent"}, or answer ReplyShutdown and close.
    """

    def __init__(self, recorder: Recorder, mode: str) -> None:
        super().__init__()
        self.protocol = _FailingRestore
        self.recorder = recorder
        self.mode = mode


class _FailingRestore(WebSocketServerProtocol):
    factory: _RestoreFailer

    def onOpen(self) -> None:
        self.sendMessage(wire.encodeAcceptConf(60000, 8192), isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.recorder.add(payload)
        message = wire.parse(payload)
        if not isinstance(message, wire.RestoreSession):
            return
        mode = self.factory.mode
        if mode == "drop":
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]
        elif mode == "shutdown":
            self.sendMessage(
                wire.encodeSpecialReply(
                    wire.MessageType.REPLY_SHUTDOWN, message.identifier
                ),
                isBinary=True,
            )
            self.sendCloseFrame(code=1001)  # going away, as a server may


def scriptedServer(
    testCase: TestCase,
    first: bytes,
    recorder: Recorder | None = None,
    silent: bool = False,
) -> int:
    """
    A WebSocket server that sends C{first} and records what it gets; a
    C{silent} one ignores Close frames.
    """
    factory = _ScriptedFactory(
        first, recorder if recorder is not None else Recorder(), silent
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    return portNumber(port)
