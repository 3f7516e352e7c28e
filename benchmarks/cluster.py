"""
Round trips per second of N WebWire server processes behind one port, with
sessions and the cluster in Redis.

What is measured: completed request/reply round trips per second, summed
over the server processes, for each process count in C{--processes} (by
default 1, then 2), and the ratio of each to the first, the baseline,
measured in the same run. Each server process is::

    python -m benchmarks.cluster serve --port PORT --redis-url URL --prefix P

which serves C{WebWireServerFactory(ConformanceApplication(),
ServerOptions(), sessionManager=RedisSessionManager(...),
cluster=RedisCluster(...))} on a socket of its own: bound to the same
127.0.0.1 port as the others' with C{SO_REUSEADDR} and C{SO_REUSEPORT}
(Linux), and handed to Twisted with C{reactor.adoptStreamPort}. The kernel
gives each new connection to one of the listening sockets by a hash of its
addresses, so each of N processes gets about, not exactly, 1/N of them.
Sessions and the cluster live in a redis-server that the benchmark starts
(a free loopback port, no persistence), unless C{--redis-url} names one;
every run uses key prefixes of its own.

The load comes from C{--clients-processes} load generator processes
(C{python -m benchmarks.cluster load ...}, one reactor each), which share
C{--connections} connections. Each pair of connections of a generator gets
a session: the first sends C{login} (the session is created and stored in
Redis), the second restores it (looked up in Redis and counted by the
cluster, often on another server process). Then every connection keeps
C{--inflight} C{echo-binary} requests of C{--payload} bytes in flight
(every reply sends the next request); after C{--warmup} seconds, the round
trips completed inside a C{--seconds} window are counted: this process
tells every generator when the window starts and ends, and each times it
with C{time.perf_counter}. Finally sending stops, the last replies are
collected, every connection sends C{logout} (the second logout of a
session, counted across processes, deletes it from Redis: checked), the
connections close and the server processes stop; each then prints the peer
ports of the connections it accepted, which tells which server process
served which connection. The requests of the window do not touch Redis; the
sessions do, before and after it, and the cluster's heartbeats throughout.

Reported per run: round trips per second in all and per server process,
connections per server process, and the CPU time every process used in the
window (server processes, load generators, redis-server), read from
C{/proc} in percent of one core: a process near 100% limits the total.
Runs alternate over the process counts, C{--rounds} times; per process
count the best round is reported (noise on a shared machine only ever slows
a run down). Every message is checked (type, identifier of a request
outstanding on its connection, payload, session key and info, session
notifications); a wrong one, a process that exits, or a phase that does not
finish in time aborts the benchmark with exit status 1.

Why two load generator processes by default: on the 2-core machine this was
written on, with one generator process (at about 70% of a core) two server
processes gave about 32,000 requests/s, barely more than one (30,000); with
two generators they gave about 42,000 (ratio 1.33 to 1.39); three or four
generators gave about 40,000. When there are fewer cores than processes,
all compete for the CPU, and the ratio shows less than N server processes
give with a core each (the benchmark then says so).

This module is the coordinator (options, rounds, the report) and the entry
point of the child processes' sub-commands; a server process is
L{benchmarks._clusterserver}, a load generator L{benchmarks._loadgen}, and
L{benchmarks._processes} starts, watches and stops them and redis-server.

Run from the repository root (the defaults take about 30 seconds)::

    python -m benchmarks.cluster
    python -m benchmarks.cluster --processes 1,2,4 --clients-processes 4
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import secrets
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react

from benchmarks._clusterserver import serve
from benchmarks._common import (
    PHASE_TIMEOUT,
    BenchmarkError,
    Task,
    addLoadArguments,
    checkLoadArguments,
    logWarnings,
    report,
)
from benchmarks._loadgen import generate
from benchmarks._processes import (
    START_TIMEOUT,
    ChildProcess,
    Children,
    cpuSeconds,
    freePort,
    runMeasurement,
    startRedis,
)
from webwire.sessions.redis import parseURL

_MODULE = "benchmarks.cluster"  # child processes run its sub-commands


@dataclass
class Result:
    """
    What one run measured: rates in round trips per second, CPU use in
    cores (CPU seconds per second of the window), lists per process.
    """

    processes: int
    rate: float = 0.0
    connections: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    serverCPU: list[float | None] = field(default_factory=list)
    generatorCPU: list[float | None] = field(default_factory=list)
    redisCPU: float | None = None
    sessions: int = 0
    sharedSessions: int = 0  # sessions held on two server processes


@dataclass
class Mark:
    """What a load generator said at a mark: its time and counts."""

    time: float
    counts: list[int]

    @classmethod
    def parse(cls, line: str) -> Mark:
        """Read C{mark N TIME COUNT,COUNT,...}."""
        _, _, moment, counts = line.split()
        return cls(float(moment), [int(count) for count in counts.split(",")])


def split(total: int, parts: int) -> list[int]:
    """C{total} in C{parts} whole numbers that differ by one at most."""
    return [total // parts + (i < total % parts) for i in range(parts)]


async def measureOnce(
    reactor: Any,
    task: Task,
    processes: int,
    opts: argparse.Namespace,
    redis: tuple[str, ChildProcess | None],
    children: Children,
) -> Result:
    """Start C{processes} servers and the load, stop them; return the result."""
    redisURL, redisProcess = redis
    port = freePort()
    prefix = f"{opts.prefix}{secrets.token_hex(4)}:"
    servers = [ChildProcess(f"server {i + 1}", task.abort) for i in range(processes)]
    generators = [
        ChildProcess(f"load generator {i + 1}", task.abort)
        for i in range(opts.clients_processes)
    ]
    try:
        for server in servers:
            where = ["--port", str(port), "--redis-url", redisURL, "--prefix", prefix]
            children.spawnModule(server, _MODULE, "serve", *where)
        for server in servers:
            await server.waitFor("ready", START_TIMEOUT, reactor)
        ready = await startGenerators(reactor, children, generators, port, opts)
        # the client port of each connection, per generator
        ports = [
            [int(client) for client in line.split()[1].split(",")] for line in ready
        ]
        pids = [child.pid for child in servers + generators]
        pids.append(redisProcess.pid if redisProcess is not None else None)
        marks, shares = await measureWindow(reactor, generators, pids, opts)
        await stopGenerators(reactor, generators)
        stopping = [Deferred.fromCoroutine(server.stop(reactor)) for server in servers]
        for stopped in stopping:  # all were asked to stop at once
            await stopped
        served = [await s.waitFor("served", 0, reactor) for s in servers]
        await checkRedisEmpty(redisURL, prefix)
    finally:
        for child in servers + generators:
            child.kill()

    result = Result(processes)
    processOf: dict[int, int] = {}  # client port -> server process
    for number, line in enumerate(served):
        for peer in line.removeprefix("served").strip().split(","):
            if peer:
                processOf[int(peer)] = number
    if sorted(processOf) != sorted(client for each in ports for client in each):
        raise BenchmarkError("the servers accepted other connections than these")
    result.connections = [0] * processes
    result.rates = [0.0] * processes
    for own, (before, after) in zip(ports, zip(*marks, strict=True), strict=True):
        elapsed = after.time - before.time  # as the generator timed it
        counts = zip(own, before.counts, after.counts, strict=True)
        for client, countBefore, countAfter in counts:
            result.connections[processOf[client]] += 1
            result.rates[processOf[client]] += (countAfter - countBefore) / elapsed
        pairs = list(zip(own[0::2], own[1::2], strict=False))
        result.sessions += len(own[0::2])
        result.sharedSessions += sum(processOf[a] != processOf[b] for a, b in pairs)
    result.rate = sum(result.rates)
    result.serverCPU = shares[:processes]
    result.generatorCPU = shares[processes:-1]
    result.redisCPU = shares[-1]
    return result


async def startGenerators(
    reactor: Any,
    children: Children,
    generators: list[ChildProcess],
    port: int,
    opts: argparse.Namespace,
) -> list[str]:
    """
    Start the load generators (C{python -m benchmarks.cluster load}) against
    C{port}, sharing C{--connections}, with C{--inflight} and C{--payload};
    return each one's C{ready} line once all said it.
    """
    load = ["--port", str(port), "--inflight", str(opts.inflight)]
    load += ["--payload", str(opts.payload)]
    for generator, count in zip(
        generators, split(opts.connections, len(generators)), strict=True
    ):
        arguments = ["load", "--connections", str(count), *load]
        children.spawnModule(generator, _MODULE, *arguments)
    ready = []
    for generator in generators:
        timeout = START_TIMEOUT + 2 * PHASE_TIMEOUT
        ready.append(await generator.waitFor("ready", timeout, reactor))
    return ready


async def measureWindow(
    reactor: Any,
    generators: list[ChildProcess],
    pids: list[int | None],
    opts: argparse.Namespace,
) -> tuple[list[list[Mark]], list[float | None]]:
    """
    Start the load, wait C{--warmup} seconds, then mark a C{--seconds}
    window.

    @return: What each generator said at each mark (per mark, per
        generator), and the CPU time each of C{pids} used in the window in
        cores (C{None} where unknown).
    """
    for generator in generators:
        generator.tell("start")
    await deferLater(reactor, opts.warmup)
    marks: list[list[Mark]] = []  # per mark, per generator
    cpu: list[list[float | None]] = []  # per mark, per process
    moments: list[float] = []
    for number in (1, 2):
        if number == 2:
            await deferLater(reactor, opts.seconds)
        for generator in generators:
            generator.tell(f"mark {number}")
        moments.append(time.perf_counter())
        cpu.append([cpuSeconds(pid) for pid in pids])
        said = [
            g.waitFor(f"mark {number} ", PHASE_TIMEOUT, reactor) for g in generators
        ]
        marks.append([Mark.parse(await line) for line in said])
    shares = [
        None if b is None or a is None else (a - b) / (moments[1] - moments[0])
        for b, a in zip(*cpu, strict=True)
    ]
    return marks, shares


async def stopGenerators(reactor: Any, generators: list[ChildProcess]) -> None:
    """Stop the load: each generator logs out, closes, says C{done} and exits."""
    for generator in generators:
        generator.expectExit = True  # it exits once done
        generator.tell("stop")
    for generator in generators:
        await generator.waitFor("done", 3 * PHASE_TIMEOUT, reactor)
        await generator.stop(reactor)


async def checkRedisEmpty(redisURL: str, prefix: str) -> None:
    """
    Raise L{BenchmarkError} if a key starting with C{prefix} is left in
    Redis: every session was logged out and every server unregistered.
    """
    host, port, db, password = parseURL(redisURL)
    redis = await txredisapi.Connection(
        host, port, dbid=db or None, password=password, reconnect=False
    )
    try:
        cursor, left = 0, []
        while True:  # SCAN, not KEYS: this may be someone's Redis
            cursor, keys = await redis.scan(cursor, prefix + "*", 1000)
            left += keys
            if int(cursor) == 0:
                break
    finally:
        await redis.disconnect()
    if left:
        raise BenchmarkError(f"{len(left)} keys left in Redis, e.g. {left[0]!r}")


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def describe(result: Result) -> list[str]:
    """The columns of one result, after the process count."""
    return [
        f"{result.rate:,.0f}",
        "+".join(map(str, result.connections)),
        "+".join(f"{rate:,.0f}" for rate in result.rates),
        "+".join(map(percent, result.serverCPU)),
        "+".join(map(percent, result.generatorCPU)),
        percent(result.redisCPU),
    ]


HEADINGS = ["servers", "requests/s", "connections", "req/s each", "server CPU"]
HEADINGS += ["generator CPU", "redis CPU"]


def table(rows: list[list[str]]) -> list[str]:
    """Right-aligned columns under L{HEADINGS}."""
    rows = [HEADINGS, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    return [
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]


def summary(result: Result) -> str:
    """One line about one run."""
    rate, connections, _, servers, generators, redis = describe(result)
    return (
        f"{plural(result.processes, 'server')}: {rate} req/s; connections "
        f"{connections}; CPU: servers {servers}, load {generators}, redis "
        f"{redis}; {result.sharedSessions} of {result.sessions} sessions on "
        "two servers"
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


async def main(reactor: Any, opts: argparse.Namespace) -> None:
    """Measure, then show the results; exit with status 1 on an error."""
    results = await runMeasurement(
        reactor, lambda children: measure(reactor, opts, children)
    )
    report(f"best of {opts.rounds} rounds per number of server processes:")
    best = {n: max(rs, key=lambda r: r.rate) for n, rs in results.items()}
    for line in table([[str(n), *describe(r)] for n, r in best.items()]):
        report(line)
    baseline = opts.processes[0]
    for n in opts.processes[1:]:
        report(
            f"ratio {n}/{baseline} servers: {best[n].rate / best[baseline].rate:.2f} "
            f"(baseline: {plural(baseline, 'server')}, measured in this run)"
        )


async def measure(
    reactor: Any, opts: argparse.Namespace, children: Children
) -> dict[int, list[Result]]:
    """Start Redis if needed, and measure every process count every round."""
    version = importlib.metadata.version
    cpus = len(os.sched_getaffinity(0))
    report(
        f"server processes: {', '.join(map(str, opts.processes))}; "
        f"{opts.connections} connections from "
        f"{plural(opts.clients_processes, 'load generator')}, {opts.inflight} "
        f"in flight each, {opts.payload}-byte payload, {opts.warmup:g} s "
        f"warm-up + {opts.seconds:g} s window, rounds: {opts.rounds}\n"
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"Twisted {version('twisted')}, Autobahn {version('autobahn')}; "
        f"{cpus} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    if cpus < max(opts.processes) + opts.clients_processes:
        report(
            f"note: {cpus} CPUs for up to {max(opts.processes)} servers and "
            f"{plural(opts.clients_processes, 'load generator')}: they compete "
            "for CPU time, so the ratio shows less than processes with a core "
            "each would give"
        )
    results: dict[int, list[Result]] = {n: [] for n in opts.processes}
    redisProcess: ChildProcess | None = None
    with tempfile.TemporaryDirectory(prefix="webwire-bench-") as directory:
        try:
            if opts.redis_url is None:
                redisURL, redisProcess = await startRedis(reactor, directory, children)
            else:
                redisURL = opts.redis_url
            report(f"redis: {redisURL}" + (" (started here)" if redisProcess else ""))
            redis = (redisURL, redisProcess)
            for roundNumber in range(1, opts.rounds + 1):
                for processes in opts.processes:  # alternate: drift hits all alike
                    task = Task(plural(processes, "server"))
                    result = await task.run(
                        measureOnce(reactor, task, processes, opts, redis, children)
                    )
                    results[processes].append(result)
                    report(f"round {roundNumber}, {summary(result)}")
        finally:
            if redisProcess is not None:
                await redisProcess.stop(reactor, "TERM")
    return results


def addRunArguments(
    parser: argparse.ArgumentParser, option: str, countsHelp: str, roundsHelp: str
) -> None:
    """
    Add C{option} (the counts to measure, comma-separated, described by
    C{countsHelp}), C{--clients-processes}, C{--connections}, the load
    options and C{--rounds} (C{roundsHelp}).
    """
    add = parser.add_argument
    add(option, default="1,2", help=countsHelp)
    add("--clients-processes", type=int, default=2, help="load generator processes")
    add("--connections", type=int, default=32, help="client connections in all")
    addLoadArguments(parser)
    add("--rounds", type=int, default=2, help=f"{roundsHelp}, alternating")


def checkRunArguments(
    parser: argparse.ArgumentParser, opts: argparse.Namespace, option: str
) -> None:
    """
    Turn C{option} into a list of whole numbers; exit through
    C{parser.error} unless the options added by L{addRunArguments} make
    sense for C{echo-binary} requests.
    """
    name = option.removeprefix("--")
    try:
        counts = [int(n) for n in getattr(opts, name).split(",")]
    except ValueError:
        parser.error(f"{option} must be comma-separated whole numbers")
    setattr(opts, name, counts)
    if min(counts) < 1 or opts.clients_processes < 1:
        parser.error(f"{option} and --clients-processes must be at least 1")
    if min(opts.inflight, opts.rounds) < 1:
        parser.error("--inflight and --rounds must be at least 1")
    if opts.connections < opts.clients_processes:
        parser.error("--connections must be at least --clients-processes")
    checkLoadArguments(parser, opts, "echo-binary")


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description="Round trips per second of N server processes on one port.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    counts = "server process counts, comma-separated"
    addRunArguments(parser, "--processes", counts, "runs per process count")
    add = parser.add_argument
    add("--redis-url", default=None, help="use this Redis instead of starting one")
    add("--prefix", default="webwire:bench:", help="start of every Redis key")
    commands = parser.add_subparsers(dest="command", help="internal: child processes")
    serve = commands.add_parser("serve", help="one server process")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--redis-url", required=True)
    serve.add_argument("--prefix", required=True)
    load = commands.add_parser("load", help="one load generator process")
    load.add_argument("--port", type=int, required=True)
    for name in ("--connections", "--inflight", "--payload"):
        load.add_argument(name, type=int, required=True)
    opts = parser.parse_args(argv)
    if opts.command is not None:
        return opts
    checkRunArguments(parser, opts, "--processes")
    if not hasattr(socket, "SO_REUSEPORT") or not os.path.exists("/proc/self/stat"):
        parser.error("this needs Linux (SO_REUSEPORT, /proc)")
    return opts


if __name__ == "__main__":
    options = parseArguments(sys.argv[1:])  # before the reactor: --help exits
    logWarnings()  # child processes write to the same stderr
    run = {"serve": serve, "load": generate, None: main}[options.command]
    react(run, (options,))
