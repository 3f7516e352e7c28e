# -*- test-case-name: tests.test_resource -*-
"""
L{WebWireResource}: WebWire inside a C{twisted.web} site, so that it shares
a port with an existing web application.

Put it into the resource tree where WebWire should answer::

    root = Resource()
    root.putChild(b"static", File("static"))
    root.putChild(b"ws", WebWireResource(WebWireServerFactory(MyApp())))
    site = WebWireSite(root, ServerOptions())

In a L{webwire.web.WebWireSite} every connection counts against the
connection limit and must send each request (the upgrade included) within
the opening handshake timeout, from the TCP accept; an upgrade request with
a body is refused with 400 before the body is read. In a plain C{Site} only
twisted.web's own timeouts apply before the upgrade.

WebSocket upgrades on that path (and below it) reach the factory's
application; plain HTTP requests there are answered with 426 Upgrade
Required; every other path stays the site's. Several resources with their
own factories (and options) may share one site: one per path.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET, Request

from webwire._handshake import isWebSocketUpgrade
from webwire.server import WebWireServerFactory

__all__ = ["WebWireResource"]


class _Unguarded:
    """What Autobahn's resource builds its protocols with."""

    def __init__(self, factory: WebWireServerFactory) -> None:
        self.buildProtocol = factory.buildWebSocketProtocol


class WebWireResource(WebSocketResource):
    """
    A C{twisted.web} resource that hands WebSocket upgrades to a
    L{WebWireServerFactory}.

    Shutting the factory down (L{WebWireServerFactory.shutdown}) refuses
    new upgrades with 503 and closes the WebWire connections gracefully;
    the site itself is not affected.
    """

    def __init__(self, factory: WebWireServerFactory) -> None:
        """
        :param factory: The server factory whose application is served.
        """
        # The site counts and times the connection from the accept; the
        # factory's own guard is for the ports it listens on itself.
        super().__init__(_Unguarded(factory))
        self.factory = factory

    def render(self, request: IRequest) -> bytes | int:
        """
        Upgrade a WebSocket request; answer anything else with 426.
        """
        assert isinstance(request, Request)
        if not isWebSocketUpgrade(request):
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"This is a WebWire endpoint: connect with a WebSocket client.\n"
        guard = getattr(request.channel, "guard", None)
        transport: Any = request.channel.transport
        if guard is None or transport is None:
            # A plain twisted.web site (or HTTP/2): Autobahn's takeover.
            result: bytes | int = super().render(request)
            return result
        # The guard stays the transport's protocol and passes the reads on
        # to the WebSocket protocol, so that the connection stays counted
        # (Autobahn's takeover would replace it).
        protocol = self.factory.buildWebSocketProtocol(transport.getPeer())
        request.channel.transport = None
        guard.takeOver(protocol)
        protocol.makeConnection(transport)
        # twisted.web paused reading while the request was handled.
        producer = getattr(transport, "_networkProducer", transport)
        producer.resumeProducing()
        head = [request.method + b" " + request.uri + b" HTTP/1.1"]
        for name, values in request.requestHeaders.getAllRawHeaders():
            head.append(name + b": " + b",".join(values))
        protocol.dataReceived(b"\r\n".join(head) + b"\r\n\r\n")
        return NOT_DONE_YET
