# -*- test-case-name: tests.test_dispatch -*-
"""
The transport-free half of a server connection: what happens to the
messages a connection has read, until its close.

A L{Dispatcher} knows nothing of WebSockets nor of the transport. It gets
parsed messages from its L{Link} (the Autobahn adapter,
L{webwire._protocol.WebWireServerProtocol}) and, per connection,

  - queues what arrives while the connection is at its concurrency limit
    (or its connect hook runs) and starts it once a slot frees;
  - counts the handlers running (the busy count the server's drain waits
    on) and keeps the Deferreds among them so that they can be cancelled;
  - turns every handler outcome into exactly one encoded reply, handed to
    L{Link.sendReply};
  - orders a violation after what was read before it: those messages are
    handled and answered, then the close follows;
  - sequences a graceful close: refuse what waits, let the running
    handlers finish, then ask the link to send the Close frame
    (L{Link.finishClosing}).

It tells its link when reading may change (L{Link.updateReading}) and its
server when a handler finished while that matters to the server's
bookkeeping (the C{handlerFinished} callable it is given).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any, Final, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from webwire import wire
from webwire._constants import CLOSE_INTERNAL_ERROR, CLOSE_PROTOCOL_ERROR
from webwire._hooks import callHook
from webwire.errors import (
    InternalError,
    MaxSessionConnections,
    RequestError,
    SessionNotFound,
)
from webwire.interfaces import IConnection, IWebWireServer
from webwire.logonce import RepeatedEvents
from webwire.metrics import IServerObserver, NullObserver, ReplyTally
from webwire.sessions.registry import SessionChannel, SessionRegistry
from webwire.sessions.session import Session
from webwire.traffic import Traffic

__all__ = ["ConnectionState", "Dispatcher", "Link"]


class ConnectionState(Enum):
    """
    Where a server connection is. OPENING lasts until the WebSocket
    handshake completes; CLOSING from a close request until the running
    handlers are done.
    """

    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# Module-level names: compared by identity on the hot path.
_OPENING: Final = ConnectionState.OPENING
_OPEN: Final = ConnectionState.OPEN
_CLOSING: Final = ConnectionState.CLOSING
_CLOSED: Final = ConnectionState.CLOSED


class Link(SessionChannel, Protocol):
    """
    What a L{Dispatcher} needs from the transport side of its connection.
    """

    @property
    def peer(self) -> str | None:
        """The client's address, for logs."""

    @property
    def reading(self) -> bool:
        """Whether the transport reads now."""

    @property
    def messageBufferSize(self) -> int:
        """The largest message either side may send, in bytes."""

    def sendReply(self, data: bytes) -> None:
        """
        Send an encoded reply; dropped (and logged once) if the connection
        is closed.
        """

    def updateReading(self) -> None:
        """The dispatcher's state changed: pause or resume reading."""

    def finishClosing(self, code: int, reason: str) -> None:
        """Every handler is done: send the Close frame with C{code}."""


class Dispatcher:
    """
    The messages of one server connection (see the module docstring).

    :ivar state: The L{ConnectionState}.
    :ivar inputEnded: C{True} after a violation: nothing more is read as a
        message.
    :ivar connectHookPending: C{True} while the application's
        C{onClientConnected} runs; nothing starts meanwhile.
    :ivar disconnected: C{True} once the connection is closed.
    :ivar observing: Whether the observer is told of every request: not
        the default L{NullObserver}, which does nothing, so its hot calls
        (and the clock reads they need) are skipped.
    """

    __slots__ = (
        "_application",
        "_busy",
        "_clock",
        "_closeCode",
        "_closeReason",
        "_closeWaiters",
        "_connection",
        "_events",
        "_handlerFinished",
        "_inline",
        "_limit",
        "_link",
        "_observer",
        "_pending",
        "_pumping",
        "_queue",
        "_readStarted",
        "_repliedInRead",
        "_replyNames",
        "_sendReply",
        "_sessions",
        "_shuttingDown",
        "_tally",
        "_traffic",
        "_violationCode",
        "_violationReason",
        "connectHookPending",
        "disconnected",
        "inputEnded",
        "observing",
        "state",
    )

    _log = Logger()

    def __init__(
        self,
        link: Link,
        application: IWebWireServer,
        observer: IServerObserver,
        traffic: Traffic,
        sessions: SessionRegistry | None,
        events: RepeatedEvents,
        handlerFinished: Callable[[], None],
    ) -> None:
        """
        :param link: The transport side of the connection.
        :param application: What handles requests and signals.
        :param observer: What is told of requests and violations.
        :param traffic: What the signals handed to the application are
            counted in.
        :param sessions: The server's sessions, or C{None} without.
        :param events: Where what one message can make happen again and
            again is logged once.
        :param handlerFinished: Called when a handler finished while the
            connection is closed or the server shuts down (what the
            server's bookkeeping waits on).
        """
        self._link = link
        self._sendReply = link.sendReply
        self._application = application
        self._observer = observer
        # The default observer does nothing: its hot calls are skipped.
        self.observing = type(observer) is not NullObserver
        self._clock = observer.clock
        self._traffic = traffic
        self._sessions = sessions
        self._events = events
        self._handlerFinished = handlerFinished
        self._connection: IConnection | None = None
        self.state = _OPENING
        # Messages read that wait for a handler slot, with the start of
        # their read (see _readStarted); made when the first waits (most
        # connections never queue: idle ones keep less).
        self._queue: deque[tuple[wire.Message, float | None]] | None = None
        # While observing: when the latest read began (by the observer's
        # clock), what request durations are taken from; and during a
        # read, the names of the requests of that read answered at once,
        # counted once their replies are written (in a list made once, if
        # observing, and reused: one fewer allocation per read). They are
        # counted in _tally, the observer's, if they all have its name.
        self._readStarted: float | None = None
        self._repliedInRead: list[str] | None = None
        self._replyNames: list[str] | None = [] if self.observing else None
        self._tally: ReplyTally | None = None
        # Handlers running now; those that returned a Deferred are also in
        # _pending (made when the first does), so that a shutdown can
        # cancel them.
        self._busy = 0
        self._pending: set[Deferred[Any]] | None = None
        self._limit: int | None = None
        # A session request runs inline: nothing else starts meanwhile.
        self._inline = False
        self.connectHookPending = False
        self.inputEnded = False
        self._violationCode = CLOSE_PROTOCOL_ERROR
        self._violationReason = ""
        self._closeCode = 1000
        self._closeReason = ""
        self._closeWaiters: list[Deferred[None]] = []
        self._pumping = False
        # Set by drain(): the server shuts down.
        self._shuttingDown = False
        self.disconnected = False

    # State ----------------------------------------------------------------

    @property
    def runningHandlers(self) -> int:
        """How many handlers run now."""
        return self._busy

    @property
    def queued(self) -> int:
        """How many messages read wait for a handler slot."""
        return len(self._queue) if self._queue else 0

    @property
    def isActive(self) -> bool:
        """
        C{True} while the connection is open and not closing (after a
        violation it is closing, though what was read before is handled).
        """
        return self.state is _OPEN and not self.inputEnded

    def ignoringInput(self) -> bool:
        """Whether what arrives now is read and discarded."""
        return self.inputEnded or self.state is not _OPEN

    def atLimit(self) -> bool:
        """Whether no further handler may start now."""
        return self._inline or (self._limit is not None and self._busy >= self._limit)

    def waitingOnHandlers(self) -> bool:
        """
        Whether reading waits for this connection's own handlers (or its
        connect hook). Never while the server shuts down: then every message
        is answered at once.
        """
        return (
            self.state is _OPEN
            and not self._shuttingDown
            and (self.connectHookPending or bool(self._queue) or self.atLimit())
        )

    # Life cycle -----------------------------------------------------------

    def open(self, connection: IConnection, limit: int | None) -> None:
        """
        The WebSocket handshake completed: handlers get C{connection}, at
        most C{limit} at a time (C{None}: no limit).
        """
        self.state = _OPEN
        self._connection = connection
        self._limit = limit

    def startConnectHook(self) -> None:
        """
        Call the application's C{onClientConnected}; nothing starts until
        it is done.
        """
        self.connectHookPending = True
        hook = callHook(self._application.onClientConnected, self._connection)
        hook.addCallbacks(self._connectHookDone, self._connectHookFailed)

    def _connectHookDone(self, result: object) -> None:
        self.connectHookPending = False
        self._pump()

    def _connectHookFailed(self, failure: Failure) -> None:
        self.connectHookPending = False
        self._log.failure(
            "onClientConnected failed for {peer}; closing the connection",
            failure,
            peer=self._link.peer,
        )
        self.closeGracefully(CLOSE_INTERNAL_ERROR, "internal error")

    def abort(self) -> None:
        """The connection is being aborted: nothing more is handled."""
        self.state = _CLOSED
        self._queue = None

    def closed(self) -> bool:
        """
        The connection is closed; running handlers go on, their replies
        are dropped.

        :returns: Whether it was open (its handshake completed) before.
        """
        self.disconnected = True
        opened = self.state is not _OPENING
        self.state = _CLOSED
        self._queue = None
        tally, self._tally = self._tally, None
        if tally is not None:
            self._observer.tallyDone(tally)  # metrics
        return opened

    def releaseCloseWaiters(self) -> None:
        """Fire what L{closeGracefully} returned."""
        waiters, self._closeWaiters = self._closeWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def closeGracefully(self, code: int, reason: str) -> Deferred[None]:
        """
        Stop starting handlers, let the running ones finish (their replies
        are sent), then close with C{code}. Requests already read that wait
        for a free handler slot are answered with ReplyShutdown (signals
        among them are dropped); everything that arrives from now on is
        read and discarded.

        :returns: A Deferred firing with C{None} once the connection is closed.
        """
        if self.disconnected:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closeWaiters.append(waiter)
        if self.state is _OPEN:
            self.state = _CLOSING
            if self.inputEnded:
                code, reason = self._violationCode, self._violationReason
            self._closeCode = code
            self._closeReason = reason
            while self._queue:
                self._refuse(self._queue.popleft()[0])
            self._link.updateReading()
            if not self._busy:
                self._link.finishClosing(self._closeCode, self._closeReason)
        return waiter

    def drain(self) -> None:
        """
        The server shuts down: answer what waits in the queue (requests get
        ReplyShutdown, signals are dropped), answer every request read from
        now on with ReplyShutdown, and read again, so that new requests are
        answered at once. Running handlers go on.
        """
        self._shuttingDown = True
        while self._queue:
            self._dispatch(*self._queue.popleft())
        self._link.updateReading()

    def cancelHandlers(self) -> None:
        """Cancel the handlers running now that returned a Deferred."""
        for handler in list(self._pending or ()):
            handler.cancel()

    def violation(self, code: int, reason: str) -> None:
        """
        The client broke the protocol: nothing more it sends is handled. The
        messages read before are handled and answered, then the connection
        closes with C{code}. While closing already, C{code} replaces the
        close code if the Close frame is not sent yet.
        """
        if self.inputEnded or self.state is _CLOSED:
            return
        self._observer.violation(code)  # metrics
        self._log.warn(
            "protocol violation from {peer}: {reason}; closing the connection",
            peer=self._link.peer,
            reason=reason,
        )
        self.inputEnded = True
        self._violationCode = code
        self._violationReason = reason
        if self.state is _CLOSING:
            self._closeCode = code
            self._closeReason = reason
        self._pump()

    # Dispatch -------------------------------------------------------------

    def beginRead(self) -> None:
        """
        The link begins to process what one read brought: the requests it
        completes are timed from now.
        """
        if self.observing:
            self._readStarted = self._clock()
            self._repliedInRead = self._replyNames

    def endRead(self) -> None:
        """
        The link has processed a read and written what that sent: the
        requests of that read answered at once are counted, in the tally
        if they can all be (the common case, a few operations per read,
        whatever the number of requests).
        """
        names = self._repliedInRead
        if names is None:
            return
        self._repliedInRead = None
        if not names:
            return
        seconds = self._clock() - self._readStarted
        tally = self._tally
        count = len(names)
        try:
            if (
                tally is not None
                and seconds <= tally.bound
                and names.count(tally.name) == count
            ):
                tally.count += count
                tally.seconds += seconds * count
            else:
                self._countReplies(names, seconds)
        finally:
            names.clear()

    def _countReplies(self, names: list[str], seconds: float) -> None:
        """
        Count replies of one read that the tally cannot all take: those
        with the tally's name go in it if the read was short enough, the
        others are told to the observer, by name. If none had the tally's
        name, the tally follows the connection's requests: a new one, for
        the last name.

        :param names: The requests' names, one per reply.
        :param seconds: How long the read took.
        """
        observer = self._observer
        tally = self._tally
        tallyName = tally.name if tally is not None else None
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            if name == tallyName and tally is not None and seconds <= tally.bound:
                tally.count += count
                tally.seconds += seconds * count
            else:
                observer.replied(name, count, seconds)
        if tallyName not in counts and not self.disconnected:
            if tally is not None:
                observer.tallyDone(tally)
            self._tally = observer.tally(names[-1])

    def received(self, message: wire.Message) -> None:
        """A message was read (and parsed) while the connection is open."""
        # atLimit(), inline: called for every message.
        limit = self._limit
        started = self._readStarted
        if self._shuttingDown:
            self._dispatch(message, started)
        elif (
            self._queue
            or self.connectHookPending
            or self._inline
            or (limit is not None and self._busy >= limit)
        ):
            if self._queue is None:
                self._queue = deque()
            self._queue.append((message, started))
            self._link.updateReading()
        else:
            self._dispatch(message, started)
            if self._inline or (limit is not None and self._busy >= limit):
                self._link.updateReading()

    def _dispatch(self, message: wire.Message, started: float | None) -> None:
        """
        Handle C{message} now.

        :param started: When the read that brought it began (by the
            observer's clock), or C{None} if not observing.
        """
        kind = type(message)
        if kind is wire.Request:
            assert isinstance(message, wire.Request)
            if self._shuttingDown:
                reply = _specialReply(message, wire.MessageType.REPLY_SHUTDOWN)
                self._observer.requestDone(message.name, reply, None)  # metrics
                self._sendReply(reply)
            else:
                self._runRequest(message, started)
        elif kind is wire.Signal:
            assert isinstance(message, wire.Signal)
            if not self._shuttingDown:
                self._runSignal(message)
        elif kind is wire.RestoreSession or kind is wire.CloseSession:
            assert isinstance(message, (wire.RestoreSession, wire.CloseSession))
            if self._shuttingDown:
                self._sendReply(_specialReply(message, wire.MessageType.REPLY_SHUTDOWN))
            elif self._sessions is None:
                self._sendReply(
                    _specialReply(message, wire.MessageType.REPLY_SESSIONS_DISABLED)
                )
            else:
                self._runSessionRequest(message, self._sessions)
        else:
            self._events.emit(
                self._log,
                "server-only message",
                LogLevel.debug,
                "ignoring {kind} from {peer}: only servers send it",
                kind=kind.__name__,
                peer=self._link.peer,
            )

    def _refuse(self, message: wire.Message) -> None:
        """
        Answer a message read but not started before the connection began
        closing: requests get ReplyShutdown, the rest is dropped.
        """
        if isinstance(message, (wire.Request, wire.RestoreSession, wire.CloseSession)):
            self._sendReply(_specialReply(message, wire.MessageType.REPLY_SHUTDOWN))

    def _runRequest(self, request: wire.Request, started: float | None) -> None:
        """
        Run the application's request handler. The common case, a plain
        result returned at once, is encoded and sent here; anything else
        (a Deferred, a coroutine, a result of another type, one that cannot
        be encoded) takes the general path of L{_handleOutcome} and
        L{_replyWithResult}, whose checks and logs it gets.

        :param started: See L{_dispatch}.
        """
        self._busy += 1
        try:
            result = self._application.onRequest(
                self._connection,  # type: ignore[arg-type]
                request,
            )
        except BaseException:
            self._replyWithFailure(Failure(), request, started)
            self._handlerDone()
            return
        kind = type(result)
        if not (kind is _Payload or kind is bytes or kind is str or result is None):
            self._handleOutcome(
                result, request, self._replyWithResult, self._replyWithFailure, started
            )
            return
        try:
            # What Payload.coerce does, for these types.
            if kind is _Payload:
                assert isinstance(result, _Payload)
                data = result.data
                encoding = result.encoding
            elif kind is bytes:
                assert isinstance(result, bytes)
                data = result
                encoding = _BINARY
            elif kind is str:
                assert isinstance(result, str)
                data = result.encode("utf-8")
                encoding = _UTF8
            else:
                data = b""
                encoding = _BINARY
            reply = _encodeReply(
                request.identifier, data, encoding, self._link.messageBufferSize
            )
        except Exception:
            # The general path says why, and answers with an internal error.
            self._replyWithResult(result, request, started)
        else:
            names = self._repliedInRead  # metrics
            if names is not None:  # a request of the read being processed
                names.append(request.name)
            elif started is not None:
                self._observer.requestDone(request.name, reply, started)
            self._sendReply(reply)
        self._handlerDone()

    def _runSignal(self, signal: wire.Signal) -> None:
        self._traffic.signalsReceived += 1
        self._runHandler(
            self._application.onSignal,
            signal,
            _ignoreResult,
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
            result = hook(self._connection, message)  # type: ignore[arg-type]
        except BaseException:
            onFailure(Failure(), message)
            self._handlerDone()
            return
        self._handleOutcome(result, message, onResult, onFailure)

    def _handleOutcome(
        self,
        result: object,
        message: Any,
        onResult: Callable[..., None],
        onFailure: Callable[..., None],
        *extra: object,
    ) -> None:
        """
        Hand a handler's C{result} on to C{onResult} (or its failure to
        C{onFailure}), with C{message} and C{extra} as further arguments,
        once it is there: at once for a plain value, later for a Deferred
        or a coroutine.
        """
        if isinstance(result, Coroutine):
            result = Deferred.fromCoroutine(result)
        if not isinstance(result, Deferred):
            # Done at once, no Deferred needed.
            onResult(result, message, *extra)
            self._handlerDone()
            return
        self._pend(result)
        arguments = (message, *extra)
        result.addCallbacks(
            onResult, onFailure, callbackArgs=arguments, errbackArgs=arguments
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
                        self._link.messageBufferSize,
                    )
                )

            restored = sessions.restore(self._link, message.key, encode)
            reply = restored.addCallback(lambda _: encoded[-1])
        else:
            reply = sessions.clientClose(self._link).addCallback(
                lambda _: wire.encodeReply(identifier, b"", wire.Encoding.BINARY)
            )
        self._pend(reply)
        reply.addErrback(self._sessionRequestRefused, message)
        reply.addCallbacks(
            self._sendReply, self._sessionRequestFailed, errbackArgs=(message,)
        )
        reply.addBoth(self._inlineDone, reply)

    @staticmethod
    def _sessionRequestRefused(
        failure: Failure, message: wire.RestoreSession | wire.CloseSession
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
        return _specialReply(message, kind)

    def _sessionRequestFailed(
        self, failure: Failure, message: wire.RestoreSession | wire.CloseSession
    ) -> None:
        self._events.failure(
            self._log,
            "session request failed",
            "session request from {peer} failed; answering with an internal error",
            failure,
            peer=self._link.peer,
        )
        self._sendReply(_specialReply(message, wire.MessageType.REPLY_INTERNAL_ERROR))

    def _inlineDone(self, result: object, reply: Deferred[Any]) -> None:
        self._inline = False
        self._deferredDone(result, reply)

    # Replies --------------------------------------------------------------

    def _replyWithResult(
        self, result: object, request: wire.Request, started: float | None
    ) -> None:
        def build() -> bytes:
            payload = wire.Payload.coerce(result)  # type: ignore[arg-type]
            return wire.encodeReply(
                request.identifier,
                payload.data,
                payload.encoding,
                self._link.messageBufferSize,
            )

        reply = self._buildReply(request, build, "reply")
        self._observer.requestDone(request.name, reply, started)  # metrics
        self._sendReply(reply)

    def _replyWithFailure(
        self, failure: Failure, request: wire.Request, started: float | None
    ) -> None:
        error = failure.value
        if isinstance(error, RequestError):

            def build() -> bytes:
                assert isinstance(error, RequestError)
                return wire.encodeErrorReply(
                    request.identifier,
                    error.code,
                    error.message,
                    self._link.messageBufferSize,
                )

            reply = self._buildReply(request, build, "error reply")
            self._observer.requestDone(request.name, reply, started)  # metrics
            self._sendReply(reply)
            return
        cancelled = isinstance(error, CancelledError)
        if cancelled:
            self._events.emit(
                self._log,
                "request cancelled",
                LogLevel.warn,
                "request {name!r} from {peer} was cancelled; answering with an "
                "internal error",
                name=request.name,
                peer=self._link.peer,
            )
        else:
            self._events.failure(
                self._log,
                "request handler failed",
                "request handler for {name!r} from {peer} failed; answering "
                "with an internal error",
                failure,
                name=request.name,
                peer=self._link.peer,
            )
        reply = _specialReply(request, wire.MessageType.REPLY_INTERNAL_ERROR)
        self._observer.requestDone(request.name, reply, started, cancelled)
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
            self._events.emit(
                self._log,
                "unsendable reply",
                LogLevel.error,
                "{what} to request {name!r} from {peer} cannot be sent "
                "({error}); answering with an internal error",
                what=what,
                name=request.name,
                peer=self._link.peer,
                error=e,
            )
        except Exception:
            self._events.failure(
                self._log,
                "reply encoding failed",
                "encoding the {what} to request {name!r} from {peer} failed; "
                "answering with an internal error",
                what=what,
                name=request.name,
                peer=self._link.peer,
            )
        return _specialReply(request, wire.MessageType.REPLY_INTERNAL_ERROR)

    def _signalFailed(self, failure: Failure, signal: wire.Signal) -> None:
        if failure.check(CancelledError):
            self._events.emit(
                self._log,
                "signal cancelled",
                LogLevel.warn,
                "signal handler for {name!r} from {peer} was cancelled",
                name=signal.name,
                peer=self._link.peer,
            )
        else:
            self._events.failure(
                self._log,
                "signal handler failed",
                "signal handler for {name!r} from {peer} failed",
                failure,
                name=signal.name,
                peer=self._link.peer,
            )

    # Handlers finishing ---------------------------------------------------

    def _pend(self, handler: Deferred[Any]) -> None:
        """Keep C{handler} (running) to cancel it if the server must."""
        if self._pending is None:
            self._pending = set()
        self._pending.add(handler)

    def _deferredDone(self, result: object, handler: Deferred[Any]) -> None:
        if self._pending is not None:
            self._pending.discard(handler)
        self._handlerDone()

    def _handlerDone(self) -> None:
        """
        A handler finished and its reply (if any) was sent: start what waits,
        or finish closing.
        """
        self._busy -= 1
        state = self.state
        if state is _OPEN:
            if self._queue or self.inputEnded or not self._link.reading:
                self._pump()
        elif state is _CLOSING:
            if not self._busy:
                self._link.finishClosing(self._closeCode, self._closeReason)
        elif self.disconnected and not self._busy:
            self._events.summarise()  # what happened after the disconnect
        if self.disconnected or self._shuttingDown:
            # Only then does the server's bookkeeping care.
            self._handlerFinished()

    def _pump(self) -> None:
        """
        Start queued messages while there are free handler slots.
        """
        if self._pumping:
            return
        self._pumping = True
        # Not requests of a read being processed, if there is one: they
        # were read before.
        inRead, self._repliedInRead = self._repliedInRead, None
        try:
            while (
                self._queue
                and self.state is _OPEN
                and not self.connectHookPending
                and not self.atLimit()
            ):
                self._dispatch(*self._queue.popleft())
        finally:
            self._pumping = False
            self._repliedInRead = inRead
        if (
            self.inputEnded
            and self.state is _OPEN
            and not (self._queue or self._busy or self.connectHookPending)
        ):
            # Everything read before the violation is answered.
            self.closeGracefully(self._violationCode, self._violationReason)
        self._link.updateReading()


_Payload: Final = wire.Payload
_BINARY: Final = wire.Encoding.BINARY
_UTF8: Final = wire.Encoding.UTF8
_encodeReply: Final = wire.encodeReply


def _ignoreResult(result: object, message: object) -> None:
    """A signal handler's result is not sent anywhere."""


def _specialReply(
    message: wire.Request | wire.RestoreSession | wire.CloseSession,
    kind: wire.MessageType,
) -> bytes:
    return wire.encodeSpecialReply(kind, message.identifier)
