"""
What Prometheus metrics cost the server: the same server with and without
its metrics, loaded alike.

Run from the repository root::

    python -m benchmarks.metricscost            # about two minutes
    python -m benchmarks.metricscost --instances 3 --rounds 4 --seconds 5
    python -m benchmarks.metricscost --inflight 1   # one request per read

The server is what C{twistd -n webwire --sessions memory --metrics
tcp:0:interface=127.0.0.1} serves, made by the same C{makeService} (see
L{benchmarks._meteredserver}), pinned to one CPU as L{benchmarks.roundtrip}
pins its own, and loaded from other processes by that benchmark's
raw-socket generators at 16 connections x 8 requests in flight (so 8
requests per read; C{--inflight} changes it), 64 bytes. The headline is
server CPU microseconds per request. What counting costs is mostly paid
once per read: one request per read shows it at its largest.

Two processes running the very same code differ by a few per cent (where
their objects landed in memory, which caches they share): more than the
cost being measured, which two processes, one with C{--metrics} and one
without, therefore cannot show. So each server process is measured both
ways: its metrics are switched off and on between windows (the generators
connect anew for each window, and a connection reports to what its server
had when it was accepted), in an order that alternates from round to
round. The machine's own speed drifts too (other work on its CPUs and
caches) by more than the cost, but slowly: so each round's two windows
of a process, one right after the other, are a pair, whose ratio (on
over off, minus one) is what metrics cost in that pair. The benchmark
runs C{--instances} such processes, all with one hash seed
(C{PYTHONHASHSEED}), and reports the median of every pair's cost, their
quartiles, and each process's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from twisted.internet.task import react

from benchmarks._common import BenchmarkError, logWarnings, report
from benchmarks._processes import START_TIMEOUT, ChildProcess, freePort
from benchmarks.roundtrip import (
    Bench,
    Load,
    Result,
    Server,
    best,
    line,
)

OFF, ON = "metrics off", "metrics on"


def summarise(pairs: list[list[tuple[float, float]]]) -> dict[str, Any]:
    """
    The cost of metrics from each process's paired windows.

    :param pairs: One list per process, one pair per round: microseconds
        of server CPU per request in its window with metrics off, and in
        the window with metrics on next to it.
    :returns: C{cost} (the median of every pair's on over off, minus
        one), C{low} and C{high} (their first and third quartiles),
        C{costs} (each process's median), C{off} and C{on} (the medians of
        every window each way).
    :raises BenchmarkError: If a process has no pair, or a figure is 0.
    """
    if not pairs or not all(
        each and all(off and on for off, on in each) for each in pairs
    ):
        raise BenchmarkError("no CPU time was measured: use a longer --seconds")
    everyCost = [on / off - 1 for each in pairs for off, on in each]
    low, _, high = (
        statistics.quantiles(everyCost, n=4, method="inclusive")
        if len(everyCost) > 1
        else everyCost * 3
    )
    return {
        "cost": statistics.median(everyCost),
        "low": low,
        "high": high,
        "costs": [
            statistics.median(on / off - 1 for off, on in each) for each in pairs
        ],
        "off": statistics.median(off for each in pairs for off, _ in each),
        "on": statistics.median(on for each in pairs for _, on in each),
    }


class MetricsBench(Bench):
    """A L{Bench} whose servers switch their metrics on and off."""

    async def startServer(self, name: str) -> Server:
        port = freePort()
        argv = [sys.executable, "-m", "benchmarks._meteredserver", str(port)]
        env = dict(os.environ, PYTHONHASHSEED=str(self.opts.hash_seed))
        child = self.children.spawn(ChildProcess(name, self.lost), argv, env)
        assert child.pid is not None
        self.pin(child.pid, self.serverCpus)
        await child.waitFor(f"listening {port}", START_TIMEOUT, self.reactor)
        return Server(name, child, port)

    async def switch(self, server: Server, metrics: str) -> None:
        """Switch C{server}'s metrics L{ON} or L{OFF} for new connections."""
        server.child.tell(metrics)
        await server.child.waitFor(metrics, START_TIMEOUT, self.reactor)

    async def startGenerators(
        self, server: Server, load: Any, generators: int, **extra: Any
    ) -> list[ChildProcess]:
        # A WebWire server to the generators (AcceptConf first).
        alike = Server("webwire", server.child, server.port)
        return await super().startGenerators(alike, load, generators, **extra)

    async def stopServer(self, server: Server) -> None:
        await server.child.stop(self.reactor, None)


async def run(bench: MetricsBench) -> dict[str, Any]:
    opts = bench.opts
    load = Load(f"16x{opts.inflight} 64 B", 16, opts.inflight)
    servers = [
        await bench.startServer(f"server {n + 1}") for n in range(opts.instances)
    ]
    windows: list[dict[str, list[Result]]] = [{OFF: [], ON: []} for _ in servers]
    for number in range(opts.rounds):
        ways = (OFF, ON) if number % 2 == 0 else (ON, OFF)
        for server, measured in zip(servers, windows, strict=True):
            for way in ways:  # drift hits both ways alike
                await bench.switch(server, way)
                measured[way].append(await bench.measure(server, load))
    for server in servers:
        await bench.stopServer(server)
    report(f"saturation, {load.name}, the best window of each process each way:")
    pairs = []
    for measured in windows:
        for way in (OFF, ON):
            report(line(fastest(measured[way])) + f"  ({way})")
        pairs.append(
            [
                (off.serverCpuPerRequest, on.serverCpuPerRequest)
                for off, on in zip(measured[OFF], measured[ON], strict=True)
                if off.serverCpuPerRequest and on.serverCpuPerRequest
            ]
        )
    summary = summarise(pairs)
    each = ", ".join(f"{cost:+.1%}" for cost in summary["costs"])
    report(
        f"metrics cost {summary['cost']:+.1%} of server CPU per request, the "
        f"median of {sum(map(len, pairs))} paired windows (quartiles "
        f"{summary['low']:+.1%}, {summary['high']:+.1%}; {summary['on']:.2f} "
        f"against {summary['off']:.2f} us, medians; each process: {each})"
    )
    return summary


def fastest(results: list[Result]) -> Result:
    """The window with the least server CPU per request."""
    return best(results, by="cpu")


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.metricscost",
        description="Server CPU per request with and without its metrics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--seconds", type=float, default=3.0, help="measurement window")
    add("--warmup", type=float, default=1.0, help="seconds before each window")
    add("--rounds", type=int, default=3, help="windows each way per process")
    add("--instances", type=int, default=3, help="server processes")
    add(
        "--inflight",
        type=int,
        default=8,
        help="requests in flight per connection (and so per read)",
    )
    add("--hash-seed", type=int, default=0, help="PYTHONHASHSEED of every server")
    opts = parser.parse_args(argv)
    if (
        opts.seconds <= 0
        or opts.warmup < 0
        or min(opts.rounds, opts.instances, opts.inflight) < 1
    ):
        parser.error(
            "--seconds must be positive, --warmup not negative, "
            "--rounds, --instances and --inflight at least 1"
        )
    if not 0 <= opts.hash_seed <= 4294967295:
        parser.error("--hash-seed must be in 0..4294967295")
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
