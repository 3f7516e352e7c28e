"""
Round trips per second of C{twistd webwire --workers N}, for each N in
C{--workers} (by default 1, then 2), and the ratio of each to the first,
measured in the same run.

Each run starts, as a user would::

    twistd -n --pidfile= webwire --listen tcp:PORT:interface=127.0.0.1 \\
        --workers N --session-directory TEMP

(the conformance application, file sessions; C{--workers 1} is the plain
single process), waits until every worker listens, and loads it with
C{--clients-processes} load generator processes: the cluster benchmark's
(L{benchmarks._loadgen}, started as C{python -m benchmarks.cluster load}),
which share C{--connections} connections. Pairs of connections share a
session (the first logs in, the second restores it, often on another
worker: the session's file is shared), then every connection keeps
C{--inflight} C{echo-binary} requests of C{--payload} bytes in flight;
after C{--warmup} seconds the round trips completed in a C{--seconds}
window are counted; then every connection logs out and closes, and the
server is stopped with SIGTERM.

Reported per run: round trips per second in all, and the CPU time each
process used in the window in percent of one core (from C{/proc}): the
supervisor (the twistd process, for N above 1), each worker, each load
generator. Runs alternate over the worker counts, C{--rounds} times; per
count the best round is reported. Which worker serves a connection is the
kernel's choice (the workers accept on one shared socket), so the workers'
CPU shares also show how evenly the load spread.

Run from the repository root::

    python -m benchmarks.workers
    python -m benchmarks.workers --workers 1,2,4,8 --clients-processes 4 \\
        --connections 128
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.task import react

from benchmarks._common import (
    Task,
    logWarnings,
    report,
)
from benchmarks._processes import (
    START_TIMEOUT,
    ChildProcess,
    Children,
    freePort,
    runMeasurement,
)
from benchmarks.cluster import (
    addRunArguments,
    checkRunArguments,
    measureWindow,
    percent,
    plural,
    startGenerators,
    stopGenerators,
)

_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@dataclass
class Result:
    """One run: round trips per second, and CPU shares (cores) per process."""

    workers: int
    rate: float = 0.0
    supervisorCPU: float | None = None
    workerCPU: list[float | None] = field(default_factory=list)
    generatorCPU: list[float | None] = field(default_factory=list)


async def measureOnce(
    reactor: Any,
    task: Task,
    workers: int,
    opts: argparse.Namespace,
    directory: str,
    children: Children,
) -> Result:
    """Start the server with C{workers} workers and the load; measure."""
    port = freePort()
    sessions = tempfile.mkdtemp(dir=directory)
    server = ChildProcess(f"twistd webwire --workers {workers}", task.abort)
    generators = [
        ChildProcess(f"load generator {i + 1}", task.abort)
        for i in range(opts.clients_processes)
    ]
    try:
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        argv += ["-n", "--pidfile=", "webwire", "--listen"]
        argv += [f"tcp:{port}:interface=127.0.0.1", "--workers", str(workers)]
        argv += ["--session-directory", sessions]
        children.spawn(server, argv)
        if workers == 1:
            await server.waitFor("Site starting on", START_TIMEOUT, reactor)
            pids: list[int | None] = [server.pid]
        else:
            for number in range(1, workers + 1):
                listening = f"[worker {number},-] Site starting on"
                await server.waitFor(listening, START_TIMEOUT, reactor)
            started = {}
            for line in server.lines:
                match = _STARTED.search(line)
                if match:
                    started[int(match.group(1))] = int(match.group(2))
            pids = [server.pid, *(started[n] for n in range(1, workers + 1))]
        await startGenerators(reactor, children, generators, port, opts)
        pids += [generator.pid for generator in generators]
        marks, shares = await measureWindow(reactor, generators, pids, opts)
        await stopGenerators(reactor, generators)
        await server.stop(reactor, "TERM")
    finally:
        for child in [server, *generators]:
            if child.transport is not None:  # started
                child.kill()

    result = Result(workers)
    for before, after in zip(*marks, strict=True):
        elapsed = after.time - before.time  # as the generator timed it
        result.rate += (sum(after.counts) - sum(before.counts)) / elapsed
    if workers == 1:
        result.workerCPU = shares[:1]
    else:
        result.supervisorCPU = shares[0]
        result.workerCPU = shares[1 : workers + 1]
    result.generatorCPU = shares[-len(generators) :]
    return result


HEADINGS = ["workers", "requests/s", "ratio", "supervisor CPU", "worker CPU"]
HEADINGS += ["generator CPU"]


def row(result: Result, baseline: Result) -> list[str]:
    return [
        str(result.workers),
        f"{result.rate:,.0f}",
        f"{result.rate / baseline.rate:.2f}",
        percent(result.supervisorCPU),
        "+".join(map(percent, result.workerCPU)),
        "+".join(map(percent, result.generatorCPU)),
    ]


async def measure(
    reactor: Any, opts: argparse.Namespace, children: Children
) -> dict[int, list[Result]]:
    cpus = len(os.sched_getaffinity(0))
    report(
        f"workers: {', '.join(map(str, opts.workers))}; {opts.connections} "
        f"connections from {plural(opts.clients_processes, 'load generator')}, "
        f"{opts.inflight} in flight each, {opts.payload}-byte payload, "
        f"{opts.warmup:g} s warm-up + {opts.seconds:g} s window, rounds: "
        f"{opts.rounds}\n{platform.python_implementation()} "
        f"{platform.python_version()}; {cpus} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    if cpus < max(opts.workers) + opts.clients_processes:
        report(
            f"note: {cpus} CPUs for up to {max(opts.workers)} workers and "
            f"{plural(opts.clients_processes, 'load generator')}: they compete "
            "for CPU time, so the ratio shows less than workers with a core "
            "each would give"
        )
    results: dict[int, list[Result]] = {n: [] for n in opts.workers}
    with tempfile.TemporaryDirectory(prefix="webwire-bench-") as directory:
        for roundNumber in range(1, opts.rounds + 1):
            for workers in opts.workers:  # alternate: drift hits all alike
                task = Task(plural(workers, "worker"))
                result = await task.run(
                    measureOnce(reactor, task, workers, opts, directory, children)
                )
                results[workers].append(result)
                report(
                    f"round {roundNumber}, {plural(workers, 'worker')}: "
                    f"{result.rate:,.0f} req/s"
                )
    return results


async def main(reactor: Any, opts: argparse.Namespace) -> None:
    """Measure, then show the results; exit with status 1 on an error."""
    results = await runMeasurement(
        reactor, lambda children: measure(reactor, opts, children)
    )
    report(f"best of {opts.rounds} rounds per number of workers:")
    best = {n: max(rs, key=lambda r: r.rate) for n, rs in results.items()}
    baseline = best[opts.workers[0]]
    rows = [HEADINGS, *(row(r, baseline) for r in best.values())]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADINGS))]
    for cells in rows:
        report("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.workers",
        description="Round trips per second of twistd webwire --workers N.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    counts, rounds = "worker counts, comma-separated", "runs per worker count"
    addRunArguments(parser, "--workers", counts, rounds)
    opts = parser.parse_args(argv)
    checkRunArguments(parser, opts, "--workers")
    if not os.path.exists("/proc/self/stat"):
        parser.error("this needs /proc (Linux) for the CPU shares")
    return opts


if __name__ == "__main__":
    options = parseArguments(sys.argv[1:])  # before the reactor: --help exits
    logWarnings()
    react(main, (options,))
