"""
What the benchmarks share: their error, reporting on stdout, logging, the
load options, checking the servers' messages, and waiting for events with a
time limit.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Coroutine
from typing import Any, TextIO, TypeVar

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from webwire import wire
from webwire.options import ServerOptions

_T = TypeVar("_T")
IDENTIFIER = struct.Struct("<Q")  # request identifiers: an 8-byte counter
PHASE_TIMEOUT = 10.0  # seconds to connect, log in, drain or close


class BenchmarkError(Exception):
    """A server answered wrongly, or a phase of a run did not finish."""


def report(line: str, stream: TextIO = sys.stdout) -> None:
    """Print one line: a benchmark script reports its results on stdout."""
    print(line, file=stream, flush=True)  # noqa: T201


def logWarnings() -> None:
    """
    Log warnings and errors to stderr, nothing else: the benchmarks log
    nothing themselves, the servers they measure may.
    """
    warnings = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    stderr = FilteringLogObserver(textFileLogObserver(sys.stderr), [warnings])
    globalLogBeginner.beginLoggingTo([stderr], redirectStandardIO=False)


def addLoadArguments(parser: argparse.ArgumentParser) -> None:
    """Add C{--inflight}, C{--payload}, C{--seconds} and C{--warmup}."""
    add = parser.add_argument
    add("--inflight", type=int, default=16, help="requests in flight per connection")
    add("--payload", type=int, default=64, help="payload bytes per request")
    add("--seconds", type=float, default=5.0, help="measurement window per run")
    add("--warmup", type=float, default=1.0, help="seconds before each window")


def checkLoadArguments(
    parser: argparse.ArgumentParser, opts: argparse.Namespace, request: str
) -> None:
    """
    Exit through C{parser.error} unless a C{request} with C{--payload} bytes
    fits the server's limit, C{--seconds} is positive and C{--warmup} is not
    negative.
    """
    empty = wire.encodeRequest(
        bytes(IDENTIFIER.size), request, b"", wire.Encoding.BINARY
    )
    maxPayload = ServerOptions().messageBufferSize - len(empty)
    if not 0 <= opts.payload <= maxPayload:
        parser.error(f"--payload must be from 0 to {maxPayload}")
    if opts.seconds <= 0 or opts.warmup < 0:
        parser.error("--seconds must be positive and --warmup not negative")


def decode(payload: bytes, isBinary: bool) -> wire.Message:
    """The message a server sent; raise L{BenchmarkError} if it is wrong."""
    if not isBinary:
        raise BenchmarkError(f"text message {payload[:24]!r}")
    try:
        return wire.parse(payload)
    except wire.ProtocolViolation as e:
        raise BenchmarkError(f"unparsable message {payload[:24]!r}: {e}") from None


def checkEcho(
    message: wire.Reply | wire.Request, outstanding: set[bytes], payload: bytes
) -> None:
    """
    Check that C{message} answers one of the C{outstanding} requests (by
    identifier, removed from the set) with C{payload}; raise
    L{BenchmarkError} if not.
    """
    try:
        outstanding.remove(message.identifier)
    except KeyError:
        raise BenchmarkError(
            f"reply to no outstanding request: {message.identifier!r}"
        ) from None
    if message.payload != payload:
        raise BenchmarkError(f"wrong payload in the reply to {message.identifier!r}")


class Countdown:
    """C{done} fires once C{tick} was called C{count} times."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.done: Deferred[None] = Deferred()

    def tick(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.done.callback(None)


async def within(reactor: Any, d: Deferred[_T], seconds: float, what: str) -> _T:
    """Wait for C{d}, at most C{seconds}; else raise L{BenchmarkError}."""
    d.addTimeout(seconds, reactor)
    try:
        return await d
    except defer.TimeoutError:
        raise BenchmarkError(f"no {what} after {seconds:g} seconds") from None


class Task:
    """Work that a wrong reply or a lost process stops at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: BenchmarkError | None = None
        self._running: Deferred[Any] | None = None

    def abort(self, reason: str) -> None:
        """Stop at once: L{run} raises BenchmarkError(reason)."""
        if self.error is None:
            self.error = BenchmarkError(
                f"{self.name}: {reason}" if self.name else reason
            )
            if self._running is not None:
                self._running.cancel()

    async def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run C{work}; raise the reason if L{abort} was called meanwhile."""
        running: Deferred[_T] = Deferred.fromCoroutine(work)
        self._running = running
        try:
            return await running
        except CancelledError:
            if self.error is None:
                raise
            raise self.error from None
