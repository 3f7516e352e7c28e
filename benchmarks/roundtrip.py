"""
Round trips per second: the WebWire server against a bare Autobahn echo server.

What is measured: completed request/reply round trips per second over
loopback TCP (127.0.0.1, a free port) for two servers, and their ratio:

  - C{webwire}: C{WebWireServerFactory(ConformanceApplication(),
    ServerOptions())}, sent RequestBinary messages named C{echo}, answering
    with ReplyBinary messages;
  - C{autobahn}: the cheapest possible Autobahn server, whose C{onMessage}
    sends the same bytes back; the echo of a request counts as its reply.

How: the same client code sends the same bytes to both: C{--connections}
connections, each keeping C{--inflight} requests in flight (every reply sends
the next request) with C{--payload} bytes of payload. Each round measures
webwire, then autobahn: listen, connect (for WebWire, wait for every
AcceptConf), send for C{--warmup} seconds, then count the round trips
completed inside a C{--seconds} window timed with C{time.perf_counter};
finally stop sending, collect the last replies and close. Per server the best
round is reported (noise on a shared machine only ever slows a run down), with
the mean latency that follows by Little's law: requests in flight / rate.
Every reply is checked: it must parse, have the expected type, carry the
identifier of a request outstanding on its connection and the payload sent.
Anything else aborts the benchmark with an error.

One process, one reactor: client and server run in this process on one
reactor, which is the simplest set-up and fully reproducible (no second
process, no port to pass around). The consequence: both numbers include the
client's CPU time, which is the same for both servers, so the ratio is pulled
towards 1 and understates the difference between the servers themselves.

Run from the repository root (the defaults take about 25 seconds)::

    python -m benchmarks.roundtrip
    python -m benchmarks.roundtrip --connections 1 --inflight 1 --payload 1024
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react

from benchmarks._common import (
    IDENTIFIER,
    PHASE_TIMEOUT,
    BenchmarkError,
    Countdown,
    Task,
    addLoadArguments,
    checkEcho,
    checkLoadArguments,
    decode,
    logWarnings,
    report,
    within,
)
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory

# The servers under test ---------------------------------------------------


class EchoServerProtocol(WebSocketServerProtocol):
    """The baseline: send every message back as it came."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary=True)


def makeEchoFactory() -> WebSocketServerFactory:
    factory = WebSocketServerFactory()  # no URL: Autobahn rejects ws://host:0
    factory.protocol = EchoServerProtocol
    return factory


def makeWebWireFactory() -> WebSocketServerFactory:
    return WebWireServerFactory(ConformanceApplication(), ServerOptions())


@dataclass(frozen=True)
class Target:
    """A server under test, and what its replies look like."""

    name: str
    makeFactory: Callable[[], WebSocketServerFactory]
    replyType: type[wire.Reply] | type[wire.Request]  # an echo is a Request
    sendsAcceptConf: bool


TARGETS = (
    Target("webwire", makeWebWireFactory, wire.Reply, True),
    Target("autobahn", makeEchoFactory, wire.Request, False),
)


# The client ---------------------------------------------------------------


class Run(Task):
    """
    One measurement of one server: what all its clients share. L{abort}
    stops it at once with a L{BenchmarkError} that names the server.
    """

    def __init__(self, target: Target, opts: argparse.Namespace) -> None:
        super().__init__(target.name)
        self.target = target
        self.inflight: int = opts.inflight
        self.payload = bytes(i % 251 for i in range(opts.payload))
        self.sending = False  # while set, every reply sends the next request
        self.completed = 0  # round trips completed so far, all connections
        self.clients: list[BenchClientProtocol] = []
        self.ready = Countdown(opts.connections)  # open (and AcceptConf seen)
        self.drained = Countdown(opts.connections)  # no request outstanding
        self.closed = Countdown(opts.connections)


class BenchClientProtocol(WebSocketClientProtocol):
    """
    Keeps C{run.inflight} requests in flight and checks every reply; the
    same code drives both servers.
    """

    factory: BenchClientFactory
    run: Run  # set in onOpen: Autobahn attaches the factory after __init__

    def __init__(self) -> None:
        super().__init__()
        self.outstanding: set[bytes] = set()  # identifiers awaiting a reply
        self.counter = 0
        self.accepted = False  # AcceptConf seen, or none expected
        self.closing = False

    def onOpen(self) -> None:
        self.run = self.factory.run
        self.run.clients.append(self)
        if not self.run.target.sendsAcceptConf:
            self.accepted = True
            self.run.ready.tick()

    def start(self) -> None:
        for _ in range(self.run.inflight):
            self.sendRequest()

    def sendRequest(self) -> None:
        self.counter += 1
        identifier = IDENTIFIER.pack(self.counter)
        self.outstanding.add(identifier)
        data = wire.encodeRequest(
            identifier, "echo", self.run.payload, wire.Encoding.BINARY
        )
        self.sendMessage(data, isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        run = self.run
        try:
            message = decode(payload, isBinary)
        except BenchmarkError as e:
            run.abort(str(e))
            return
        if not self.accepted:  # WebWire: the first message is AcceptConf
            if type(message) is not wire.AcceptConf:
                run.abort(f"first message is {message!r:.80}, not AcceptConf")
                return
            self.accepted = True
            run.ready.tick()
            return
        if not isinstance(message, run.target.replyType):
            run.abort(f"expected {run.target.replyType.__name__}, got {message!r:.80}")
            return
        try:
            checkEcho(message, self.outstanding, run.payload)
        except BenchmarkError as e:
            run.abort(str(e))
            return
        run.completed += 1
        if run.sending:
            self.sendRequest()
        elif not self.outstanding:
            run.drained.tick()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        run: Run = self.factory.run  # onOpen may not have been called
        if self.closing:
            run.closed.tick()
        else:
            run.abort(f"connection closed (code {code}: {reason})")


class BenchClientFactory(WebSocketClientFactory):
    """Connects L{BenchClientProtocol}s to one server for one L{Run}."""

    protocol = BenchClientProtocol  # type: ignore[assignment]

    def __init__(self, url: str, run: Run) -> None:
        super().__init__(url)
        self.run = run


# Measuring ----------------------------------------------------------------


async def phase(reactor: Any, run: Run, d: Deferred[None], what: str) -> None:
    """Wait for C{d}, at most L{PHASE_TIMEOUT} seconds; name the server if not."""
    try:
        await within(reactor, d, PHASE_TIMEOUT, what)
    except BenchmarkError as e:
        raise BenchmarkError(f"{run.name}: {e}") from None


async def measureOnce(reactor: Any, run: Run, opts: argparse.Namespace) -> float:
    """Measure C{run.target} once; return round trips per second."""
    port = reactor.listenTCP(0, run.target.makeFactory(), interface="127.0.0.1")
    portNumber = port.getHost().port
    clientFactory = BenchClientFactory(f"ws://127.0.0.1:{portNumber}/", run)
    for _ in range(opts.connections):
        reactor.connectTCP("127.0.0.1", portNumber, clientFactory)
    await phase(reactor, run, run.ready.done, "open connections")

    run.sending = True
    for client in run.clients:
        client.start()
    await deferLater(reactor, opts.warmup)
    countBefore, startTime = run.completed, time.perf_counter()
    await deferLater(reactor, opts.seconds)
    countAfter, endTime = run.completed, time.perf_counter()

    # Stop sending, collect the last replies (checked like all others), then
    # close cleanly so that the next run starts from nothing.
    run.sending = False
    await phase(reactor, run, run.drained.done, "last replies")
    for client in run.clients:
        client.closing = True
        client.sendClose(1000)
    await phase(reactor, run, run.closed.done, "closed connections")
    await port.stopListening()
    return (countAfter - countBefore) / (endTime - startTime)


async def measure(reactor: Any, target: Target, opts: argparse.Namespace) -> float:
    """Measure C{target} once; a wrong reply raises L{BenchmarkError}."""
    run = Run(target, opts)
    return await run.run(measureOnce(reactor, run, opts))


async def main(reactor: Any, opts: argparse.Namespace) -> None:
    version = importlib.metadata.version
    inflight = opts.connections * opts.inflight
    report(
        f"{opts.connections} connections x {opts.inflight} in flight, "
        f"{opts.payload}-byte payload, {opts.warmup:g} s warm-up + "
        f"{opts.seconds:g} s window, rounds: {opts.rounds}\n"
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"Twisted {version('twisted')}, Autobahn {version('autobahn')}, "
        f"{type(reactor).__name__}; client and server in one process"
    )
    rates: dict[str, list[float]] = {target.name: [] for target in TARGETS}
    try:
        for roundNumber in range(1, opts.rounds + 1):
            for target in TARGETS:  # alternate, so drift hits both alike
                rate = await measure(reactor, target, opts)
                rates[target.name].append(rate)
                report(f"round {roundNumber}  {target.name:<8} {rate:>9,.0f} req/s")
    except BenchmarkError as e:
        report(f"benchmark aborted: {e}", sys.stderr)
        raise SystemExit(1) from None

    report(f"best of {opts.rounds} rounds per server:")
    best = {name: max(values) for name, values in rates.items()}
    for name, rate in best.items():
        latency = inflight / rate * 1000  # Little's law
        report(
            f"{name:<8} {rate:>9,.0f} requests/s   "
            f"mean latency {latency:.3f} ms ({inflight} in flight)"
        )
    report(f"ratio webwire/autobahn: {best['webwire'] / best['autobahn']:.2f}")


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.roundtrip",
        description="Round trips per second: WebWire server vs. Autobahn echo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--connections", type=int, default=4, help="client connections")
    addLoadArguments(parser)
    add("--rounds", type=int, default=2, help="runs per server, alternating")
    opts = parser.parse_args(argv)
    if min(opts.connections, opts.inflight, opts.rounds) < 1:
        parser.error("--connections, --inflight and --rounds must be at least 1")
    checkLoadArguments(parser, opts, "echo")
    return opts


if __name__ == "__main__":
    options = parseArguments(sys.argv[1:])  # before the reactor: --help exits
    logWarnings()  # the servers' warnings and errors
    react(main, (options,))
