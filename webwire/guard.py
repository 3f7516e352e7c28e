# -*- test-case-name: tests.test_guard -*-
"""
What every accepted TCP connection goes through before it is a WebWire
connection: a count and a deadline, the same for a bare
L{webwire.server.WebWireServerFactory} and a L{webwire.web.WebWireSite}.

A L{ConnectionGuard} wraps each protocol its factory builds at the TCP
accept. From then on the connection

  - counts against L{ServerOptions.maxConnections} until its TCP connection
    is lost; past the limit it is refused at once: HTTP 503, then a close
    that takes at most L{ServerOptions.closeTimeout};
  - must complete the WebSocket opening handshake within
    L{ServerOptions.openHandshakeTimeout} of the accept, or be aborted. A
    web site may suspend that deadline while it answers a plain HTTP
    request and restart it for the next one (keep-alive), so that every
    request, not every connection, must arrive in time.

The wrapper stays the protocol of the transport (it only passes reads
on: writes go to the transport directly); when twisted.web hands an
upgraded connection to the WebSocket protocol, the wrapper passes reads on
to that one (L{GuardedConnection.takeOver}), so the count ends when the TCP
connection does, whoever holds it then. A wrapped protocol that has a
C{guard} attribute is given its L{GuardedConnection} there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ConnectionGuard", "GuardedConnection", "lingeringClose"]

LIMIT_WARNING_INTERVAL = 60.0
"""Seconds between two warnings that the connection limit refuses clients."""

SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 25\r\n"
    b"Connection: close\r\n\r\n"
    b"Too many connections now\n"
)


def lingeringClose(transport: Any, clock: IReactorTime, timeout: float) -> IDelayedCall:
    """
    Close C{transport} so that what is queued still reaches the peer: send
    FIN once the output is flushed (TLS: close_notify) and keep reading, so
    that the peer's close is seen and unread input cannot turn the close
    into a reset; abort after C{timeout} seconds whatever the peer does.

    Any producer registered with the transport is unregistered first: a
    paused producer would otherwise be resumed when the buffer drains,
    instead of the connection being closed.

    :returns: The abort timer; cancel it when the connection is lost.
    """
    if getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()
    halfClose = getattr(transport, "loseWriteConnection", None)
    if getattr(transport, "_aborting", False):
        pass  # aborted already: its connectionLost is on its way
    elif halfClose is None or ISSLTransport.providedBy(transport):
        transport.loseConnection()
    else:
        halfClose()
        resume = getattr(transport, "resumeProducing", None)
        if resume is not None:
            resume()
    return clock.callLater(timeout, transport.abortConnection)


class GuardedConnection(Protocol):
    """
    One accepted connection under a L{ConnectionGuard}: the transport's
    protocol, which passes reads on to the protocol it wraps.

    :ivar wrappedProtocol: The protocol that has the connection now.
    :ivar refused: Whether the connection was refused at the accept.
    """

    def __init__(self, guard: ConnectionGuard, wrappedProtocol: IProtocol) -> None:
        self.factory = guard
        self.wrappedProtocol = wrappedProtocol
        self._deadline: IDelayedCall | None = None
        self._closeTimer: IDelayedCall | None = None
        self.refused = False

    def takeOver(self, protocol: IProtocol) -> None:
        """From now on C{protocol} has the connection (and its reads)."""
        self.wrappedProtocol = protocol
        if hasattr(protocol, "guard"):
            cast(Any, protocol).guard = self

    def makeConnection(self, transport: Any) -> None:
        self.connected = True
        self.transport = transport
        guard = self.factory
        if not guard._admit(self):
            # Refused before the wrapped protocol ever sees the connection.
            self.refused = True
            transport.write(SERVICE_UNAVAILABLE)
            self._closeTimer = lingeringClose(
                transport, guard.clock, guard.closeTimeout
            )
            return
        self.restartDeadline()
        self.takeOver(self.wrappedProtocol)
        self.wrappedProtocol.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return  # read only to see the client's close
        self.wrappedProtocol.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.suspendDeadline()
        if self._closeTimer is not None and self._closeTimer.active():
            self._closeTimer.cancel()
        self._closeTimer = None
        self.factory._forget(self)
        self.connected = False
        if not self.refused:
            self.wrappedProtocol.connectionLost(reason)

    # Deadline --------------------------------------------------------------

    def upgraded(self) -> None:
        """The WebSocket opening handshake is complete: no deadline now."""
        self.suspendDeadline()

    def suspendDeadline(self) -> None:
        """Stop the handshake deadline (e.g. while a request is answered)."""
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def restartDeadline(self) -> None:
        """Give the client the handshake timeout again, from now."""
        self.suspendDeadline()
        self._deadline = self.factory.clock.callLater(
            self.factory.handshakeTimeout, self._timedOut
        )

    def _timedOut(self) -> None:
        self._deadline = None
        self.factory._log.debug(
            "{peer} did not complete its request within {timeout} seconds; "
            "dropping the connection",
            peer=cast(Any, self.transport).getPeer(),
            timeout=self.factory.handshakeTimeout,
        )
        cast(Any, self.transport).abortConnection()


class ConnectionGuard:
    """
    Counts and times the connections of one listening factory (see the
    module docstring).

    :ivar limit: Connections admitted at once; 0 means no limit.
    :ivar handshakeTimeout: Seconds from the accept (or from
        L{GuardedConnection.restartDeadline}) to the end of the opening
        handshake.
    :ivar closeTimeout: Seconds a refused connection may take to close.
    :ivar clock: What the timers are scheduled with.
    :ivar onRefused: Called with no arguments for each connection refused
        at the limit (e.g. to count it in metrics).
    """

    _log = Logger()

    def __init__(
        self,
        limit: int,
        handshakeTimeout: float,
        closeTimeout: float,
        clock: IReactorTime,
        onRefused: Callable[[], object] = lambda: None,
    ) -> None:
        self.limit = limit
        self.handshakeTimeout = handshakeTimeout
        self.closeTimeout = closeTimeout
        self.clock = clock
        self.onRefused = onRefused
        self._admitted: set[GuardedConnection] = set()
        self._refusedSinceWarning = 0
        self._nextWarning = float("-inf")

    @property
    def count(self) -> int:
        """Connections admitted and not yet lost."""
        return len(self._admitted)

    def wrap(self, protocol: IProtocol) -> GuardedConnection:
        """Guard the connection C{protocol} is built for."""
        return GuardedConnection(self, protocol)

    def _admit(self, connection: GuardedConnection) -> bool:
        if self.limit and len(self._admitted) >= self.limit:
            self.onRefused()
            self._refusedSinceWarning += 1
            now = self.clock.seconds()
            if now >= self._nextWarning:
                # At most one warning per interval, however many refusals.
                self._nextWarning = now + LIMIT_WARNING_INTERVAL
                self._log.warn(
                    "{limit} connections reached; refused {count} with HTTP 503 "
                    "(warned at most every {interval} seconds)",
                    limit=self.limit,
                    count=self._refusedSinceWarning,
                    interval=LIMIT_WARNING_INTERVAL,
                )
                self._refusedSinceWarning = 0
            return False
        self._admitted.add(connection)
        return True

    def _forget(self, connection: GuardedConnection) -> None:
        self._admitted.discard(connection)
