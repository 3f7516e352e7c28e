"""
WebWire inside a twisted.web site, over a real loopback socket: the site's
pages and WebWire share one port, and several WebWire applications can live
on different paths with their own options.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from examples.quickstart import Greeter
from tests.helpers import DEFAULT_ACCEPT_CONF, connectRaw, portNumber, rawHTTP
from webwire import wire
from webwire.client import ClientOptions, WebWireClient
from webwire.conformance import ConformanceApplication
from webwire.errors import Disconnected
from webwire.options import ServerOptions
from webwire.resource import WebWireResource
from webwire.server import WebWireServerFactory
from webwire.sessions import MemorySessionManager


class ResourceTests(TestCase):
    """
    L{WebWireResource} in a site.
    """

    timeout = 30

    def setUp(self) -> None:
        self.conformance = WebWireServerFactory(
            ConformanceApplication(), sessionManager=MemorySessionManager()
        )
        self.greeter = WebWireServerFactory(
            Greeter(),
            ServerOptions(readTimeout=10, subProtocol="greet", sessions=False),
        )
        root = Resource()
        root.putChild(b"hello", Data(b"hello, web", "text/plain"))
        api = Resource()
        api.putChild(b"conformance", WebWireResource(self.conformance))
        api.putChild(b"greeter", WebWireResource(self.greeter))
        root.putChild(b"api", api)
        site: Any = Site(root)  # a ServerFactory; its stubs do not say so
        self.listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.port = portNumber(self.listening)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.stop)

    async def stop(self) -> None:
        await self.conformance.shutdown()
        await self.greeter.shutdown()
        await self.pool.closeCachedConnections()
        await maybeDeferred(self.listening.stopListening)

    async def get(self, path: str) -> tuple[int, bytes]:
        response = await Agent(reactor, pool=self.pool).request(
            b"GET", f"http://127.0.0.1:{self.port}{path}".encode()
        )
        body: bytes = await readBody(response)
        return response.code, body

    def client(self, path: str, **options: Any) -> WebWireClient:
        client = WebWireClient(
            f"ws://127.0.0.1:{self.port}{path}",
            options=ClientOptions(autoconnect=False, **options),
        )
        self.addCleanup(client.close)
        return client

    async def test_sharedPort(self) -> None:
        """
        A plain page and WebWire answer on the same port: the page as
        usual, WebWire (requests and sessions) on its path, and a plain GET
        on the WebWire path gets 426 Upgrade Required.
        """
        self.assertEqual(await self.get("/hello"), (200, b"hello, web"))
        client = self.client("/api/conformance")
        self.assertEqual(
            (await client.request("echo", "over http")).text(), "over http"
        )
        key = (await client.request("login", "ada")).text()
        other = self.client("/api/conformance")
        session = await other.restoreSession(key)
        self.assertEqual(session.info, {"user": "ada"})
        code, body = await self.get("/api/conformance")
        self.assertEqual(code, 426)
        self.assertIn(b"WebWire", body)
        self.assertEqual(await self.get("/hello"), (200, b"hello, web"))

    async def test_channels(self) -> None:
        """
        Two applications on two paths of one port, each with its own
        options: their AcceptConf differ and each serves its own requests.
        """
        conformance = await connectRaw(self.port, "/api/conformance")
        greeter = await connectRaw(self.port, "/api/greeter")
        self.assertEqual(await conformance.message(0), DEFAULT_ACCEPT_CONF)
        self.assertEqual(
            await greeter.message(0),
            wire.encodeAcceptConf(10_000, 8192, b"greet"),
        )
        conformance.dropConnection(abort=True)
        greeter.dropConnection(abort=True)
        await conformance.closed
        await greeter.closed
        client = self.client("/api/greeter", subProtocol="greet")
        self.assertEqual((await client.request("greet", "Ada")).text(), "Hello, Ada!")

    async def test_shutdownLeavesSite(self) -> None:
        """
        Shutting one WebWire factory down refuses its upgrades with 503; the
        site's pages and the other application keep working.
        """
        await self.conformance.shutdown()
        response = await rawHTTP(
            self.port,
            b"GET /api/conformance HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 503"), response)
        await self.assertFailure(
            self.client("/api/conformance").request("echo", "x"), Disconnected
        )
        self.assertEqual(await self.get("/hello"), (200, b"hello, web"))
        greeter = self.client("/api/greeter", subProtocol="greet")
        self.assertEqual((await greeter.request("greet", "Bo")).text(), "Hello, Bo!")
