"""
The benchmark's child processes, both ends of the line-by-line link to
them: L{Children} starts them and L{ChildProcess} watches one from the
benchmark (commands to its standard input, its output lines awaited);
L{Control} is the child's own end. Also L{runMeasurement}, L{startRedis},
L{cpuSeconds} and L{freePort}.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IHalfCloseableProtocol, IProcessTransport
from twisted.internet.protocol import ProcessProtocol, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from benchmarks._common import BenchmarkError, Task, report, within

_T = TypeVar("_T")

START_TIMEOUT = 20.0  # seconds for a process to be ready or to exit
_ROOT = Path(__file__).resolve().parent.parent  # where -m benchmarks.* runs


def freePort() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpuSeconds(pid: int | None) -> float | None:
    """CPU time (user + system) process C{pid} used so far; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The child's end: its standard input and output -------------------------


@implementer(IHalfCloseableProtocol)
class Control(Protocol):
    """
    A child process's link to the benchmark: commands come in on standard
    input, one a line, and status lines go out on standard output.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[str] = []
        self.ended = False  # standard input is closed
        self.waiting: Deferred[str | None] | None = None
        self.gone: Deferred[None] = Deferred()

    def say(self, line: str) -> None:
        assert self.transport is not None
        self.transport.write(line.encode("ascii") + b"\n")

    def nextLine(self) -> Deferred[str | None]:
        """The next command; C{None} once standard input is closed."""
        self.waiting = Deferred()
        waiting = self.waiting
        self._deliver()
        return waiting

    def _deliver(self) -> None:
        if self.waiting is not None and (self.lines or self.ended):
            waiting, self.waiting = self.waiting, None
            waiting.callback(self.lines.pop(0) if self.lines else None)

    def dataReceived(self, data: bytes) -> None:
        *complete, self.buffer = (self.buffer + data).split(b"\n")
        self.lines += [line.decode("ascii").strip() for line in complete]
        self._deliver()

    def readConnectionLost(self) -> None:
        self.ended = True
        self._deliver()

    def writeConnectionLost(self) -> None:
        """Nobody reads the status lines any more: the input will end too."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.readConnectionLost()
        self.gone.callback(None)

    async def close(self) -> None:
        """Close standard output once the status lines are written."""
        assert self.transport is not None
        self.transport.loseConnection()
        await self.gone


# The benchmark's end ----------------------------------------------------


class ChildProcess(ProcessProtocol):
    """
    A process the benchmark started: its output lines, Deferreds for a line
    awaited or for its exit, and a way to stop it.
    """

    def __init__(self, name: str, onExit: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.onExit = onExit  # called if it exits while still expected to run
        self.expectExit = False
        self.output = b""
        self.lines: list[str] = []
        self.waiters: list[tuple[str, Deferred[str]]] = []
        self.ended = False
        self.endWaiters: list[Deferred[None]] = []
        self.pid: int | None = None

    @property
    def process(self) -> IProcessTransport:
        assert self.transport is not None, "not started"
        return self.transport

    def connectionMade(self) -> None:
        self.pid = self.process.pid

    def tell(self, command: str) -> None:
        """Write a command line to its standard input."""
        self.process.writeToChild(0, command.encode("ascii") + b"\n")

    def outReceived(self, data: bytes) -> None:
        *complete, self.output = (self.output + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.lines.append(line)
            for waiter in list(self.waiters):
                if waiter[0] in line:
                    self.waiters.remove(waiter)
                    waiter[1].callback(line)

    def waitFor(self, text: str, seconds: float, reactor: Any) -> Deferred[str]:
        """
        A Deferred firing with the first line (past or future) that holds
        C{text}, failing with L{BenchmarkError} if none comes in C{seconds}.
        """
        for line in self.lines:
            if text in line:
                return defer.succeed(line)
        if self.ended:
            return defer.fail(BenchmarkError(f"{self.name} exited"))
        waiter: Deferred[str] = Deferred(lambda d: self.waiters.remove((text, d)))
        self.waiters.append((text, waiter))
        what = f"{text!r} from {self.name}"
        return Deferred.fromCoroutine(within(reactor, waiter, seconds, what))

    def processEnded(self, reason: Failure) -> None:
        waiters, self.waiters = self.waiters, []
        for text, waiter in waiters:
            waiter.errback(BenchmarkError(f"{self.name} exited before {text!r}"))
        self.ended = True
        endWaiters, self.endWaiters = self.endWaiters, []
        for ended in endWaiters:
            ended.callback(None)
        if not self.expectExit and self.onExit is not None:
            self.onExit(f"{self.name} exited ({reason.getErrorMessage()})")

    def whenEnded(self) -> Deferred[None]:
        """A Deferred that fires once the process has exited."""
        if self.ended:
            return defer.succeed(None)
        waiter: Deferred[None] = Deferred(self.endWaiters.remove)
        self.endWaiters.append(waiter)
        return waiter

    async def stop(self, reactor: Any, signal: str | None = None) -> None:
        """
        Ask it to stop (close its standard input, or send C{signal}) and wait
        until it exits; kill it if it has not after L{START_TIMEOUT} seconds.
        """
        self.expectExit = True
        if self.ended:
            return
        if signal is None:
            self.process.closeStdin()
        else:
            self.process.signalProcess(signal)
        try:
            exited = self.whenEnded()
            await within(reactor, exited, START_TIMEOUT, f"exit of {self.name}")
        except BenchmarkError:
            self.kill()
            raise

    def kill(self) -> None:
        """Kill it now if it still runs (nothing if it never started)."""
        self.expectExit = True
        if self.transport is not None and not self.ended:
            try:
                self.process.signalProcess("KILL")
            except ProcessExitedAlready:
                pass  # processEnded is on its way


class Children:
    """Every process the benchmark started, to kill whatever happens."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.started: list[ChildProcess] = []

    def spawn(
        self, child: ChildProcess, argv: list[str], env: dict[str, str] | None = None
    ) -> ChildProcess:
        """Start C{argv} watched by C{child}; its stderr is this process's."""
        childFDs = {0: "w", 1: "r", 2: 2}
        env = dict(os.environ) if env is None else env
        self.reactor.spawnProcess(
            child, argv[0], argv, env=env, path=str(_ROOT), childFDs=childFDs
        )
        self.started.append(child)
        return child

    def spawnModule(
        self, child: ChildProcess, module: str, *arguments: str
    ) -> ChildProcess:
        """Start C{python -m module arguments...} (this Python, repository root)."""
        argv = [sys.executable, "-m", module, *arguments]
        return self.spawn(child, argv)

    async def killAll(self) -> None:
        """Kill every process still running, and wait until all exited."""
        for child in self.started:
            child.kill()
        for child in self.started:  # else the zombies would outlive us
            await within(self.reactor, child.whenEnded(), 5, f"exit of {child.name}")


async def startRedis(
    reactor: Any, directory: str, children: Children
) -> tuple[str, ChildProcess]:
    """Start a redis-server without persistence; return its URL and process."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise BenchmarkError("redis-server not found: install it or pass --redis-url")
    for attempt in range(2):  # the free port may be taken meanwhile: retry once
        port = freePort()
        args = [executable, "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        args += ["--dir", directory, "--loglevel", "notice"]
        child = children.spawn(ChildProcess("redis-server"), args, env={})
        try:
            await child.waitFor("Ready to accept connections", START_TIMEOUT, reactor)
        except BenchmarkError:
            if attempt:
                raise
            child.kill()
            continue
        return f"redis://127.0.0.1:{port}/0", child
    raise AssertionError("unreachable")


async def runMeasurement(
    reactor: Any, measure: Callable[[Children], Coroutine[Any, Any, _T]]
) -> _T:
    """
    Run C{measure(children)} and return what it returns; whatever happens,
    kill every process it started in C{children} and wait for them. ^C or
    SIGTERM aborts it (the reactor waits for the clean-up); on a
    L{BenchmarkError} say why on stderr and exit with status 1.
    """
    children = Children(reactor)
    whole = Task("")
    finished: Deferred[None] = Deferred()

    def interrupt() -> Deferred[None] | None:  # ^C or SIGTERM
        if finished.called:
            return None
        whole.abort("interrupted")
        return finished  # the reactor waits for the clean-up

    reactor.addSystemEventTrigger("before", "shutdown", interrupt)
    try:
        return await whole.run(measure(children))
    except BenchmarkError as e:
        report(f"benchmark aborted: {e}", sys.stderr)
        raise SystemExit(1) from None
    finally:
        await children.killAll()
        finished.callback(None)
