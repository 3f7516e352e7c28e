"""
One load process of the stress run (C{python -m benchmarks.stress load}):
raw WebSocket connections (the framing is written here, so that frames can
be fragmented, interleaved with pings, oversized or broken at will), each
running one random episode, every reply checked by a L{ConnectionCheck}.
The process ends by printing its L{Tally} as one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import struct
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from benchmarks._common import BenchmarkError, report, within
from benchmarks._stresscheck import ConnectionCheck, Expected, Generator, Tally
from webwire import wire

REPLY_TIMEOUT = 10.0  # seconds for the replies of one burst
CLOSE_TIMEOUT = 10.0  # seconds from a close (or a violation) to the TCP close
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
(CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG) = (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
PROTOCOL_ERROR_CLOSES = frozenset({1002, None})  # None: TCP closed, no Close
_RESERVED_OPCODE = 0x3


def frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    maskKey: bytes | None = b"\x00\x00\x00\x00",
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """
    One WebSocket frame from a client: masked with C{maskKey} (unmasked if
    C{None}), its header declaring C{length} (default: the payload's).
    """
    length = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask = 0x80 if maskKey is not None else 0
    if length < 126:
        header = struct.pack("!BB", first, mask | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask | 127, length)
    if maskKey is None:
        return header + payload
    if maskKey != b"\x00\x00\x00\x00" and payload:
        n = len(payload)
        keyStream = (maskKey * (n // 4 + 1))[:n]
        masked = int.from_bytes(payload, "big") ^ int.from_bytes(keyStream, "big")
        payload = masked.to_bytes(n, "big")
    return header + maskKey + payload


class StressConnection(Protocol):
    """
    One raw WebSocket client connection: sends what its episode writes,
    hands every binary message from the server to its L{ConnectionCheck},
    answers nothing, and records how it closed.
    """

    def __init__(self, check: ConnectionCheck, rng: random.Random, path: str) -> None:
        self.check = check
        self.rng = rng
        self.path = path
        self.key = base64.b64encode(rng.randbytes(16))
        self.buffer = b""
        self.upgraded = False
        self.httpStatus = ""
        self.acceptConf: wire.AcceptConf | None = None
        self.opened: Deferred[wire.AcceptConf] = Deferred()
        self.endWaiters: list[Deferred[None]] = []
        self.gone = False
        self.fragments: list[bytes] = []
        self.textMessage = False
        self.closeCode: int | None = None
        self.closeReceived = False
        # Payloads of the pings not answered yet, with how many of each (two
        # pings may carry the same payload, the empty one above all).
        self.pings: Counter[bytes] = Counter()
        self.waiter: Deferred[None] | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        host = self.transport.getPeer()
        request = (
            f"GET {self.path} HTTP/1.1\r\n"
            f"Host: {host.host}:{host.port}\r\n"  # type: ignore[attr-defined]
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.transport.write(request.encode("ascii"))

    def write(self, data: bytes) -> None:
        if not self.gone:
            assert self.transport is not None
            self.transport.write(data)

    def send(self, data: bytes, opcode: int = BINARY) -> None:
        self.write(frame(opcode, data, maskKey=self.rng.randbytes(4)))

    def ping(self, payload: bytes, fin: bool = True) -> bytes:
        self.pings[payload] += 1
        return frame(PING, payload, fin=fin)

    @property
    def idle(self) -> bool:
        return self.check.idle and not self.pings

    def whenIdle(self) -> Deferred[None]:
        """Fires once nothing more is expected (or the connection is gone)."""
        d: Deferred[None] = Deferred()
        if self.idle or self.gone:
            d.callback(None)
        else:
            self.waiter = d
        return d

    def whenEnded(self) -> Deferred[None]:
        """Fires once the TCP connection is gone (a new Deferred each call)."""
        d: Deferred[None] = Deferred()
        if self.gone:
            d.callback(None)
        else:
            self.endWaiters.append(d)
        return d

    def _wake(self) -> None:
        if self.waiter is not None and (self.idle or self.gone):
            waiter, self.waiter = self.waiter, None
            if not waiter.called:  # else it timed out
                waiter.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.httpStatus = head.split(b"\r\n", 1)[0].decode("latin-1")
            accept = base64.b64encode(hashlib.sha1(self.key + _GUID).digest())
            if " 101 " not in self.httpStatus + " " or accept not in head:
                self._abort()
                return
            self.upgraded, self.buffer = True, rest
        self._frames()
        self._wake()

    def _frames(self) -> None:
        buffer = self.buffer
        offset = 0
        while len(buffer) - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, start = second & 0x7F, offset + 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if second & 0x80 or len(buffer) - start < length:
                if second & 0x80:
                    self.check._mismatch("masked frame from the server")
                    self._abort()
                break
            payload = buffer[start : start + length]
            offset = start + length
            self._frame(first & 0x0F, bool(first & 0x80), payload)
        self.buffer = buffer[offset:]

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode in (BINARY, TEXT, CONTINUATION):
            self.fragments.append(payload)
            if opcode != CONTINUATION:
                self.textMessage = opcode == TEXT
            if fin:
                message, self.fragments = b"".join(self.fragments), []
                if self.textMessage:
                    self.check._mismatch(f"text message {message[:24]!r}")
                elif self.acceptConf is None:
                    self._accepted(message)
                else:
                    self.check.received(message)
        elif opcode == CLOSE:
            self.closeReceived = True
            if len(payload) >= 2:
                (self.closeCode,) = struct.unpack("!H", payload[:2])
        elif opcode == PONG:
            if self.pings[payload] > 0:
                self.pings[payload] -= 1
                if not self.pings[payload]:
                    del self.pings[payload]
                self.check.tally["pongs verified"] += 1
            else:
                self.check._mismatch(f"pong {payload!r} to no ping")

    def _accepted(self, message: bytes) -> None:
        try:
            accept = wire.parse(message)
        except wire.ProtocolViolation:
            accept = None
        if not isinstance(accept, wire.AcceptConf):
            self.check._mismatch(f"first message {message[:24]!r} is no AcceptConf")
            self._abort()
            return
        self.acceptConf = accept
        self.opened.callback(accept)

    def _abort(self) -> None:
        if not self.gone:
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.gone = True
        if not self.opened.called:
            self.opened.errback(BenchmarkError(f"not upgraded ({self.httpStatus!r})"))
        self._wake()
        waiters, self.endWaiters = self.endWaiters, []
        for waiter in waiters:
            if not waiter.called:  # else it timed out
                waiter.callback(None)


class Load:
    """
    What the connections of one load process share: options, tally, the
    message budget and the pool of sessions to restore.
    """

    def __init__(self, reactor: Any, opts: argparse.Namespace) -> None:
        self.reactor = reactor
        self.port: int = opts.port
        self.host: str = opts.host
        self.path: str = opts.path
        self.budget: int = opts.messages
        self.deadline = time.monotonic() + opts.duration
        self.rng = random.Random(f"{opts.seed}:{opts.worker}")
        self.worker: str = opts.worker
        self.tally = Tally()
        self.sessions: list[tuple[str, str]] = []  # (key, user), free to take
        self.episodes = 0
        self.closingOversize = max(1, opts.messages // 20_000)

    def more(self) -> bool:
        return self.tally["messages"] < self.budget and time.monotonic() < self.deadline


class Episode:
    """One connection's life: connect, random bursts, then its ending."""

    def __init__(self, load: Load, number: int) -> None:
        self.load = load
        self.rng = random.Random(load.rng.getrandbits(64))
        self.name = f"{load.worker}c{number}"
        self.check = ConnectionCheck(load.tally, self.name)
        self.tally = load.tally
        self.conn = StressConnection(self.check, self.rng, self.load.path)
        self.generator = Generator(self.rng, wire.DEFAULT_MESSAGE_BUFFER_SIZE)
        self.held: tuple[str, str] | None = None  # a pooled session in use

    async def run(self) -> None:
        load, rng, tally = self.load, self.rng, self.tally
        endpoint = TCP4ClientEndpoint(load.reactor, load.host, load.port, timeout=10)
        await connectProtocol(endpoint, self.conn)
        tally["connections"] += 1
        if rng.random() < 0.02:  # abort during the opening handshake
            self.conn.opened.addErrback(lambda failure: None)  # expected
            self.conn.write(b"GET / HTTP/1.1\r\nHost: x\r\n"[: rng.randint(0, 20)])
            return await self.abort()
        accept = await within(load.reactor, self.conn.opened, REPLY_TIMEOUT, "open")
        self.generator.maxSize = accept.messageBufferSize
        kind = rng.choices(
            ("clean", "malformed", "abort", "slow", "session", "oddity"),
            (30, 22, 12, 8, 14, 14),
        )[0]
        if kind == "slow" and load.closingOversize > 0 and rng.random() < 0.05:
            load.closingOversize -= 1
            kind = "closing-oversize"
        tally[f"episode {kind}"] += 1
        try:
            if kind == "session":
                await self.session()
            elif kind == "closing-oversize":
                return await self.closingOversize()
            else:
                for _ in range(rng.randint(0, 4)):
                    if self.conn.gone or not load.more():
                        break
                    await self.burst(slow=kind == "slow" and rng.random() < 0.5)
            if kind == "abort":
                return await self.abort(midFrame=rng.random() < 0.5)
            if kind in ("malformed", "oddity") or (
                kind == "slow" and rng.random() < 0.5
            ):
                return await self.violate(kind, slow=kind == "slow")
            await self.close()
        finally:
            if self.held is not None:
                load.sessions.append(self.held)

    def count(self, n: int = 1) -> None:
        self.tally["messages"] += n

    def sendAll(self, writes: list[bytes]) -> None:
        """Write C{writes} in one or several pieces, split anywhere."""
        data = b"".join(writes)
        rng = self.rng
        if rng.random() < 0.3 and len(data) > 1:
            cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                self.conn.write(data[a:b])
        else:
            self.conn.write(data)

    def message(self, data: bytes) -> bytes:
        """The frames of one binary message: whole, or fragmented with pings."""
        rng = self.rng
        if rng.random() >= 0.1 or len(data) < 2:
            return frame(BINARY, data, maskKey=rng.randbytes(4))
        cuts = sorted(
            rng.sample(range(1, len(data)), min(rng.randint(1, 4), len(data) - 1))
        )
        parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        out = []
        for i, part in enumerate(parts):
            opcode = BINARY if i == 0 else CONTINUATION
            out.append(frame(opcode, part, fin=i == len(parts) - 1))
            if i < len(parts) - 1 and rng.random() < 0.5:
                out.append(self.conn.ping(rng.randbytes(rng.randint(0, 125))))
                self.tally["pings"] += 1
        return b"".join(out)

    def burstMessages(self, size: int, slow: bool) -> list[tuple[bytes, Any]]:
        """C{size} random valid messages with their expectations."""
        generator, rng = self.generator, self.rng
        messages: list[tuple[bytes, Any]] = []
        for _ in range(size):
            roll = rng.random()
            if slow:
                item: tuple[bytes, Any] = generator.request("signal-me")
            elif roll < 0.62:
                item = generator.request()
            elif roll < 0.72:
                item = generator.signal()
            elif roll < 0.77:
                item = (wire.encodeHeartbeat(), None)
            elif roll < 0.80:
                item = (generator.serverOnly(), None)
            elif roll < 0.83:
                item = generator.sleep()
            else:
                data, expected, valid = generator.mutated()
                if not valid:
                    continue
                item = (data, expected)
            messages.append(item)
        return messages

    def expect(self, items: list[tuple[bytes, Any]]) -> None:
        for data, expected in items:
            if isinstance(expected, Expected):
                self.check.expect(data[1:9], expected)
            elif expected is not None:
                self.check.expectSignal(expected)

    async def burst(
        self,
        slow: bool = False,
        extra: list[bytes] | None = None,
        lead: list[bytes] | None = None,
    ) -> None:
        """
        Send C{lead}, a burst of valid messages, then C{extra}; await every
        answer (unless C{extra} ends the connection).
        """
        rng = self.rng
        items = self.burstMessages(rng.randint(1, 48), slow)
        if slow:
            self.pauseReading()
        self.expect(items)
        self.count(len(items))
        messages = [self.message(data) for data, _ in items]
        self.sendAll((lead or []) + messages + (extra or []))
        if extra:
            return
        await self.idle()

    async def idle(self) -> None:
        try:
            await within(self.load.reactor, self.conn.whenIdle(), REPLY_TIMEOUT, "")
        except BenchmarkError:
            self.tally.fail("stalled", f"{self.name}: no answers for {REPLY_TIMEOUT}s")
            self.check.finish(complete=True)
            self.conn._abort()
            await self.conn.whenEnded()

    def pauseReading(self) -> None:
        """Read nothing for a while: the server's output queues up."""
        transport: Any = self.conn.transport
        transport.pauseProducing()
        delay = self.rng.uniform(0.05, 0.5)
        self.load.reactor.callLater(delay, transport.resumeProducing)
        self.tally["slow reads"] += 1

    async def session(self) -> None:
        """Log in or restore a pooled session, ask who we are, maybe log out."""
        load, rng, generator = self.load, self.rng, self.generator
        if load.sessions and rng.random() < 0.6:
            key, user = self.held = load.sessions.pop(rng.randrange(len(load.sessions)))
            await self.step(generator.restore(key, user))
        else:
            if rng.random() < 0.3:
                letters = "abcdefghijklmnopqrstuvwxyz:0123456789"
                bogus = "".join(rng.choices(letters, k=rng.randint(1, 64)))
                await self.step(generator.restore(bogus, None))
            user = f"user{rng.getrandbits(32):08x}"
            await self.step(generator.login(user))
            if self.check.sessionKey is not None:
                self.held = (self.check.sessionKey, user)
        if rng.random() < 0.5 and load.more():
            await self.burst()
        await self.step(generator.whoami(self.check.sessionKey))
        if rng.random() < 0.3:
            await self.step(generator.logout(self.check.sessionKey is not None))
            self.held = None

    async def step(self, item: tuple[bytes, Expected]) -> None:
        data, expected = item
        self.check.expect(data[1:9], expected)
        self.count()
        self.conn.send(data)
        await self.idle()

    async def close(self) -> None:
        """Close normally: a Close 1000 answered with a Close, then TCP ends."""
        self.conn.write(frame(CLOSE, struct.pack("!H", 1000)))
        await self.ending({1000}, "close 1000")

    async def ending(self, codes: Collection[int | None], what: str) -> None:
        conn = self.conn
        try:
            await within(self.load.reactor, conn.whenEnded(), CLOSE_TIMEOUT, "")
        except BenchmarkError:
            self.tally.fail(
                "unfinished close",
                f"{self.name}: TCP still open {CLOSE_TIMEOUT}s after {what} "
                f"(Close {conn.closeCode} received: {conn.closeReceived})",
            )
            conn._abort()
            await conn.whenEnded()
        code = conn.closeCode if conn.closeReceived else None
        shown = code if code is not None else "no Close frame"
        self.tally[f"close {shown}"] += 1
        self.tally[f"ending {what}: {shown}"] += 1
        if code not in codes:
            self.tally.fail("wrong close", f"{self.name}: {code} after {what}")
        lost = len(self.check.outstanding)
        if lost:
            self.tally[f"lost after {what}"] += lost
        self.check.name += f" ({what})"
        self.check.finish(complete=True)
        if conn.pings:
            unanswered = conn.pings.total()
            self.tally.fail("pongs lost", f"{self.name}: {unanswered}", unanswered)

    async def abort(self, midFrame: bool = False) -> None:
        """Reset the connection, maybe in the middle of a frame."""
        if midFrame and not self.conn.gone:
            data, _ = self.generator.request()
            whole = frame(BINARY, data, maskKey=self.rng.randbytes(4))
            self.conn.write(whole[: self.rng.randint(1, len(whole) - 1)])
        self.tally["aborts"] += 1
        self.tally["close aborted by the run"] += 1
        self.conn._abort()
        await self.conn.whenEnded()
        self.check.finish(complete=False)
        self.conn.pings.clear()

    async def violate(self, kind: str, slow: bool) -> None:
        """
        End with something the server must refuse, after a burst whose
        requests (maybe led by a restore) must all be answered first.
        """
        rng, conn = self.rng, self.conn
        codes: Collection[int | None]
        if kind == "oddity":
            what, bad, codes = self.oddity()
        else:
            what, codes = "malformed message", {1002}
            bad = frame(BINARY, self.generator.invalid(), maskKey=rng.randbytes(4))
            self.tally["malformed"] += 1
        lead: list[bytes] = []
        if rng.random() < 0.3:
            data, expected = self.generator.restore("no-such-session", None)
            self.check.expect(data[1:9], expected)
            lead.append(frame(BINARY, data))
            self.count()
        if slow:
            await self.burst(slow=True, extra=[bad], lead=lead)
        else:
            items = self.burstMessages(rng.randint(0, 8), False)
            self.expect(items)
            self.count(len(items))
            self.sendAll(lead + [self.message(d) for d, _ in items] + [bad])
        self.count()
        await self.ending(codes, what)
        del conn

    def oddity(self) -> tuple[str, bytes, Collection[int | None]]:
        """A WebSocket-level oddity the server must refuse, and its close codes."""
        rng = self.rng
        size = wire.DEFAULT_MESSAGE_BUFFER_SIZE
        if self.generator.maxSize:
            size = self.generator.maxSize
        broken = PROTOCOL_ERROR_CLOSES
        choices: list[tuple[str, Callable[[], bytes], Collection[int | None]]] = [
            ("text frame", lambda: frame(TEXT, b"hello"), {1003}),
            (
                "oversized frame",
                lambda: frame(BINARY, rng.randbytes(size + rng.randint(1, 4096))),
                {1009},
            ),
            (
                "oversized fragments",
                lambda: (
                    frame(BINARY, bytes(size), fin=False)
                    + frame(CONTINUATION, bytes(rng.randint(1, 4096)))
                ),
                {1009},
            ),
            (
                "frame declaring 1 GiB",
                lambda: frame(BINARY, bytes(65536), length=1 << 30),
                {1009},
            ),
            ("unmasked frame", lambda: frame(BINARY, b"!", maskKey=None), broken),
            ("reserved bits", lambda: frame(BINARY, b"!", rsv=4), broken),
            ("reserved opcode", lambda: frame(_RESERVED_OPCODE, b"!"), broken),
            ("stray continuation", lambda: frame(CONTINUATION, b"!"), broken),
            ("fragmented ping", lambda: frame(PING, b"x", fin=False), broken),
            ("ping over 125 bytes", lambda: frame(PING, bytes(126)), broken),
            (
                "new message inside a fragmented one",
                lambda: frame(BINARY, b"!", fin=False) + frame(BINARY, b"!"),
                broken,
            ),
        ]
        what, make, codes = rng.choice(choices)
        self.tally[f"oddity {what}"] += 1
        return what, make(), codes

    async def closingOversize(self) -> None:
        """
        Make the server close while a handler runs, then send a frame that
        declares 1 GiB and 1 MiB of it: nothing of it may be kept.
        """
        data, expected = self.generator.sleep()
        self.check.expect(data[1:9], expected)
        self.count(2)
        self.conn.write(frame(BINARY, data) + frame(BINARY, b"\xc8"))
        self.conn.write(frame(BINARY, b"", length=1 << 30))
        for _ in range(16):
            self.conn.write(bytes(65536))
        await self.ending({1002}, "malformed message, then 1 GiB declared")


async def connectionSlot(load: Load) -> None:
    """Run episodes, one after the other, while the budget lasts."""
    while load.more():
        load.episodes += 1
        episode = Episode(load, load.episodes)
        try:
            await episode.run()
        except BenchmarkError as e:
            load.tally.fail("stalled", f"{episode.name}: {e}")
            episode.check.finish(complete=False)
            episode.conn._abort()
        except Exception as e:  # a fault of the run itself: count, go on
            load.tally.fail("run errors", f"{episode.name}: {e!r}")
            episode.check.finish(complete=False)
            episode.conn._abort()


async def generate(reactor: Any, opts: argparse.Namespace) -> None:
    """Run one load process; print its tally as one JSON line."""
    load = Load(reactor, opts)
    slots = [
        Deferred.fromCoroutine(connectionSlot(load)) for _ in range(opts.connections)
    ]
    results = await DeferredList(slots, consumeErrors=True)
    for ok, result in results:
        if not ok:
            error = repr(result.value) if isinstance(result, Failure) else ""
            load.tally.fail("run errors", f"load process: {error}")
    report(json.dumps(load.tally.asDict()))
