# -*- test-case-name: tests.test_web -*-
"""
A web site around a WebWire server: what C{twistd webwire} serves.

L{WebWireRoot} answers WebSocket upgrades on any path with one
L{WebWireServerFactory} (as the original server does), serves the browser
client at C{/webwire.js}, and takes further children: pages, and other
WebWire endpoints (a L{WebWireResource} child answers the upgrades on its
own path).
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from twisted.web.static import File

from webwire.resource import WebWireResource
from webwire.server import WebWireServerFactory

__all__ = ["STATIC", "WebWireRoot", "clientScript", "makeSite"]

STATIC = FilePath(__file__).sibling("static")


def clientScript() -> FilePath[str]:
    """The browser client (an ES module) shipped in this package."""
    return STATIC.child("webwire.js")


def _isUpgrade(request: IRequest) -> bool:
    upgrade = request.getHeader(b"upgrade") or b""
    return upgrade.lower() == b"websocket"


class WebWireRoot(Resource):
    """
    The root resource of a WebWire site.

    :ivar factory: The factory that answers upgrades on any path not taken
        by a L{WebWireResource} child.
    """

    def __init__(self, factory: WebWireServerFactory) -> None:
        super().__init__()
        self.factory = factory
        self._upgrades = WebWireResource(factory)
        self.putChild(
            b"webwire.js", File(clientScript().path, defaultType="text/javascript")
        )

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        if _isUpgrade(request):
            child = self.children.get(path)
            if isinstance(child, WebWireResource):
                return child
            return self._upgrades
        found: IResource = super().getChildWithDefault(path, request)
        return found

    def render(self, request: IRequest) -> bytes | int:
        if _isUpgrade(request):
            result: bytes | int = self._upgrades.render(request)
            return result
        index = self.children.get(b"")
        if index is not None:
            page: bytes | int = index.render(request)
            return page
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Nothing here but a WebWire endpoint (and /webwire.js).\n"


def makeSite(root: WebWireRoot) -> Site:
    """A site for C{root}, without twisted.web's per-request access log."""
    site = Site(root)
    site.noisy = False
    return site
