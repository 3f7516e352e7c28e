# -*- test-case-name: tests.test_server -*-
"""
The WebWire server: L{WebWireServerFactory} serves one application (an
L{IWebWireServer}) on any number of ports; each connection is a
L{WebWireServerProtocol} (see L{webwire._protocol}).
"""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import (
    Deferred,
    fail,
    gatherResults,
)
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorTime,
)
from twisted.logger import Logger

from webwire._constants import CLOSE_GOING_AWAY
from webwire._handshake import acceptDeflate
from webwire._protocol import WebWireServerProtocol
from webwire._version import __version__
from webwire.cluster.local import LocalCluster
from webwire.errors import SessionsDisabled
from webwire.guard import ConnectionGuard, GuardedConnection
from webwire.interfaces import (
    IConnection,
    IServerCluster,
    ISessionKeyGenerator,
    ISessionManager,
    IWebWireServer,
)
from webwire.metrics import NULL_OBSERVER, IServerObserver
from webwire.options import ServerOptions
from webwire.sessions.keys import RandomKeyGenerator
from webwire.sessions.registry import SessionRegistry
from webwire.traffic import Traffic

__all__ = ["WebWireServerFactory", "WebWireServerProtocol"]


def _counted(n: int, noun: str) -> str:
    """C{"1 handler"}, C{"2 handlers"}."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class WebWireServerFactory(WebSocketServerFactory):
    """
    Serves one WebWire application; listen with it on any number of ports.

    Upgrades are accepted on any path, without a WebSocket sub-protocol and
    without compression, as the original server does.

    :ivar application: The L{IWebWireServer} served.
    :ivar options: The L{ServerOptions} in force.
    :ivar cluster: The L{ICluster} that reaches connections beyond one.
    :ivar observer: The L{webwire.metrics.IServerObserver} told what happens.
    :ivar traffic: The L{Traffic} of every connection: messages, bytes and
        signals received and sent since the server was made.
    """

    protocol = WebWireServerProtocol  # type: ignore[assignment]
    _log = Logger()

    def __init__(
        self,
        application: IWebWireServer,
        options: ServerOptions | None = None,
        *,
        sessionManager: ISessionManager | None = None,
        keyGenerator: ISessionKeyGenerator | None = None,
        cluster: IServerCluster | None = None,
        reactor: IReactorTime | None = None,
        observer: IServerObserver | None = None,
    ) -> None:
        """
        :param application: The application; it must provide
            L{IWebWireServer}.
        :param options: Server settings; L{ServerOptions} defaults if
            omitted.
        :param sessionManager: What persists sessions; a
            L{webwire.sessions.FileSessionManager} in C{./wwrsess} if omitted
            (and sessions are enabled).
        :param keyGenerator: What makes session keys; a
            L{webwire.sessions.RandomKeyGenerator} if omitted.
        :param cluster: How application code reaches connections beyond
            one (see L{ICluster}) and what counts each session's
            connections; a L{webwire.cluster.LocalCluster} (this server
            only) if omitted. It serves this server only.
        :param reactor: What timers (read deadline, shutdown timeout) are
            scheduled with; the global reactor if omitted.
        :param observer: What the server reports what happens to, e.g. a
            L{webwire.metrics.ServerMetrics}; nothing if omitted.
        :raises TypeError: If an argument does not provide its interface.
        :raises ValueError: If a session manager or key generator is given
            while sessions are disabled.
        :raises RuntimeError: If C{cluster} serves another server.
        """
        if not IWebWireServer.providedBy(application):
            raise TypeError(f"{application!r} does not provide IWebWireServer")
        super().__init__(server=f"WebWire/{__version__}", reactor=reactor)
        self.application = application
        self.observer: IServerObserver = (
            observer if observer is not None else NULL_OBSERVER
        )
        self.traffic = Traffic()
        self.options = options if options is not None else ServerOptions()
        if cluster is None:
            cluster = LocalCluster()
        elif not IServerCluster.providedBy(cluster):
            raise TypeError(f"{cluster!r} does not provide IServerCluster")
        self.cluster: IServerCluster = cluster
        self.sessions = self._makeSessions(sessionManager, keyGenerator)
        cluster.attach(self)  # last: a server that failed to be made has none
        self.observer.attach(self)
        self.acceptConf = self.options.acceptConf()
        size = self.options.messageBufferSize
        self.setProtocolOptions(
            maxMessagePayloadSize=size,
            maxFramePayloadSize=size,
            openHandshakeTimeout=self.options.openHandshakeTimeout,
            closeHandshakeTimeout=0,
            # Text messages are refused (1003) whatever they hold: no need
            # to validate their UTF-8.
            utf8validateIncoming=False,
            maxConnections=self.options.maxConnections,
            # Origins are checked in onConnect (same-origin plus the allowed
            # list); Autobahn's own check is left open. allowNullOrigin must
            # always be passed: each call resets it.
            allowedOrigins=["*"],
            allowNullOrigin=True,
            perMessageCompressionAccept=(
                acceptDeflate if self.options.compression else lambda offers: None
            ),
        )
        self.guard = ConnectionGuard(
            self.options.maxConnections,
            self.options.openHandshakeTimeout,
            self.options.closeTimeout,
            self.reactor,
            lambda: self.observer.handshakeRefused("limit"),  # metrics
        )
        self._protocols: set[WebWireServerProtocol] = set()
        self._shuttingDown = False
        self._draining = False
        self._shutdownTimer: IDelayedCall | None = None
        self._shutdownWaiters: list[Deferred[None]] = []
        self._shutdownDone = False

    def buildProtocol(self, addr: IAddress) -> GuardedConnection:  # type: ignore[override]
        """
        The protocol of a connection accepted on a port this factory listens
        on, under its L{ConnectionGuard} (connection limit and opening
        handshake deadline, both from the accept).
        """
        return self.guard.wrap(self.buildWebSocketProtocol(addr))

    def buildWebSocketProtocol(self, addr: IAddress) -> WebWireServerProtocol:
        """
        The protocol of a connection that is already counted and timed
        elsewhere (by the L{webwire.web.WebWireSite} a
        L{webwire.resource.WebWireResource} serves it in).
        """
        protocol: object = super().buildProtocol(addr)
        assert isinstance(protocol, WebWireServerProtocol)
        return protocol

    def _makeSessions(
        self,
        manager: ISessionManager | None,
        keyGenerator: ISessionKeyGenerator | None,
    ) -> SessionRegistry | None:
        if not self.options.sessions:
            if manager is not None or keyGenerator is not None:
                raise ValueError(
                    "a session manager or key generator was given, but sessions "
                    "are disabled"
                )
            return None
        if manager is None:
            from webwire.sessions.file import FileSessionManager

            manager = FileSessionManager(clock=self.reactor)
        if not ISessionManager.providedBy(manager):
            raise TypeError(f"{manager!r} does not provide ISessionManager")
        if keyGenerator is None:
            keyGenerator = RandomKeyGenerator()
        if not ISessionKeyGenerator.providedBy(keyGenerator):
            raise TypeError(f"{keyGenerator!r} does not provide ISessionKeyGenerator")
        return SessionRegistry(
            manager,
            keyGenerator,
            self.options.maxSessionConnections,
            self.reactor,
            self.cluster,
            self.observer,
        )

    @property
    def sessionManager(self) -> ISessionManager | None:
        """The session manager, or C{None} if sessions are disabled."""
        return self.sessions.manager if self.sessions is not None else None

    def closeSession(self, key: str) -> Deferred[None]:
        """
        Close session C{key} on every connection that holds it, on this
        server and, with a L{webwire.cluster.redis.RedisCluster}, on every other:
        each is told, and the session manager forgets the session once (see
        L{ICluster.closeSession}).

        :returns: A Deferred that fires when the session manager is done.
        """
        if self.sessions is None:
            return fail(SessionsDisabled("the server has no sessions"))
        return self.cluster.closeSession(key)

    @property
    def activeSessionCount(self) -> int:
        """How many sessions are held by at least one connection now."""
        return self.sessions.activeCount if self.sessions is not None else 0

    def sessionConnections(self, key: str) -> list[IConnection]:
        """The connections that hold session C{key} now."""
        if self.sessions is None:
            return []
        return [
            c.connection
            for c in self.sessions.channelsOf(key)
            if c.connection is not None
        ]

    @property
    def connections(self) -> list[IConnection]:
        """The connections that are open now."""
        return [
            p.connection
            for p in self._protocols
            if p.connection is not None and not p.isDisconnected
        ]

    @property
    def isShuttingDown(self) -> bool:
        """C{True} once L{shutdown} was called."""
        return self._shuttingDown

    def shutdown(self) -> Deferred[None]:
        """
        Shut down gracefully.

        From now on new WebSocket handshakes are refused with HTTP 503, new
        requests on open connections are answered with ReplyShutdown, and
        signals are dropped. Once every running handler has finished (their
        replies are delivered), every connection is closed with code 1001.
        Handlers still running after L{ServerOptions.shutdownTimeout} are
        cancelled. Listening ports are not touched: stop them afterwards
        (L{webwire.service.WebWireService} does).

        :returns: A Deferred (a new one for each call) that fires with
            C{None} when every connection is closed.
        """
        waiter: Deferred[None] = Deferred()
        if self._shutdownDone:
            waiter.callback(None)
            return waiter
        self._shutdownWaiters.append(waiter)
        if not self._shuttingDown:
            self._shuttingDown = True
            self._draining = True
            handlers, connections = self.runningHandlers, len(self.connections)
            self._log.info(
                "{application}: shutting down: {handlers} running on {connections}",
                application=type(self.application).__name__,
                handlers=_counted(handlers, "handler"),
                connections=_counted(connections, "connection"),
            )
            for protocol in list(self._protocols):
                protocol.drain()
            timeout = self.options.shutdownTimeout
            if timeout is not None:
                self._shutdownTimer = self.reactor.callLater(
                    timeout, self._shutdownTimedOut
                )
            self._checkDrained()
        return waiter

    @property
    def runningHandlers(self) -> int:
        """How many request and signal handlers run now, on every connection."""
        return sum(p.runningHandlers for p in self._protocols)

    @property
    def servedProtocols(self) -> list[WebWireServerProtocol]:
        """
        The protocols of the connections that are open, or closed with
        handlers still running (for tests and diagnostics).
        """
        return list(self._protocols)

    def cancelHandlers(self) -> None:
        """
        Cancel every running handler that returned a Deferred, on every
        connection: what L{ServerOptions.shutdownTimeout} does when it
        expires. Each cancelled request is answered with an internal error.
        """
        for protocol in list(self._protocols):
            protocol.cancelHandlers()

    def _checkDrained(self) -> None:
        if not self._draining or self.runningHandlers:
            return
        self._draining = False
        if self._shutdownTimer is not None and self._shutdownTimer.active():
            self._shutdownTimer.cancel()
        self._shutdownTimer = None
        closing = [
            p.closeGracefully(CLOSE_GOING_AWAY, "server shutting down")
            for p in list(self._protocols)
            if not p.isDisconnected
        ]
        gatherResults(closing).addCallback(self._shutdownComplete)

    def _shutdownTimedOut(self) -> None:
        self._shutdownTimer = None
        self._log.warn(
            "{handlers} handlers still running after {timeout} seconds; "
            "cancelling them",
            handlers=self.runningHandlers,
            timeout=self.options.shutdownTimeout,
        )
        self.cancelHandlers()

    def _shutdownComplete(self, result: object) -> None:
        self._shutdownDone = True
        self._log.info(
            "{application}: shutdown complete",
            application=type(self.application).__name__,
        )
        waiters, self._shutdownWaiters = self._shutdownWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # What each connection reports (see WebWireServerProtocol's "What
    # the server uses" for what the server asks of it). Shutdown and drain
    # bookkeeping lives here and nowhere else.

    def connectionOpened(self, protocol: WebWireServerProtocol) -> None:
        """A connection completed its WebSocket handshake."""
        self._protocols.add(protocol)
        self.observer.connectionOpened()  # metrics
        if self._shuttingDown:
            protocol.drain()
            if not self._draining:
                # The handshake raced with the end of a shutdown.
                protocol.closeGracefully(CLOSE_GOING_AWAY, "server shutting down")

    def connectionClosed(self, protocol: WebWireServerProtocol) -> None:
        """An open connection closed; its handlers may still run."""
        if protocol.connection is not None:
            self.cluster.connectionClosed(protocol.connection)
        if not protocol.runningHandlers:
            self._forget(protocol)

    def handlerFinished(self, protocol: WebWireServerProtocol) -> None:
        """
        A handler of a connection that is closed, or of any connection
        while the server shuts down, finished (its reply is sent).
        """
        if protocol.isDisconnected and not protocol.runningHandlers:
            self._forget(protocol)
        if self._draining:
            self._checkDrained()

    def _forget(self, protocol: WebWireServerProtocol) -> None:
        """The connection is closed and its handlers are done."""
        self._protocols.discard(protocol)
        if self.sessions is not None:
            self.sessions.detach(protocol)
