"""
A lean load generator process for C{python -m benchmarks.roundtrip}: plain
sockets and C{selectors}, no WebSocket library, so that it costs far less
CPU per request than the servers it loads.

Every request frame is encoded and masked once, before the run: slot M{i}
of a connection always sends the same frame (request identifier M{i}), and
the reply to it must be exactly the bytes expected for slot M{i}. While
running, a reply frees its slot and, in closed-loop mode, sends the slot's
frame again at once; all frames freed by one read go out in one C{send}.

It is started as C{python -m benchmarks._rawload CONFIG}, CONFIG being
JSON (see L{Config}), and obeys commands on its standard input, one a line,
answering on its standard output:

  - (at start) connects and completes every handshake, then says C{ready};
  - C{start}: starts sending (closed loop, or paced at C{rate} requests/s);
  - C{begin N}: starts a measurement window (counts and latencies reset);
    says C{begun N};
  - C{end N}: ends it; says C{ended N JSON} with what the window counted;
  - C{stop} (or end of input): stops sending, waits for the outstanding
    replies, closes every connection (close frame, then the server's close
    and end of stream) and says C{done}.

A wrong reply, a closed connection or a stalled phase ends it with a message
on standard error and exit status 1.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from webwire import wire

PHASE_TIMEOUT = 30.0  # seconds to connect, drain or close
MASK = b"\x5a\xc3\x17\x8e"  # any key does; the server only unmasks with it
CLOSE_NORMAL = (1000).to_bytes(2, "big")


class LoadError(Exception):
    """A server answered wrongly, or a phase did not finish."""


def maskBytes(payload: bytes, key: bytes = MASK) -> bytes:
    """XOR C{payload} with the 4-byte masking C{key} (RFC 6455, 5.3)."""
    n = len(payload)
    keystream = (key * (n // 4 + 1))[:n]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")
    return masked.to_bytes(n, "big")


def clientFrame(payload: bytes, opcode: int = 2, key: bytes = MASK) -> bytes:
    """One final, masked client frame with the shortest length encoding."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 0x10000:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + key + maskBytes(payload, key)


@dataclass(frozen=True)
class Config:
    """
    What one generator does.

    :ivar port: The server's port on 127.0.0.1.
    :ivar server: C{webwire} (waits for AcceptConf; replies are Replies) or
        C{echo} (replies are the requests sent back).
    :ivar connections: Connections of this process.
    :ivar inflight: Requests in flight per connection (at most).
    :ivar payload: Payload bytes per request.
    :ivar encoding: C{binary}, C{utf8} or C{utf16}.
    :ivar rate: Requests per second of this process (paced, at most
        C{inflight} outstanding per connection), or C{None}: closed loop.
    :ivar heartbeat: Send heartbeats (no reply) at C{rate} instead.
    :ivar cpus: CPUs to run on, or empty: any.
    """

    port: int
    server: str
    connections: int
    inflight: int = 1
    payload: int = 64
    encoding: str = "binary"
    rate: float | None = None
    heartbeat: bool = False
    cpus: tuple[int, ...] = ()


def payloadBytes(size: int, encoding: str) -> bytes:
    """C{size} bytes of valid text (or any bytes for binary)."""
    if encoding == "binary":
        return bytes(i % 251 for i in range(size))
    if encoding == "utf8":
        text = "Grüße, 世界! " * (size // 8 + 1)
        data = text.encode("utf-8")[:size]
        return data.decode("utf-8", "ignore").encode("utf-8").ljust(size, b" ")
    text = "Grüße, 世界! " * (size // 2 + 1)
    return text.encode("utf-16-le")[: size - size % 2]


def requestAndReply(config: Config, slot: int) -> tuple[bytes, bytes]:
    """The request frame of C{slot} and the message payload of its reply."""
    identifier = slot.to_bytes(8, "little")
    encoding = {
        "binary": wire.Encoding.BINARY,
        "utf8": wire.Encoding.UTF8,
        "utf16": wire.Encoding.UTF16,
    }[config.encoding]
    data = payloadBytes(config.payload, config.encoding)
    request = wire.encodeRequest(identifier, "echo", data, encoding)
    if config.server == "echo":
        return clientFrame(request), request
    return clientFrame(request), wire.encodeReply(identifier, data, encoding)


class Connection:
    """One connection's socket, its unparsed input and its request slots."""

    def __init__(self, sock: socket.socket, inflight: int) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.sentAt = [0.0] * inflight
        self.busy = [False] * inflight
        self.free = list(range(inflight))  # slots with no request outstanding
        self.pending = b""  # bytes the socket did not take yet
        self.closed = False


def handshake(config: Config, path: str = "/") -> Connection:
    """Connect, upgrade and (for WebWire) read the AcceptConf; blocking."""
    sock = socket.create_connection(("127.0.0.1", config.port), timeout=PHASE_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{config.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode("ascii")
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise LoadError("the server closed during the handshake")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise LoadError(f"handshake refused: {head[:60]!r}")
    connection = Connection(sock, config.inflight)
    connection.buffer += rest
    if config.server == "webwire":
        while (frame := nextFrame(connection.buffer)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise LoadError("the server closed before its AcceptConf")
            connection.buffer += chunk
        opcode, payload, end = frame
        if opcode != 2 or not isinstance(wire.parse(payload), wire.AcceptConf):
            raise LoadError(f"first message is not AcceptConf: {payload[:24]!r}")
        del connection.buffer[:end]
    sock.setblocking(False)
    return connection


def nextFrame(buffer: bytearray, start: int = 0) -> tuple[int, bytes, int] | None:
    """The first complete server frame at C{start}: opcode, payload, end."""
    available = len(buffer) - start
    if available < 2:
        return None
    first, second = buffer[start], buffer[start + 1]
    if second & 0x80 or not first & 0x80 or first & 0x70:
        raise LoadError(f"not a final, unmasked plain frame: {first:#x} {second:#x}")
    length, header = second, 2
    if length == 126:
        if available < 4:
            return None
        length, header = int.from_bytes(buffer[start + 2 : start + 4], "big"), 4
    elif length == 127:
        if available < 10:
            return None
        length, header = int.from_bytes(buffer[start + 2 : start + 10], "big"), 10
    end = start + header + length
    if len(buffer) < end:
        return None
    return first & 0x0F, bytes(buffer[start + header : end]), end


class Generator:
    """The load of one process: its connections, counts and commands."""

    def __init__(self, config: Config) -> None:
        self.config = config
        pairs = [requestAndReply(config, slot) for slot in range(config.inflight)]
        self.frames = [frame for frame, _ in pairs]
        self.replies = [reply for _, reply in pairs]
        self.heartbeat = clientFrame(wire.encodeHeartbeat())
        self.echoedHeartbeat = (
            wire.encodeHeartbeat()
            if config.heartbeat and config.server == "echo"
            else None
        )
        self.connections: list[Connection] = []
        self.selector = selectors.DefaultSelector()
        self.sending = False
        self.startedAt = 0.0
        self.issued = 0  # paced mode: requests sent since start
        self.skipped = 0  # paced mode: due, but every slot was busy
        self.next = 0  # paced mode: the next connection to try
        self.completed = 0
        self.sent = 0
        self.latencies: Counter[int] = Counter()  # microseconds: count
        self.windowStart = 0.0
        self.input = b""

    def say(self, line: str) -> None:
        os.write(1, line.encode("ascii") + b"\n")

    def connect(self) -> None:
        for _ in range(self.config.connections):
            connection = handshake(self.config)
            self.connections.append(connection)
            self.selector.register(connection.sock, selectors.EVENT_READ, connection)
        os.set_blocking(0, False)
        self.selector.register(0, selectors.EVENT_READ, None)
        self.say("ready")

    # Sending ---------------------------------------------------------------

    def send(self, connection: Connection, data: bytes) -> None:
        if connection.pending:
            connection.pending += data
            return
        try:
            sent = connection.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            connection.pending = data[sent:]
            self.selector.modify(
                connection.sock,
                selectors.EVENT_READ | selectors.EVENT_WRITE,
                connection,
            )

    def flush(self, connection: Connection) -> None:
        data, connection.pending = connection.pending, b""
        self.selector.modify(connection.sock, selectors.EVENT_READ, connection)
        self.send(connection, data)

    def fill(self, connection: Connection, now: float) -> None:
        """Closed loop: send a request on every free slot."""
        frames, sentAt, busy = self.frames, connection.sentAt, connection.busy
        out = []
        for slot in connection.free:
            out.append(frames[slot])
            sentAt[slot] = now
            busy[slot] = True
        self.sent += len(out)
        connection.free.clear()
        if out:
            self.send(connection, b"".join(out))

    def pace(self, now: float) -> None:
        """Paced mode: send what is due by now, on connections in turn."""
        rate = self.config.rate
        assert rate is not None
        due = int((now - self.startedAt) * rate) - self.issued
        if due <= 0:
            return
        self.issued += due
        if self.config.heartbeat:
            self.send(self.connections[0], self.heartbeat * due)
            self.sent += due
            return
        connections = self.connections
        count = len(connections)
        batches: dict[int, list[bytes]] = {}
        tried = 0
        while due and tried < count:
            index = self.next
            self.next = (index + 1) % count
            connection = connections[index]
            if connection.free:
                slot = connection.free.pop()
                connection.sentAt[slot] = now
                connection.busy[slot] = True
                batches.setdefault(index, []).append(self.frames[slot])
                due -= 1
                tried = 0
            else:
                tried += 1
        self.skipped += due
        self.sent += sum(len(frames) for frames in batches.values())
        for index, frames in batches.items():
            self.send(connections[index], b"".join(frames))

    # Receiving -------------------------------------------------------------

    def received(self, connection: Connection, now: float) -> None:
        try:
            data = connection.sock.recv(262144)
        except BlockingIOError:
            return
        if not data:
            raise LoadError("the server closed a connection")
        buffer = connection.buffer
        buffer += data
        replies, sentAt, busy = self.replies, connection.sentAt, connection.busy
        latencies, inflight = self.latencies, self.config.inflight
        position = 0
        while (frame := nextFrame(buffer, position)) is not None:
            opcode, payload, position = frame
            if opcode != 2:
                raise LoadError(f"unexpected frame, opcode {opcode}: {payload[:24]!r}")
            if payload == self.echoedHeartbeat:
                continue  # the bare echo server sends heartbeats back too
            slot = int.from_bytes(payload[1:9], "little")
            if slot >= inflight or not busy[slot] or payload != replies[slot]:
                raise LoadError(f"wrong or unexpected reply {payload[:24]!r}")
            busy[slot] = False
            connection.free.append(slot)
            latencies[int((now - sentAt[slot]) * 1e6)] += 1
            self.completed += 1
        del buffer[:position]
        if self.sending and self.config.rate is None:
            self.fill(connection, now)

    # Commands --------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Obey one command; False once told to stop."""
        word, _, argument = line.partition(" ")
        if word == "start":
            self.sending = True
            self.startedAt = time.perf_counter()
            if self.config.rate is None:
                for connection in self.connections:
                    self.fill(connection, self.startedAt)
        elif word == "begin":
            self.completed = self.sent = self.skipped = 0
            self.latencies.clear()
            self.windowStart = time.perf_counter()
            self.say(f"begun {argument}")
        elif word == "end":
            elapsed = time.perf_counter() - self.windowStart
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {
                "completed": self.completed,
                "sent": self.sent,
                "skipped": self.skipped,
                "elapsed": elapsed,
                "cpu": usage.ru_utime + usage.ru_stime,
                "latencies": {str(k): v for k, v in self.latencies.items()},
            }
            self.say(f"ended {argument} {json.dumps(stats, separators=(',', ':'))}")
        elif word == "stop":
            return False
        return True

    def commands(self) -> bool:
        data = os.read(0, 4096)
        if not data:
            return False
        *lines, self.input = (self.input + data).split(b"\n")
        return all([self.command(line.decode("ascii").strip()) for line in lines])

    def run(self) -> None:
        """Serve commands and the connections until told to stop."""
        select, paced = self.selector.select, self.config.rate is not None
        running = True
        while running:
            timeout = 0.0005 if paced and self.sending else None
            for key, events in select(timeout):
                connection = key.data
                if connection is None:
                    running = self.commands() and running
                    continue
                if events & selectors.EVENT_WRITE:
                    self.flush(connection)
                if events & selectors.EVENT_READ:
                    self.received(connection, time.perf_counter())
            if paced and self.sending:
                self.pace(time.perf_counter())

    def finish(self) -> None:
        """Collect the outstanding replies, then close every connection."""
        self.sending = False
        self.selector.unregister(0)
        deadline = time.monotonic() + PHASE_TIMEOUT
        inflight = self.config.inflight
        while any(len(c.free) < inflight or c.pending for c in self.connections):
            if time.monotonic() > deadline:
                raise LoadError("the last replies did not come")
            for key, events in self.selector.select(1.0):
                if events & selectors.EVENT_WRITE:
                    self.flush(key.data)
                if events & selectors.EVENT_READ:
                    self.received(key.data, time.perf_counter())
        closeFrame = clientFrame(CLOSE_NORMAL, opcode=8)
        for connection in self.connections:
            connection.sock.setblocking(True)
            connection.sock.settimeout(PHASE_TIMEOUT)
            connection.sock.sendall(closeFrame)
        for connection in self.connections:
            while connection.sock.recv(65536):
                pass  # the server's close frame, then the end of the stream
            connection.sock.close()
        self.say("done")


def main(argv: list[str]) -> None:
    raw: dict[str, Any] = json.loads(argv[0])
    raw["cpus"] = tuple(raw.get("cpus", ()))
    config = Config(**raw)
    if config.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, config.cpus)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    generator = Generator(config)
    try:
        generator.connect()
        generator.run()
        generator.finish()
    except (LoadError, OSError) as e:
        sys.stderr.write(f"load generator: {e}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])
