"""
L{webwire.web}: the site C{twistd webwire} serves, over real loopback
sockets.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    connectRaw,
    listeningPort,
    portNumber,
    rawHTTP,
)
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.options import ServerOptions
from webwire.resource import WebWireResource
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.sessions import MemorySessionManager
from webwire.web import WebWireRoot, clientScript, makeSite


class WebWireRootTests(TestCase):
    """
    A WebWireRoot in a WebWireService: upgrades on any path, the browser
    client, mounted pages and endpoints, graceful stop of every factory.
    """

    timeout = 30

    async def test_site(self) -> None:
        """
        Upgrades on any path reach the main application; a mounted
        WebWireResource answers its own path with its own options; pages
        are served; /webwire.js is the packaged client; stopping the
        service closes the connections of both factories with 1001.
        """
        main = WebWireServerFactory(
            ConformanceApplication(), sessionManager=MemorySessionManager()
        )
        other = WebWireServerFactory(
            ConformanceApplication(), ServerOptions(readTimeout=7, sessions=False)
        )
        root = WebWireRoot(main)
        root.putChild(b"other", WebWireResource(other))
        pages = Resource()
        pages.putChild(b"hello", Data(b"hello", "text/plain"))
        root.putChild(b"pages", pages)
        service = WebWireService(
            main,
            ["tcp:0:interface=127.0.0.1"],
            site=makeSite(root),
            moreFactories=[other],
        )
        service.startService()
        port = portNumber(await listeningPort(service))
        anywhere = [await connectRaw(port, path) for path in ["/", "/a/b", "/pages"]]
        for client in anywhere:
            self.assertEqual(await client.message(0), DEFAULT_ACCEPT_CONF)
        mounted = await connectRaw(port, "/other")
        self.assertEqual(await mounted.message(0), wire.encodeAcceptConf(7000, 8192))
        page = await rawHTTP(port, b"GET /pages/hello HTTP/1.0\r\n\r\n")
        self.assertTrue(page.endswith(b"\r\n\r\nhello"), page)
        script = await rawHTTP(port, b"GET /webwire.js HTTP/1.0\r\n\r\n")
        self.assertIn(b"200", script.split(b"\r\n")[0])
        self.assertTrue(script.endswith(clientScript().getContent()))
        nothing = await rawHTTP(port, b"GET /nothing HTTP/1.0\r\n\r\n")
        self.assertIn(b"404", nothing.split(b"\r\n")[0])
        await service.stopService()
        for client in [*anywhere, mounted]:
            self.assertEqual((await client.closed)[1], 1001)
        self.assertTrue(main.isShuttingDown and other.isShuttingDown)
