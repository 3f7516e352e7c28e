"""
The stress run (C{benchmarks.stress}): its checks fail on wrong, missing or
duplicated answers, and a short run goes end to end against C{twistd
webwire}.
"""

from __future__ import annotations

import os
import random
import re
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from benchmarks._common import BenchmarkError, within
from benchmarks._stresscheck import (
    INVALID,
    ConnectionCheck,
    Expected,
    Generator,
    Tally,
    expectRequest,
)
from benchmarks._stressload import BINARY, PONG, StressConnection, frame
from benchmarks.stress import LogScan, socketStates
from webwire import wire

ROOT = FilePath(__file__).parent().parent()
ID1, ID2 = (1).to_bytes(8, "little"), (2).to_bytes(8, "little")
UTF16 = wire.Encoding.UTF16


def echo(identifier: bytes, payload: bytes = b"hi") -> wire.Request:
    return wire.Request(identifier, "echo", payload, wire.Encoding.UTF8)


def expected(request: wire.Request) -> Expected:
    found = expectRequest(request)
    assert found is not None
    return found


class ConnectionCheckTests(SynchronousTestCase):
    """
    L{ConnectionCheck} counts a verified reply only when it is exactly the
    one expected, and counts every other case as a failure.
    """

    def setUp(self) -> None:
        self.tally = Tally()
        self.check = ConnectionCheck(self.tally)

    def test_verified(self) -> None:
        self.check.expect(ID1, expected(echo(ID1)))
        self.check.received(wire.encodeReply(ID1, b"hi", wire.Encoding.UTF8))
        self.check.finish(complete=True)
        self.assertEqual(self.tally["replies verified"], 1)
        self.assertEqual(self.tally.failures(), 0)

    def test_wrongPayload(self) -> None:
        self.check.expect(ID1, expected(echo(ID1)))
        self.check.received(wire.encodeReply(ID1, b"ho", wire.Encoding.UTF8))
        self.assertEqual(self.tally["mismatched"], 1)
        self.assertEqual(self.tally["replies verified"], 0)
        self.assertIn("'echo' answered wrongly", self.tally.samples[0])

    def test_wrongEncoding(self) -> None:
        self.check.expect(ID1, expected(echo(ID1)))
        self.check.received(wire.encodeReply(ID1, b"hi", wire.Encoding.BINARY))
        self.assertEqual(self.tally["mismatched"], 1)

    def test_unknownIdentifier(self) -> None:
        self.check.expect(ID1, expected(echo(ID1)))
        self.check.received(wire.encodeReply(ID2, b"hi", wire.Encoding.UTF8))
        self.assertEqual(self.tally["mismatched"], 1)

    def test_duplicated(self) -> None:
        self.check.expect(ID1, expected(echo(ID1)))
        reply = wire.encodeReply(ID1, b"hi", wire.Encoding.UTF8)
        self.check.received(reply)
        self.check.received(reply)
        self.assertEqual(self.tally["duplicated"], 1)
        self.assertEqual(self.tally["replies verified"], 1)

    def test_lost(self) -> None:
        """A request without reply is lost, unless the run aborted it."""
        self.check.expect(ID1, expected(echo(ID1)))
        self.check.finish(complete=True)
        self.assertEqual(self.tally["lost"], 1)
        aborted = ConnectionCheck(self.tally)
        aborted.expect(ID2, expected(echo(ID2)))
        aborted.finish(complete=False)
        self.assertEqual(self.tally["lost"], 1)

    def test_signalFirst(self) -> None:
        """C{signal-me}'s reply must follow its signal."""
        request = wire.Request(ID1, "signal-me", b"x", wire.Encoding.BINARY)
        self.check.expect(ID1, expected(request))
        self.check.received(wire.encodeReply(ID1, b"x", wire.Encoding.BINARY))
        self.assertEqual(self.tally["mismatched"], 1)
        self.assertIn("reply before its signal", self.tally.samples[0])
        self.check.finish(complete=True)
        self.assertEqual(self.tally["signals lost"], 1)

    def test_signalThenReply(self) -> None:
        request = wire.Request(ID1, "signal-me", b"x", wire.Encoding.BINARY)
        self.check.expect(ID1, expected(request))
        self.check.received(wire.encodeSignal("ping", b"x", wire.Encoding.BINARY))
        self.check.received(wire.encodeReply(ID1, b"x", wire.Encoding.BINARY))
        self.check.finish(complete=True)
        self.assertEqual(self.tally["signals verified"], 1)
        self.assertEqual(self.tally["replies verified"], 1)
        self.assertEqual(self.tally.failures(), 0)

    def test_unsendableSignal(self) -> None:
        """
        C{signal-me} with an empty UTF-16 payload must get an error reply:
        an internal error does not do.
        """
        request = wire.Request(ID1, "signal-me", b"", UTF16)
        self.check.expect(ID1, expected(request))
        internal = wire.MessageType.REPLY_INTERNAL_ERROR
        self.check.received(wire.encodeSpecialReply(internal, ID1))
        self.assertEqual(self.tally["mismatched"], 1)
        self.check.expect(ID2, expected(request))
        self.check.received(wire.encodeErrorReply(ID2, "SIGNAL_FAILED", "no"))
        self.assertEqual(self.tally["replies verified"], 1)

    def test_unexpectedSignal(self) -> None:
        self.check.received(wire.encodeSignal("ping", b"x", wire.Encoding.BINARY))
        self.assertEqual(self.tally["mismatched"], 1)

    def test_login(self) -> None:
        """A login's key must be the one its notification announced."""
        generator = Generator(random.Random(1), 8192)
        data, login = generator.login("ann")
        identifier = data[1:9]
        self.check.expect(identifier, login)
        document = b'{"k":"K1","c":"x","l":"x","i":{"user":"ann"}}'
        self.check.received(wire.encodeSessionCreated(document))
        self.check.received(wire.encodeReply(identifier, b"K2", wire.Encoding.UTF8))
        self.assertEqual(self.tally["mismatched"], 1)

    def test_merge(self) -> None:
        """Tallies of other processes add up, failures included."""
        other = Tally()
        other.fail("lost", "one", 3)
        self.tally.merge(other.asDict())
        self.assertEqual(self.tally.failures(), 3)
        self.assertEqual(self.tally.samples, ["lost: one"])


class GeneratorTests(SynchronousTestCase):
    """
    The messages the run sends are what it believes they are.
    """

    def test_requests(self) -> None:
        generator = Generator(random.Random(7), 8192)
        for _ in range(500):
            data, expectation = generator.request()
            message = wire.parse(data)
            assert isinstance(message, wire.Request)
            self.assertLessEqual(len(data), 8192)
            self.assertEqual(expectRequest(message), expectation)

    def test_mutated(self) -> None:
        """A mutation is called valid exactly when the codec parses it."""
        generator = Generator(random.Random(8), 8192)
        for _ in range(500):
            data, _, valid = generator.mutated()
            try:
                wire.parse(data)
            except wire.ProtocolViolation:
                self.assertFalse(valid, data)
            else:
                self.assertTrue(valid, data)

    def test_invalid(self) -> None:
        for data in INVALID:
            self.assertRaises(wire.ProtocolViolation, wire.parse, data)


class FrameTests(SynchronousTestCase):
    def test_masked(self) -> None:
        """A masked frame unmasks to its payload; long lengths take 8 bytes."""
        payload = bytes(range(256)) * 300
        data = frame(BINARY, payload, maskKey=b"\x01\x02\x03\x04")
        self.assertEqual(data[:2], b"\x82\xff")
        self.assertEqual(int.from_bytes(data[2:10], "big"), len(payload))
        unmasked = bytes(b ^ (1, 2, 3, 4)[i % 4] for i, b in enumerate(data[14:]))
        self.assertEqual(unmasked, payload)

    def test_declared(self) -> None:
        data = frame(BINARY, b"", maskKey=None, length=1 << 30)
        self.assertEqual(data, b"\x82\x7f" + (1 << 30).to_bytes(8, "big"))


class StressConnectionTests(SynchronousTestCase):
    def test_endedAfterTimeout(self) -> None:
        """
        A wait for the end of a connection that timed out spoils no later
        wait: the connection's end still fires the next one.
        """
        clock = Clock()
        conn = StressConnection(ConnectionCheck(Tally()), random.Random(1), "/")
        first = Deferred.fromCoroutine(within(clock, conn.whenEnded(), 1, "end"))
        clock.advance(1)
        self.failureResultOf(first, BenchmarkError)
        second = conn.whenEnded()
        conn.connectionLost()
        self.failureResultOf(conn.opened, BenchmarkError)  # never upgraded
        self.assertIsNone(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(conn.whenEnded()))

    def test_pingsWithTheSamePayload(self) -> None:
        """
        Two pings with the same payload (two empty ones, say) expect two
        pongs: both are verified, and a third is a mismatch.
        """
        tally = Tally()
        conn = StressConnection(ConnectionCheck(tally), random.Random(1), "/")
        conn.ping(b"")
        conn.ping(b"")
        conn._frame(PONG, True, b"")
        conn._frame(PONG, True, b"")
        self.assertEqual(tally["pongs verified"], 2)
        self.assertFalse(conn.pings)
        conn._frame(PONG, True, b"")
        self.assertEqual(tally["mismatched"], 1)


class SocketStatesTests(SynchronousTestCase):
    def test_states(self) -> None:
        """The sockets a process holds are counted by TCP state."""
        listening = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listening.close)
        before = socketStates(os.getpid())
        client = socket.create_connection(listening.getsockname())
        self.addCleanup(client.close)
        server, _ = listening.accept()
        self.addCleanup(server.close)
        after = socketStates(os.getpid())
        self.assertGreaterEqual(after["LISTEN"], 1)
        established = after["ESTABLISHED"] - before.get("ESTABLISHED", 0)
        self.assertEqual(established, 2)


class LogScanTests(SynchronousTestCase):
    def test_counts(self) -> None:
        scan = LogScan()
        scan.feed("2026 [a#info] fine\n2026 [b#critical] bad\n\tTraceback (most ")
        scan.feed("recent call last):\n")
        self.assertEqual((scan.lines, scan.tracebacks, scan.criticals), (3, 1, 1))


class _Output(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))


_ROWS = (
    "seed",
    "messages",
    "connections",
    "closes by code",
    "replies verified",
    "lost",
    "duplicated",
    "mismatched",
    "tracebacks in the log",
    "descriptors before/after",
    "RSS before/after",
)


_shortRun: tuple[int | None, str] | None = None
_waiting: list[Deferred[tuple[int | None, str]]] | None = None


async def shortRun() -> tuple[int | None, str]:
    """
    Run C{python -m benchmarks.stress --messages 20000} once per test
    process (both tests below read the same run): its exit status and
    output.
    """
    global _shortRun, _waiting
    if _shortRun is not None:
        return _shortRun
    waiter: Deferred[tuple[int | None, str]] = Deferred()
    if _waiting is not None:
        _waiting.append(waiter)
        return await waiter
    _waiting = [waiter]
    process = _Output()
    env = dict(os.environ, PYTHONPATH=ROOT.path)
    argv = [sys.executable, "-m", "benchmarks.stress", "--messages", "20000"]
    argv += ["--seed", "20000"]
    reactor.spawnProcess(process, sys.executable, argv, env=env, path=ROOT.path)
    status = await process.ended
    _shortRun = (status, process.output.decode("utf-8", "replace"))
    waiting, _waiting = _waiting, None
    for each in waiting:
        each.callback(_shortRun)
    return await waiter


class ShortRunTests(TestCase):
    """
    C{python -m benchmarks.stress}, the short version CI runs: 20,000
    messages against a C{twistd webwire} it starts, as a subprocess.
    """

    timeout = 180

    async def test_table(self) -> None:
        """
        The run prints its table, every row of it, and exits with status 0
        exactly when no check failed.
        """
        status, output = await shortRun()
        for row in _ROWS:
            self.assertRegex(output, rf"(?m)^  {re.escape(row)}  +\S", output)
        match = re.search(r"(?m)^  messages +([\d,]+)", output)
        assert match is not None
        self.assertGreaterEqual(int(match.group(1).replace(",", "")), 20_000)
        failed = re.findall(r"(?m)^FAILED: .*", output)
        self.assertEqual(status, 1 if failed else 0, output)
        self.assertEqual("all checks passed" in output, not failed, output)

    async def test_passes(self) -> None:
        """Every check of the short run passes."""
        status, output = await shortRun()
        failed = re.findall(r"(?m)^FAILED: .*", output)
        self.assertEqual((status, failed), (0, []), output)
