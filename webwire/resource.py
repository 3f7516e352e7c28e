# -*- test-case-name: tests.test_resource -*-
"""
L{WebWireResource}: WebWire inside a C{twisted.web} site, so that it shares
a port with an existing web application.

Put it into the resource tree where WebWire should answer::

    root = Resource()
    root.putChild(b"static", File("static"))
    root.putChild(b"ws", WebWireResource(WebWireServerFactory(MyApp())))
    site = Site(root)

WebSocket upgrades on that path (and below it) reach the factory's
application; plain HTTP requests there are answered with 426 Upgrade
Required; every other path stays the site's. Several resources with their
own factories (and options) may share one site: one per path.
"""

from __future__ import annotations

from autobahn.twisted.resource import WebSocketResource
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from webwire.server import WebWireServerFactory

__all__ = ["WebWireResource"]


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
        super().__init__(factory)
        self.factory = factory

    def render(self, request: IRequest) -> bytes | int:
        """
        Upgrade a WebSocket request; answer anything else with 426.
        """
        assert isinstance(request, Request)
        upgrade = request.getHeader(b"upgrade") or b""
        if upgrade.lower() != b"websocket":
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"This is a WebWire endpoint: connect with a WebSocket client.\n"
        result: bytes | int = super().render(request)
        return result
