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
    from webwire.wire import Encoding, PayloadLike, Request, Signal

__all__ = ["IConnection", "IHandshakeRequest", "IWebWireServer", "RequestResult"]

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


class IConnection(Interface):
    """
    One client connection, as the application's hooks see it.
    """

    peer = Attribute("The client's address (L{IAddress}).")
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

    def close() -> Deferred[None]:
        """
        Close the connection gracefully; calling it again does no harm.

        From now on everything the client sends (but heartbeats) is dropped
        without reply. Handlers already running finish and their replies are
        sent; then the connection is closed with code 1000.

        :returns: A Deferred that fires with C{None} once the connection is
            closed.
        """


class IWebWireServer(Interface):
    """
    A WebWire application: what the server calls for each connection.

    Every hook may return a plain value, a L{Deferred} or a coroutine.
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
