# -*- test-case-name: tests.test_server -*-
"""
The server side of one WebWire connection: an Autobahn WebSocket protocol.

A L{WebWireServerFactory} serves one application (an L{IWebWireServer}) on
any number of listening ports. Each connection gets a
L{WebWireServerProtocol}, which

  - sends AcceptConf as its first message and then calls the application's
    C{onClientConnected}, reading nothing until that returns;
  - parses every binary message with L{webwire.wire.parse} and dispatches
    requests and signals to the application, at most
    L{ServerOptions.concurrency} at a time per connection;
  - turns every handler outcome into exactly one reply: a value becomes a
    reply, L{RequestError} an error reply, anything else an internal-error
    reply plus a logged traceback (the exception text never reaches the
    client);
  - closes the connection on any malformed message (close code 1002, 1003
    for text messages, 1009 for oversized ones) without answering it: the
    messages read before it are still handled and answered, nothing after
    it is, and the Close frame follows the last reply;
  - drops the connection when the client stays silent for the read timeout.

Closing: once the Close frame is sent, the output is flushed, FIN follows
and the server reads on (discarding) until the client closes its end, for
at most L{ServerOptions.closeTimeout}; then the connection is aborted.
Whatever the state, no message larger than the message buffer size is ever
buffered: its data is discarded as it arrives.

Flow control: one method, C{_updateReading}, decides whether the transport
reads. It stops reading while the application's connect hook runs, while the
connection is at its concurrency limit (messages already read wait in a
queue, so nothing is dropped), and while the transport's write buffer is
full because the client does not read. A client that does not read while
signals keep coming is cut off once L{ServerOptions.maxSendBuffer} more
bytes are queued.

The read deadline costs O(1) per message: arrival only records the time, and
a single timer compares it when it fires. Heartbeats do nothing else and are
never logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from autobahn.exception import Disconnected as _SocketClosed
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    maybeDeferred,
    succeed,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
)
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from webwire import wire
from webwire._constants import HEARTBEAT as _HEARTBEAT
from webwire._constants import TIMER_SLACK as _EPSILON
from webwire._fastpath import FastPathProtocol
from webwire.connection import Connection, HandshakeRequest
from webwire.errors import (
    Disconnected,
    InternalError,
    MaxSessionConnections,
    RequestError,
    SessionNotFound,
    UpgradeRefused,
)
from webwire.guard import GuardedConnection, lingeringClose
from webwire.handshake import cookiesOf, originAllowed
from webwire.interfaces import (
    ICluster,
    IConnection,
    IUpgradeGuard,
)
from webwire.logonce import RepeatedEvents
from webwire.metrics import refusalReason
from webwire.sessions.registry import SessionRegistry
from webwire.sessions.session import Session

if TYPE_CHECKING:
    from webwire.server import WebWireServerFactory

__all__ = ["WebWireServerProtocol"]

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011

_MAX_REQUEST_HEAD: Final = 16384
"""Bytes of an upgrade request's line and headers (twisted.web's limit)."""
_MAX_HEADERS: Final = 500
"""Header lines of an upgrade request (twisted.web's limit)."""

_CONNECTION_DONE: Final = Failure(ConnectionDone())
_SESSION_CLOSED: Final = wire.encodeSessionClosed()
"""Timers treat what is due within a millisecond as due (float sums drift)."""

# Connection states. OPENING lasts until the WebSocket handshake completes;
# CLOSING from a close request until the running handlers are done.
_OPENING: Final = "opening"
_OPEN: Final = "open"
_CLOSING: Final = "closing"
_CLOSED: Final = "closed"


class _StreamTransport(Protocol):
    """The parts of a stream transport (TCP, TLS, UNIX) the server uses."""

    def getPeer(self) -> IAddress: ...
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...


def _callHook(hook: Callable[..., object], *args: object) -> Deferred[Any]:
    """Call an application hook; it may return a value, Deferred or coroutine."""
    return maybeDeferred(hook, *args)


@implementer(IPushProducer)
class _WriteMonitor:
    """
    Registered with the transport, which pauses it while its write buffer is
    full (the client does not read) and resumes it once the buffer drained.
    """

    def __init__(self, protocol: WebWireServerProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol._setWriteCongested(True)

    def resumeProducing(self) -> None:
        self._protocol._setWriteCongested(False)

    def stopProducing(self) -> None:
        pass


class WebWireServerProtocol(FastPathProtocol):
    """
    One WebWire connection on the server (see the module docstring).

    Applications never touch the protocol; they get its L{Connection}.
    """

    _log = Logger()
    factory: WebWireServerFactory
    guard: GuardedConnection | None = None
    """What counted and timed this connection from its TCP accept."""

    def __init__(self) -> None:
        super().__init__()
        self.connection: Connection | None = None
        self._state = _OPENING
        self._handshake: HandshakeRequest | None = None
        self._queue: deque[wire.Message] = deque()
        # Handlers running now; those that returned a Deferred are also in
        # _pending, so that a shutdown can cancel them.
        self._busy = 0
        self._pending: set[Deferred[Any]] = set()
        self._limit: int | None = None
        # A session request runs inline: nothing else starts meanwhile.
        self._inline = False
        self.session: Session | None = None
        self._connectHookPending = False
        # After a violation: nothing more is read as a message.
        self._inputEnded = False
        self._violationCode = CLOSE_PROTOCOL_ERROR
        self._violationReason = ""
        # The data of the message being received is dropped as it arrives.
        self._discarding = False
        # Frames cannot be parsed any more: every byte is dropped.
        self._streamBroken = False
        # Closing TCP: every byte is dropped until the client closes.
        self._lingering = False
        self._closeTimer: IDelayedCall | None = None
        self._handshakeStarted = False
        self._reading = True
        self._writeCongested = False
        self._bytesWhileCongested = 0
        self._lastRead = 0.0
        self._deadline: IDelayedCall | None = None
        self._pumping = False
        self._disconnected = False
        self._closeCode = CLOSE_NORMAL
        self._closeReason = ""
        self._closeWaiters: list[Deferred[None]] = []
        # What one message can make happen again and again is logged once.
        self.events = RepeatedEvents("")

    def __repr__(self) -> str:
        return f"<WebWireServerProtocol {self.peer} {self._state}>"

    @property
    def _connection(self) -> IConnection:
        # Only used once the connection is open.
        return cast(IConnection, self.connection)

    @property
    def _stream(self) -> _StreamTransport:
        return cast(_StreamTransport, self.transport)

    # What the Connection uses ---------------------------------------------

    @property
    def isActive(self) -> bool:
        """
        C{True} while the connection is open and not closing (after a
        violation it is closing, though what was read before is handled).
        """
        return self._state is _OPEN and not self._inputEnded

    @property
    def messageBufferSize(self) -> int:
        """The largest message either side may send."""
        return self.factory.options.messageBufferSize

    @property
    def sessions(self) -> SessionRegistry | None:
        """The server's sessions, or C{None} if it has none."""
        return self.factory.sessions

    @property
    def cluster(self) -> ICluster:
        """The server's cluster."""
        return self.factory.cluster

    def sendSessionCreated(self, session: Session) -> None:
        """
        Tell the client that C{session} was created for it.

        :raises Disconnected: If the connection is closed.
        :raises webwire.errors.MessageTooLarge: If the session document does
            not fit a message.
        """
        self.sendUnsolicited(
            wire.encodeSessionCreated(session.toJSON(), self.messageBufferSize)
        )

    def sendSessionClosed(self) -> None:
        """
        Tell the client that its session was closed.

        :raises Disconnected: If the connection is closed.
        """
        self.sendUnsolicited(_SESSION_CLOSED)

    def sendUnsolicited(self, data: bytes) -> None:
        """
        Send an encoded signal or session notification now.

        :raises Disconnected: If the connection is closed.
        """
        if self._state is _CLOSED or self.state != WebSocketProtocol.STATE_OPEN:
            raise Disconnected(f"connection to {self.peer} is closed")
        self._write(data)

    def closeGracefully(self, code: int, reason: str) -> Deferred[None]:
        """
        Stop starting handlers, let the running ones finish (their replies
        are sent), then close with C{code}. Requests already read that wait
        for a free handler slot are answered with ReplyShutdown (signals
        among them are dropped); everything that arrives from now on is
        read and discarded.

        :returns: A Deferred firing with C{None} once the connection is closed.
        """
        if self._disconnected:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closeWaiters.append(waiter)
        if self._state is _OPEN:
            self._state = _CLOSING
            if self._inputEnded:
                code, reason = self._violationCode, self._violationReason
            self._closeCode = code
            self._closeReason = reason
            while self._queue:
                self._refuse(self._queue.popleft())
            self._updateReading()
            if not self._busy:
                self._finishClosing()
        return waiter

    # Autobahn hooks -------------------------------------------------------

    def _connectionMade(self) -> None:
        super()._connectionMade()
        if self.guard is not None:
            # The guard times the handshake from the TCP accept.
            call: Any = self.openHandshakeTimeoutCall
            if call is not None:
                call.cancel()
                self.openHandshakeTimeoutCall = None

    def processHandshake(self) -> None:
        """
        Bound the upgrade request before Autobahn parses it: line and
        headers at most 16 KiB and 500 lines (HTTP 431 beyond), and nothing
        buffered beyond that while the upgrade is being decided.
        """
        if self._handshakeStarted:
            if len(self.data) > _MAX_REQUEST_HEAD:
                self._abort()
            return
        end = self.data.find(b"\r\n\r\n")
        if (end < 0 and len(self.data) > _MAX_REQUEST_HEAD) or (
            end > _MAX_REQUEST_HEAD or self.data.count(b"\r\n", 0, end) > _MAX_HEADERS
        ):
            self._handshakeStarted = True
            self.failHandshake("Request Header Fields Too Large", 431)
            return
        if end >= 0:
            self._handshakeStarted = True
            super().processHandshake()

    def _dataReceived(self, data: bytes) -> None:
        if self._streamBroken or self._lingering:
            return  # read only to see the client's close
        super()._dataReceived(data)

    def _closeConnection(self, abort: bool = False) -> None:
        """
        Every close ends here: abort, or flush, send FIN, read on until
        the client closes, and abort after the close timeout.
        """
        self._lingering = True
        self.flushWrites()  # fast path: coalesced frames go before the close
        if abort:
            self._stream.abortConnection()
        elif self._closeTimer is None:
            self._closeTimer = lingeringClose(
                self.transport,
                self.factory.reactor,
                self.factory.options.closeTimeout,
            )

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        if self._closeTimer is not None and self._closeTimer.active():
            self._closeTimer.cancel()
        self._closeTimer = None
        super().connectionLost(reason)

    def onMessageFrameData(self, payload: bytes) -> None:
        if self._discarding or self._ignoringInput():
            return
        super().onMessageFrameData(payload)

    def onMessageEnd(self) -> None:
        if self._discarding or self._ignoringInput():
            self._discarding = False
            self.message_data = []
            return
        super().onMessageEnd()

    def _ignoringInput(self) -> bool:
        return self._inputEnded or self._state is not _OPEN

    def _protocol_violation(self, reason: str) -> bool:
        return self._brokenStream(CLOSE_PROTOCOL_ERROR, reason)

    def _invalid_payload(self, reason: str) -> bool:
        return self._brokenStream(1007, reason)

    def _brokenStream(self, code: int, reason: str) -> bool:
        """
        A WebSocket-level violation: frames cannot be told apart any more,
        so every further byte is dropped; otherwise like any violation.
        """
        self._streamBroken = True
        self.data = b""
        self._violation(code, f"WebSocket: {reason}")
        return True

    def onConnect(  # type: ignore[override]  # Autobahn accepts Deferreds too
        self, request: ConnectionRequest
    ) -> Deferred[None] | None:
        """
        Decide on the upgrade: refused with 503 while shutting down, 404 on
        a path not served, 403 for a foreign origin, and as the
        application's C{beforeUpgrade} says (if it has one).
        """
        factory = self.factory
        if factory._shuttingDown:
            raise ConnectionDeny(
                ConnectionDeny.SERVICE_UNAVAILABLE, "server shutting down"
            )
        length = request.headers.get("content-length", "0").strip()
        if length not in ("", "0") or "transfer-encoding" in request.headers:
            # Refused before the body is read (which is never buffered).
            raise ConnectionDeny(
                ConnectionDeny.BAD_REQUEST, "A WebSocket upgrade has no body"
            )
        options = factory.options
        if options.paths and request.path not in options.paths:
            raise ConnectionDeny(ConnectionDeny.NOT_FOUND, "Not Found")
        headers = dict(request.headers)
        if not originAllowed(
            request.origin, headers.get("host", ""), options.allowedOrigins
        ):
            self._log.info(
                "refused an upgrade from {peer}: origin {origin} not allowed",
                peer=self.peer,
                origin=request.origin,
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "Origin Not Allowed")
        self._handshake = HandshakeRequest(
            path=request.path,
            host=request.host,
            headers=headers,
            params=dict(request.params),
            origin=request.origin or None,  # Autobahn says "" for none
            cookies=cookiesOf(headers.get("cookie", "")),
            peer=self._stream.getPeer(),
        )
        if not IUpgradeGuard.providedBy(factory.application):
            return None
        guard = _callHook(factory.application.beforeUpgrade, self._handshake)
        return guard.addCallbacks(lambda _: None, self._upgradeRefused)

    def _upgradeRefused(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, UpgradeRefused):
            self._log.info(
                "the application refused an upgrade from {peer}: {status} {reason}",
                peer=self.peer,
                status=error.status,
                reason=error.reason,
            )
            raise ConnectionDeny(error.status, error.reason)
        self._log.failure(
            "beforeUpgrade failed for {peer}; answering 500", failure, peer=self.peer
        )
        raise ConnectionDeny(
            ConnectionDeny.INTERNAL_SERVER_ERROR, "Internal Server Error"
        )

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Any = None
    ) -> None:
        """Every refused handshake ends here (Autobahn's and ours)."""
        self.factory.observer.handshakeRefused(refusalReason(self, code))  # metrics
        super().failHandshake(reason, code, responseHeaders)

    def onOpen(self) -> None:
        factory = self.factory
        self.events.peer = self.peer
        clock = factory.reactor
        assert self._handshake is not None
        self._state = _OPEN
        self._limit = factory.options.concurrency
        self.connection = Connection(
            self,
            self._stream.getPeer(),
            self._handshake,
            datetime.fromtimestamp(clock.seconds(), UTC),
        )
        self.sendMessage(factory.acceptConf, isBinary=True)
        factory.observer.messageOut(factory.acceptConf)  # metrics
        if getattr(self.transport, "producer", None) is not None:
            # Taken over from a twisted.web channel (WebWireResource), which
            # registered itself as the transport's producer and is gone now.
            self._stream.unregisterProducer()
        self._stream.registerProducer(_WriteMonitor(self), True)
        if self.guard is not None:
            self.guard.upgraded()
        factory._opened(self)
        self._lastRead = clock.seconds()
        self._deadline = clock.callLater(
            factory.options.readTimeout, self._checkDeadline
        )
        self._connectHookPending = True
        hook = _callHook(factory.application.onClientConnected, self.connection)
        hook.addCallbacks(self._connectHookDone, self._connectHookFailed)
        self._updateReading()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._lastRead = self.factory.reactor.seconds()
        self.factory.observer.messageIn(len(payload))  # metrics
        if self._ignoringInput():
            return
        if not isBinary:
            self._violation(CLOSE_UNSUPPORTED_DATA, "text message")
            return
        if payload == _HEARTBEAT:
            return
        try:
            message = wire.parse(payload)
        except wire.ProtocolViolation as e:
            self._violation(CLOSE_PROTOCOL_ERROR, str(e))
            return
        if self.factory._shuttingDown:
            self._dispatch(message)
        elif self._queue or self._connectHookPending or self._atLimit():
            self._queue.append(message)
            self._updateReading()
        else:
            self._dispatch(message)
            if self._atLimit():
                self._updateReading()

    def onPing(self, payload: bytes) -> None:
        self._lastRead = self.factory.reactor.seconds()
        super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        self._lastRead = self.factory.reactor.seconds()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._disconnected:
            return
        self._disconnected = True
        opened = self._state is not _OPENING
        self._state = _CLOSED
        self._queue.clear()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if opened:
            self.factory._closed(self)
            why = f"WebSocket closed (code {code}): {reason or 'no reason'}"
            failure = Failure(ConnectionDone(why) if wasClean else ConnectionLost(why))
            hook = _callHook(
                self.factory.application.onClientDisconnected,
                self.connection,
                failure,
            )
            hook.addErrback(
                lambda f: self._log.failure(
                    "onClientDisconnected failed for {peer}", f, peer=self.peer
                )
            )
        self.events.summarise()
        waiters, self._closeWaiters = self._closeWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _max_message_size_exceeded(
        self, messageSize: int, maxSize: int, reason: str
    ) -> None:
        """
        Autobahn's hook for an oversized inbound message, in any state: its
        data is discarded as it arrives, and it is a violation (1009).
        """
        self._discarding = True
        self._violation(
            CLOSE_MESSAGE_TOO_BIG,
            f"message larger than the message buffer size of {maxSize} bytes",
        )

    # Dispatch -------------------------------------------------------------

    def _atLimit(self) -> bool:
        return self._inline or (self._limit is not None and self._busy >= self._limit)

    def _dispatch(self, message: wire.Message) -> None:
        kind = type(message)
        if kind is wire.Request:
            assert isinstance(message, wire.Request)
            if self.factory._shuttingDown:
                reply = self._specialReply(message, wire.MessageType.REPLY_SHUTDOWN)
                self.factory.observer.requestDone(message.name, reply, None)  # metrics
                self._sendReply(reply)
            else:
                self._runRequest(message)
        elif kind is wire.Signal:
            assert isinstance(message, wire.Signal)
            if not self.factory._shuttingDown:
                self._runSignal(message)
        elif kind is wire.RestoreSession or kind is wire.CloseSession:
            assert isinstance(message, (wire.RestoreSession, wire.CloseSession))
            if self.factory._shuttingDown:
                self._sendReply(
                    self._specialReply(message, wire.MessageType.REPLY_SHUTDOWN)
                )
            elif self.factory.sessions is None:
                self._sendReply(
                    self._specialReply(
                        message, wire.MessageType.REPLY_SESSIONS_DISABLED
                    )
                )
            else:
                self._runSessionRequest(message, self.factory.sessions)
        else:
            self.events.emit(
                self._log,
                "server-only message",
                LogLevel.debug,
                "ignoring {kind} from {peer}: only servers send it",
                kind=kind.__name__,
                peer=self.peer,
            )

    def _refuse(self, message: wire.Message) -> None:
        """
        Answer a message read but not started before the connection began
        closing: requests get ReplyShutdown, the rest is dropped.
        """
        if isinstance(message, (wire.Request, wire.RestoreSession, wire.CloseSession)):
            self._sendReply(
                self._specialReply(message, wire.MessageType.REPLY_SHUTDOWN)
            )

    @staticmethod
    def _specialReply(
        message: wire.Request | wire.RestoreSession | wire.CloseSession,
        kind: wire.MessageType,
    ) -> bytes:
        return wire.encodeSpecialReply(kind, message.identifier)

    def _runRequest(self, request: wire.Request) -> None:
        started = self.factory.observer.now()  # metrics: the request's duration
        self._runHandler(
            self.factory.application.onRequest,
            request,
            partial(self._replyWithResult, started=started),
            partial(self._replyWithFailure, started=started),
        )

    def _runSignal(self, signal: wire.Signal) -> None:
        self.factory.observer.signalIn()  # metrics
        self._runHandler(
            self.factory.application.onSignal,
            signal,
            lambda result, signal: None,
            self._signalFailed,
        )

    def _runHandler(
        self,
        hook: Callable[[IConnection, Any], object],
        message: Any,
        onResult: Callable[[Any, Any], None],
        onFailure: Callable[[Failure, Any], None],
    ) -> None:
        """
        Run an application handler and hand its outcome on.

        The handler counts as busy from before the call until its outcome
        was handled (for a request: its reply written), so that a handler
        that closes its own connection still gets its reply out first.
        """
        self._busy += 1
        try:
            result = hook(self._connection, message)
        except BaseException:
            onFailure(Failure(), message)
            self._handlerDone()
            return
        if isinstance(result, Coroutine):
            result = Deferred.fromCoroutine(result)
        if not isinstance(result, Deferred):
            # The common case: done at once, no Deferred needed.
            onResult(result, message)
            self._handlerDone()
            return
        self._pending.add(result)
        result.addCallbacks(
            onResult, onFailure, callbackArgs=(message,), errbackArgs=(message,)
        )
        result.addBoth(self._deferredDone, result)

    def _runSessionRequest(
        self,
        message: wire.RestoreSession | wire.CloseSession,
        sessions: SessionRegistry,
    ) -> None:
        """
        Restore- and close-session requests run inline, as in the original
        server: nothing else of this connection starts until they are done.
        """
        self._busy += 1
        self._inline = True
        identifier = message.identifier
        reply: Deferred[bytes]
        if isinstance(message, wire.RestoreSession):
            # Encoded before the connection takes the session: a document
            # too large for a reply fails the restore.
            encoded: list[bytes] = []

            def encode(session: Session) -> None:
                encoded.append(
                    wire.encodeReply(
                        identifier,
                        session.toJSON(),
                        wire.Encoding.UTF8,
                        self.messageBufferSize,
                    )
                )

            restored = sessions.restore(self, message.key, encode)
            reply = restored.addCallback(lambda _: encoded[-1])
        else:
            reply = sessions.clientClose(self).addCallback(
                lambda _: wire.encodeReply(identifier, b"", wire.Encoding.BINARY)
            )
        self._pending.add(reply)
        reply.addErrback(self._sessionRequestRefused, message)
        reply.addCallbacks(
            self._sendReply, self._sessionRequestFailed, errbackArgs=(message,)
        )
        reply.addBoth(self._inlineDone, reply)

    def _sessionRequestRefused(
        self, failure: Failure, message: wire.RestoreSession | wire.CloseSession
    ) -> bytes | Failure:
        """
        The reply to a session request the registry refused, already logged
        there: not found, too many connections, an internal error or a
        cancelled lookup. Any other failure is passed on.
        """
        error = failure.value
        if isinstance(error, SessionNotFound):
            kind = wire.MessageType.REPLY_SESSION_NOT_FOUND
        elif isinstance(error, MaxSessionConnections):
            kind = wire.MessageType.REPLY_MAX_SESSION_CONNECTIONS_REACHED
        elif isinstance(error, (InternalError, CancelledError)):
            kind = wire.MessageType.REPLY_INTERNAL_ERROR
        else:
            return failure
        return self._specialReply(message, kind)

    def _sessionRequestFailed(
        self, failure: Failure, message: wire.RestoreSession | wire.CloseSession
    ) -> None:
        self.events.failure(
            self._log,
            "session request failed",
            "session request from {peer} failed; answering with an internal error",
            failure,
            peer=self.peer,
        )
        self._sendReply(
            self._specialReply(message, wire.MessageType.REPLY_INTERNAL_ERROR)
        )

    def _inlineDone(self, result: object, reply: Deferred[Any]) -> None:
        self._inline = False
        self._deferredDone(result, reply)

    def _replyWithResult(
        self, result: object, request: wire.Request, started: float
    ) -> None:
        def build() -> bytes:
            payload = wire.Payload.coerce(result)  # type: ignore[arg-type]
            return wire.encodeReply(
                request.identifier,
                payload.data,
                payload.encoding,
                self.messageBufferSize,
            )

        reply = self._buildReply(request, build, "reply")
        self.factory.observer.requestDone(request.name, reply, started)  # metrics
        self._sendReply(reply)

    def _replyWithFailure(
        self, failure: Failure, request: wire.Request, started: float
    ) -> None:
        error = failure.value
        if isinstance(error, RequestError):

            def build() -> bytes:
                assert isinstance(error, RequestError)
                return wire.encodeErrorReply(
                    request.identifier,
                    error.code,
                    error.message,
                    self.messageBufferSize,
                )

            reply = self._buildReply(request, build, "error reply")
            self.factory.observer.requestDone(request.name, reply, started)  # metrics
            self._sendReply(reply)
            return
        cancelled = isinstance(error, CancelledError)
        if cancelled:
            self.events.emit(
                self._log,
                "request cancelled",
                LogLevel.warn,
                "request {name!r} from {peer} was cancelled; answering with an "
                "internal error",
                name=request.name,
                peer=self.peer,
            )
        else:
            self.events.failure(
                self._log,
                "request handler failed",
                "request handler for {name!r} from {peer} failed; answering "
                "with an internal error",
                failure,
                name=request.name,
                peer=self.peer,
            )
        reply = self._specialReply(request, wire.MessageType.REPLY_INTERNAL_ERROR)
        self.factory.observer.requestDone(request.name, reply, started, cancelled)
        self._sendReply(reply)

    def _buildReply(
        self, request: wire.Request, build: Callable[[], bytes], what: str
    ) -> bytes:
        """
        Encode a reply; if the handler's result cannot be sent, log why and
        answer with an internal error instead, so that the request is never
        left without a reply.
        """
        try:
            return build()
        except (TypeError, wire.InvalidMessage) as e:
            self.events.emit(
                self._log,
                "unsendable reply",
                LogLevel.error,
                "{what} to request {name!r} from {peer} cannot be sent "
                "({error}); answering with an internal error",
                what=what,
                name=request.name,
                peer=self.peer,
                error=e,
            )
        except Exception:
            self.events.failure(
                self._log,
                "reply encoding failed",
                "encoding the {what} to request {name!r} from {peer} failed; "
                "answering with an internal error",
                what=what,
                name=request.name,
                peer=self.peer,
            )
        return self._specialReply(request, wire.MessageType.REPLY_INTERNAL_ERROR)

    def _signalFailed(self, failure: Failure, signal: wire.Signal) -> None:
        if failure.check(CancelledError):
            self.events.emit(
                self._log,
                "signal cancelled",
                LogLevel.warn,
                "signal handler for {name!r} from {peer} was cancelled",
                name=signal.name,
                peer=self.peer,
            )
        else:
            self.events.failure(
                self._log,
                "signal handler failed",
                "signal handler for {name!r} from {peer} failed",
                failure,
                name=signal.name,
                peer=self.peer,
            )

    def _deferredDone(self, result: object, handler: Deferred[Any]) -> None:
        self._pending.discard(handler)
        self._handlerDone()

    def _handlerDone(self) -> None:
        """
        A handler finished and its reply (if any) was sent: start what waits,
        or finish closing.
        """
        self._busy -= 1
        if self._state is _OPEN:
            if self._queue or not self._reading or self._inputEnded:
                self._pump()
        elif self._state is _CLOSING:
            if not self._busy:
                self._finishClosing()
        elif self._disconnected and not self._busy:
            self.factory._forget(self)
            self.events.summarise()  # what happened after the disconnect
        if self.factory._draining:
            self.factory._checkDrained()

    def _pump(self) -> None:
        """
        Start queued messages while there are free handler slots.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while (
                self._queue
                and self._state is _OPEN
                and not self._connectHookPending
                and not self._atLimit()
            ):
                self._dispatch(self._queue.popleft())
        finally:
            self._pumping = False
        if (
            self._inputEnded
            and self._state is _OPEN
            and not (self._queue or self._busy or self._connectHookPending)
        ):
            # Everything read before the violation is answered.
            self.closeGracefully(self._violationCode, self._violationReason)
        self._updateReading()

    def _beginShutdown(self) -> None:
        """
        The server shuts down: answer what waits in the queue (requests get
        ReplyShutdown, signals are dropped) and read again, so that new
        requests are answered at once.
        """
        while self._queue:
            self._dispatch(self._queue.popleft())
        self._updateReading()

    def _cancelHandlers(self) -> None:
        for handler in list(self._pending):
            handler.cancel()

    # Sending --------------------------------------------------------------

    def _sendReply(self, data: bytes) -> None:
        if self._state is _CLOSED or self.state != WebSocketProtocol.STATE_OPEN:
            self.events.emit(
                self._log,
                "reply dropped",
                LogLevel.debug,
                "reply for {peer} dropped: connection closed",
                peer=self.peer,
            )
            return
        try:
            self._write(data)
        except Disconnected:
            pass

    def _write(self, data: bytes) -> None:
        if self._writeCongested:
            self._bytesWhileCongested += len(data)
            if self._bytesWhileCongested > self.factory.options.maxSendBuffer:
                self._log.warn(
                    "{peer} does not read: more than {limit} bytes are waiting "
                    "to be sent; dropping the connection",
                    peer=self.peer,
                    limit=self.factory.options.maxSendBuffer,
                )
                self.factory.observer.sendBufferCutOff()  # metrics
                self._abort()
                raise Disconnected(f"connection to {self.peer} dropped: not reading")
        self.factory.observer.messageOut(data)  # metrics
        try:
            self.sendMessage(data, isBinary=True)
        except _SocketClosed as e:
            raise Disconnected(f"connection to {self.peer} is closed") from e

    def _setWriteCongested(self, congested: bool) -> None:
        self._writeCongested = congested
        if not congested:
            self._bytesWhileCongested = 0
        self._updateReading()

    # Reading, deadlines and closing ---------------------------------------

    def _waitingOnHandlers(self) -> bool:
        """
        Whether reading waits for this connection's own handlers (or its
        connect hook). Never while the server shuts down: then every message
        is answered at once.
        """
        return (
            self._state is _OPEN
            and not self.factory._shuttingDown
            and (self._connectHookPending or bool(self._queue) or self._atLimit())
        )

    def _updateReading(self) -> None:
        """
        Pause or resume reading from the transport, as the connection's state
        asks for; the single place that decides it.
        """
        if self._state is _CLOSED:
            return
        # While closing, read on (discarding) to see the client's close.
        shouldRead = self._ignoringInput() or not (
            self._writeCongested or self._waitingOnHandlers()
        )
        if shouldRead is self._reading:
            return
        self._reading = shouldRead
        if shouldRead:
            self._lastRead = self.factory.reactor.seconds()
            self._stream.resumeProducing()
        else:
            self._stream.pauseProducing()

    def _checkDeadline(self) -> None:
        self._deadline = None
        if self._state is _CLOSED:
            return
        timeout = self.factory.options.readTimeout
        now = self.factory.reactor.seconds()
        if self._waitingOnHandlers() or (self._ignoringInput() and self._busy):
            # Time spent waiting on our own handlers does not count, nor does
            # a close that waits for them (nothing is read as a message then).
            remaining = timeout
        else:
            remaining = self._lastRead + timeout - now
        if remaining >= _EPSILON:
            self._deadline = self.factory.reactor.callLater(
                remaining, self._checkDeadline
            )
            return
        self._log.warn(
            "no message from {peer} for {timeout} seconds; dropping the connection",
            peer=self.peer,
            timeout=timeout,
        )
        self._abort()

    def _violation(self, code: int, reason: str) -> None:
        """
        The client broke the protocol: nothing more it sends is handled. The
        messages read before are handled and answered, then the connection
        closes with C{code}. While closing already, C{code} replaces the
        close code if the Close frame is not sent yet.
        """
        if self._inputEnded or self._state is _CLOSED or self._lingering:
            return
        self.factory.observer.violation(code)  # metrics
        self._log.warn(
            "protocol violation from {peer}: {reason}; closing the connection",
            peer=self.peer,
            reason=reason,
        )
        self._inputEnded = True
        self._violationCode = code
        self._violationReason = reason
        if self._state is _CLOSING:
            self._closeCode = code
            self._closeReason = reason
        self._pump()

    def _finishClosing(self) -> None:
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.sendCloseFrame(
                code=self._closeCode,
                reasonUtf8=self._closeReason.encode("utf-8")[:123] or None,
            )
        # Without waiting for the peer's Close frame (a peer that never
        # answers cannot hold the connection): flush, FIN, read until the
        # peer closes, abort after the close timeout.
        self._closeConnection(abort=False)

    def _abort(self) -> None:
        self._state = _CLOSED
        self._queue.clear()
        self._stream.abortConnection()

    # Connect hook ---------------------------------------------------------

    def _connectHookDone(self, result: object) -> None:
        self._connectHookPending = False
        self._pump()

    def _connectHookFailed(self, failure: Failure) -> None:
        self._connectHookPending = False
        self._log.failure(
            "onClientConnected failed for {peer}; closing the connection",
            failure,
            peer=self.peer,
        )
        self.closeGracefully(CLOSE_INTERNAL_ERROR, "internal error")
