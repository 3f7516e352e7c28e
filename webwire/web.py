# -*- test-case-name: tests.test_web -*-
"""
A web site around a WebWire server: what C{twistd webwire} serves.

L{WebWireRoot} answers WebSocket upgrades on any path with one
L{WebWireServerFactory} (as the original server does), serves the browser
client at C{/webwire.js}, and takes further children: pages, and other
WebWire endpoints (a L{WebWireResource} child answers the upgrades on its
own path).

L{WebWireSite} is the site around them: it counts and times every
connection from the TCP accept (see L{webwire.guard}) and refuses an
upgrade request that has a body before reading it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.python.filepath import FilePath
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from twisted.web.static import File

from webwire._handshake import isWebSocketUpgrade as _isUpgrade
from webwire.guard import ConnectionGuard, GuardedConnection, lingeringClose
from webwire.options import ServerOptions
from webwire.resource import WebWireResource
from webwire.server import WebWireServerFactory

__all__ = ["STATIC", "WebWireRoot", "WebWireSite", "clientScript", "makeSite"]

_BODY_REFUSED = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 33\r\n"
    b"Connection: close\r\n\r\n"
    b"A WebSocket upgrade has no body.\n"
)

STATIC = FilePath(__file__).sibling("static")


def clientScript() -> FilePath[str]:
    """The browser client (an ES module) shipped in this package."""
    return STATIC.child("webwire.js")


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


class _WebWireChannel(HTTPChannel):
    """
    An HTTP channel that refuses upgrade requests with a body before
    reading it, and tells its guard while it answers a plain request.
    """

    site: WebWireSite
    guard: GuardedConnection | None = None
    _refused = False

    def _guarded(self) -> GuardedConnection | None:
        return self.guard

    def allHeadersReceived(self) -> None:
        # self.length: 0 without a body, None for a chunked one.
        if self.length != 0 and _isUpgrade(self.requests[-1]):
            self._refused = True
            self.transport.write(_BODY_REFUSED)  # type: ignore[union-attr]
            guard = self.site.guard
            lingeringClose(self.transport, guard.clock, guard.closeTimeout)
            return
        super().allHeadersReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web's answer to a bad request (too many or too long
        # headers...), closed so that the answer arrives: unread input would
        # turn a plain close into a reset.
        if self._refused:
            return
        self._refused = True
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # type: ignore[union-attr]
        guard = self.site.guard
        lingeringClose(self.transport, guard.clock, guard.closeTimeout)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._respondToBadRequestAndDisconnect()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # read only to see the client's close
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # read only to see the client's close
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        guarded = self._guarded()
        if guarded is not None and not _isUpgrade(self.requests[-1]):
            # The deadline is for receiving requests, not for answering
            # them (an upgrade's runs on until the WebSocket is open).
            guarded.suspendDeadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        guarded = self._guarded()
        if guarded is not None and self.persistent:
            # The next request (keep-alive) has the timeout again.
            guarded.restartDeadline()
        super().requestDone(request)


class WebWireSite(Site):
    """
    A twisted.web site for WebWire endpoints: every connection counts
    against C{options.maxConnections} from the TCP accept and must send each
    request (the upgrade included) within C{options.openHandshakeTimeout};
    a plain request's deadline is suspended while it is answered and starts
    again for the next one. An upgrade request with a body is answered 400
    without reading the body. twisted.web's own limits hold too (request
    line and headers at most 16 KiB, at most 500 headers: 400 beyond).

    :ivar guard: The L{ConnectionGuard} of the site's connections.
    """

    protocol = _WebWireChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        options: ServerOptions | None = None,
        reactor: IReactorTime | None = None,
        onRefused: Callable[[], object] = lambda: None,
    ) -> None:
        """
        :param resource: The root resource.
        :param options: Where the limits come from (C{maxConnections},
            C{openHandshakeTimeout}, C{closeTimeout}); the defaults if
            omitted.
        :param reactor: What the timers are scheduled with; the global
            reactor if omitted.
        :param onRefused: Called for each connection refused at the limit.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        super().__init__(resource, reactor=reactor)
        options = options if options is not None else ServerOptions()
        assert reactor is not None
        self.guard = ConnectionGuard(
            options.maxConnections,
            options.openHandshakeTimeout,
            options.closeTimeout,
            reactor,
            onRefused,
        )

    def logPrefix(self) -> str:
        """
        C{"Site"}, as twisted.web's: the port logs C{Site starting on PORT},
        the line tools that start a server wait for.
        """
        return "Site"

    def buildProtocol(self, addr: IAddress) -> GuardedConnection:  # type: ignore[override]
        channel = super().buildProtocol(addr)
        assert channel is not None
        return self.guard.wrap(channel)


def makeSite(root: WebWireRoot) -> WebWireSite:
    """
    A site for C{root} with the limits of its factory's options, without
    twisted.web's per-request access log.
    """
    factory = root.factory
    site = WebWireSite(
        root,
        factory.options,
        factory.reactor,
        lambda: factory.observer.handshakeRefused("limit"),  # metrics
    )
    site.noisy = False
    return site
