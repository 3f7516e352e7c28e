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
    for text messages, 1009 for oversized ones) after its running handlers
    have finished, without answering the bad message;
  - drops the connection when the client stays silent for the read timeout.

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
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from autobahn.exception import Disconnected as _SocketClosed
from autobahn.twisted.websocket import WebSocketServerProtocol
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
from webwire.connection import Connection, HandshakeRequest
from webwire.errors import (
    Disconnected,
    InternalError,
    MaxSessionConnections,
    RequestError,
    SessionNotFound,
    UpgradeRefused,
)
from webwire.handshake import cookiesOf, originAllowed
from webwire.interfaces import (
    ICluster,
    IConnection,
    IUpgradeGuard,
)
from webwire.logonce import RepeatedEvents
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


class WebWireServerProtocol(WebSocketServerProtocol):
    """
    One WebWire connection on the server (see the module docstring).

    Applications never touch the protocol; they get its L{Connection}.
    """

    _log = Logger()
    factory: WebWireServerFactory

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
        self._readStopped = False
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
        """C{True} while the connection is open and not closing."""
        return self._state is _OPEN

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
        are sent), then close with C{code}. Messages that wait for a free
        handler slot, and everything that arrives from now on (but
        heartbeats), are dropped without reply.

        :returns: A Deferred firing with C{None} once the connection is closed.
        """
        if self._disconnected:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closeWaiters.append(waiter)
        if self._state is _OPEN:
            self._state = _CLOSING
            self._closeCode = code
            self._closeReason = reason
            if self._queue:
                self._log.debug(
                    "dropping {count} unstarted messages from {peer} on close",
                    count=len(self._queue),
                    peer=self.peer,
                )
                self._queue.clear()
            self._updateReading()
            if not self._busy:
                self._finishClosing()
        return waiter

    # Autobahn hooks -------------------------------------------------------

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
        if getattr(self.transport, "producer", None) is not None:
            # Taken over from a twisted.web channel (WebWireResource), which
            # registered itself as the transport's producer and is gone now.
            self._stream.unregisterProducer()
        self._stream.registerProducer(_WriteMonitor(self), True)
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
        if self._state is not _OPEN:
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
        Autobahn's hook for an oversized inbound message: treat it like any
        other violation (close 1009 once running handlers are done).
        """
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
                self._sendReply(
                    self._specialReply(message, wire.MessageType.REPLY_SHUTDOWN)
                )
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

    @staticmethod
    def _specialReply(
        message: wire.Request | wire.RestoreSession | wire.CloseSession,
        kind: wire.MessageType,
    ) -> bytes:
        return wire.encodeSpecialReply(kind, message.identifier)

    def _runRequest(self, request: wire.Request) -> None:
        self._runHandler(
            self.factory.application.onRequest,
            request,
            self._replyWithResult,
            self._replyWithFailure,
        )

    def _runSignal(self, signal: wire.Signal) -> None:
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

    def _replyWithResult(self, result: object, request: wire.Request) -> None:
        def build() -> bytes:
            payload = wire.Payload.coerce(result)  # type: ignore[arg-type]
            return wire.encodeReply(
                request.identifier,
                payload.data,
                payload.encoding,
                self.messageBufferSize,
            )

        self._sendReply(self._buildReply(request, build, "reply"))

    def _replyWithFailure(self, failure: Failure, request: wire.Request) -> None:
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

            self._sendReply(self._buildReply(request, build, "error reply"))
            return
        if isinstance(error, CancelledError):
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
        self._sendReply(
            self._specialReply(request, wire.MessageType.REPLY_INTERNAL_ERROR)
        )

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
            if self._queue or not self._reading:
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
                self._abort()
                raise Disconnected(f"connection to {self.peer} dropped: not reading")
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
        shouldRead = not (
            self._readStopped or self._writeCongested or self._waitingOnHandlers()
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
        if self._waitingOnHandlers() or (self._state is _CLOSING and self._busy):
            # Time spent waiting on our own handlers does not count, nor does
            # a close that waits for them (after a violation nothing is read).
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
        if self._state is not _OPEN:
            return
        self._log.warn(
            "protocol violation from {peer}: {reason}; closing the connection",
            peer=self.peer,
            reason=reason,
        )
        self._readStopped = True
        self.closeGracefully(code, reason)

    def _finishClosing(self) -> None:
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.sendCloseFrame(
                code=self._closeCode,
                reasonUtf8=self._closeReason.encode("utf-8")[:123] or None,
            )
        # Like the original server, close TCP without waiting for the peer's
        # Close frame: a peer that never answers cannot hold the connection.
        self._stream.loseConnection()

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
