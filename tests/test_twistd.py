"""
C{twistd webwire} as users run it: a real process on a real socket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    connectRaw,
    echoRequest,
    h,
    ident,
    portNumber,
    sleepRequest,
)
from webwire import wire
from webwire.client import ClientOptions, WebWireClient

ROOT = FilePath(__file__).parent().parent()
# twistd webwire listens with a site; a plain WebWireService with its factory.
_LISTENING = re.compile(rb"\b(?:Site|WebWireServerFactory) starting on (\d+)")


class ServerProcess(ProcessProtocol):
    """
    Watches a server process: C{listening} fires with the port it logged
    listening on, C{ended} when it exits; L{match} waits for any line.
    """

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[BaseException | None] = Deferred()
        self._waiters: list[tuple[re.Pattern[bytes], int, Deferred[re.Match[bytes]]]]
        self._waiters = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        match = _LISTENING.search(self.output)
        if match and not self.listening.called:
            self.listening.callback(int(match.group(1)))
        self._wake()

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if not self.listening.called:
            self.listening.errback(reason)
        self.ended.callback(reason.value)
        self._wake()

    def matches(self, pattern: re.Pattern[bytes]) -> list[re.Match[bytes]]:
        """The matches of C{pattern} in the complete lines written so far."""
        return list(pattern.finditer(self.output, 0, self.output.rfind(b"\n") + 1))

    def match(
        self, pattern: re.Pattern[bytes] | bytes, n: int = 1
    ) -> Deferred[re.Match[bytes]]:
        """
        Fire with the C{n}th match of C{pattern} (bytes: that text) in the
        output (stdout and stderr) once it is there; fail if the process
        ends without.
        """
        if isinstance(pattern, bytes):
            pattern = re.compile(re.escape(pattern))
        d: Deferred[re.Match[bytes]] = Deferred()
        self._waiters.append((pattern, n, d))
        self._wake()
        return d

    def _wake(self) -> None:
        waiting, self._waiters = self._waiters, []
        for pattern, n, d in waiting:
            found = self.matches(pattern)
            if len(found) >= n:
                d.callback(found[n - 1])
            elif self.ended.called:
                output = self.output.decode("utf-8", "replace")
                d.errback(
                    AssertionError(
                        f"the process ended without {n} x {pattern.pattern!r}:\n"
                        + output
                    )
                )
            else:
                self._waiters.append((pattern, n, d))


async def startServer(
    testCase: TestCase, argv: list[str], extraEnv: dict[str, str] | None = None
) -> tuple[ServerProcess, IProcessTransport, int]:
    """
    Start C{python argv...} with this checkout first on the path (and
    C{extraEnv} in its environment); return once it listens, with the port
    its WebWire server listens on.
    """
    env = dict(os.environ, PYTHONPATH=ROOT.path, **(extraEnv or {}))
    process = ServerProcess()
    transport = reactor.spawnProcess(
        process, sys.executable, [sys.executable, *argv], env=env
    )

    async def stop() -> None:
        try:
            transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        await process.ended

    testCase.addCleanup(stop)
    port = await process.listening
    return process, transport, port


TWISTD = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
TWIST = ["-m", "twisted"]
LISTEN = ["--listen", "tcp:0:interface=127.0.0.1"]


class TwistdTests(TestCase):
    """
    The server run by twistd serves the conformance application and stops
    gracefully on SIGTERM.
    """

    timeout = 60

    async def check(self, argv: list[str]) -> None:
        process, transport, port = await startServer(self, argv)
        client = await connectRaw(port, "/any/path")
        self.assertEqual(await client.message(0), DEFAULT_ACCEPT_CONF)
        self.assertEqual(
            await client.roundTrip(echoRequest(1, b"hi")), h("BF") + ident(1) + b"hi"
        )
        client.send(sleepRequest(2, 300))
        # Answered after the sleep was dispatched: it is in flight now.
        await client.roundTrip(echoRequest(3, b""))
        transport.signalProcess(signal.SIGTERM)
        wasClean, code, reason = await client.closed
        self.assertEqual(code, 1001)
        self.assertEqual(client.received[3], h("C0") + ident(2) + b"300")
        ended = await process.ended
        # After a clean shutdown, twistd re-raises the signal that stopped it,
        # so that its exit status tells why it stopped.
        output = process.output.decode()
        self.assertIsInstance(ended, (ProcessDone, ProcessTerminated), output)
        self.assertIn(getattr(ended, "signal", None), (None, signal.SIGTERM), output)
        # One line each, saying which of the two applications (the default
        # one and the chat demo), in the singular where there is one.
        # (twist logs JSON events.)
        texts = [
            formatEvent(json.loads(line)) if line.startswith("{") else line
            for line in output.splitlines()
        ]
        [served] = [t for t in texts if "] serving " in t or t.startswith("serving ")]
        self.assertIn(
            "serving ConformanceApplication (webwire.conformance.makeApplication) "
            "on tcp:0:interface=127.0.0.1, WebSocket upgrades on any path; the chat "
            "demo at /chat, its page at /; sessions in ",
            served,
        )
        for line in [
            "ConformanceApplication: shutting down: 1 handler running on 1 connection",
            "ChatApplication: shutting down: 0 handlers running on 0 connections",
            "ConformanceApplication: shutdown complete",
            "ChatApplication: shutdown complete",
        ]:
            self.assertEqual(len([t for t in texts if t.endswith(line)]), 1, texts)

    async def test_twistd(self) -> None:
        """C{twistd -n webwire}."""
        await self.check([*TWISTD, "webwire", *LISTEN])

    async def test_twist(self) -> None:
        """C{python -m twisted webwire}."""
        await self.check([*TWIST, "webwire", *LISTEN])


class TwistdOptionsTests(TestCase):
    """
    Options given to twistd reach the running server.
    """

    timeout = 60

    async def test_options(self) -> None:
        """
        --read-timeout, --sub-protocol and --path change what the server
        advertises and where it answers; --sessions off disables sessions.
        """
        argv = [*TWISTD, "webwire", *LISTEN, "--read-timeout=3"]
        argv += ["--sub-protocol=chat", "--path=/ws", "--sessions=off"]
        process, transport, port = await startServer(self, argv)
        client = await connectRaw(port, "/ws")
        self.assertEqual(
            await client.message(0),
            h("17 02 00 B8 0B 00 00 00 20 00 00") + b"chat",
        )
        restore = wire.encodeRestoreSession(ident(1), "key")
        self.assertEqual(await client.roundTrip(restore), h("05") + ident(1))
        transport.signalProcess(signal.SIGTERM)
        await client.closed
        await process.ended


class _Backend(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        body: bytes = request.content.read()
        return b"backend: " + request.path + b" " + body


class TwistdBackendTests(TestCase):
    """
    C{twistd webwire --backend} forwards requests to an HTTP backend.
    """

    timeout = 60

    async def test_backend(self) -> None:
        """A request reaches the backend through the gateway, and back."""
        site: Any = Site(_Backend())
        backend = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(backend.stopListening)
        url = f"http://127.0.0.1:{portNumber(backend)}/api/"
        argv = [*TWISTD, "webwire", *LISTEN, "--backend", url]
        process, transport, port = await startServer(self, argv)
        client = WebWireClient(
            f"ws://127.0.0.1:{port}/", options=ClientOptions(autoconnect=False)
        )
        reply = await client.request("hello", "gateway")
        self.assertEqual(reply.text(), "backend: /api/hello gateway")
        await client.close()
        transport.signalProcess(signal.SIGTERM)
        await process.ended
        self.assertIn("shutdown complete", process.output.decode())


class TwistdVersionTests(TestCase):
    """C{twistd webwire --version} names WebWire's version, not Twisted's."""

    timeout = 60

    async def test_version(self) -> None:
        """It prints C{webwire <version>} and exits with status 0."""
        from twisted.internet.utils import getProcessOutputAndValue

        from webwire import __version__

        env = dict(os.environ, PYTHONPATH=ROOT.path)
        out, err, code = await getProcessOutputAndValue(
            sys.executable, [*TWISTD, "webwire", "--version"], env=env
        )
        self.assertEqual((out, code), (f"webwire {__version__}\n".encode(), 0), err)
