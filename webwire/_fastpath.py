# -*- test-case-name: tests.test_fastpath -*-
"""
A fast path for the common case under Autobahn's WebSocket protocol.

Most of what a busy WebWire server reads is complete, masked, unfragmented
binary frames of a few bytes to a few KiB, and most of what it writes is
unfragmented binary frames. Autobahn handles every case of RFC 6455 and
pays for it on each of these frames (a frame header object, a masker
object, observers, traffic statistics, the arguments of debug log calls).
L{FastPathProtocol} reads and writes the common case itself and hands
everything else to Autobahn, unchanged:

  - B{Receiving} (C{dataReceived}): while Autobahn is open and between
    frames (no frame begun, no fragmented message, no compression, no frame
    or octet logging, no timing tracking, no auto-ping), each frame that is
    final, binary, masked, has no reserved bits, a 7- or 16-bit (minimal)
    length within C{maxFramePayloadSize} and C{maxMessagePayloadSize}, and
    lies completely in the buffer, is unmasked here and delivered through
    Autobahn's own C{onMessageEnd} hook, so that the overrides of
    C{onMessageEnd} (and so C{onMessage}) see it exactly as they would from
    Autobahn. At the first frame that is anything else, the rest of the
    buffer, in order, goes to Autobahn's parser. An incomplete frame at the
    end is left in Autobahn's buffer, where Autobahn expects a frame to
    begin: the next read continues it, here or there.
  - B{Sending} (C{sendMessage}): an unfragmented, uncompressed, binary
    message while Autobahn is open and idle (no fragmented message being
    sent, no queued or chopped writes, server frames unmasked, no
    automatic fragmentation that would split it, within
    C{maxMessagePayloadSize}) is framed here; anything else goes to
    Autobahn's C{sendMessage}.
  - B{Coalescing}: what is sent while one read is processed goes out in
    one C{transport.write} at the end of it. Anything Autobahn writes
    (C{sendData}: Close, Pong, a fallback message) and C{flushWrites} send
    what is held first, so the order on the wire is the order of the
    calls.
  - B{Counting}: the messages received and sent, and their payload bytes,
    are added to a L{Traffic} (the factory's C{traffic}, if it has one)
    once per read and once per coalesced write, in place of Autobahn's
    traffic statistics; Autobahn's path counts each message.

Autobahn's C{'message'} observers (C{fire}) do not see the frames of the
fast path, and neither does its debug line per read and per write. Per
connection, less is kept: no traffic statistics (C{trafficStats} is one
shared object that reads 0), a list for Autobahn's send queue (the server
never queues writes), one shared UTF-8 validator while incoming UTF-8 is
not validated, and nothing of Autobahn's copy of the opening handshake once
open. The attributes of Autobahn's protocol read or replaced here are
pinned by the Autobahn versions C{setup.py} allows; the tests check their
shape and how Autobahn uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from autobahn.websocket.utf8validator import Utf8Validator
from autobahn.websocket.xormasker import create_xor_masker  # type: ignore[attr-defined]

from webwire.traffic import Traffic

__all__ = ["FastPathProtocol", "frameBinary", "unmask"]

_OPEN: Final = WebSocketProtocol.STATE_OPEN
_SEND_GROUND: Final = WebSocketProtocol.SEND_STATE_GROUND
_FIN_BINARY: Final = 0x82
_INT_UNMASK_LIMIT: Final = 1024
"""Up to this payload size, unmasking with integers beats Autobahn's masker."""
_NO_LIMIT: Final = 1 << 64
_HEADERS: Final = tuple(bytes((_FIN_BINARY, n)) for n in range(126))
"""The headers of binary frames with a 7-bit length, by length."""


def unmask(payload: bytes, mask: bytes) -> bytes:
    """
    Unmask (or mask) a WebSocket payload.

    :param payload: The payload, any length.
    :param mask: The frame's 4-byte masking key.
    :returns: C{payload} XOR the key repeated.
    """
    n = len(payload)
    if n > _INT_UNMASK_LIMIT:
        result: bytes = create_xor_masker(mask, n).process(payload)
        return result
    if not n:
        return b""
    key = int.from_bytes((mask * ((n + 3) >> 2))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def frameBinary(payload: bytes) -> bytes:
    """
    The header of a final, unmasked, uncompressed binary frame.

    :param payload: The frame's payload (at most 2**63 - 1 bytes).
    :returns: The 2-, 4- or 10-byte header that goes before it.
    """
    n = len(payload)
    if n < 126:
        return _HEADERS[n]
    if n < 0x10000:
        return b"\x82\x7e" + n.to_bytes(2, "big")
    return b"\x82\x7f" + n.to_bytes(8, "big")


class _NoTrafficStats(TrafficStats):
    """
    Autobahn's traffic statistics, switched off: every counter reads 0 and
    what is added to it is dropped. One serves every connection.
    """

    def __init__(self) -> None:
        pass

    def __setattr__(self, name: str, value: object) -> None:
        pass


for _name, _value in vars(TrafficStats()).items():
    setattr(_NoTrafficStats, _name, _value)

_NO_TRAFFIC_STATS: Final = _NoTrafficStats()
_IDLE_VALIDATOR: Final = Utf8Validator()
"""Shared by the connections that do not validate incoming UTF-8."""

_HANDSHAKE_LEFTOVERS: Final = (
    "http_request_data",
    "http_response_data",
    "http_headers",
    "http_status_line",
    "http_request_params",
    "websocket_extensions",
)
"""What Autobahn keeps of the opening handshake and reads no more once open."""


class _SendQueue(list[tuple[bytes, bool]]):
    """
    Autobahn's queue of chopped or synchronous writes, which the server
    never makes: a list is as good as a deque for it, and a tenth the size
    while empty.
    """

    __slots__ = ()

    def popleft(self) -> tuple[bytes, bool]:
        return self.pop(0)


class FastPathProtocol(WebSocketServerProtocol):
    """
    Autobahn's C{WebSocketServerProtocol} with the fast path (see the
    module docstring).
    """

    if TYPE_CHECKING:
        # Autobahn's options, copied from its factory per connection.
        maxMessagePayloadSize: int
        maxFramePayloadSize: int

    _fastHeld: list[bytes] | None = None
    """
    Frames held until the read being processed is done, or C{None}: a
    header and a payload for each message.
    """
    _fastMessage: bytes | None = None
    """The payload being delivered through C{onMessageEnd}."""
    _reading = False
    """Whether a read is being processed."""
    traffic: Traffic
    """
    What this connection's messages are counted in: its factory's
    C{traffic} if that is a L{Traffic}, else one of its own.
    """

    # Memory per connection -------------------------------------------------

    def _connectionMade(self) -> None:
        super()._connectionMade()
        autobahn: Any = self
        autobahn.trafficStats = _NO_TRAFFIC_STATS
        autobahn.send_queue = _SendQueue()
        if not autobahn.utf8validateIncoming:
            autobahn.utf8validator = _IDLE_VALIDATOR
        traffic = getattr(self.factory, "traffic", None)
        self.traffic = traffic if isinstance(traffic, Traffic) else Traffic()

    def _onOpen(self) -> None:
        for name in _HANDSHAKE_LEFTOVERS:
            setattr(self, name, None)
        super()._onOpen()

    # Receiving ------------------------------------------------------------

    def _fastReadable(self) -> bool:
        """Whether Autobahn is where the fast path may read a frame."""
        autobahn: Any = self  # typed as always set, which these are not
        return (
            autobahn.state == _OPEN
            and autobahn.current_frame is None
            and not autobahn.inside_message
            and autobahn._perMessageCompress is None
            and not autobahn.failedByMe
            and not autobahn.logFrames
            and not autobahn.logOctets
            and autobahn.trackedTimings is None
            and autobahn.autoPingTimeoutCall is None
        )

    def dataReceived(self, data: bytes) -> None:
        # Autobahn logs a debug line per read, whose arguments (highlighted
        # with click) cost more than reading a small frame.
        self._dataReceived(data)

    def _dataReceived(self, data: bytes) -> None:
        if self._reading:
            # A read within a read: the outer one ends it (and writes what
            # is held).
            self._fastReceive(data)
            return
        self._reading = True
        # Held only while open: the opening handshake's writes are not.
        held: list[bytes] | None = [] if self.state == _OPEN else None
        self._fastHeld = held
        self.beforeRead()
        try:
            self._fastReceive(data)
        finally:
            self._fastHeld = None
            self._reading = False
            try:
                if held:
                    self._fastWrite(held)
            finally:
                self.afterRead()

    def beforeRead(self) -> None:
        """
        Called before what one read brought is processed (not for a read
        within a read): override to act per read.
        """

    def afterRead(self) -> None:
        """
        Called once what one read brought is processed and what that sent
        is written (see L{beforeRead}).
        """

    def _fastReceive(self, data: bytes) -> None:
        if not self._fastReadable():
            super()._dataReceived(data)
            return
        if self.data:
            data = self.data + data
            self.data = b""
        size = len(data)
        position = 0
        limit = min(
            (
                n
                for n in (self.maxMessagePayloadSize, self.maxFramePayloadSize)
                if n > 0
            ),
            default=_NO_LIMIT,
        )
        fromBytes = int.from_bytes
        autobahn: Any = self
        # Whether what is left is the beginning of a frame the fast path
        # reads once it is complete.
        incomplete = True
        # Counted here, added to the traffic once the read is done.
        received = receivedBytes = 0
        try:
            while position < size:
                if data[position] != _FIN_BINARY:
                    incomplete = False
                    break
                if size - position < 2:
                    break
                second = data[position + 1]
                if second < 0x80:
                    incomplete = False  # unmasked: a violation
                    break
                length = second & 0x7F
                if length < 126:
                    start = position + 6
                elif length == 126:
                    if size - position < 4:
                        break
                    length = int.from_bytes(data[position + 2 : position + 4], "big")
                    if length < 126:
                        incomplete = False  # not minimal: a violation
                        break
                    start = position + 8
                else:
                    incomplete = False  # a 64-bit length
                    break
                if length > limit:
                    incomplete = False  # too large: discarded as it arrives
                    break
                end = start + length
                if end > size:
                    break
                if length > _INT_UNMASK_LIMIT:
                    payload = unmask(data[start:end], data[start - 4 : start])
                else:
                    # unmask(), inline: most frames are small.
                    key = data[start - 4 : start] * ((length + 3) >> 2)
                    payload = (
                        fromBytes(data[start:end], "little")
                        ^ fromBytes(key[:length], "little")
                    ).to_bytes(length, "little")
                position = end
                received += 1
                receivedBytes += length
                self._fastMessage = payload
                try:
                    self.onMessageEnd()
                finally:
                    self._fastMessage = None
                # What a message can change of the conditions of _fastReadable
                # (the rest is settled by the handshake or Autobahn's options).
                if (
                    autobahn.state != _OPEN
                    or autobahn.failedByMe
                    or autobahn.current_frame is not None
                    or autobahn.inside_message
                ):
                    incomplete = False
                    break
        finally:
            if received:
                traffic = self.traffic
                traffic.messagesReceived += received
                traffic.bytesReceived += receivedBytes
        if position == size:
            return
        rest = data[position:] if position else data
        if incomplete:
            # Where Autobahn expects a frame to begin: the next read
            # continues it, here or there.
            self.data = rest
            return
        super()._dataReceived(rest)

    def onMessageEnd(self) -> None:
        payload = self._fastMessage
        if payload is None:
            super().onMessageEnd()
            return
        self._fastMessage = None
        self.message_data = None  # type: ignore[assignment]
        self.onMessage(payload, True)

    def _onMessage(self, payload: bytes, isBinary: bool) -> None:
        # A message Autobahn read (the fast path's are counted per read).
        traffic = self.traffic
        traffic.messagesReceived += 1
        traffic.bytesReceived += len(payload)
        super()._onMessage(payload, isBinary)

    # Sending --------------------------------------------------------------

    def sendMessage(
        self,
        payload: bytes,
        isBinary: bool = False,
        fragmentSize: int | None = None,
        sync: bool = False,
        doNotCompress: bool = False,
    ) -> None:
        n = len(payload)
        autobahn: Any = self  # typed as always set, which these are not
        if (
            isBinary
            and fragmentSize is None
            and not sync
            and autobahn.state == _OPEN
            and autobahn.send_state == _SEND_GROUND
            and autobahn._perMessageCompress is None
            and not autobahn.send_queue
            and not autobahn.maskServerFrames
            and not autobahn.logFrames
            and not autobahn.logOctets
            and autobahn.trackedTimings is None
            and not (0 < autobahn.autoFragmentSize < n)
            and not (0 < autobahn.maxMessagePayloadSize < n)
            and type(payload) is bytes
        ):
            header = _HEADERS[n] if n < 126 else frameBinary(payload)
            held = self._fastHeld
            if held is None:
                autobahn.transport.write(header + payload)
                self._countSent(n)
            else:  # counted when written
                held.append(header)
                held.append(payload)
            return
        self.flushWrites()
        super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
        self._countSent(n)

    def _countSent(self, size: int) -> None:
        traffic = self.traffic
        traffic.messagesSent += 1
        traffic.bytesSent += size

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        self.flushWrites()
        super().sendData(data, sync, chopsize)

    def flushWrites(self) -> None:
        """
        Write what is held for the end of the current read now; call it
        before writing to the transport or closing it other than through
        Autobahn.
        """
        held = self._fastHeld
        if held:
            data = held[:]
            del held[:]
            self._fastWrite(data)

    def _fastWrite(self, frames: list[bytes]) -> None:
        """Write held C{frames} (headers and payloads) and count them."""
        transport: Any = self.transport
        transport.write(b"".join(frames))
        traffic = self.traffic
        traffic.messagesSent += len(frames) >> 1
        traffic.bytesSent += sum(map(len, frames[1::2]))
