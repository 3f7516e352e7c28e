# -*- test-case-name: tests.test_examples.ClusterExampleTests -*-
"""
The runner of C{python -m examples.cluster}: starts a redis-server and the
nodes as child processes, forwards their output, and stops them all.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from examples.cluster import NODE_READY

REDIS_SERVER = "/usr/bin/redis-server"
"""Where redis-server is looked for if it is not on C{PATH}."""

REDIS_READY = b"Ready to accept connections"

STOP_TIMEOUT = 45.0
"""Seconds a child has to exit after SIGTERM before it is killed (a node
drains for up to 30)."""

# The directory that holds the examples package, for the nodes' imports.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Each child runs in a process group of its own: Ctrl-C in a terminal sends
# SIGINT to the whole foreground group, and Redis would quit at once while
# the nodes still drain. This way only the runner gets it, and stops the
# nodes first, Redis last.
_OWN_GROUP = "import os, sys; os.setpgrp(); os.execvp(sys.argv[1], sys.argv[1:])"


def findRedisServer() -> str | None:
    """The redis-server on C{PATH}, else L{REDIS_SERVER} if it exists."""
    found = shutil.which("redis-server")
    if found is None and os.access(REDIS_SERVER, os.X_OK):
        found = REDIS_SERVER
    return found


def freePort() -> int:
    """A loopback TCP port that was free a moment ago (Redis needs one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _describe(reason: Failure) -> str:
    error = reason.value
    if isinstance(error, ProcessTerminated) and error.signal is not None:
        return f"killed by signal {error.signal}"
    return f"exit status {getattr(error, 'exitCode', '?')}"


class Child(ProcessProtocol):
    """
    One child process: forwards its output line by line, each line prefixed
    with the child's name; C{ready} fires at the first line that contains
    C{readyText} (or fails if the process ends first), C{ended} once it has
    ended.

    :ivar reason: Why the process ended, once it has.
    """

    def __init__(
        self, supervisor: Supervisor, name: str, readyText: bytes, out: TextIO
    ) -> None:
        self.supervisor = supervisor
        self.name = name
        self.readyText = readyText
        self.out = out
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self._partial = b""
        self._killer: IDelayedCall | None = None

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._line(line)

    errReceived = outReceived

    def _line(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.out.write(f"{self.name:<7} | {text}\n")
        self.out.flush()
        if self.readyText in line and not self.ready.called:
            self.ready.callback(None)

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self._line(self._partial)
        self.reason = reason
        if self._killer is not None and self._killer.active():
            self._killer.cancel()
        if not self.ready.called:
            self.ready.errback(reason)
        self.supervisor.childEnded(self)
        self.ended.callback(None)

    def terminate(self, clock: Any) -> Deferred[None]:
        """
        Send SIGTERM, and SIGKILL if the process still runs after
        L{STOP_TIMEOUT} seconds.

        :returns: C{ended}.
        """
        if self.reason is None:
            self._signal("TERM")
            self._killer = clock.callLater(STOP_TIMEOUT, self._kill)
        return self.ended

    def _kill(self) -> None:
        self.supervisor.say(f"{self.name} did not stop in time: killing it")
        self._signal("KILL")

    def _signal(self, name: str) -> None:
        assert self.transport is not None
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass  # processEnded comes next


class Supervisor:
    """
    Runs Redis, then the nodes; stops them all (nodes first) when asked to
    or when one of them exits by itself.

    :ivar status: The exit status the runner should end with: 1 once a
        child exited unexpectedly or not with status 0.
    """

    def __init__(
        self,
        reactor: Any,
        redisServer: str,
        redisPort: int,
        ports: Sequence[int],
        out: TextIO = sys.stdout,
    ) -> None:
        self.reactor = reactor
        self.redisServer = redisServer
        self.redisPort = redisPort
        self.ports = list(ports)
        self.out = out
        self.status = 0
        self.redis: Child | None = None
        self.nodes: list[Child] = []
        self.stopping = False
        self._stopped = False
        self._stopWaiters: list[Deferred[None]] = []

    @property
    def redisURL(self) -> str:
        """The URL the nodes reach Redis at."""
        return f"redis://127.0.0.1:{self.redisPort}/0"

    def say(self, text: str) -> None:
        """Write a line of the runner's own."""
        self.out.write(f"{'cluster':<7} | {text}\n")
        self.out.flush()

    async def run(self) -> int:
        """
        Start Redis, then the nodes once Redis is ready; announce where to
        point a browser once every node is ready.

        :returns: The exit status, once everything has stopped.
        """
        self.redis = self._spawn(
            "redis",
            REDIS_READY,
            self.redisServer,
            ["--port", str(self.redisPort), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
        )
        if await self._allReady([self.redis]):
            for number, port in enumerate(self.ports, 1):
                arguments = ["-m", "examples.cluster", "node", "--port", str(port)]
                arguments += ["--redis-url", self.redisURL]
                node = self._spawn(
                    f"node{number}", NODE_READY.encode(), sys.executable, arguments
                )
                self.nodes.append(node)
            if await self._allReady(self.nodes):
                self._announce()
        await self.whenStopped()
        return self.status

    def _spawn(
        self, name: str, readyText: bytes, program: str, arguments: list[str]
    ) -> Child:
        child = Child(self, name, readyText, self.out)
        argv = [sys.executable, "-c", _OWN_GROUP, program, *arguments]
        path = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path)
        transport = self.reactor.spawnProcess(child, sys.executable, argv, env=env)
        shown = "python" if program == sys.executable else program
        self.say(
            f"started {name} (pid {transport.pid}): {shlex.join([shown, *arguments])}"
        )
        return child

    async def _allReady(self, children: list[Child]) -> bool:
        """Whether all of C{children} got ready, before any ended or a stop."""
        try:
            await gatherResults([child.ready for child in children], consumeErrors=True)
        except FirstError:
            return False
        return not self.stopping

    def _announce(self) -> None:
        urls = [f"http://localhost:{port}/" for port in self.ports]
        self.say(
            f"ready: Redis on 127.0.0.1:{self.redisPort}, "
            f"nodes on ports {', '.join(map(str, self.ports))}"
        )
        self.say(f"Open {' and '.join(urls)} in two browser windows,")
        self.say("sign in on each and chat: a message said on one reaches the other.")
        self.say("Ctrl-C stops the nodes (they drain gracefully), then Redis.")

    def childEnded(self, child: Child) -> None:
        """Report a child's end; stop the rest if nobody asked it to end."""
        assert child.reason is not None
        how = _describe(child.reason)
        if not self.stopping:
            self.say(f"{child.name} exited unexpectedly ({how}): stopping the others")
            self.status = 1
            self.stop()
        else:
            self.say(f"{child.name} exited ({how})")
            if not child.reason.check(ProcessDone):
                self.status = 1

    def stop(self) -> Deferred[None]:
        """
        Stop the nodes (SIGTERM: they drain), then Redis.

        :returns: A Deferred that fires once every child has ended.
        """
        if not self.stopping:
            self.stopping = True
            Deferred.fromCoroutine(self._stopAll())
        return self.whenStopped()

    async def _stopAll(self) -> None:
        await gatherResults([node.terminate(self.reactor) for node in self.nodes])
        if self.redis is not None:
            await self.redis.terminate(self.reactor)
        self.say("stopped")
        self._stopped = True
        waiters, self._stopWaiters = self._stopWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def whenStopped(self) -> Deferred[None]:
        """A Deferred that fires once every child has ended after a stop."""
        if self._stopped:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._stopWaiters.append(waiter)
        return waiter


async def run(
    reactor: Any, redisServer: str, redisPort: int, ports: Sequence[int]
) -> None:
    """
    Run the cluster until SIGTERM or Ctrl-C (or until a child exits by
    itself).

    :raises SystemExit: With status 1 if a child exited by itself or not
        cleanly.
    """
    supervisor = Supervisor(reactor, redisServer, redisPort or freePort(), ports)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stop)
    if await supervisor.run():
        raise SystemExit(1)
