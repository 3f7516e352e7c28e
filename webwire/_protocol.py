# -*- test-case-name: tests.test_server -*-
"""
The server side of one WebWire connection: a thin Autobahn adapter.

A L{WebWireServerFactory} serves one application (an L{IWebWireServer}) on
any number of listening ports. Each connection gets a
L{WebWireServerProtocol}, which owns what touches the WebSocket and the
transport:

  - the upgrade (bounded request head, origin, paths, the application's
    C{beforeUpgrade}), then AcceptConf as the first message;
  - parsing every binary message with L{webwire.wire.parse} and handing it
    to its L{webwire._dispatch.Dispatcher}, the transport-free part that
    queues, runs the application's handlers at most
    L{ServerOptions.concurrency} at a time, builds every reply and orders
    a violation and a close after what was read before;
  - violations: any malformed message closes the connection (close code
    1002, 1003 for text messages, 1009 for oversized ones) without
    answering it: the messages read before it are still handled and
    answered, nothing after it is, and the Close frame follows the last
    reply;
  - dropping the connection when the client stays silent for the read
    timeout.

Closing: once the Close frame is sent, the output is flushed, FIN follows
and the server reads on (discarding) until the client closes its end, for
at most L{ServerOptions.closeTimeout}; then the connection is aborted.
Whatever the state, no message larger than the message buffer size is ever
buffered: its data is discarded as it arrives.

Flow control: one method, C{updateReading}, decides whether the transport
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

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from autobahn.exception import Disconnected as _SocketClosed
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import (
    Deferred,
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
from webwire._constants import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
)
from webwire._constants import HEARTBEAT as _HEARTBEAT
from webwire._constants import TIMER_SLACK as _EPSILON
from webwire._dispatch import ConnectionState, Dispatcher
from webwire._fastpath import FastPathProtocol
from webwire._handshake import cookiesOf, originAllowed
from webwire._hooks import callHook
from webwire.connection import Connection, HandshakeRequest
from webwire.errors import Disconnected, UpgradeRefused
from webwire.guard import GuardedConnection, lingeringClose
from webwire.interfaces import (
    ICluster,
    IUpgradeGuard,
)
from webwire.logonce import RepeatedEvents
from webwire.metrics import refusalReason
from webwire.sessions.registry import SessionRegistry
from webwire.sessions.session import Session

if TYPE_CHECKING:
    from webwire.server import WebWireServerFactory

__all__ = ["WebWireServerProtocol"]


_MAX_REQUEST_HEAD: Final = 16384
"""Bytes of an upgrade request's line and headers (twisted.web's limit)."""
_MAX_HEADERS: Final = 500
"""Header lines of an upgrade request (twisted.web's limit)."""

_CONNECTION_DONE: Final = Failure(ConnectionDone())
_SESSION_CLOSED: Final = wire.encodeSessionClosed()

_OPEN: Final = ConnectionState.OPEN
_CLOSED: Final = ConnectionState.CLOSED


class _StreamTransport(Protocol):
    """The parts of a stream transport (TCP, TLS, UNIX) the server uses."""

    def getPeer(self) -> IAddress: ...
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...


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

    dispatcher: Dispatcher
    """The transport-free part: what happens to the messages read."""

    def __init__(self) -> None:
        super().__init__()
        self.connection: Connection | None = None
        self._handshake: HandshakeRequest | None = None
        self.session: Session | None = None
        # The data of the message being received is dropped as it arrives.
        self._discarding = False
        # Frames cannot be parsed any more: every byte is dropped.
        self._streamBroken = False
        # Closing TCP: every byte is dropped until the client closes.
        self._lingering = False
        self._closeTimer: IDelayedCall | None = None
        self._handshakeStarted = False
        self.reading = True
        self._writeCongested = False
        self._bytesWhileCongested = 0
        self._lastRead = 0.0
        self._deadline: IDelayedCall | None = None
        # What one message can make happen again and again is logged once.
        self.events = RepeatedEvents("")

    def __repr__(self) -> str:
        dispatcher = getattr(self, "dispatcher", None)
        state = dispatcher.state.value if dispatcher is not None else "new"
        return f"<WebWireServerProtocol {self.peer} {state}>"

    @property
    def _stream(self) -> _StreamTransport:
        return cast(_StreamTransport, self.transport)

    # What the server uses -------------------------------------------------

    @property
    def runningHandlers(self) -> int:
        """How many of this connection's handlers run now."""
        return self.dispatcher.runningHandlers

    @property
    def isDisconnected(self) -> bool:
        """C{True} once the connection is closed."""
        return self.dispatcher.disconnected

    @property
    def isWriteCongested(self) -> bool:
        """
        C{True} while the transport's write buffer is full (the client does
        not read what it is sent); reading from the client then pauses.
        """
        return self._writeCongested

    @property
    def isLingering(self) -> bool:
        """
        C{True} once the server closes the TCP connection: it has sent (or
        is sending) its FIN and reads on, discarding, only to see the
        client's end, for at most the close timeout.
        """
        return self._lingering

    def drain(self) -> None:
        """
        The server shuts down: see L{Dispatcher.drain}.
        """
        self.dispatcher.drain()

    def cancelHandlers(self) -> None:
        """Cancel the handlers running now that returned a Deferred."""
        self.dispatcher.cancelHandlers()

    # What the Connection uses ---------------------------------------------

    @property
    def isActive(self) -> bool:
        """
        C{True} while the connection is open and not closing (after a
        violation it is closing, though what was read before is handled).
        """
        return self.dispatcher.isActive

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

    def sendSignal(self, data: bytes) -> None:
        """
        Send an encoded signal now, and count it.

        :raises Disconnected: If the connection is closed.
        """
        self.sendUnsolicited(data)
        self.traffic.signalsSent += 1

    def sendUnsolicited(self, data: bytes) -> None:
        """
        Send an encoded message that answers no request now.

        :raises Disconnected: If the connection is closed.
        """
        if (
            self.dispatcher.state is _CLOSED
            or self.state != WebSocketProtocol.STATE_OPEN
        ):
            raise Disconnected(f"connection to {self.peer} is closed")
        self._write(data)

    def closeGracefully(self, code: int, reason: str) -> Deferred[None]:
        """
        Close after the running handlers: see L{Dispatcher.closeGracefully}.

        :returns: A Deferred firing with C{None} once the connection is closed.
        """
        return self.dispatcher.closeGracefully(code, reason)

    # Autobahn hooks -------------------------------------------------------

    def _connectionMade(self) -> None:
        factory = self.factory
        self.dispatcher = Dispatcher(
            self,
            factory.application,
            factory.observer,
            factory.traffic,
            factory.sessions,
            self.events,
            partial(factory.handlerFinished, self),
        )
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

    def beforeRead(self) -> None:
        self.dispatcher.beginRead()

    def afterRead(self) -> None:
        self.dispatcher.endRead()

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
        if self._discarding or self.dispatcher.ignoringInput():
            return
        super().onMessageFrameData(payload)

    def onMessageEnd(self) -> None:
        dispatcher = self.dispatcher
        # dispatcher.ignoringInput(), inline: called for every message.
        if self._discarding or dispatcher.inputEnded or dispatcher.state is not _OPEN:
            self._discarding = False
            self.message_data = []
            return
        super().onMessageEnd()

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
        if factory.isShuttingDown:
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
        guard = callHook(factory.application.beforeUpgrade, self._handshake)
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
        self.connection = Connection(
            self,
            self._stream.getPeer(),
            self._handshake,
            datetime.fromtimestamp(clock.seconds(), UTC),
        )
        self.dispatcher.open(self.connection, factory.options.concurrency)
        self.sendMessage(factory.acceptConf, isBinary=True)
        if getattr(self.transport, "producer", None) is not None:
            # Taken over from a twisted.web channel (WebWireResource), which
            # registered itself as the transport's producer and is gone now.
            self._stream.unregisterProducer()
        self._stream.registerProducer(_WriteMonitor(self), True)
        if self.guard is not None:
            self.guard.upgraded()
        factory.connectionOpened(self)
        self._lastRead = clock.seconds()
        self._deadline = clock.callLater(
            factory.options.readTimeout, self._checkDeadline
        )
        self.dispatcher.startConnectHook()
        self.updateReading()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        factory = self.factory
        self._lastRead = factory.reactor.seconds()
        dispatcher = self.dispatcher
        if dispatcher.inputEnded or dispatcher.state is not _OPEN:
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
        dispatcher.received(message)

    def onPing(self, payload: bytes) -> None:
        self._lastRead = self.factory.reactor.seconds()
        super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        self._lastRead = self.factory.reactor.seconds()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        dispatcher = self.dispatcher
        if dispatcher.disconnected:
            return
        opened = dispatcher.closed()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if opened:
            self.factory.connectionClosed(self)
            why = f"WebSocket closed (code {code}): {reason or 'no reason'}"
            failure = Failure(ConnectionDone(why) if wasClean else ConnectionLost(why))
            hook = callHook(
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
        dispatcher.releaseCloseWaiters()

    def _violation(self, code: int, reason: str) -> None:
        """A violation, unless the connection is lingering already."""
        if not self._lingering:
            self.dispatcher.violation(code, reason)

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

    # Sending --------------------------------------------------------------

    def sendReply(self, data: bytes) -> None:
        """
        Send an encoded reply; dropped (and logged once) if the connection
        is closed.
        """
        if (
            self.dispatcher.state is _CLOSED
            or self.state != WebSocketProtocol.STATE_OPEN
        ):
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
        try:
            self.sendMessage(data, isBinary=True)
        except _SocketClosed as e:
            raise Disconnected(f"connection to {self.peer} is closed") from e

    def _setWriteCongested(self, congested: bool) -> None:
        self._writeCongested = congested
        if not congested:
            self._bytesWhileCongested = 0
        self.updateReading()

    # Reading, deadlines and closing ---------------------------------------

    def updateReading(self) -> None:
        """
        Pause or resume reading from the transport, as the connection's state
        asks for; the single place that decides it.
        """
        dispatcher = self.dispatcher
        if dispatcher.state is _CLOSED:
            return
        # While closing, read on (discarding) to see the client's close.
        shouldRead = dispatcher.ignoringInput() or not (
            self._writeCongested or dispatcher.waitingOnHandlers()
        )
        if shouldRead is self.reading:
            return
        self.reading = shouldRead
        if shouldRead:
            self._lastRead = self.factory.reactor.seconds()
            self._stream.resumeProducing()
        else:
            self._stream.pauseProducing()

    def _checkDeadline(self) -> None:
        self._deadline = None
        dispatcher = self.dispatcher
        if dispatcher.state is _CLOSED:
            return
        timeout = self.factory.options.readTimeout
        now = self.factory.reactor.seconds()
        if dispatcher.waitingOnHandlers() or (
            dispatcher.ignoringInput() and dispatcher.runningHandlers
        ):
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

    def finishClosing(self, code: int, reason: str) -> None:
        """Every handler is done: send the Close frame with C{code}."""
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.sendCloseFrame(
                code=code,
                reasonUtf8=reason.encode("utf-8")[:123] or None,
            )
        # Without waiting for the peer's Close frame (a peer that never
        # answers cannot hold the connection): flush, FIN, read until the
        # peer closes, abort after the close timeout.
        self._closeConnection(abort=False)

    def _abort(self) -> None:
        self.dispatcher.abort()
        self._stream.abortConnection()
