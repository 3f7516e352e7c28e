"""
End-to-end tests of the server over real loopback sockets, with a raw client
that sends exact bytes and checks exact bytes back.

Time inside the server (read deadline, C{sleep}, shutdown timeout) runs on a
L{Clock} the tests advance; the sockets are real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    LoopbackServer,
    RawClientProtocol,
    WatchedClock,
    echoRequest,
    h,
    ident,
    rawHTTP,
    sleepRequest,
    webwireEvents,
)
from webwire import wire
from webwire.application import Application
from webwire.conformance import ConformanceApplication, DeliberateInternalError
from webwire.errors import RequestError
from webwire.interfaces import IConnection, RequestResult
from webwire.options import ServerOptions


class RecordingApplication(Application):
    """
    An application whose hooks the test controls: every hook is recorded,
    requests are answered by C{self.handler}.
    """

    def __init__(self) -> None:
        self.connections: list[IConnection] = []
        self.disconnected: list[tuple[IConnection, Failure]] = []
        self.requests: list[wire.Request] = []
        # What the next onClientConnected returns (then None again).
        self.connectResult: Deferred[None] | None = None
        self.handler: Callable[[IConnection, wire.Request], RequestResult] = (
            lambda connection, request: request.payload
        )

    def onClientConnected(self, connection: IConnection) -> Deferred[None] | None:
        self.connections.append(connection)
        result, self.connectResult = self.connectResult, None
        return result

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        self.disconnected.append((connection, reason))

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> RequestResult:
        self.requests.append(request)
        return self.handler(connection, request)


class HandshakeTests(TestCase):
    """
    The WebSocket handshake and the AcceptConf that follows it.
    """

    timeout = 20

    async def test_defaultAcceptConf(self) -> None:
        """
        The first message is AcceptConf with the Go defaults, byte for byte.
        """
        server = LoopbackServer(self, ConformanceApplication())
        client = await server.connect()
        self.assertEqual(await client.message(0), DEFAULT_ACCEPT_CONF)

    async def test_configuredAcceptConf(self) -> None:
        """
        Read timeout and sub-protocol name are advertised as configured
        (test vector T02).
        """
        options = ServerOptions(readTimeout=3.0, subProtocol="chat")
        server = LoopbackServer(self, ConformanceApplication(), options)
        client = await server.connect()
        self.assertEqual(
            await client.message(0),
            h("17 02 00 B8 0B 00 00 00 20 00 00 63 68 61 74"),
        )

    async def test_anyPath(self) -> None:
        """
        Upgrades are accepted on any path, and the application sees the
        path and query of the handshake request.
        """
        app = RecordingApplication()
        server = LoopbackServer(self, app)
        client = await server.connectAccepted("/some/deep/path?room=7")
        self.assertEqual(
            await client.roundTrip(echoRequest(1, b"x")), h("BF") + ident(1) + b"x"
        )
        request = app.connections[0].request
        self.assertEqual(request.path, "/some/deep/path")
        self.assertEqual(request.params, {"room": ["7"]})
        self.assertEqual(request.headers["host"], f"127.0.0.1:{server.portNumber}")

    async def test_noSubProtocolNoCompression(self) -> None:
        """
        The server selects no WebSocket sub-protocol and no extension, even
        when the client offers them.
        """
        server = LoopbackServer(self, ConformanceApplication())
        response = await rawHTTP(
            server.portNumber,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            untilHeaders=True,
        )
        head = response.split(b"\r\n\r\n")[0].lower()
        self.assertTrue(head.startswith(b"http/1.1 101"), head)
        self.assertNotIn(b"sec-websocket-protocol", head)
        self.assertNotIn(b"sec-websocket-extensions", head)


class RequestTests(TestCase):
    """
    Requests and the replies they get, on the conformance application.
    """

    timeout = 20

    async def setUpClient(self) -> RawClientProtocol:
        self.server = LoopbackServer(self, ConformanceApplication())
        return await self.server.connectAccepted()

    async def test_vectors(self) -> None:
        """
        The client request vectors of the protocol are answered with exactly
        the expected bytes.
        """
        client = await self.setUpClient()
        cases = [
            # T04: binary echo.
            ("7F 0100000000000000 04 6563686F 6869", "BF 0100000000000000 6869"),
            # T05: UTF-8, no name, payload only.
            ("80 0200000000000000 00 68656C6C6F", "C0 0200000000000000 68656C6C6F"),
            # T06: name only, unknown to the application.
            (
                "7F 0300000000000000 04 70696E67",
                "00 0300000000000000 0F 554E4B4E4F574E5F52455155455354"
                + "756E6B6E6F776E20726571756573743A2070696E67",
            ),
            # T09: minimal UTF-16 request, no name: echoed with reply padding.
            ("81 0300000000000000 00 4100", "C1 0300000000000000 00 4100"),
            # T31: the JavaScript client's identifier layout is echoed verbatim.
            ("80 0000000001000000 04 6563686F 6869", "C0 0000000001000000 6869"),
        ]
        for request, reply in cases:
            self.assertEqual(await client.roundTrip(h(request)), h(reply), request)

    async def test_utf16Padding(self) -> None:
        """
        UTF-16 requests with odd names (padding) and even names are both
        understood; the reply always carries its padding byte.
        """
        client = await self.setUpClient()
        text = "héllo 𝄞".encode("utf-16-le")
        odd = wire.encodeRequest(ident(1), "oddecho", text, wire.Encoding.UTF16)
        even = wire.encodeRequest(ident(2), "echo", text, wire.Encoding.UTF16)
        self.assertEqual(odd[9:18], b"\x07oddecho\x00")
        self.assertEqual(
            await client.roundTrip(odd), h("C1") + ident(1) + b"\x00" + text
        )
        self.assertEqual(
            await client.roundTrip(even), h("C1") + ident(2) + b"\x00" + text
        )

    async def test_emptyReplies(self) -> None:
        """
        Empty replies are header-only: 9 bytes for binary and UTF-8, 10 for
        UTF-16.
        """
        client = await self.setUpClient()
        logout = wire.encodeRequest(ident(1), "logout", b"", wire.Encoding.UTF8)
        whoami = wire.encodeRequest(ident(2), "whoami", b"", wire.Encoding.UTF8)
        utf16 = wire.encodeRequest(ident(3), "echo", b"", wire.Encoding.UTF16)
        self.assertEqual(await client.roundTrip(logout), h("BF") + ident(1))
        self.assertEqual(await client.roundTrip(whoami), h("C0") + ident(2))
        self.assertEqual(await client.roundTrip(utf16), h("C1") + ident(3) + b"\x00")

    async def test_errorReply(self) -> None:
        """
        A RequestError becomes an error reply with its code and message.
        """
        client = await self.setUpClient()
        reply = await client.roundTrip(echoRequest(1, b"", name="error"))
        self.assertEqual(reply, h("00") + ident(1) + b"\x0aTEST_ERROR" + b"test error")

    async def test_internalError(self) -> None:
        """
        An unexpected exception becomes an internal-error reply; the
        traceback is logged, its text never sent.
        """
        client = await self.setUpClient()
        reply = await client.roundTrip(echoRequest(1, b"", name="internal"))
        self.assertEqual(reply, h("02") + ident(1))
        self.assertEqual(len(self.flushLoggedErrors(DeliberateInternalError)), 1)
        self.assertFalse(any(b"deliberate" in m for m in client.received))

    async def test_serverTypesIgnored(self) -> None:
        """
        Well-formed messages that only servers send are ignored and the
        connection stays open.
        """
        client = await self.setUpClient()
        client.send(
            h("BF 0100000000000000 6869"),
            h("01 0100000000000000"),
            DEFAULT_ACCEPT_CONF,
            h("16"),
            h("15 7B7D"),
        )
        reply = await client.roundTrip(echoRequest(9, b"still here"))
        self.assertEqual(reply, h("BF") + ident(9) + b"still here")
        self.assertEqual(len(client.received), 2)


class ResultMappingTests(TestCase):
    """
    What a request handler returns or raises becomes exactly one reply.
    """

    timeout = 20

    async def roundTrip(self, handler: Any, payload: bytes = b"x") -> bytes:
        app = RecordingApplication()
        app.handler = handler
        server = LoopbackServer(self, app, ServerOptions(messageBufferSize=64))
        client = await server.connect()
        self.assertEqual(
            wire.parse(await client.message(0)), wire.AcceptConf(60000, 64)
        )
        return await client.roundTrip(echoRequest(1, payload))

    async def test_str(self) -> None:
        """A str becomes a UTF-8 reply."""
        self.assertEqual(
            await self.roundTrip(lambda c, r: "é"), h("C0") + ident(1) + "é".encode()
        )

    async def test_payloadUtf16(self) -> None:
        """A Payload chooses the encoding, UTF-16 included."""
        reply = await self.roundTrip(
            lambda c, r: wire.Payload.fromText("hi", wire.Encoding.UTF16)
        )
        self.assertEqual(reply, h("C1") + ident(1) + h("00 6800 6900"))

    async def test_deferred(self) -> None:
        """A Deferred's result becomes the reply."""
        self.assertEqual(
            await self.roundTrip(lambda c, r: succeed(b"ok")),
            h("BF") + ident(1) + b"ok",
        )

    async def test_coroutine(self) -> None:
        """A coroutine's result becomes the reply; it may raise RequestError."""

        async def handler(connection: IConnection, request: wire.Request) -> bytes:
            if request.payload == b"fail":
                raise RequestError("NOPE", "no")
            return await succeed(b"async")

        self.assertEqual(await self.roundTrip(handler), h("BF") + ident(1) + b"async")
        reply = await self.roundTrip(handler, b"fail")
        self.assertEqual(reply, h("00") + ident(1) + b"\x04NOPEno")

    async def test_invalidErrorCode(self) -> None:
        """
        A RequestError with an invalid code becomes an internal error,
        never a 0-byte message, and is logged.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def handler(connection: IConnection, request: wire.Request) -> None:
            raise RequestError("BAD CODE\n", "x")

        self.assertEqual(await self.roundTrip(handler), h("02") + ident(1))
        self.assertEqual(len(webwireEvents(observer, LogLevel.error)), 1)

    async def test_unsendableResults(self) -> None:
        """
        A reply larger than the buffer, an odd UTF-16 payload and a value
        of the wrong type each become an internal error.
        """
        for result in [b"x" * 56, wire.Payload(b"abc", wire.Encoding.UTF16), 42]:
            self.assertEqual(
                await self.roundTrip(lambda c, r, result=result: result),
                h("02") + ident(1),
            )
        self.assertEqual(
            await self.roundTrip(lambda c, r: b"x" * 55), h("BF") + ident(1) + b"x" * 55
        )


class ConcurrencyTests(TestCase):
    """
    Handlers of one connection run concurrently up to the limit.
    """

    timeout = 20

    async def test_sleepDoesNotBlock(self) -> None:
        """
        A pending C{sleep} does not delay other requests on the connection.
        """
        clock = WatchedClock()
        server = LoopbackServer(self, ConformanceApplication(clock))
        client = await server.connectAccepted()
        client.send(sleepRequest(1, 1000))
        fast = await client.roundTrip(echoRequest(2, b"fast"))
        self.assertEqual(fast, h("BF") + ident(2) + b"fast")
        await clock.pending()
        clock.advance(1)
        self.assertEqual(await client.message(2), h("C0") + ident(1) + b"1000")

    async def test_twoHundredConcurrentRequests(self) -> None:
        """
        200 requests in flight on one connection (more than the default
        limit of 64, so some wait in the queue) each get their own reply.
        """
        clock = WatchedClock()
        server = LoopbackServer(self, ConformanceApplication(clock))
        client = await server.connectAccepted()
        client.send(*(sleepRequest(n, 200 - n) for n in range(1, 201)))
        await clock.pending(64)
        self.assertEqual(len(clock.getDelayedCalls()), 64)
        received = await clock.runUntil(client.receivedCount(201), 1)
        replies = {m[1:9]: m for m in received[1:]}
        self.assertEqual(len(replies), 200)
        for n in range(1, 201):
            expected = h("C0") + ident(n) + str(200 - n).encode()
            self.assertEqual(replies[ident(n)], expected)

    async def test_sequential(self) -> None:
        """
        With a concurrency of 1, handlers run one after another and replies
        keep the request order even when the first is the slowest.
        """
        clock = WatchedClock()
        options = ServerOptions(concurrency=1)
        server = LoopbackServer(self, ConformanceApplication(clock), options)
        client = await server.connectAccepted()
        client.send(sleepRequest(1, 500), echoRequest(2, b"b"), sleepRequest(3, 0))
        await clock.pending()
        self.assertEqual(len(client.received), 1)
        received = await clock.runUntil(client.receivedCount(4), 0.5)
        self.assertEqual(
            received[1:],
            [
                h("C0") + ident(1) + b"500",
                h("BF") + ident(2) + b"b",
                h("C0") + ident(3) + b"0",
            ],
        )
