"""
What Prometheus metrics cost the server: the same C{twistd webwire} with
and without C{--metrics}, loaded alike.

Run from the repository root::

    python -m benchmarks.metricscost            # about a minute
    python -m benchmarks.metricscost --rounds 5 --seconds 5

Both servers run as L{benchmarks.roundtrip} runs its own (C{twistd -n
webwire --sessions memory}, pinned to the same CPU, loaded from other
processes by its raw-socket generators); one of them also serves
C{/metrics} on a port of its own. Rounds alternate between the two at
16 connections x 8 requests in flight (64 bytes), and the best round of
each is kept. The headline is server CPU microseconds per request, and
the cost of metrics is the ratio of the two, minus one.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet.task import react

from benchmarks._common import BenchmarkError, logWarnings, report
from benchmarks._processes import START_TIMEOUT, ChildProcess
from benchmarks.roundtrip import (
    _PORT,
    LISTEN,
    SATURATION,
    TWISTD,
    Bench,
    Result,
    Server,
    best,
    line,
)

PLAIN, METERED = "webwire", "webwire+metrics"


class MetricsBench(Bench):
    """A L{Bench} whose servers are C{twistd webwire}, with metrics or not."""

    async def startServer(self, name: str) -> Server:
        argv = [sys.executable, *TWISTD, "webwire", "--listen", LISTEN]
        argv += ["--sessions", "memory"]
        if name == METERED:
            argv += ["--metrics", "tcp:0:interface=127.0.0.1"]
        child = self.children.spawn(ChildProcess(name, self.lost), argv)
        assert child.pid is not None
        self.pin(child.pid, self.serverCpus)
        # The metrics port logs its own "Site starting on" line: the
        # WebWire site is the one that logs the start-up summary after it.
        await child.waitFor("serving ", START_TIMEOUT, self.reactor)
        port = None
        for output in child.lines:
            match = _PORT["webwire"].search(output)
            if match is not None and port is None:
                port = int(match.group(1))
        assert port is not None
        return Server(name, child, port)

    async def startGenerators(
        self, server: Server, load: Any, generators: int, **extra: Any
    ) -> list[ChildProcess]:
        # Both are WebWire servers to the generators (AcceptConf first).
        alike = Server(PLAIN, server.child, server.port)
        return await super().startGenerators(alike, load, generators, **extra)

    async def stopServer(self, server: Server) -> None:
        await server.child.stop(self.reactor, "TERM")


async def run(bench: MetricsBench) -> dict[str, Any]:
    load = SATURATION[0]
    servers = {name: await bench.startServer(name) for name in (PLAIN, METERED)}
    rounds: dict[str, list[Result]] = {PLAIN: [], METERED: []}
    for _ in range(bench.opts.rounds):
        for name in (PLAIN, METERED):  # alternate, so drift hits both alike
            rounds[name].append(await bench.measure(servers[name], load))
    chosen = {name: best(rounds[name]) for name in rounds}
    report(f"saturation, {load.name}:")
    for result in chosen.values():
        report(line(result))
    for server in servers.values():
        await bench.stopServer(server)
    plain = chosen[PLAIN].serverCpuPerRequest
    metered = chosen[METERED].serverCpuPerRequest
    if not plain or metered is None:
        raise BenchmarkError("no CPU time was measured: use a longer --seconds")
    cost = metered / plain - 1
    report(
        f"metrics cost {cost:+.1%} of server CPU per request "
        f"({metered:.2f} against {plain:.2f} us)"
    )
    return {"plain": plain, "metered": metered, "cost": cost}


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.metricscost",
        description="Server CPU per request with and without --metrics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--seconds", type=float, default=3.0, help="measurement window")
    add("--warmup", type=float, default=1.0, help="seconds before each window")
    add("--rounds", type=int, default=4, help="rounds per server, alternating")
    opts = parser.parse_args(argv)
    if opts.seconds <= 0 or opts.warmup < 0 or opts.rounds < 1:
        parser.error("--seconds must be positive, --warmup not negative, --rounds >= 1")
    return opts


async def main(reactor: Any, opts: argparse.Namespace) -> None:
    bench = MetricsBench(reactor, opts)
    try:
        await run(bench)
    except BenchmarkError as e:
        report(f"benchmark aborted: {e}", sys.stderr)
        raise SystemExit(1) from None
    finally:
        await bench.children.killAll()


if __name__ == "__main__":
    options = parseArguments(sys.argv[1:])  # before the reactor: --help exits
    logWarnings()
    react(main, (options,))
