"""
A bounded fuzz-and-soak run against a WebWire server serving the
conformance application: load processes send valid, mutated and malformed
WebWire messages and WebSocket oddities, abort at random and read slowly;
every reply is checked. The run ends with a table and exits with status 1
if any check failed (see benchmarks/README.md).

    python -m benchmarks.stress                      # 20,000 messages
    python -m benchmarks.stress --messages 1000000 --duration 1800
    python -m benchmarks.stress --url ws://127.0.0.1:8080/ --pid 1234
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from benchmarks._common import BenchmarkError, logWarnings, report, within
from benchmarks._processes import START_TIMEOUT, ChildProcess, Children
from benchmarks._stresscheck import Tally
from benchmarks._stressload import CLOSE_TIMEOUT, REPLY_TIMEOUT, generate

READ_TIMEOUT = 30.0  # the started server's: longer than SETTLE_TIMEOUT
SHUTDOWN_TIMEOUT = 5.0  # the started server's --shutdown-timeout
SETTLE_TIMEOUT = 10.0  # seconds for the descriptors to return after the load
EXIT_GRACE = 10.0  # seconds beyond the shutdown timeout for the server to exit
WARM_UP_MESSAGES = 500  # sent before the descriptors and RSS are measured
RSS_GROWTH_MIB = 64.0  # default bound of the server's RSS growth
LOG_BYTES = 8.0  # default bound of the server log per message sent
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LISTENING = re.compile(r"\bSite starting on (\d+)")
_TRACEBACK = "Traceback (most recent call last)"
_CRITICAL = re.compile(r"#critical\]")


def descriptors(pid: int) -> int | None:
    """How many file descriptors process C{pid} has open; None if unknown."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rssKiB(pid: int) -> int | None:
    """The resident set size of process C{pid} in KiB; None if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


_TCP_STATES = {
    "01": "ESTABLISHED",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def socketStates(pid: int) -> dict[str, int]:
    """
    What process C{pid} holds open: its TCP sockets by state, sockets no
    longer in the TCP table (reset by the peer, or other kinds) and other
    descriptors (from /proc).
    """
    inodes = set()
    states: dict[str, int] = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return {}
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
        else:
            kind = target.split(":", 1)[0] if ":" in target else "file"
            states[kind] = states.get(kind, 0) + 1
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                inodes.discard(fields[9])
                state = _TCP_STATES.get(fields[3], fields[3])
                states[state] = states.get(state, 0) + 1
    if inodes:
        states["sockets not in the TCP table"] = len(inodes)
    return states


class LogScan:
    """Counts what a server log holds: bytes, lines, tracebacks, criticals."""

    def __init__(self) -> None:
        self.bytes = self.lines = self.tracebacks = self.criticals = 0
        self.partial = ""
        self.samples: list[str] = []

    def feed(self, text: str) -> None:
        self.bytes += len(text.encode("utf-8", "replace"))
        *complete, self.partial = (self.partial + text).split("\n")
        for line in complete:
            self.lines += 1
            bad = False
            if _TRACEBACK in line:
                self.tracebacks += 1
                bad = True
            if _CRITICAL.search(line):
                self.criticals += 1
                bad = True
            if bad and len(self.samples) < 5:
                self.samples.append(line[:200])


class ServerProcess(ChildProcess):
    """C{twistd -n webwire}, its log written to a file and scanned."""

    def __init__(self, logPath: Path) -> None:
        super().__init__("server")
        self.logFile = logPath.open("w", encoding="utf-8")
        self.scan = LogScan()

    def outReceived(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        self.logFile.write(text)
        self.scan.feed(text)
        super().outReceived(data)

    errReceived = outReceived


class Run:
    """One stress run: its options, server, figures and failures."""

    def __init__(self, reactor: Any, opts: argparse.Namespace) -> None:
        self.reactor = reactor
        self.opts = opts
        self.children = Children(reactor)
        self.tally = Tally()
        self.failures: list[str] = []
        self.server: ServerProcess | None = None
        self.pid: int | None = opts.pid
        self.port = 0
        self.path = "/"
        self.logPath: Path | None = Path(opts.log) if opts.log else None
        self.logStart = 0
        self.figures: dict[str, Any] = {}

    async def startServer(self, directory: Path) -> None:
        self.logPath = directory / "server.log"
        server = ServerProcess(self.logPath)
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        argv += ["-n", "--pidfile=", "webwire", "--listen", "tcp:0:interface=127.0.0.1"]
        argv += ["--read-timeout", str(READ_TIMEOUT)]
        argv += ["--shutdown-timeout", str(SHUTDOWN_TIMEOUT)]
        argv += ["--session-directory", str(directory / "sessions")]
        env = dict(os.environ, PYTHONPATH=_ROOT)
        self.children.spawn(server, argv, env=env)
        self.server = server
        line = await server.waitFor("Site starting on", START_TIMEOUT, self.reactor)
        match = _LISTENING.search(line)
        assert match is not None
        self.port, self.pid = int(match.group(1)), server.pid

    def useURL(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise BenchmarkError("--url must be ws://127.0.0.1:PORT/...: loopback only")
        self.port = parts.port or 80
        self.path = parts.path or "/"
        if self.logPath is not None:
            self.logStart = self.logPath.stat().st_size

    def measure(self) -> tuple[int | None, int | None]:
        if self.pid is None:
            return None, None
        return descriptors(self.pid), rssKiB(self.pid)

    async def settle(self, before: int | None) -> int | None:
        """Wait (bounded) until the descriptors are back to C{before}."""
        if self.pid is None or before is None:
            return None
        end = time.monotonic() + self.opts.settle
        while True:
            now = descriptors(self.pid)
            if now is None or now <= before or time.monotonic() > end:
                self.figures["sockets"] = socketStates(self.pid)
                return now
            await deferLater(self.reactor, 0.1, lambda: None)

    async def warmUp(self) -> None:
        """
        Run a little load first (checked like the rest), then wait until the
        server's descriptors are steady: what the first connections open
        for good (session files, caches) is no leak.
        """
        await self.load([(WARM_UP_MESSAGES, 2)], "warm-up")
        if self.pid is None:
            return
        last, end = descriptors(self.pid), time.monotonic() + self.opts.settle
        while time.monotonic() < end:
            await deferLater(self.reactor, 0.2, lambda: None)
            now = descriptors(self.pid)
            if now == last:
                return
            last = now

    async def load(self, shares: list[tuple[int, int]], name: str = "load") -> None:
        """Run a load process for each C{(messages, connections)} share."""
        opts = self.opts
        processes = []
        for i, (messages, connections) in enumerate(shares):
            child = ChildProcess(f"{name} {i}")
            args = ["load", "--port", str(self.port), "--path", self.path]
            args += ["--seed", str(opts.seed), "--worker", f"{name}{i}"]
            args += ["--messages", str(messages), "--connections", str(connections)]
            args += ["--duration", str(opts.duration)]
            self.children.spawnModule(child, "benchmarks.stress", *args)
            processes.append(child)
        bound = opts.duration + REPLY_TIMEOUT + CLOSE_TIMEOUT + 30
        for child in processes:
            try:
                await within(self.reactor, child.whenEnded(), bound, child.name)
            except BenchmarkError as e:
                child.kill()
                self.failures.append(f"load process did not finish: {e}")
                continue
            results = [line for line in child.lines if line.startswith("{")]
            if not results:
                self.failures.append(f"{child.name} reported nothing")
                continue
            self.tally.merge(json.loads(results[-1]))

    async def stopServer(self) -> None:
        server = self.server
        if server is None:
            return
        started = time.monotonic()
        server.expectExit = True
        server.process.signalProcess("TERM")
        bound = SHUTDOWN_TIMEOUT + EXIT_GRACE
        try:
            await within(self.reactor, server.whenEnded(), bound, "server exit")
        except BenchmarkError:
            server.kill()
            self.failures.append(
                f"the server did not exit within {bound:g}s of SIGTERM"
            )
        self.figures["exit"] = time.monotonic() - started
        server.logFile.close()

    def scanLog(self) -> LogScan | None:
        if self.server is not None:
            return self.server.scan
        if self.logPath is None:
            return None
        scan = LogScan()
        with self.logPath.open(encoding="utf-8", errors="replace") as f:
            f.seek(self.logStart)
            scan.feed(f.read())
        return scan

    async def run(self) -> int:
        opts = self.opts
        report(f"stress run: seed {opts.seed}, {opts.messages:,} messages")
        with tempfile.TemporaryDirectory(prefix="webwire-stress-") as directory:
            try:
                if opts.url:
                    self.useURL(opts.url)
                else:
                    await self.startServer(Path(directory))
                await self.warmUp()
                fdBefore, rssBefore = self.measure()
                started = time.monotonic()
                workers = max(1, min(opts.processes, opts.connections))
                await self.load(
                    [
                        (
                            opts.messages // workers + (i < opts.messages % workers),
                            opts.connections // workers
                            + (i < opts.connections % workers),
                        )
                        for i in range(workers)
                    ]
                )
                self.figures["seconds"] = time.monotonic() - started
                fdAfter = await self.settle(fdBefore)
                rssAfter = self.measure()[1]
                await self.stopServer()
                self.table(fdBefore, fdAfter, rssBefore, rssAfter, self.scanLog())
            finally:
                await self.children.killAll()
                if self.server is not None and not self.server.logFile.closed:
                    self.server.logFile.close()
                if self.failures and self.logPath is not None and not opts.url:
                    kept = (
                        Path(tempfile.gettempdir()) / f"webwire-stress-{opts.seed}.log"
                    )
                    kept.write_bytes(self.logPath.read_bytes())
                    report(f"server log kept in {kept}")
        return 1 if self.failures else 0

    def table(
        self,
        fdBefore: int | None,
        fdAfter: int | None,
        rssBefore: int | None,
        rssAfter: int | None,
        scan: LogScan | None,
    ) -> None:
        t, opts = self.tally, self.opts
        rows: list[tuple[str, str]] = []
        seconds = self.figures["seconds"]
        rows.append(("seed", str(opts.seed)))
        rows.append(
            ("messages", f"{t['messages']:,} ({t['messages'] / seconds:,.0f}/s)")
        )
        rows.append(("duration", f"{seconds:.1f} s"))
        rows.append(("connections", f"{t['connections']:,}"))
        episodes = {k[8:]: v for k, v in t.items() if k.startswith("episode ")}
        rows.append(("episodes", _counts(episodes)))
        closes = {k[6:]: v for k, v in t.items() if k.startswith("close ")}
        rows.append(("closes by code", _counts(closes)))
        endings = {k[7:]: v for k, v in t.items() if k.startswith("ending ")}
        rows.append(("closes by ending", _counts(endings)))
        rows.append(("requests sent", f"{t['requests']:,}"))
        rows.append(("replies verified", f"{t['replies verified']:,}"))
        for kind in ("signals verified", "notifications verified", "pongs verified"):
            rows.append((kind, f"{t[kind]:,}"))
        for kind in Tally.FAILURES:
            rows.append((kind, f"{t[kind]:,}"))
            if kind == "lost" and t[kind]:
                lost = {k[11:]: v for k, v in t.items() if k.startswith("lost after ")}
                rows.append(("lost, by ending", _counts(lost)))
            if t[kind]:
                self.failures.append(f"{t[kind]:,} {kind}")
        if t["messages"] < opts.messages:
            rows.append(("note", f"--duration ended the run at {t['messages']:,}"))
        if scan is None:
            rows.append(("server log", "not read (give --log)"))
        else:
            perMessage = scan.bytes / max(t["messages"], 1)
            size = f"{scan.bytes:,} bytes, {scan.lines:,} lines"
            rows.append(("server log", f"{size} ({perMessage:.1f} bytes/message)"))
            rows.append(("tracebacks in the log", f"{scan.tracebacks:,}"))
            rows.append(("critical lines in the log", f"{scan.criticals:,}"))
            if scan.tracebacks or scan.criticals:
                self.failures.append(
                    f"{scan.tracebacks:,} tracebacks and {scan.criticals:,} critical "
                    f"lines in the server log; the first: {scan.samples[:2]}"
                )
            if perMessage > opts.log_bound:
                self.failures.append(
                    f"the server logged {perMessage:.1f} bytes per message "
                    f"(bound {opts.log_bound:g})"
                )
        if fdBefore is None:
            rows.append(("descriptors", "not measured (give --pid)"))
        else:
            rows.append(("descriptors before/after", f"{fdBefore} / {fdAfter}"))
            if fdAfter is not None and fdAfter > fdBefore:
                self.failures.append(
                    f"descriptors leaked: {fdBefore} before, {fdAfter} "
                    f"{opts.settle:g}s after the load; the server then held: "
                    f"{_counts(self.figures.get('sockets', {}))}"
                )
        if rssBefore is not None and rssAfter is not None:
            growth = (rssAfter - rssBefore) / 1024
            mib = f"{rssBefore / 1024:.1f} / {rssAfter / 1024:.1f} MiB"
            rows.append(("RSS before/after", f"{mib} ({growth:+.1f})"))
            if growth > opts.rss_bound:
                self.failures.append(
                    f"RSS grew by {growth:.1f} MiB (bound {opts.rss_bound:g})"
                )
        if "exit" in self.figures:
            rows.append(("server exit after SIGTERM", f"{self.figures['exit']:.1f} s"))
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            report(f"  {label:<{width}}  {value}")
        for sample in t.samples:
            report(f"  e.g. {sample}")
        if self.failures:
            for failure in self.failures:
                report(f"FAILED: {failure}")
        else:
            report("all checks passed")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "none"


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stress", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--url", help="a running server, ws://127.0.0.1:PORT/... (default: start one)")
    add("--pid", type=int, help="with --url: its process (descriptors and RSS)")
    add("--log", help="with --url: its log file, read from its current end")
    add("--messages", type=int, default=20_000, help="WebWire messages to send in all")
    add("--connections", type=int, default=16, help="connections open at once, in all")
    add("--processes", type=int, default=2, help="load processes")
    add("--seed", type=int, help="random seed (default: a new one, printed)")
    add(
        "--duration", type=float, default=600.0, help="seconds; no new connection after"
    )
    add(
        "--settle", type=float, default=SETTLE_TIMEOUT, help="seconds for fds to return"
    )
    add("--rss-bound", type=float, default=RSS_GROWTH_MIB, help="MiB of RSS growth")
    add("--log-bound", type=float, default=LOG_BYTES, help="log bytes per message")
    opts = parser.parse_args(argv)
    if opts.seed is None:
        opts.seed = int.from_bytes(os.urandom(4), "big")
    if opts.messages < 1 or opts.connections < 1 or opts.processes < 1:
        parser.error("--messages, --connections and --processes must be positive")
    if opts.settle >= READ_TIMEOUT and not opts.url:
        parser.error(f"--settle must be less than the read timeout ({READ_TIMEOUT:g}s)")
    return opts


def parseLoadArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stress load")
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, required=True)
    add("--path", default="/")
    add("--seed", type=int, required=True)
    add("--worker", default="0")
    add("--messages", type=int, required=True)
    add("--connections", type=int, required=True)
    add("--duration", type=float, required=True)
    return parser.parse_args(argv)


async def main(reactor: Any, argv: list[str]) -> None:
    logWarnings()
    if argv[:1] == ["load"]:
        await generate(reactor, parseLoadArguments(argv[1:]))
        return
    opts = parseArguments(argv)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: None)
    try:
        status = await Run(reactor, opts).run()
    except BenchmarkError as e:
        report(f"FAILED: {e}")
        status = 1
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1:])))
