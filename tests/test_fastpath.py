"""
The fast path under Autobahn (L{webwire._fastpath}): every frame it does
not read itself reaches Autobahn in order, what it sends is what Autobahn
would send, and what is written while one read is processed goes out in
one write, in the order it was sent.

The connection is in memory (L{tests.test_server.ServerHarness}); each test
hands the server the exact reads it names. Raw-socket conformance is in
L{tests.test_rfc6455}.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path
from typing import Any

import autobahn
from autobahn.websocket import protocol as autobahnProtocol
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.helpers import echoRequest
from tests.test_rfc6455 import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    ConformanceMixin,
    echoReply,
    frame,
)
from tests.test_server import ServerHarness
from webwire import wire
from webwire._fastpath import (
    _HANDSHAKE_LEFTOVERS,
    FastPathProtocol,
    frameBinary,
    unmask,
)
from webwire.conformance import ConformanceApplication
from webwire.options import ServerOptions
from webwire.testing import Pair


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each complete server frame in C{data}."""
    frames = []
    while len(data) >= 2:
        n, offset = data[1] & 0x7F, 2
        assert not data[1] & 0x80, "the server masked a frame"
        if n == 126:
            n, offset = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, offset = int.from_bytes(data[2:10], "big"), 10
        frames.append((data[0] & 0x0F, data[offset : offset + n]))
        data = data[offset + n :]
    assert not data, "an incomplete frame"
    return frames


class Connected:
    """
    A server connection in memory whose reads the test makes, and what the
    server writes, write by write.
    """

    def __init__(self, testCase: SynchronousTestCase, **options: Any) -> None:
        application = ConformanceApplication()
        self.harness = ServerHarness(testCase, application, ServerOptions(**options))
        application.__init__(self.harness.clock)  # type: ignore[misc]
        self.pair: Pair = self.harness.connect()
        self.server = self.pair.server
        self.writes: list[bytes] = []
        transport: Any = self.pair.serverTransport
        original = transport.write

        def write(data: bytes) -> None:
            self.writes.append(data)
            original(data)

        transport.write = write

    def read(self, *chunks: bytes) -> list[list[tuple[int, bytes]]]:
        """
        Hand the server each chunk as one read; the frames of each write it
        made meanwhile.
        """
        del self.writes[:]
        for chunk in chunks:
            self.server.dataReceived(chunk)
        return [serverFrames(w) for w in self.writes]

    def frames(self, *chunks: bytes) -> list[tuple[int, bytes]]:
        """Like L{read}, all writes together."""
        return [f for w in self.read(*chunks) for f in w]

    @property
    def closeCode(self) -> int | None:
        self.pair.flush()
        return self.pair.client.closeCode


def request(n: int, size: int = 10) -> tuple[bytes, tuple[int, bytes]]:
    """A masked echo request frame and the reply frame it gets."""
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    return frame(BINARY, echoRequest(n, payload)), (BINARY, echoReply(n, payload))


class ReceiveTests(SynchronousTestCase):
    """Reading: the fast path and each way out of it."""

    def test_coalesced(self) -> None:
        """
        Frames in one read, with 7- and 16-bit lengths (small and large
        payloads: two ways to unmask), are answered in
        order in a single write.
        """
        c = Connected(self)
        frames, replies = zip(
            *(request(n, size) for n, size in enumerate((1, 300, 3000, 50))),
            strict=True,
        )
        self.assertEqual(c.read(b"".join(frames)), [list(replies)])

    def test_splitAnywhere(self) -> None:
        """
        Two frames (a 16- and a 7-bit length) split in two reads at every
        byte are answered alike; what the first read completes is written
        at its end.
        """
        (first, reply1), (second, reply2) = request(1, 200), request(2, 20)
        data = first + second
        for cut in range(len(data) + 1):
            c = Connected(self)
            writes = c.read(data[:cut], data[cut:])
            self.assertEqual([f for w in writes for f in w], [reply1, reply2])
            self.assertEqual(len(writes), 2 if len(first) <= cut < len(data) else 1)

    def test_everyByteAlone(self) -> None:
        """Two frames read one byte at a time are answered."""
        (first, reply1), (second, reply2) = request(1, 130), request(2)
        c = Connected(self)
        data = first + second
        self.assertEqual(
            c.frames(*(data[i : i + 1] for i in range(len(data)))), [reply1, reply2]
        )

    def test_controlFrameBetween(self) -> None:
        """
        A ping between two requests of one read goes to Autobahn, and the
        rest of the read after it: the replies and the pong are written in
        the order of the frames they answer.
        """
        (first, reply1), (second, reply2) = request(1), request(2)
        c = Connected(self)
        frames = c.frames(first + frame(PING, b"hi") + second)
        self.assertEqual(frames, [reply1, (PONG, b"hi"), reply2])
        # Autobahn is between frames again: the next read is fast.
        third, reply3 = request(3)
        self.assertEqual(c.read(third + third), [[reply3, reply3]])

    def test_fragmented(self) -> None:
        """
        A fragmented message is Autobahn's, whole frames after it too until
        it is complete; then the fast path reads again.
        """
        payload = echoRequest(1, b"fragments")
        (after, reply2) = request(2)
        c = Connected(self)
        frames = c.frames(
            frame(BINARY, payload[:5], fin=False),
            frame(CONTINUATION, payload[5:]) + after,
        )
        self.assertEqual(frames, [(BINARY, echoReply(1, b"fragments")), reply2])

    def test_text(self) -> None:
        """A text frame is Autobahn's: the requests before it are answered, 1003."""
        (first, reply1), (second, _) = request(1), request(2)
        c = Connected(self)
        frames = c.frames(first + frame(TEXT, b"text") + second)
        self.assertEqual(frames[0], reply1)
        self.assertEqual(frames[-1][0], CLOSE)
        self.assertEqual(len(frames), 2)
        self.assertEqual(c.closeCode, 1003)

    def test_unmasked(self) -> None:
        """An unmasked frame after a request: the request is answered, 1002."""
        (first, reply1), (second, _) = request(1), request(2)
        unmasked = frame(BINARY, echoRequest(2, b"x"), masked=False)
        c = Connected(self)
        frames = c.frames(first + unmasked + second)
        self.assertEqual([f[0] for f in frames], [BINARY, CLOSE])
        self.assertEqual(frames[0], reply1)
        self.assertEqual(c.closeCode, 1002)

    def test_nonMinimalLength(self) -> None:
        """A 16-bit length where 7 bits fit is Autobahn's: 1002."""
        c = Connected(self)
        c.read(frame(BINARY, echoRequest(1, b"x"), length=16))
        self.assertEqual(c.closeCode, 1002)

    def test_64BitLength(self) -> None:
        """A 64-bit length is Autobahn's, and the fast path reads after it."""
        size = 70_000
        big, bigReply = request(1, size)
        small, smallReply = request(2)
        c = Connected(self, messageBufferSize=100_000)
        self.assertEqual(
            c.frames(big + small, small), [bigReply, smallReply, smallReply]
        )

    def test_reservedBits(self) -> None:
        """A frame with a reserved bit set is Autobahn's: 1002."""
        c = Connected(self)
        c.read(request(1)[0] + frame(BINARY, echoRequest(2, b"x"), rsv=1))
        self.assertEqual(c.closeCode, 1002)

    def test_tooLarge(self) -> None:
        """
        A 16-bit frame over the message buffer size, whole or only its
        header, is Autobahn's, which discards it: 1009, after the reply to
        the request before it.
        """
        size = 2000
        for cut in (8, 20, None):
            big = frame(BINARY, echoRequest(2, bytes(size)))
            first, reply1 = request(1)
            c = Connected(self, messageBufferSize=1024)
            frames = c.frames(first + big[:cut])
            self.assertEqual(frames[0], reply1)
            self.assertEqual(c.closeCode, 1009)

    def test_atTheLimit(self) -> None:
        """A message of exactly the message buffer size is read."""
        payload = bytes(1024 - len(echoRequest(1, b"")))
        c = Connected(self, messageBufferSize=1024)
        data = frame(BINARY, echoRequest(1, payload))
        self.assertEqual(c.frames(data), [(BINARY, echoReply(1, payload))])

    def test_violationEndsReading(self) -> None:
        """
        After a malformed message the connection closes (1002): frames
        after it in the same read are not answered, those before are.
        """
        first, reply1 = request(1)
        second, _ = request(2)
        c = Connected(self)
        frames = c.frames(first + frame(BINARY, b"\xff malformed") + second)
        self.assertEqual(frames[0], reply1)
        self.assertEqual([f[0] for f in frames[1:]], [CLOSE])
        self.assertEqual(c.closeCode, 1002)

    def test_ignoredWhileClosing(self) -> None:
        """
        While the connection waits for a running handler to close, what
        arrives is read and dropped, on the fast path as on Autobahn's:
        not answered, and not counted as a message (the read deadline is
        not pushed back by it). The running request is answered, then the
        Close frame follows.
        """
        c = Connected(self, readTimeout=10)
        sleep = wire.encodeRequest(b"\x00" * 8, "sleep", b"5000", wire.Encoding.UTF8)
        c.read(frame(BINARY, sleep))
        connection = c.server.connection
        assert connection is not None
        connection.close()
        c.harness.clock.advance(4)
        self.assertEqual(c.frames(request(2)[0], frame(BINARY, b"\xff")), [])
        c.harness.clock.advance(1)
        c.pair.flush()
        self.assertEqual(
            c.pair.client.received[1:],
            [wire.encodeReply(b"\x00" * 8, b"5000", wire.Encoding.UTF8)],
        )
        self.assertEqual(c.pair.client.closeCode, 1000)


class OverSocketTests(ConformanceMixin, TestCase):
    """The fast path on a real loopback connection."""

    timeout = 30

    async def test_pipelinedWithPing(self) -> None:
        """
        Requests of every length form written at once, a ping among them,
        then a close: every reply, the pong and the Close frame come back
        in the order of what they answer, however the server's reads cut
        the stream.
        """
        client = await self.connected(ServerOptions(messageBufferSize=100_000))
        sizes = [10, 300, 3000, 1, 70_000, 50] * 3
        sent, expected = [], []
        for n, size in enumerate(sizes, 1):
            data, reply = request(n, size)
            sent.append(data)
            expected.append(reply)
            if n == 7:
                sent.append(frame(PING, b"between"))
                expected.append((PONG, b"between"))
        client.write(b"".join(sent) + frame(CLOSE, (1000).to_bytes(2, "big")))
        for index, wanted in enumerate(expected, 1):
            got = await client.frameAt(index)
            self.assertEqual((got.opcode, got.payload), wanted, index)
        self.assertEqual(await client.closeCode(), 1000)


class SendTests(SynchronousTestCase):
    """Sending: the fast path and Autobahn's, alike on the wire."""

    def test_sameAsAutobahn(self) -> None:
        """
        Binary messages of every length form are framed as Autobahn frames
        them, whether held for the end of a read or written at once.
        """
        for size in (0, 1, 125, 126, 65535, 65536):
            payload = os.urandom(size)
            self.assertEqual(
                serverFrames(frameBinary(payload) + payload), [(BINARY, payload)]
            )
        c = Connected(self)
        c.writes.clear()
        c.server.sendMessage(b"direct", isBinary=True)
        self.assertEqual([serverFrames(w) for w in c.writes], [[(BINARY, b"direct")]])

    def test_fallbacks(self) -> None:
        """
        Text, explicit fragmentation and a message over Autobahn's limit
        go to Autobahn, in order with what is held.
        """
        c = Connected(self)
        c.writes.clear()
        c.server._fastHeld = []  # as while a read is processed
        c.server.sendMessage(b"held", isBinary=True)
        c.server.sendMessage(b"text")
        c.server.sendMessage(b"abc", isBinary=True, fragmentSize=2)
        c.server._fastHeld = None
        self.assertEqual(
            serverFrames(b"".join(c.writes)),
            [(BINARY, b"held"), (TEXT, b"text"), (BINARY, b"ab"), (CONTINUATION, b"c")],
        )

    def test_closeAfterHeld(self) -> None:
        """
        A reply held for the end of the read goes before the Close frame
        and FIN of a close the handler starts.
        """
        c = Connected(self)
        c.server.flushWrites()  # nothing held: nothing written
        self.assertEqual(c.writes, [])
        c.server._fastHeld = []
        c.server.sendMessage(b"reply", isBinary=True)
        c.server._closeConnection()
        c.server._fastHeld = None
        self.assertEqual(serverFrames(b"".join(c.writes)), [(BINARY, b"reply")])
        self.assertTrue(c.pair.serverTransport.disconnecting)


class MemoryTests(SynchronousTestCase):
    """What a connection keeps less of, and that it still works."""

    def test_synchronousSend(self) -> None:
        """
        A synchronous send goes through Autobahn's send queue (a list
        here), one frame per reactor turn, in order.
        """
        c = Connected(self)
        c.writes.clear()
        c.server.sendMessage(b"one", isBinary=True, sync=True)
        c.server.sendMessage(b"two", isBinary=True, sync=True)
        c.server.sendMessage(b"three", isBinary=True)
        c.harness.clock.advance(1)
        c.harness.clock.advance(1)
        self.assertEqual(
            serverFrames(b"".join(c.writes)),
            [(BINARY, b"one"), (BINARY, b"two"), (BINARY, b"three")],
        )
        self.assertEqual(len(c.server.send_queue), 0)

    def test_noTrafficStats(self) -> None:
        """
        Autobahn's traffic statistics are off: what its own paths count is
        dropped, and every connection reads zeros.
        """
        c = Connected(self)
        c.frames(frame(PING, b"x"), request(1)[0])
        stats: Any = c.server.trafficStats
        self.assertEqual(
            vars(TrafficStats()), {k: getattr(stats, k) for k in vars(TrafficStats())}
        )
        stats.incomingOctetsWireLevel += 10
        self.assertEqual(stats.incomingOctetsWireLevel, 0)

    def test_validatorWhenValidating(self) -> None:
        """
        A server that validates incoming UTF-8 gets a validator of its own
        per connection; the others share one they never use.
        """
        harness = ServerHarness(self, ConformanceApplication(), ServerOptions())
        idle = harness.connect().server.utf8validator
        self.assertIs(harness.connect().server.utf8validator, idle)
        harness.factory.utf8validateIncoming = True
        own = [harness.connect().server.utf8validator for _ in range(2)]
        self.assertIsNot(own[0], idle)
        self.assertIsNot(own[0], own[1])

    def test_handshakeForgotten(self) -> None:
        """Once open, Autobahn's copy of the opening handshake is dropped."""
        c = Connected(self)
        for name in _HANDSHAKE_LEFTOVERS:
            self.assertIsNone(getattr(c.server, name), name)
        connection = c.server.connection
        assert connection is not None
        self.assertEqual(connection.request.headers["upgrade"], "WebSocket")


class UnmaskTests(SynchronousTestCase):
    """L{unmask}."""

    @given(st.binary(max_size=3000), st.binary(min_size=4, max_size=4))
    def test_xor(self, payload: bytes, key: bytes) -> None:
        """Every byte is XORed with the key byte of its position modulo 4."""
        expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.assertEqual(unmask(payload, key), expected)

    def test_bothWays(self) -> None:
        """Above and below the size where the method changes."""
        key = b"\x01\x02\x03\x04"
        for size in (0, 1, 1023, 1024, 1025, 5000):
            payload = os.urandom(size)
            self.assertEqual(unmask(unmask(payload, key), key), payload)


class AutobahnShapeTests(SynchronousTestCase):
    """
    What the fast path reads of Autobahn's protocol is there, with the
    types it expects: a new Autobahn that changed it fails here, loudly.
    """

    def test_versionPinned(self) -> None:
        """The installed Autobahn is in the range setup.py allows."""
        setup = (Path(__file__).parent.parent / "setup.py").read_text()
        match = re.search(r'"autobahn\[twisted\]>=([\d.]+),<(\d+)"', setup)
        assert match is not None, "setup.py does not pin Autobahn's versions"
        low = tuple(int(p) for p in match.group(1).split("."))
        version: str = getattr(autobahn, "__version__")  # noqa: B009
        installed = tuple(int(p) for p in version.split(".")[:3])
        self.assertGreaterEqual(installed, low)
        self.assertLess(installed[0], int(match.group(2)))

    def test_stateShape(self) -> None:
        """The attributes read, on an open connection."""
        server: Any = Connected(self).server
        self.assertIsInstance(server, FastPathProtocol)
        self.assertEqual(server.state, WebSocketProtocol.STATE_OPEN)
        self.assertEqual(server.send_state, WebSocketProtocol.SEND_STATE_GROUND)
        self.assertEqual(server.data, b"")
        self.assertEqual(len(server.send_queue), 0)
        expected = {
            "current_frame": None,
            "inside_message": False,
            "_perMessageCompress": None,
            "failedByMe": False,
            "logFrames": False,
            "logOctets": False,
            "trackedTimings": None,
            "autoPingTimeoutCall": None,
            "maskServerFrames": False,
            "autoFragmentSize": 0,
        }
        self.assertEqual({k: getattr(server, k) for k in expected}, expected)
        self.assertEqual(server.maxMessagePayloadSize, server.messageBufferSize)
        self.assertEqual(server.maxFramePayloadSize, server.messageBufferSize)
        # The hooks the fast path calls or overrides.
        for name in ("_dataReceived", "onMessageEnd", "sendMessage", "sendData"):
            self.assertTrue(callable(getattr(WebSocketProtocol, name)), name)

    def test_replacedState(self) -> None:
        """
        What the server replaces of Autobahn's per-connection state is used
        only as it expects: the send queue through C{append}, C{popleft}
        and C{len}; the traffic statistics by adding to counters it has;
        the UTF-8 validator only when incoming UTF-8 is validated; what is
        kept of the opening handshake only while it is processed.
        """
        tree = ast.parse(inspect.getsource(autobahnProtocol))
        uses: dict[str, set[str]] = {}
        where: dict[str, set[str]] = {}
        for method in ast.walk(tree):
            if not isinstance(method, ast.FunctionDef):
                continue
            for node in ast.walk(method):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name)
                    and node.value.value.id == "self"
                ):
                    uses.setdefault(node.value.attr, set()).add(node.attr)
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    where.setdefault(node.attr, set()).add(method.name)
        self.assertLessEqual(uses["send_queue"], {"append", "popleft"})
        self.assertLessEqual(uses["trafficStats"], set(vars(TrafficStats())))
        self.assertEqual(uses["utf8validator"], {"reset", "validate"})
        self.assertEqual(
            where["utf8validator"], {"_connectionMade", "onFrameBegin", "onFrameData"}
        )
        handshake = {
            "processHandshake",
            "succeedHandshake",
            "processProxyConnect",
            "_actuallyStartHandshake",
            "__init__",
        }
        for name in _HANDSHAKE_LEFTOVERS:
            self.assertLessEqual(where.get(name, set()), handshake, name)
