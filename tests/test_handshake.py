"""
Control over the WebSocket handshake, over real loopback sockets: origins,
paths, the application's beforeUpgrade hook, and permessage-deflate.
"""

from __future__ import annotations

import zlib
from typing import cast

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    LoopbackServer,
    RawClientProtocol,
    echoRequest,
    h,
    ident,
    rawHTTP,
)
from tests.test_endtoend import RecordingApplication
from webwire._handshake import originAllowed
from webwire.conformance import ConformanceApplication
from webwire.errors import UpgradeRefused
from webwire.interfaces import IHandshakeRequest, IUpgradeGuard
from webwire.options import ServerOptions

SWITCHING = b"HTTP/1.1 101 Switching Protocols"


def upgrade(path: str = "/", headers: dict[str, str] | None = None) -> bytes:
    """A WebSocket upgrade request with extra headers."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def status(server: LoopbackServer, request: bytes) -> bytes:
    """The status line the server answers C{request} with."""
    response = await rawHTTP(server.portNumber, request, untilHeaders=True)
    return response.split(b"\r\n")[0]


class OriginAllowedTests(SynchronousTestCase):
    """
    L{originAllowed}, the rule for browser origins.
    """

    def test_rule(self) -> None:
        """
        No origin and the server's own are allowed; others only when listed,
        with wildcards; C{null} only when listed.
        """
        host = "example.com:8080"
        cases = [
            (None, (), True),
            ("", (), True),
            ("http://example.com:8080", (), True),
            ("https://EXAMPLE.com:8080", (), True),
            ("http://example.com", (), False),
            ("http://evil.test", (), False),
            ("null", (), False),
            ("null", ("null",), True),
            ("https://app.example.org", ("https://*.example.org",), True),
            ("https://example.org.evil.test", ("https://*.example.org",), False),
            ("http://anything.test", ("*",), True),
        ]
        for origin, allowed, expected in cases:
            self.assertEqual(originAllowed(origin, host, allowed), expected, origin)


class OriginTests(TestCase):
    """
    Cross-origin browser upgrades are refused unless allowed.
    """

    timeout = 20

    async def test_origins(self) -> None:
        """
        Same-origin and origin-less upgrades succeed (101); a foreign origin
        gets 403 unless it is in allowedOrigins.
        """
        plain = LoopbackServer(self, ConformanceApplication())
        self.assertEqual(await status(plain, upgrade()), SWITCHING)
        same = upgrade(headers={"Origin": "http://127.0.0.1:8080"})
        self.assertEqual(await status(plain, same), SWITCHING)
        foreign = upgrade(headers={"Origin": "https://evil.test"})
        self.assertEqual(
            await status(plain, foreign), b"HTTP/1.1 403 Origin Not Allowed"
        )
        allowing = LoopbackServer(
            self,
            ConformanceApplication(),
            ServerOptions(allowedOrigins=("https://*.test",)),
        )
        self.assertEqual(await status(allowing, foreign), SWITCHING)


class PathTests(TestCase):
    """
    Upgrades can be limited to some paths.
    """

    timeout = 20

    async def test_paths(self) -> None:
        """Listed paths are upgraded; others get 404."""
        server = LoopbackServer(
            self, ConformanceApplication(), ServerOptions(paths=("/ws",))
        )
        self.assertEqual(await status(server, upgrade("/ws")), SWITCHING)
        self.assertEqual(
            await status(server, upgrade("/other")), b"HTTP/1.1 404 Not Found"
        )
        client = await server.connectAccepted("/ws")
        self.assertEqual(
            await client.roundTrip(echoRequest(1, b"x")), h("BF") + ident(1) + b"x"
        )

    def test_pathsMustBeAbsolute(self) -> None:
        """A path without a leading slash is a configuration error."""
        self.assertRaises(ValueError, ServerOptions, paths=("ws",))


@implementer(IUpgradeGuard)
class TokenApplication(RecordingApplication):
    """Accepts upgrades with the cookie token=secret, checked "in a database"."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[IHandshakeRequest] = []
        self._asked: list[Deferred[Deferred[bool]]] = []

    def asked(self) -> Deferred[Deferred[bool]]:
        """Fire with the lookup of the next upgrade, for the test to answer."""
        d: Deferred[Deferred[bool]] = Deferred()
        self._asked.append(d)
        return d

    def beforeUpgrade(self, request: IHandshakeRequest) -> Deferred[None]:
        self.checked.append(request)
        if request.headers.get("x-explode"):
            raise ValueError("secret internal detail")
        lookup: Deferred[bool] = Deferred()
        if self._asked:
            # A later reactor turn: the test answers outside this call.
            reactor.callLater(0, self._asked.pop(0).callback, lookup)

        def decide(valid: bool) -> None:
            if not valid:
                raise UpgradeRefused(401, "Unauthorized")

        return lookup.addCallback(decide)


class UpgradeGuardTests(TestCase):
    """
    An application providing IUpgradeGuard decides on each upgrade.
    """

    timeout = 20

    async def test_refuseAndAccept(self) -> None:
        """
        The hook sees path, headers, cookies and peer; it may answer later
        (a Deferred): refused with the status it chose, or accepted, after
        which the connection carries the same request.
        """
        app = TokenApplication()
        server = LoopbackServer(self, app)
        asked = app.asked()
        refused = Deferred.fromCoroutine(
            status(server, upgrade("/chat", {"Cookie": "token=wrong"}))
        )
        (await asked).callback(False)
        self.assertEqual(await refused, b"HTTP/1.1 401 Unauthorized")
        request = app.checked[0]
        self.assertEqual((request.path, request.cookies), ("/chat", {"token": "wrong"}))
        self.assertEqual(request.peer.host, "127.0.0.1")
        asked = app.asked()
        accepted = Deferred.fromCoroutine(
            status(server, upgrade("/chat", {"Cookie": "token=secret; other=1"}))
        )
        (await asked).callback(True)
        self.assertEqual(await accepted, SWITCHING)
        self.assertEqual(app.checked[1].cookies, {"token": "secret", "other": "1"})

    async def test_hookFails(self) -> None:
        """
        A hook that raises something unexpected gets HTTP 500; the error is
        logged, its text not sent.
        """
        app = TokenApplication()
        server = LoopbackServer(self, app)
        response = await rawHTTP(server.portNumber, upgrade("/", {"X-Explode": "1"}))
        self.assertTrue(response.startswith(b"HTTP/1.1 500"), response)
        self.assertNotIn(b"secret", response)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class CompressionTests(TestCase):
    """
    permessage-deflate, opt-in.
    """

    timeout = 20

    async def connectCompressing(self, server: LoopbackServer) -> RawClientProtocol:
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{server.portNumber}/")
        factory.protocol = RawClientProtocol
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=_acceptResponse,
        )
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.portNumber)
        client = cast(RawClientProtocol, await endpoint.connect(factory))
        server.clients.append(client)
        await client.is_open
        return client

    async def test_offNegotiatesNothing(self) -> None:
        """
        By default an offer of compression is declined, and the connection
        works uncompressed.
        """
        server = LoopbackServer(self, ConformanceApplication())
        client = await self.connectCompressing(server)
        self.assertIsNone(client._perMessageCompress)
        self.assertEqual(await client.message(0), DEFAULT_ACCEPT_CONF)

    async def test_onCompresses(self) -> None:
        """
        With compression on, the offer is accepted and messages are
        compressed both ways.
        """
        server = LoopbackServer(
            self, ConformanceApplication(), ServerOptions(compression=True)
        )
        client = await self.connectCompressing(server)
        self.assertIsNotNone(client._perMessageCompress)
        self.assertEqual(await client.message(0), DEFAULT_ACCEPT_CONF)
        payload = b"abc" * 1000
        reply = await client.roundTrip(echoRequest(1, payload))
        self.assertEqual(reply, h("BF") + ident(1) + payload)

    async def test_inflationBounded(self) -> None:
        """
        A small compressed message that would inflate beyond the message
        buffer size closes the connection with 1009.
        """
        server = LoopbackServer(
            self, ConformanceApplication(), ServerOptions(compression=True)
        )
        client = await self.connectCompressing(server)
        await client.message(0)
        bomb = echoRequest(1, b"\x00" * 1_000_000)
        self.assertLess(len(zlib.compress(bomb)), 8192)
        client.send(bomb)
        wasClean, code, reason = await client.closed
        self.assertEqual(code, 1009)


def _acceptResponse(response: object) -> PerMessageDeflateResponseAccept | None:
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None
