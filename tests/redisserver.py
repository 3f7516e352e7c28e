"""
Test support: a real C{redis-server} on a free loopback port, without
persistence, started for a test and stopped in its cleanup.

Tests are skipped if there is no C{redis-server} on C{PATH} (or at
C{/usr/sbin/redis-server}, Debian's other place for it), unless the
environment variable C{WEBWIRE_REQUIRE_REDIS} is set (then they fail).
"""

from __future__ import annotations

import os
import shutil
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

REDIS_SERVER = (
    shutil.which("redis-server")
    or shutil.which("redis-server", path="/usr/sbin:/usr/local/bin")
    or "redis-server"
)
"""The server binary the tests run: the first on C{PATH}."""

READY = b"Ready to accept connections"


def freePort() -> int:
    """
    A loopback TCP port that was free a moment ago (Redis cannot pick one
    itself: it has no C{--port 0}).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _RedisProtocol(ProcessProtocol):
    """
    Watches a redis-server: C{ready} fires when it accepts connections (or
    fails if it exits first), C{ended} when it exits.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.ready.called and READY in self.output:
            self.ready.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(
                RuntimeError(
                    "redis-server exited before accepting connections:\n"
                    + self.output.decode("utf-8", "replace")
                )
            )
        self.ended.callback(None)


class RedisServer:
    """
    A redis-server subprocess on 127.0.0.1.

    :ivar port: Its port, kept across L{stop} and L{start}.
    """

    def __init__(self, directory: str, *options: str) -> None:
        """
        :param options: More redis-server options, e.g. C{"--requirepass",
            "secret"}.
        """
        self.directory = directory
        self.options = options
        self.port = 0
        self._protocol: _RedisProtocol | None = None
        self._transport: IProcessTransport | None = None

    @property
    def url(self) -> str:
        """The C{redis://} URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process runs."""
        return self._protocol is not None and not self._protocol.ended.called

    async def start(self) -> None:
        """
        Start the server, on its previous port if it had one, else on a
        free port (retried once with another if that one got taken).
        """
        if self.port:
            await self._spawn(self.port)
            return
        try:
            await self._spawn(freePort())
        except RuntimeError:
            await self._spawn(freePort())

    async def _spawn(self, port: int) -> None:
        self.port = port
        protocol = _RedisProtocol()
        args = [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            self.directory,
            "--loglevel",
            "notice",
            *self.options,
        ]
        self._transport = IReactorProcess(reactor).spawnProcess(
            protocol, REDIS_SERVER, args, env={}
        )
        self._protocol = protocol
        await protocol.ready

    async def stop(self) -> None:
        """Stop the server (SIGTERM) and wait for it to exit."""
        protocol, transport = self._protocol, self._transport
        if protocol is None or transport is None or protocol.ended.called:
            return
        transport.signalProcess("TERM")
        await protocol.ended


async def startRedis(testCase: TestCase, *options: str) -> RedisServer:
    """
    Start a redis-server for C{testCase}, stopped in its cleanup.

    :raises SkipTest: If there is no redis-server and
        C{WEBWIRE_REQUIRE_REDIS} is not set.
    """
    if not os.access(REDIS_SERVER, os.X_OK):
        reason = "redis-server is not installed (not on PATH)"
        if os.environ.get("WEBWIRE_REQUIRE_REDIS"):
            testCase.fail(reason + " (WEBWIRE_REQUIRE_REDIS is set)")
        raise SkipTest(reason)
    directory = testCase.mktemp()
    os.makedirs(directory)
    server = RedisServer(directory, *options)
    testCase.addCleanup(server.stop)
    await server.start()
    return server
