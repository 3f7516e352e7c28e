# -*- test-case-name: tests.test_server -*-
"""
The zope.interface contracts every layer of WebWire programs against.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeAlias

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from collections.abc import Mapping

    from webwire.client import WebWireClient
    from webwire.cluster._host import ClusterHost
    from webwire.sessions.session import Session, SessionLookupResult
    from webwire.wire import Encoding, PayloadLike, Request, Signal

__all__ = [
    "ICluster",
    "IConnection",
    "IServerCluster",
    "IHandshakeRequest",
    "IUpgradeGuard",
    "ISessionKeyGenerator",
    "ISessionManager",
    "IWebWireClientHooks",
    "IWebWireServer",
    "RequestResult",
]

RequestResult: TypeAlias = "Deferred[Any] | Coroutine[Any, Any, Any] | PayloadLike"
"""What a request handler may return (see L{IWebWireServer.onRequest})."""


class IHandshakeRequest(Interface):
    """
    The HTTP request that opened a WebSocket connection.
    """

    path = Attribute("The request path, e.g. C{'/'} (C{str}).")
    host = Attribute("The C{Host} header without port (C{str}).")
    headers = Attribute(
        "The request headers, names in lower case (C{Mapping[str, str]})."
    )
    params = Attribute("The query parameters (C{Mapping[str, list[str]]}).")
    origin = Attribute("The C{Origin} header, or C{None} (C{str | None}).")
    cookies = Attribute("The request's cookies (C{Mapping[str, str]}).")
    peer = Attribute("The client's address (C{IAddress}).")


class IConnection(Interface):
    """
    One client connection, as the application's hooks see it.
    """

    peer = Attribute("The client's address (C{IAddress}).")
    creation = Attribute("When the connection was opened (aware C{datetime}, UTC).")
    request = Attribute("The handshake request (L{IHandshakeRequest}).")
    isActive = Attribute(
        "C{True} until the connection starts closing (C{bool}): after that, "
        "nothing more is read from it."
    )

    def signal(
        name: str = "",
        payload: PayloadLike = None,
        encoding: Encoding | None = None,
    ) -> None:
        """
        Send a signal to the client, at once.

        :param name: 0-255 printable ASCII characters.
        :param payload: C{bytes} (binary), C{str} (UTF-8 unless C{encoding}
            says otherwise), a L{webwire.wire.Payload}, or C{None}.
        :param encoding: Override the encoding implied by C{payload}; a
            C{str} payload is encoded accordingly.
        :raises webwire.errors.InvalidMessage: If the signal must not be sent
            (no name and no payload, bad name, odd or empty UTF-16 payload).
        :raises webwire.errors.MessageTooLarge: If it exceeds the message
            buffer size.
        :raises webwire.errors.Disconnected: If the connection is closed.
        """

    session = Attribute(
        "The connection's session (L{webwire.sessions.Session}), or C{None}."
    )

    def createSession(info: Mapping[str, Any] | None = None) -> Deferred[Session]:
        """
        Create a session on this connection.

        The client is told at once (a session-created notification, so it
        precedes the reply of the request being handled); then the session
        manager stores it.

        :param info: Any JSON object to keep with the session (e.g. the
            user's name); it is sent to the client too.
        :returns: A Deferred that fires with the new session once the
            session manager has stored it (a failure to store it is logged,
            and the session stays active on this connection); or fails with
            L{webwire.errors.SessionsDisabled},
            L{webwire.errors.SessionActive} if the connection has one
            already, L{webwire.errors.Disconnected}, or C{ValueError} if the
            key generator produced an invalid key.
        """

    def closeSession() -> Deferred[None]:
        """
        Close this connection's session, and tell the client.

        The session is destroyed (and the session manager's close hook
        called) only if no other connection holds it, on any process of
        the cluster. Without a session, nothing happens. To close it on
        every connection, use L{ICluster.closeSession}.

        :returns: A Deferred that fires once the session manager is done, or
            fails with L{webwire.errors.SessionsDisabled}.
        """

    cluster = Attribute(
        "The L{ICluster} of the server that holds the connection: how a "
        "handler reaches other connections (a session's, a topic's, all)."
    )

    def close() -> Deferred[None]:
        """
        Close the connection gracefully; calling it again does no harm.

        From now on everything the client sends (but heartbeats) is dropped
        without reply. Handlers already running finish and their replies are
        sent; then the connection is closed with code 1000.

        :returns: A Deferred that fires with C{None} once the connection is
            closed.
        """


class ICluster(Interface):
    """
    Reaches connections wherever they are: on this server only
    (L{webwire.cluster.LocalCluster}, the default) or on every server
    process sharing a Redis (L{webwire.cluster.redis.RedisCluster}).

    Signals go to every connection of a session key, to every connection
    subscribed to a topic, or to every connection. Delivery is at most
    once and in order per sender: connections of the sender's process get
    a signal at once, the others when Redis hands it to their process;
    nothing is queued for connections that are not there at that moment.

    This is what applications call (as C{factory.cluster} or, in a
    handler, C{connection.cluster}); what the server itself calls is
    L{IServerCluster}, which every cluster also provides.
    """

    def signalSession(
        key: str,
        name: str = "",
        payload: PayloadLike = None,
        encoding: Encoding | None = None,
    ) -> Deferred[None]:
        """
        Send a signal to every connection that holds session C{key}.

        The name, payload and encoding are as for L{IConnection.signal}.

        :returns: A Deferred that fires once the signal is handed to every
            process (at once on this server; fails, after this server's
            connections got it, if the other processes cannot be reached).
        :raises webwire.errors.InvalidMessage: If the signal must not be sent.
        :raises webwire.errors.MessageTooLarge: If it exceeds the message
            buffer size.
        """

    def broadcast(
        name: str = "",
        payload: PayloadLike = None,
        encoding: Encoding | None = None,
    ) -> Deferred[None]:
        """
        Send a signal to every open connection (see L{signalSession}).
        """

    def publish(
        topic: str,
        name: str = "",
        payload: PayloadLike = None,
        encoding: Encoding | None = None,
    ) -> Deferred[None]:
        """
        Send a signal to every connection subscribed to C{topic} (see
        L{signalSession}).

        :raises ValueError: If C{topic} is not 1 to 255 bytes of UTF-8.
        """

    def subscribe(connection: IConnection, topic: str) -> None:
        """
        Subscribe C{connection} to C{topic}: it gets what is published to
        it from now on, until it is unsubscribed or closes. Subscribing
        again does nothing.

        :raises ValueError: If C{topic} is not 1 to 255 bytes of UTF-8.
        :raises webwire.errors.Disconnected: If the connection is closed.
        """

    def unsubscribe(connection: IConnection, topic: str) -> None:
        """
        End the subscription of C{connection} to C{topic}, if it has one.
        """

    def topicsOf(connection: IConnection) -> frozenset[str]:
        """The topics C{connection} is subscribed to."""

    def subscribers(topic: str) -> list[IConnection]:
        """The connections of this server subscribed to C{topic}."""

    def closeSession(key: str) -> Deferred[None]:
        """
        Close session C{key}: every connection that holds it, on any
        process, is told (a session-closed notification), and the session
        is destroyed: the session manager's close hook runs once, on this
        process, whether or not any connection held the session.

        :returns: A Deferred that fires once the close hook is done; it
            fails if the hook failed or the other processes could not be
            told (the session is destroyed all the same).
        """


class IServerCluster(ICluster):
    """
    The side of a cluster that its server calls: it is attached to the
    server, told of closed connections, and counts each session's
    connections (across processes for a Redis cluster), which is how the
    maximum connections per session and "the last connection anywhere"
    are decided.
    """

    def attach(server: ClusterHost) -> None:
        """
        Serve one server (a L{webwire.server.WebWireServerFactory}): called
        by it when it is made.

        :raises RuntimeError: If the cluster serves another server already.
        """

    def connectionClosed(connection: IConnection) -> None:
        """Forget the subscriptions of a connection that closed."""

    def reserve(key: str, maximum: int) -> Deferred[bool]:
        """
        Count one more connection of session C{key}, unless it has
        C{maximum} (0: no limit) already, counting every process.

        :returns: A Deferred firing with whether the connection was counted.
        """

    def add(key: str) -> Deferred[None]:
        """Count one more connection of session C{key}, without a limit."""

    def release(key: str) -> Deferred[int]:
        """
        Count one connection of session C{key} less.

        :returns: A Deferred firing with how many connections of the session
            are left, counting every process.
        """


class ISessionManager(Interface):
    """
    Persists sessions so that clients can restore them on new connections.

    Each method may return a plain value, a Deferred or a coroutine.
    """

    def onSessionCreated(
        connection: IConnection,
    ) -> Deferred[None] | Coroutine[Any, Any, None] | None:
        """
        Store the session just created on C{connection} (its C{session}).
        A failure is logged; the session stays active but will not be
        restorable.
        """

    def onSessionLookup(
        key: str,
    ) -> (
        Deferred[SessionLookupResult | None]
        | Coroutine[Any, Any, SessionLookupResult | None]
        | SessionLookupResult
        | None
    ):
        """
        Find the stored session C{key} for a client restoring it, and record
        that it was looked up now.

        :returns: The session as it was before this lookup (its previous
            last-lookup time), or C{None} if there is none (the client is
            told "session not found"). A failure is logged and the client
            told "internal error", never "not found".
        """

    def onSessionClosed(key: str) -> Deferred[None] | Coroutine[Any, Any, None] | None:
        """
        Forget the session C{key}: it was closed on its last connection. A
        failure is logged.
        """


class ISessionKeyGenerator(Interface):
    """
    Makes session keys.
    """

    def generate() -> str:
        """
        Return a new, unguessable key of 1 to 255 printable ASCII characters.
        """


class IUpgradeGuard(Interface):
    """
    An application that also provides this is asked before every WebSocket
    upgrade, e.g. to check a token or a cookie.
    """

    def beforeUpgrade(
        request: IHandshakeRequest,
    ) -> Deferred[None] | Coroutine[Any, Any, None] | None:
        """
        Accept the upgrade by returning (or firing); refuse it by raising
        (or failing with) L{webwire.errors.UpgradeRefused}, whose status and
        reason become the HTTP answer. Any other failure is logged and
        answered with HTTP 500, its text never sent.
        """


class IWebWireServer(Interface):
    """
    A WebWire application: what the server calls for each connection.

    Every hook may return a plain value, a C{Deferred} or a coroutine.
    Subclass L{webwire.application.Application} to implement only the hooks
    you need.
    """

    def onClientConnected(connection: IConnection) -> Deferred[None] | None:
        """
        A client connected; its AcceptConf has been sent.

        Nothing the client sends is processed until this returns (or the
        Deferred it returns fires). If it fails, the failure is logged and
        the connection is closed.
        """

    def onClientDisconnected(connection: IConnection, reason: Failure) -> None:
        """
        The connection is closed. C{reason} says why. Failures are logged.
        """

    def onSignal(
        connection: IConnection, signal: Signal
    ) -> Deferred[None] | Coroutine[Any, Any, None] | None:
        """
        The client sent a signal. Failures are logged; the client learns
        nothing either way.
        """

    def onRequest(connection: IConnection, request: Request) -> RequestResult:
        """
        The client sent a request; the result becomes the reply.

        Return (or fire with) C{bytes} for a binary reply, C{str} for UTF-8,
        a L{webwire.wire.Payload} to choose the encoding, or C{None} for an
        empty binary reply. Raise L{webwire.errors.RequestError} for an error
        reply. Any other exception becomes an internal-error reply and is
        logged with its traceback; its text never reaches the client.
        """


class IWebWireClientHooks(Interface):
    """
    What a L{webwire.client.WebWireClient} tells its application. Hooks run
    in the reactor thread, in the order events happen; a hook that raises is
    logged. Subclass L{webwire.client.ClientHooks} to implement only some.
    """

    def onConnected(client: WebWireClient) -> None:
        """
        The client connected, and restored its session if it had one (or
        gave up on it: see L{onSessionLost}).
        """

    def onDisconnected(client: WebWireClient, reason: Failure) -> None:
        """
        The connection was lost or closed. With autoconnect the client is
        already trying to connect again.
        """

    def onSignal(client: WebWireClient, signal: Signal) -> None:
        """The server sent a signal."""

    def onSessionCreated(client: WebWireClient, session: Session) -> None:
        """
        The client has a session: the server created it, or the client
        restored it (also automatically after a reconnection).
        """

    def onSessionClosed(client: WebWireClient) -> None:
        """The server closed the client's session."""

    def onSessionLost(client: WebWireClient, session: Session, reason: Failure) -> None:
        """
        After a reconnection, the server answered that it does not know the
        session (L{webwire.errors.SessionNotFound}); the client no longer
        has it. Any other failure to restore it (the connection lost again,
        no reply in time, shutdown, internal error) keeps the session, which
        the client restores on its next connection: this is not called.
        """
