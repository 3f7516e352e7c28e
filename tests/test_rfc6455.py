"""
RFC 6455 conformance of the server, over raw sockets: frames are written
byte by byte as a client (or a broken client) would, and every test checks
the exact close code the client sees and that the TCP connection ends.

Decisions these tests pin down (see README, "Decisions worth knowing"):

  - Non-minimal payload lengths (a 16- or 64-bit length where a shorter
    form fits) are a protocol error, 1002: RFC 6455 5.2 says the minimal
    number of bytes MUST be used, and Autobahn enforces it.
  - A text frame is refused with 1003 (WebWire speaks binary messages
    only), whether or not it is valid UTF-8: the server never interprets
    text as UTF-8, so the 1007 of RFC 6455 8.1 (for an endpoint that does)
    does not apply, and it does not spend time validating what it refuses.
  - A close frame with a valid code (or none) is answered with 1000, not
    with the code received (RFC 6455 5.5.1 only says an endpoint
    "typically" echoes it; Autobahn's default, C{echoCloseCodeReason} off,
    is kept).
"""

from __future__ import annotations

import os
import zlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    LoopbackServer,
    asReactor,
    echoRequest,
    ident,
    listeningPort,
)
from tests.helpers import portNumber as listeningPortNumber
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.options import ServerOptions
from webwire.tap import Options, makeService

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10

KEY = b"\x8a\x1f\x03\x6e"


def mask(payload: bytes, key: bytes = KEY) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """
    One client frame. C{length} forces the length encoding: 7, 16 or 64
    bits (the shortest that fits if omitted); C{rsv} is the 3 reserved bits.
    """
    n = len(payload)
    if length is None:
        length = 7 if n < 126 else 16 if n < 0x10000 else 64
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    maskBit = 0x80 if masked else 0
    if length == 7:
        header = bytes((first, maskBit | n))
    elif length == 16:
        header = bytes((first, maskBit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, maskBit | 127)) + n.to_bytes(8, "big")
    return header + KEY + mask(payload) if masked else header + payload


def closeFrame(code: int | None, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason
    return frame(CLOSE, payload)


def echoReply(n: int, payload: bytes) -> bytes:
    return wire.encodeReply(ident(n), payload, wire.Encoding.BINARY)


class ServerFrame:
    """A frame the server sent."""

    def __init__(self, first: int, payload: bytes) -> None:
        self.fin = bool(first & 0x80)
        self.rsv = first >> 4 & 7
        self.opcode = first & 0x0F
        self.payload = payload

    def __repr__(self) -> str:
        return f"<frame op={self.opcode} rsv={self.rsv} {self.payload[:20]!r}>"


class RawWebSocket(Protocol):
    """
    A WebSocket client that writes raw bytes and parses the server's frames.
    A close frame from the server is answered with one of the same code,
    as RFC 6455 asks of a client; the server then ends the TCP connection.
    """

    def __init__(self, path: str = "/", extensions: str | None = None) -> None:
        self.path = path
        self.extensions = extensions
        self.response = b""
        self.upgraded: Deferred[bytes] = Deferred()
        self.buffer = b""
        self.frames: list[ServerFrame] = []
        self.waiters: list[tuple[int, Deferred[ServerFrame]]] = []
        self.ended: Deferred[None] = Deferred()
        self.closeSent = False
        self.inflater = zlib.decompressobj(wbits=-15)  # permessage-deflate

    def connectionMade(self) -> None:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        lines = [
            f"GET {self.path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.extensions is not None:
            lines.append(f"Sec-WebSocket-Extensions: {self.extensions}")
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.called:
            if b"\r\n\r\n" not in self.buffer:
                return
            self.response, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.upgraded.callback(self.response)
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            assert not second & 0x80, "the server masked a frame"
            n, offset = second & 0x7F, 2
            if n == 126:
                n, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif n == 127:
                n, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < offset + n:
                return
            received = ServerFrame(first, self.buffer[offset : offset + n])
            self.buffer = self.buffer[offset + n :]
            self.frames.append(received)
            if received.opcode == CLOSE and not self.closeSent:
                self.closeSent = True
                self.write(frame(CLOSE, received.payload[:2]))
            self._wake()

    def _wake(self) -> None:
        ready = [(i, d) for i, d in self.waiters if i < len(self.frames)]
        self.waiters = [(i, d) for i, d in self.waiters if i >= len(self.frames)]
        for i, d in ready:
            d.callback(self.frames[i])

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        waiters, self.waiters = self.waiters, []
        for _, d in waiters:
            d.errback(AssertionError(f"connection ended; frames: {self.frames}"))
        self.ended.callback(None)

    async def messageAt(self, index: int) -> bytes:
        """
        The payload of the C{index}th frame, inflated if compressed; call it
        in order for compressed messages (they share a context).
        """
        received = await self.frameAt(index)
        if received.rsv & 4:
            return self.inflater.decompress(received.payload + b"\x00\x00\xff\xff")
        return received.payload

    def frameAt(self, index: int) -> Deferred[ServerFrame]:
        """The C{index}th frame the server sent, once it came."""
        d: Deferred[ServerFrame] = Deferred()
        if index < len(self.frames):
            d.callback(self.frames[index])
        elif self.ended.called:
            d.errback(AssertionError(f"connection ended; frames: {self.frames}"))
        else:
            self.waiters.append((index, d))
        return d

    async def closeCode(self) -> int | None:
        """
        Wait until the TCP connection ends; the code of the server's close
        frame, C{None} if there was none (or it had no code).
        """
        await self.ended
        for received in self.frames:
            if received.opcode == CLOSE:
                payload = received.payload
                return int.from_bytes(payload[:2], "big") if payload else None
        return None


async def connect(
    testCase: TestCase,
    port: int,
    path: str = "/",
    extensions: str | None = None,
    acceptConf: bytes | None = DEFAULT_ACCEPT_CONF,
) -> RawWebSocket:
    """Connect, upgrade, and (unless told not to) check the AcceptConf."""
    client = RawWebSocket(path, extensions)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)

    def abort() -> Deferred[None]:
        if not client.ended.called:
            assert client.transport is not None
            client.transport.abortConnection()  # type: ignore[attr-defined]
        return client.ended

    testCase.addCleanup(abort)
    response = await client.upgraded
    testCase.assertTrue(response.startswith(b"HTTP/1.1 101"), response)
    if acceptConf is not None:
        testCase.assertEqual(await client.messageAt(0), acceptConf)
    return client


class ReadSpy:
    """
    Fires a Deferred after each read of the server's side of a connection:
    the real C{dataReceived} runs, this only watches it.
    """

    def __init__(self, protocol: Any) -> None:
        self.reads: list[bytes] = []
        self.waiter: Deferred[None] | None = None
        original = protocol.dataReceived

        def dataReceived(data: bytes) -> None:
            original(data)
            self.reads.append(data)
            waiter, self.waiter = self.waiter, None
            if waiter is not None:
                waiter.callback(None)

        protocol.dataReceived = dataReceived

    def nextRead(self) -> Deferred[None]:
        self.waiter = Deferred()
        return self.waiter


class ConformanceMixin:
    """Helpers of the conformance tests: a server and its clients."""

    options = ServerOptions()

    def serve(self, options: ServerOptions | None = None) -> LoopbackServer:
        testCase: Any = self
        return LoopbackServer(
            testCase, ConformanceApplication(), options or self.options
        )

    async def connected(
        self, options: ServerOptions | None = None, extensions: str | None = None
    ) -> RawWebSocket:
        server = self.serve(options)
        acceptConf = server.factory.options.acceptConf()
        testCase: Any = self
        return await connect(testCase, server.portNumber, "/", extensions, acceptConf)

    async def closesWith(self, data: bytes, code: int | None, **kw: Any) -> None:
        """Send C{data} on a fresh connection: it closes with C{code}."""
        testCase: Any = self
        client = await self.connected(**kw)
        client.write(data)
        testCase.assertEqual(await client.closeCode(), code, client.frames)


class FramingTests(ConformanceMixin, TestCase):
    """Frames as RFC 6455 section 5 defines them."""

    timeout = 30

    async def test_unmaskedFrame(self) -> None:
        """An unmasked client frame is a protocol error: 1002 (5.1)."""
        await self.closesWith(frame(BINARY, echoRequest(1, b"x"), masked=False), 1002)

    async def test_lengths(self) -> None:
        """
        Payloads with 7-, 16- and 64-bit lengths are read, and answered
        with the shortest length form.
        """
        options = ServerOptions(messageBufferSize=100_000)
        client = await self.connected(options)
        for n, size in enumerate((125 - 9 - 5, 1000, 70_000), 1):
            payload = os.urandom(size)
            client.write(frame(BINARY, echoRequest(n, payload)))
            reply = await client.frameAt(n)
            self.assertEqual(reply.payload, echoReply(n, payload))

    async def test_nonMinimalLength16(self) -> None:
        """A 16-bit length where 7 bits fit: 1002 (5.2, minimal length)."""
        await self.closesWith(frame(BINARY, echoRequest(1, b"x"), length=16), 1002)

    async def test_nonMinimalLength64(self) -> None:
        """A 64-bit length where 16 bits fit: 1002 (5.2, minimal length)."""
        data = echoRequest(1, bytes(1000))
        await self.closesWith(frame(BINARY, data, length=64), 1002)

    async def test_splitAtEveryByte(self) -> None:
        """
        A frame split in two reads at any byte of its header (and the first
        bytes of its payload) is read like a whole one, with a 7-, 16- and
        64-bit length.
        """
        server = self.serve(ServerOptions(messageBufferSize=100_000))
        acceptConf = server.factory.options.acceptConf()
        client = await connect(self, server.portNumber, acceptConf=acceptConf)
        [protocol] = server.serverProtocols()
        spy = ReadSpy(protocol)
        n = 0
        for size, header in ((20, 2 + 4), (200, 2 + 2 + 4), (70_000, 2 + 8 + 4)):
            payload = os.urandom(size)
            for split in range(1, header + 4):
                n += 1
                data = frame(BINARY, echoRequest(n, payload))
                read = spy.nextRead()
                client.write(data[:split])
                await read
                client.write(data[split:])
                reply = await client.frameAt(n)
                self.assertEqual(reply.payload, echoReply(n, payload))

    async def test_coalesced(self) -> None:
        """Frames arriving in one read are all handled, in order."""
        server = self.serve()
        client = await connect(self, server.portNumber)
        [protocol] = server.serverProtocols()
        spy = ReadSpy(protocol)
        data = b"".join(frame(BINARY, echoRequest(n, b"%d" % n)) for n in range(1, 6))
        read = spy.nextRead()
        client.write(data + frame(PING, b"p"))
        await read
        self.assertEqual(spy.reads, [data + frame(PING, b"p")])  # one read
        frames = [await client.frameAt(i) for i in range(1, 7)]
        replies = [f.payload for f in frames if f.opcode == BINARY]
        self.assertEqual(replies, [echoReply(n, b"%d" % n) for n in range(1, 6)])
        self.assertIn(b"p", [f.payload for f in frames if f.opcode == PONG])

    async def test_fragmentedWithControlFrames(self) -> None:
        """
        A message in three fragments, with a ping and an unsolicited pong
        between them, is answered as a whole; the ping gets its pong at
        once (5.4, 5.5).
        """
        client = await self.connected()
        message = echoRequest(1, b"abcdefghij")
        client.write(frame(BINARY, message[:5], fin=False))
        client.write(frame(PING, b"ping"))
        pong = await client.frameAt(1)
        self.assertEqual((pong.opcode, pong.payload), (PONG, b"ping"))
        client.write(frame(CONTINUATION, message[5:12], fin=False))
        client.write(frame(PONG, b"unsolicited"))
        client.write(frame(CONTINUATION, message[12:]))
        reply = await client.frameAt(2)
        self.assertEqual(reply.payload, echoReply(1, b"abcdefghij"))

    async def test_continuationWithoutStart(self) -> None:
        """A continuation frame with no message begun: 1002 (5.4)."""
        await self.closesWith(frame(CONTINUATION, b"x"), 1002)

    async def test_newMessageInsideFragmented(self) -> None:
        """A new data frame before the last fragment: 1002 (5.4)."""
        data = frame(BINARY, b"ab", fin=False) + frame(BINARY, b"cd")
        await self.closesWith(data, 1002)

    async def test_reservedBits(self) -> None:
        """Each reserved bit set without an extension: 1002 (5.2)."""
        for rsv in (4, 2, 1):
            await self.closesWith(frame(BINARY, echoRequest(1, b"x"), rsv=rsv), 1002)

    async def test_unknownOpcodes(self) -> None:
        """Every reserved opcode, data or control: 1002 (5.2)."""
        for opcode in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
            await self.closesWith(frame(opcode, b"x"), 1002)

    async def test_oversizedControlFrame(self) -> None:
        """A ping with 126 bytes of payload: 1002 (5.5)."""
        await self.closesWith(frame(PING, bytes(126)), 1002)

    async def test_fragmentedControlFrame(self) -> None:
        """A ping without FIN: 1002 (5.5)."""
        await self.closesWith(frame(PING, b"x", fin=False), 1002)


class TextTests(ConformanceMixin, TestCase):
    """Text frames: WebWire speaks binary messages only."""

    timeout = 30

    async def test_invalidUTF8(self) -> None:
        """Invalid UTF-8 in a text frame: refused as text, 1003."""
        await self.closesWith(frame(TEXT, b"ok \xff\xfe"), 1003)

    async def test_invalidUTF8Fragmented(self) -> None:
        """Invalid UTF-8 across fragments: refused as text, 1003."""
        data = frame(TEXT, b"ok \xc3", fin=False) + frame(CONTINUATION, b"(")
        await self.closesWith(data, 1003)

    async def test_validText(self) -> None:
        """A valid text message is refused by WebWire: 1003 (7.4.1)."""
        await self.closesWith(frame(TEXT, "grüße".encode()), 1003)


class CloseTests(ConformanceMixin, TestCase):
    """Close frames (5.5.1, 7.4)."""

    timeout = 30

    async def test_validCodes(self) -> None:
        """A close with a valid code and a reason is answered with 1000."""
        for code in (1000, 1001, 1003, 1007, 1011, 3000, 4999):
            await self.closesWith(closeFrame(code, b"so long"), 1000)

    async def test_emptyClose(self) -> None:
        """An empty close frame is answered with 1000."""
        await self.closesWith(closeFrame(None), 1000)

    async def test_invalidCodes(self) -> None:
        """Codes that must not be sent, or are not defined: 1002."""
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
            await self.closesWith(closeFrame(code), 1002)

    async def test_oneBytePayload(self) -> None:
        """A close payload of one byte: 1002."""
        await self.closesWith(frame(CLOSE, b"\x03"), 1002)

    async def test_invalidReason(self) -> None:
        """A reason that is not UTF-8: 1007."""
        await self.closesWith(closeFrame(1000, b"\xff"), 1007)


def deflate(data: bytes) -> bytes:
    """permessage-deflate's compression of one message (7.2.1 of RFC 7692)."""
    compressor = zlib.compressobj(wbits=-15)
    compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert compressed.endswith(b"\x00\x00\xff\xff")
    return compressed[:-4]


class CompressionTests(ConformanceMixin, TestCase):
    """permessage-deflate (RFC 7692) when enabled, and only then."""

    timeout = 30
    options = ServerOptions(compression=True)

    async def test_negotiated(self) -> None:
        """
        Offered and enabled, it is accepted; a compressed request gets a
        compressed reply.
        """
        client = await self.connected(extensions="permessage-deflate")
        self.assertIn(b"permessage-deflate", client.response.lower())
        payload = b"compress me " * 50
        client.write(frame(BINARY, deflate(echoRequest(1, payload)), rsv=4))
        reply = await client.frameAt(1)
        self.assertEqual(reply.rsv, 4)
        self.assertEqual(await client.messageAt(1), echoReply(1, payload))

    async def test_notEnabled(self) -> None:
        """Offered but disabled: not accepted, and RSV1 is then 1002."""
        client = await self.connected(ServerOptions(), "permessage-deflate")
        self.assertNotIn(b"permessage-deflate", client.response.lower())
        client.write(frame(BINARY, deflate(echoRequest(1, b"x")), rsv=4))
        self.assertEqual(await client.closeCode(), 1002)


class SizeLimitTests(ConformanceMixin, TestCase):
    """
    The message buffer size bounds every message, however it arrives: a
    larger one closes the connection with 1009.
    """

    timeout = 30
    options = ServerOptions(messageBufferSize=1024, compression=True)

    async def test_atTheLimit(self) -> None:
        """A message of exactly the limit is served."""
        client = await self.connected()
        payload = bytes(1024 - len(echoRequest(1, b"")))
        client.write(frame(BINARY, echoRequest(1, payload)))
        reply = await client.frameAt(1)
        self.assertEqual(reply.payload, echoReply(1, payload))

    async def test_singleFrame(self) -> None:
        """One frame a byte over the limit."""
        data = echoRequest(1, bytes(1025 - len(echoRequest(1, b""))))
        await self.closesWith(frame(BINARY, data), 1009)

    async def test_fragmented(self) -> None:
        """Fragments each under the limit, together over it."""
        data = echoRequest(1, bytes(1500))
        fragments = frame(BINARY, data[:700], fin=False)
        fragments += frame(CONTINUATION, data[700:1400], fin=False)
        fragments += frame(CONTINUATION, data[1400:])
        await self.closesWith(fragments, 1009)

    async def test_compressed(self) -> None:
        """A compressed message far under the limit that inflates over it."""
        compressed = deflate(echoRequest(1, bytes(100_000)))
        self.assertLess(len(compressed), 1024)
        await self.closesWith(
            frame(BINARY, compressed, rsv=4), 1009, extensions="permessage-deflate"
        )


class SiteTests(TestCase):
    """
    The same rules through the site C{twistd webwire} serves, where the
    WebSocket connection is taken over from twisted.web after the upgrade,
    on the path configured with C{--path}.
    """

    timeout = 30

    async def serveSite(self, *argv: str) -> int:
        config = Options()
        config.parseOptions(
            ["--listen", "tcp:0:interface=127.0.0.1", "--sessions", "memory", *argv]
        )
        service = makeService(config, reactor=asReactor(reactor))
        service.startService()
        self.addCleanup(service.stopService)
        return listeningPortNumber(await listeningPort(service))  # type: ignore[arg-type]

    async def test_framesOnPath(self) -> None:
        """
        On the configured path: a split header, coalesced frames and a
        fragmented message are served.
        """
        port = await self.serveSite("--path", "/ws")
        client = await connect(self, port, "/ws")
        first = frame(BINARY, echoRequest(1, bytes(300)))
        client.write(first[:3])
        client.write(first[3:] + frame(BINARY, echoRequest(2, b"two")))
        message = echoRequest(3, b"three")
        client.write(frame(BINARY, message[:4], fin=False))
        client.write(frame(CONTINUATION, message[4:]))
        replies = [(await client.frameAt(i)).payload for i in (1, 2, 3)]
        self.assertEqual(
            replies,
            [echoReply(1, bytes(300)), echoReply(2, b"two"), echoReply(3, b"three")],
        )

    async def test_unmaskedOnPath(self) -> None:
        """An unmasked frame through the site: 1002."""
        port = await self.serveSite("--path", "/ws")
        client = await connect(self, port, "/ws")
        client.write(frame(BINARY, echoRequest(1, b"x"), masked=False))
        self.assertEqual(await client.closeCode(), 1002)

    async def test_sizeLimitOnPath(self) -> None:
        """The size limit holds through the site too: 1009."""
        port = await self.serveSite("--path", "/ws")
        client = await connect(self, port, "/ws")
        client.write(frame(BINARY, echoRequest(1, bytes(9000))))
        self.assertEqual(await client.closeCode(), 1009)

    async def test_chatWithPath(self) -> None:
        """
        C{--path} applies to the application, not to the chat demo: its page
        still connects to C{/chat}, which upgrades.
        """
        port = await self.serveSite("--path", "/ws")
        client = RawWebSocket("/chat")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        response = await client.upgraded
        self.assertTrue(response.startswith(b"HTTP/1.1 101"), response)
        assert client.transport is not None
        client.transport.loseConnection()
        await client.ended

    async def test_otherPath(self) -> None:
        """Elsewhere the upgrade is refused (HTTP 404), and the TCP ends."""
        port = await self.serveSite("--path", "/ws")
        client = RawWebSocket("/other")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        response = await client.upgraded
        self.assertTrue(response.startswith(b"HTTP/1.1 404"), response)
        assert client.transport is not None
        client.transport.loseConnection()
        await client.ended
