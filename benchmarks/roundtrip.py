"""
What one WebWire server process costs per request, against a bare Autobahn
echo server, each alone on one CPU and loaded from other processes.

The servers (started once, in processes of their own, pinned to the same
CPU with C{os.sched_setaffinity} where the OS allows):

  - C{webwire}: C{twistd -n webwire --sessions memory}, the conformance
    application as users run it, sent C{echo} requests;
  - C{echo}: a bare Autobahn server sending every message back
    (L{benchmarks._echoserver}); the echo of a request is its reply.

The load comes from L{benchmarks._rawload} processes (pinned to the other
CPUs): plain sockets, frames encoded and masked before the run, requests
pipelined, every reply checked byte for byte. Each measurement: connect,
send for C{--warmup} seconds, then a C{--seconds} window in which the
generators count replies and latencies (send to reply, microseconds) and
this process reads the server's CPU time (user + system, C{/proc/PID/stat})
at its start and end. The headline is B{server CPU microseconds per
request}: it does not depend on how fast the generators are. Rounds
alternate between the servers; per server and configuration the best round
is reported (noise on a shared machine only ever slows a run down).

Measured, in this order:

  - saturation (closed loop): 16 connections x 8 in flight and 1 x 1 with
    64-byte binary requests; 16 x 8 with 4,096 bytes, binary, UTF-8 and
    UTF-16;
  - the same offered load: both servers paced at C{--offered} times the
    slower one's 16 x 8 saturation rate: server CPU per request and its
    share of the CPU;
  - the generators are not the bottleneck: their CPU share in every
    measurement, and 16 x 8 with one, then two generator processes, back
    to back (and the server's CPU share with one);
  - a heartbeat flood: 900 heartbeats/s on one connection, server CPU;
  - idle memory: the resident memory a fresh server gains per connection
    with C{--idle-connections} open, idle connections (the descriptor limit
    is raised as far as allowed; fewer connections, with a note, if it
    is too low);
  - start-up: seconds from starting C{twistd -n webwire} until it logs that
    it listens.

Run from the repository root (about two minutes; C{--quick}: a few
seconds of each, for a smoke test)::

    python -m benchmarks.roundtrip
    python -m benchmarks.roundtrip --quick --json report.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from twisted.internet.task import deferLater, react

from benchmarks._common import BenchmarkError, logWarnings, report
from benchmarks._processes import START_TIMEOUT, ChildProcess, Children, cpuSeconds

SERVERS = ("webwire", "echo")
TWISTD = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
LISTEN = "tcp:0:interface=127.0.0.1:backlog=1024"
_PORT = {
    "webwire": re.compile(r"Site starting on (\d+)"),
    "echo": re.compile(r"listening (\d+)"),
}


@dataclass(frozen=True)
class Load:
    """A load configuration: its name and what each generator is told."""

    name: str
    connections: int
    inflight: int
    payload: int = 64
    encoding: str = "binary"


SATURATION = (
    Load("16x8 64 B", 16, 8),
    Load("1x1 64 B", 1, 1),
    Load("16x8 4096 B binary", 16, 8, 4096),
    Load("16x8 4096 B UTF-8", 16, 8, 4096, "utf8"),
    Load("16x8 4096 B UTF-16", 16, 8, 4096, "utf16"),
)


@dataclass
class Result:
    """One measurement of one server."""

    server: str
    load: str
    generators: int
    offered: float | None  # requests/s asked for; None: closed loop
    throughput: float  # replies/s
    p50: float | None  # microseconds from send to reply
    p99: float | None
    serverCpuPerRequest: float | None  # microseconds
    serverCpu: float  # share of one core in the window
    generatorCpu: list[float] = field(default_factory=list)  # each, of one core
    skipped: int = 0  # paced: due while every slot was busy


@dataclass
class Server:
    """A running server under test."""

    name: str
    child: ChildProcess
    port: int

    @property
    def pid(self) -> int:
        assert self.child.pid is not None
        return self.child.pid


class Bench:
    """The processes and CPUs of one benchmark run."""

    def __init__(self, reactor: Any, opts: argparse.Namespace) -> None:
        self.reactor = reactor
        self.opts = opts
        self.children = Children(reactor)
        self.sequence = 0
        cpus = (
            sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        )
        self.pinned = len(cpus) > 1
        self.serverCpus = cpus[-1:] if self.pinned else []
        self.loadCpus = cpus[:-1] if self.pinned else []
        self.notes: list[str] = []

    def pin(self, pid: int, cpus: list[int]) -> None:
        if cpus:
            os.sched_setaffinity(pid, cpus)

    async def startServer(self, name: str) -> Server:
        if name == "webwire":
            argv = [sys.executable, *TWISTD, "webwire", "--listen", LISTEN]
            argv += ["--sessions", "memory"]
        else:
            argv = [sys.executable, "-m", "benchmarks._echoserver"]
        child = self.children.spawn(ChildProcess(name, self.lost), argv)
        assert child.pid is not None
        self.pin(child.pid, self.serverCpus)
        line = await child.waitFor(
            "starting on" if name == "webwire" else "listening",
            START_TIMEOUT,
            self.reactor,
        )
        match = _PORT[name].search(line)
        assert match is not None
        return Server(name, child, int(match.group(1)))

    async def stopServer(self, server: Server) -> None:
        await server.child.stop(
            self.reactor, "TERM" if server.name == "webwire" else None
        )

    def lost(self, reason: str) -> None:
        report(f"benchmark aborted: {reason}", sys.stderr)
        for child in self.children.started:
            child.kill()
        self.reactor.stop()

    async def startGenerators(
        self, server: Server, load: Load, generators: int, **extra: Any
    ) -> list[ChildProcess]:
        """Start C{generators} processes sharing C{load}; wait until ready."""
        children = []
        for index in range(generators):
            share = load.connections // generators + (
                index < load.connections % generators
            )
            config = {
                "port": server.port,
                "server": server.name,
                "connections": share,
                "inflight": load.inflight,
                "payload": load.payload,
                "encoding": load.encoding,
                "cpus": self.loadCpus,
                **extra,
            }
            argv = [sys.executable, "-m", "benchmarks._rawload", json.dumps(config)]
            name = f"load generator {index + 1} of {server.name}"
            children.append(self.children.spawn(ChildProcess(name, self.lost), argv))
        for child in children:
            await child.waitFor("ready", START_TIMEOUT * 3, self.reactor)
        return children

    async def stopGenerators(self, children: list[ChildProcess]) -> None:
        """Tell each to stop; wait until each closed and exited."""
        for child in children:
            child.expectExit = True  # it exits by itself once done
            child.tell("stop")
        for child in children:
            await child.waitFor("done", START_TIMEOUT * 3, self.reactor)
            await child.stop(self.reactor)

    async def measure(
        self,
        server: Server,
        load: Load,
        generators: int = 1,
        rate: float | None = None,
        heartbeat: bool = False,
    ) -> Result:
        """Load C{server} with C{load}; measure one window."""
        opts, reactor = self.opts, self.reactor
        extra: dict[str, Any] = {"heartbeat": heartbeat}
        if rate is not None:
            extra["rate"] = rate / generators
        children = await self.startGenerators(server, load, generators, **extra)
        for child in children:
            child.tell("start")
        await deferLater(reactor, opts.warmup)
        self.sequence += 1
        n = self.sequence
        pids = [server.pid] + [c.pid for c in children]
        before = [cpuSeconds(pid) for pid in pids]
        started = time.perf_counter()
        for child in children:
            child.tell(f"begin {n}")
        await deferLater(reactor, opts.seconds)
        for child in children:
            child.tell(f"end {n}")
        after = [cpuSeconds(pid) for pid in pids]
        elapsed = time.perf_counter() - started
        stats = []
        for child in children:
            line = await child.waitFor(f"ended {n} ", START_TIMEOUT, reactor)
            stats.append(json.loads(line.split(" ", 2)[2]))
        await self.stopGenerators(children)
        used = [
            (b - a) if a is not None and b is not None else 0.0
            for a, b in zip(before, after, strict=True)
        ]
        completed = sum(s["completed"] for s in stats)
        latencies: dict[int, int] = {}
        for s in stats:
            for micros, count in s["latencies"].items():
                latencies[int(micros)] = latencies.get(int(micros), 0) + count
        throughput = sum(s["completed"] / s["elapsed"] for s in stats)
        return Result(
            server=server.name,
            load=("heartbeats " if heartbeat else "") + load.name,
            generators=generators,
            offered=rate,
            throughput=throughput,
            p50=quantile(latencies, 0.5),
            p99=quantile(latencies, 0.99),
            serverCpuPerRequest=(used[0] * 1e6 / completed) if completed else None,
            serverCpu=used[0] / elapsed,
            generatorCpu=[u / elapsed for u in used[1:]],
            skipped=sum(s["skipped"] for s in stats),
        )

    async def idleMemory(self, name: str, connections: int) -> dict[str, Any]:
        """Resident memory a fresh server gains per idle connection."""
        server = await self.startServer(name)
        rss0 = residentKiB(server.pid)
        generators = max(1, min(4, connections // 500))
        load = Load("idle", connections, 1)
        children = await self.startGenerators(server, load, generators)
        rss1 = residentKiB(server.pid)
        await self.stopGenerators(children)
        await self.stopServer(server)
        return {
            "server": name,
            "connections": connections,
            "rssBeforeKiB": rss0,
            "rssAfterKiB": rss1,
            "perConnectionKiB": (rss1 - rss0) / connections,
        }

    async def startup(self) -> float:
        """Seconds from starting C{twistd -n webwire} until it listens."""
        started = time.perf_counter()
        server = await self.startServer("webwire")
        elapsed = time.perf_counter() - started
        await self.stopServer(server)
        return elapsed


def quantile(histogram: dict[int, int], q: float) -> float | None:
    """The C{q} quantile of a histogram of whole microseconds."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = q * (total - 1), 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > rank:
            return float(value)
    raise AssertionError("unreachable")


def residentKiB(pid: int) -> int:
    """The resident set size of process C{pid} in KiB (C{/proc/PID/status})."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for process {pid}")


def raiseFileLimit(wanted: int) -> int:
    """Raise this process's descriptor limit (inherited); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
    if target == resource.RLIM_INFINITY:
        target = max(soft, wanted + 1024)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def best(results: list[Result], by: str = "throughput") -> Result:
    """The best round: the highest throughput, or the least CPU per request."""
    if by == "throughput":
        return max(results, key=lambda r: r.throughput)
    return min(results, key=lambda r: r.serverCpuPerRequest or float("inf"))


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def line(result: Result) -> str:
    gens = ", ".join(f"{g:.0%}" for g in result.generatorCpu)
    return (
        f"  {result.server:<8} {fmt(result.throughput):>9} req/s  "
        f"p50 {fmt(result.p50):>6} us  p99 {fmt(result.p99):>7} us  "
        f"server {fmt(result.serverCpuPerRequest, '.1f'):>6} us CPU/req "
        f"({result.serverCpu:.0%} of a core)  generators {gens}"
    )


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or not theirs else ours / theirs


async def run(bench: Bench) -> dict[str, Any]:
    opts = bench.opts
    version = importlib.metadata.version
    limit = raiseFileLimit(opts.idle_connections * 2)
    idle = opts.idle_connections
    if limit < idle + 256:
        idle = max(10, limit - 256)
        bench.notes.append(
            f"descriptor limit {limit}: idle memory measured with {idle} "
            f"connections, not {opts.idle_connections}"
        )
    if not bench.pinned:
        bench.notes.append("one CPU only (or no affinity API): nothing pinned")
    machine = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "twisted": version("twisted"),
        "autobahn": version("autobahn"),
        "cpus": os.cpu_count(),
        "serverCpus": bench.serverCpus,
        "loadCpus": bench.loadCpus,
        "seconds": opts.seconds,
        "warmup": opts.warmup,
        "rounds": opts.rounds,
    }
    report(
        f"{machine['python']}, Twisted {machine['twisted']}, Autobahn "
        f"{machine['autobahn']}; {machine['cpus']} CPUs: servers on "
        f"{bench.serverCpus or 'any'}, load generators on {bench.loadCpus or 'any'}; "
        f"{opts.warmup:g} s warm-up + {opts.seconds:g} s window, "
        f"best of {opts.rounds} rounds"
    )
    for note in bench.notes:
        report(f"note: {note}")
    servers = {name: await bench.startServer(name) for name in SERVERS}
    results: list[Result] = []

    def collect(result: Result) -> Result:
        results.append(result)
        return result

    summary: dict[str, Any] = {"saturation": {}}
    for load in SATURATION:
        rounds: dict[str, list[Result]] = {name: [] for name in SERVERS}
        for _ in range(opts.rounds):
            for name in SERVERS:  # alternate, so drift hits both alike
                result = collect(await bench.measure(servers[name], load))
                rounds[name].append(result)
        chosen = {name: best(rounds[name]) for name in SERVERS}
        report(f"saturation, {load.name}:")
        for result in chosen.values():
            report(line(result))
            if result.serverCpu < 0.9 and load.connections * load.inflight > 1:
                report(
                    f"    note: {result.server} used {result.serverCpu:.0%} of its "
                    "core: other processes took the rest, so its throughput is "
                    "not its capacity (its CPU per request still is its cost)"
                )
        summary["saturation"][load.name] = compare(chosen)

    base = SATURATION[0]
    slower = min(summary["saturation"][base.name][n]["throughput"] for n in SERVERS)
    rate = round(slower * opts.offered, -2) or 100.0
    rounds = {name: [] for name in SERVERS}
    for _ in range(opts.rounds):
        for name in SERVERS:
            result = collect(await bench.measure(servers[name], base, rate=rate))
            rounds[name].append(result)
    chosen = {name: best(rounds[name], by="cpu") for name in SERVERS}
    report(f"same offered load, {base.name}, {rate:,.0f} req/s:")
    for result in chosen.values():
        report(line(result))
        if result.throughput < 0.95 * rate:
            report(
                f"    note: {result.server} completed {result.throughput:,.0f} of "
                f"{rate:,.0f} req/s offered ({result.skipped:,} due while every "
                "slot was busy): it fell behind, the loads are not the same"
            )
    summary["sameLoad"] = {"offered": rate, **compare(chosen)}

    check: dict[str, Any] = {}
    report(f"load generator check, {base.name}, 1 then 2 generator processes:")
    for name in SERVERS:  # back to back, so that both meet the same noise
        one = collect(await bench.measure(servers[name], base, generators=1))
        two = collect(await bench.measure(servers[name], base, generators=2))
        report(line(one))
        report(line(two))
        check[name] = {
            "oneGenerator": one.throughput,
            "twoGenerators": two.throughput,
            "gain": two.throughput / one.throughput - 1,
            "serverCpuOne": one.serverCpu,
            "serverCpuTwo": two.serverCpu,
            "generatorCpuOne": one.generatorCpu,
            "generatorCpuTwo": two.generatorCpu,
        }
        report(
            f"    one generator at {max(one.generatorCpu):.0%} of a core held "
            f"{name} at {one.serverCpu:.0%} of its core; a second changed "
            f"throughput by {check[name]['gain']:+.0%}"
        )
    summary["generatorCheck"] = check

    flood = {}
    heartbeatLoad = Load("1 connection", 1, 1)
    report(f"heartbeat flood, {opts.heartbeats:g}/s on one connection:")
    for name in SERVERS:
        result = collect(
            await bench.measure(
                servers[name], heartbeatLoad, rate=opts.heartbeats, heartbeat=True
            )
        )
        flood[name] = {"serverCpu": result.serverCpu, "sent": opts.heartbeats}
        report(f"  {name:<8} server {result.serverCpu:.1%} of a core")
    summary["heartbeatFlood"] = flood
    for server in servers.values():
        await bench.stopServer(server)

    memory = {}
    report(f"idle memory, {idle:,} connections (fresh servers):")
    for name in SERVERS:
        memory[name] = await bench.idleMemory(name, idle)
        report(
            f"  {name:<8} {memory[name]['perConnectionKiB']:.1f} KiB per connection "
            f"(RSS {memory[name]['rssBeforeKiB']:,} -> "
            f"{memory[name]['rssAfterKiB']:,} KiB)"
        )
    memory["ratio"] = (
        memory["webwire"]["perConnectionKiB"] / memory["echo"]["perConnectionKiB"]
    )
    summary["idleMemory"] = memory

    starts = [await bench.startup() for _ in range(opts.startups)]
    summary["startup"] = {"seconds": starts, "best": min(starts)}
    report(
        "start-up of twistd -n webwire until listening: "
        + ", ".join(f"{s:.3f}" for s in starts)
        + " s"
    )
    report_ratios(summary)
    return {
        "machine": machine,
        "notes": bench.notes,
        "summary": summary,
        "results": [asdict(r) for r in results],
    }


def compare(chosen: dict[str, Result]) -> dict[str, Any]:
    ours, theirs = chosen["webwire"], chosen["echo"]
    return {
        **{name: asdict(result) for name, result in chosen.items()},
        "ratio": {
            "throughput": ratio(ours.throughput, theirs.throughput),
            "p50": ratio(ours.p50, theirs.p50),
            "p99": ratio(ours.p99, theirs.p99),
            "serverCpuPerRequest": ratio(
                ours.serverCpuPerRequest, theirs.serverCpuPerRequest
            ),
        },
    }


def report_ratios(summary: dict[str, Any]) -> None:
    report("ratios webwire/echo (CPU per request is the headline):")
    rows = [(f"saturation {k}", v) for k, v in summary["saturation"].items()]
    rows.append(("same offered load", summary["sameLoad"]))
    for label, entry in rows:
        r = entry["ratio"]
        report(
            f"  {label:<28} CPU/req {fmt(r['serverCpuPerRequest'], '.2f')}  "
            f"throughput {fmt(r['throughput'], '.2f')}  "
            f"p50 {fmt(r['p50'], '.2f')}  p99 {fmt(r['p99'], '.2f')}"
        )
    report(f"  {'idle memory per connection':<28} {summary['idleMemory']['ratio']:.2f}")


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.roundtrip",
        description="Server CPU per request, throughput and latency: "
        "WebWire vs. a bare Autobahn echo server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--seconds", type=float, default=3.0, help="measurement window")
    add("--warmup", type=float, default=1.0, help="seconds before each window")
    add("--rounds", type=int, default=2, help="rounds per server, alternating")
    add(
        "--offered",
        type=float,
        default=0.5,
        help="same-load rate, as a fraction of the slower server's saturation",
    )
    add("--heartbeats", type=float, default=900.0, help="heartbeats/s of the flood")
    add("--idle-connections", type=int, default=10_000, help="for idle memory")
    add("--startups", type=int, default=3, help="start-up time measurements")
    add("--json", metavar="PATH", help="also write the report as JSON")
    add(
        "--quick",
        action="store_true",
        help="a smoke test: tiny windows, one round, 200 idle connections",
    )
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.seconds, opts.warmup, opts.rounds = 0.3, 0.1, 1
        opts.idle_connections, opts.startups = 200, 1
    if opts.seconds <= 0 or opts.warmup < 0 or opts.rounds < 1:
        parser.error("--seconds must be positive, --warmup not negative, --rounds >= 1")
    if not 0 < opts.offered <= 1 or opts.idle_connections < 1 or opts.startups < 1:
        parser.error("--offered must be in (0, 1]; --idle-connections, --startups >= 1")
    return opts


def writeJSON(path: str, output: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(output, f, indent=1)


async def main(reactor: Any, opts: argparse.Namespace) -> None:
    bench = Bench(reactor, opts)
    try:
        output = await run(bench)
    except BenchmarkError as e:
        report(f"benchmark aborted: {e}", sys.stderr)
        raise SystemExit(1) from None
    finally:
        await bench.children.killAll()
    if opts.json:
        writeJSON(opts.json, output)


if __name__ == "__main__":
    options = parseArguments(sys.argv[1:])  # before the reactor: --help exits
    logWarnings()
    react(main, (options,))
