"""
The C{webwire} command-line tool as users run it: a real process
(C{python -m webwire}) talking to a real server on a loopback socket.

The server runs in the test's reactor; the tests wait on Deferreds (the
process's output and exit), never on the clock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IAddress, IProcessTransport
from twisted.internet.protocol import (
    ProcessProtocol,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers import LoopbackServer
from tests.test_endtoend import RecordingApplication
from webwire import wire
from webwire._cliargs import _joinSessionValues
from webwire.cli import (
    EXIT_CONNECTION,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from webwire.conformance import ConformanceApplication, DeliberateInternalError
from webwire.interfaces import IConnection, ISessionKeyGenerator
from webwire.sessions import RandomKeyGenerator

ROOT = FilePath(__file__).parent().parent()


@dataclass(frozen=True)
class Result:
    """How a run of the tool ended."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class _ToolProcess(ProcessProtocol):
    """
    Collects a process's output; tells when a text appears on stdout and
    when the process has ended.
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()
        self._waiters: list[tuple[bytes, Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data
        ready = [(t, d) for t, d in self._waiters if t in self.out]
        self._waiters = [(t, d) for t, d in self._waiters if t not in self.out]
        for _, d in ready:
            d.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        waiters, self._waiters = self._waiters, []
        for text, d in waiters:
            d.errback(AssertionError(f"the process ended before printing {text!r}"))
        value: Any = reason.value
        code = value.exitCode if value.exitCode is not None else -value.signal
        self.ended.callback(code)

    def printed(self, text: str) -> Deferred[None]:
        """Fire once stdout holds C{text}."""
        d: Deferred[None] = Deferred()
        if text.encode() in self.out:
            d.callback(None)
        elif self.ended.called:
            d.errback(AssertionError(f"the process ended before printing {text!r}"))
        else:
            self._waiters.append((text.encode(), d))
        return d

    def terminate(self) -> None:
        """Send SIGTERM, as C{kill} does."""
        assert self.transport is not None
        self.transport.signalProcess("TERM")

    async def result(self) -> Result:
        """Wait for the process to end."""
        code = await self.ended
        return Result(code, self.out.decode(), self.err.decode())


class _Silent(Protocol):
    """Accepts a TCP connection and never says anything."""

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class _SilentFactory(ServerFactory):
    """Makes L{_Silent} protocols and remembers them."""

    def __init__(self) -> None:
        self.built: list[_Silent] = []

    def buildProtocol(self, addr: IAddress | None) -> _Silent:
        protocol = _Silent()
        self.built.append(protocol)
        return protocol


class _Recorder(RecordingApplication):
    """
    A L{RecordingApplication} that also records signals, and tells when a
    request or signal has arrived. Requests are never answered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.signals: list[wire.Signal] = []
        self._arrivals: list[Deferred[None]] = []
        self._departures: list[Deferred[str]] = []
        self.handler = self._neverAnswer

    def _neverAnswer(
        self, connection: IConnection, request: wire.Request
    ) -> Deferred[None]:
        self._arrived()
        return Deferred()

    def _arrived(self) -> None:
        waiters, self._arrivals = self._arrivals, []
        for waiter in waiters:
            waiter.callback(None)

    def arrival(self) -> Deferred[None]:
        """Fire when the next request or signal arrives."""
        d: Deferred[None] = Deferred()
        self._arrivals.append(d)
        return d

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> None:
        self.signals.append(signal)
        self._arrived()

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        super().onClientDisconnected(connection, reason)
        waiters, self._departures = self._departures, []
        for waiter in waiters:
            waiter.callback(reason.getErrorMessage())

    def departure(self) -> Deferred[str]:
        """Fire with why when the next client disconnects."""
        d: Deferred[str] = Deferred()
        self._departures.append(d)
        return d


class CommandLineTests(TestCase):
    """
    C{webwire request | signal | listen | restore} against a live server.
    """

    timeout = 60

    def setUp(self) -> None:
        self.server = LoopbackServer(self, ConformanceApplication())
        self.url = f"ws://127.0.0.1:{self.server.portNumber}/"

    def spawn(self, *argv: str) -> _ToolProcess:
        """Start C{python -m webwire argv...} with this checkout first."""
        env = dict(os.environ, PYTHONPATH=ROOT.path, PYTHONUTF8="1")
        process = _ToolProcess()
        transport: IProcessTransport = reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, "-m", "webwire", *argv],
            env=env,
        )

        async def stop() -> None:
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
            await process.ended

        self.addCleanup(stop)
        return process

    async def runTool(self, *argv: str) -> Result:
        """Run the tool to its end."""
        return await self.spawn(*argv).result()

    def assertSucceeded(self, result: Result) -> None:
        self.assertEqual((result.code, result.err), (EXIT_OK, ""), result)

    def assertFailed(self, result: Result, code: int, message: str) -> None:
        """Exit C{code}, nothing on stdout, one line with C{message} on stderr."""
        self.assertEqual(result.code, code, result)
        self.assertEqual(result.out, "", result)
        self.assertEqual(len(result.err.splitlines()), 1, result)
        self.assertIn(message, result.err)
        self.assertNotIn("Traceback", result.err)

    async def test_requestText(self) -> None:
        """The reply to a text request is printed as text."""
        result = await self.runTool("request", self.url, "echo", "hello, world")
        self.assertSucceeded(result)
        self.assertEqual(result.out, "hello, world\n")

    async def test_requestUTF16(self) -> None:
        """
        With C{--utf16} the payload goes as UTF-16, and the UTF-16 reply is
        printed decoded.
        """
        result = await self.runTool(
            "request", self.url, "oddecho", "héllo ☃", "--utf16"
        )
        self.assertSucceeded(result)
        self.assertEqual(result.out, "héllo ☃\n")
        result = await self.runTool(
            "request", self.url, "oddecho", "héllo ☃", "--utf16", "--json"
        )
        self.assertEqual(
            json.loads(result.out),
            {"type": "reply", "encoding": "utf16", "payload": "héllo ☃"},
        )

    async def test_requestBinary(self) -> None:
        """
        C{--binary} sends the text's bytes as binary, C{--hex} sends the
        bytes it spells; binary replies are printed as hex.
        """
        result = await self.runTool("request", self.url, "echo", "hi", "--binary")
        self.assertSucceeded(result)
        self.assertEqual(result.out, "binary: 68 69\n")
        result = await self.runTool("request", self.url, "echo", "00ff 10", "--hex")
        self.assertSucceeded(result)
        self.assertEqual(result.out, "binary: 00 ff 10\n")
        result = await self.runTool("request", self.url, "echo-binary", "hi")
        self.assertEqual(result.out, "binary: 68 69\n")
        result = await self.runTool("request", self.url, "logout")
        self.assertEqual(result.out, "binary: (empty)\n")

    async def test_json(self) -> None:
        """
        With C{--json} the reply is one JSON object, binary payloads in
        base64.
        """
        result = await self.runTool(
            "request", self.url, "echo", "68 69 00", "--hex", "--json"
        )
        self.assertSucceeded(result)
        self.assertEqual(
            json.loads(result.out),
            {"type": "reply", "encoding": "binary", "payload": "aGkA"},
        )
        result = await self.runTool("request", self.url, "echo", "hé", "--json")
        self.assertEqual(
            json.loads(result.out),
            {"type": "reply", "encoding": "utf8", "payload": "hé"},
        )

    async def test_errorReply(self) -> None:
        """An error reply: exit 1, C{CODE: message} on stderr."""
        result = await self.runTool("request", self.url, "error")
        self.assertFailed(result, EXIT_FAILURE, "TEST_ERROR: test error")

    async def test_internalError(self) -> None:
        """An internal-error reply: exit 1 and a clear line on stderr."""
        result = await self.runTool("request", self.url, "internal")
        self.assertFailed(result, EXIT_FAILURE, "internal error")
        self.assertEqual(len(self.flushLoggedErrors(DeliberateInternalError)), 1)

    async def test_connectionRefused(self) -> None:
        """A refused connection fails at once with exit 3."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = await self.runTool("request", f"ws://127.0.0.1:{port}/", "echo", "hi")
        self.assertFailed(result, EXIT_CONNECTION, "cannot connect")
        self.assertIn("refused", result.err)

    async def test_dialTimeout(self) -> None:
        """
        A server that accepts TCP but never speaks WebSocket: exit 3 after
        C{--dial-timeout}.
        """
        factory = _SilentFactory()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"ws://127.0.0.1:{port.getHost().port}/"  # type: ignore[attr-defined]
        result = await self.runTool("request", url, "echo", "--dial-timeout", "0.5")
        self.assertFailed(result, EXIT_CONNECTION, "within 0.5 seconds")
        for protocol in factory.built:
            await protocol.lost

    async def test_handshakeMismatch(self) -> None:
        """
        A server the client cannot talk to (another buffer size, another
        sub-protocol): exit 3 with the reason.
        """
        result = await self.runTool(
            "request", self.url, "echo", "--buffer-size", "4096"
        )
        self.assertFailed(result, EXIT_CONNECTION, "buffer size")
        result = await self.runTool(
            "request", self.url, "echo", "--sub-protocol", "chat"
        )
        self.assertFailed(result, EXIT_CONNECTION, "sub-protocol")

    async def test_timeout(self) -> None:
        """No reply within C{--timeout}: exit 4."""
        result = await self.runTool(
            "request", self.url, "sleep", "5000", "--timeout", "0.5"
        )
        self.assertFailed(result, EXIT_TIMEOUT, "0.5 seconds")

    async def test_usageErrors(self) -> None:
        """
        Bad arguments, and names or payloads that cannot be sent, exit 2
        before connecting.
        """
        result = await self.runTool("request", self.url, "echo", "xyz", "--hex")
        self.assertEqual(result.code, EXIT_USAGE, result)
        self.assertIn("not hexadecimal", result.err)
        result = await self.runTool("request", self.url, "echo", "--utf16", "--binary")
        self.assertEqual(result.code, EXIT_USAGE, result)
        result = await self.runTool("signal", self.url, "é")
        self.assertFailed(result, EXIT_USAGE, "printable ASCII")
        result = await self.runTool("request", "http://localhost/", "echo")
        self.assertFailed(result, EXIT_USAGE, "not a ws:// or wss:// URL")

    async def test_badURLs(self) -> None:
        """
        A ws:// URL without a host, with a space in it or with a port out of
        range is a usage error (2) that says which, not a connection failure.
        """
        for url, why in [
            ("ws://localhost:99999/", "the port must be from 1 to 65535"),
            ("ws://", "no host name"),
            ("ws://local host:8080/", "a space in the host name"),
        ]:
            result = await self.runTool("request", url, "echo")
            self.assertFailed(result, EXIT_USAGE, f"invalid URL {url}: {why}")

    async def test_optionsBeforeCommand(self) -> None:
        """
        The connection and output options may come before the command too;
        after it they still win.
        """
        result = await self.runTool("--json", "request", self.url, "echo", "hi")
        self.assertSucceeded(result)
        self.assertEqual(json.loads(result.out)["payload"], "hi")
        result = await self.runTool(
            "--timeout", "0.1", "request", self.url, "sleep", "300", "--timeout", "30"
        )
        self.assertSucceeded(result)
        self.assertEqual(result.out, "300\n")

    async def test_loginJSONShowsSession(self) -> None:
        """
        C{request --json} prints a session the request created before the
        reply, so that its key is known whatever the reply is.
        """
        result = await self.runTool("request", self.url, "login", "Ada", "--json")
        self.assertSucceeded(result)
        created, reply = (json.loads(line) for line in result.lines)
        self.assertEqual(created["type"], "session-created")
        self.assertEqual(created["session"]["info"], {"user": "Ada"})
        self.assertEqual(reply["payload"], created["session"]["key"])
        result = await self.runTool("request", self.url, "echo", "hi", "--json")
        self.assertEqual([json.loads(line)["type"] for line in result.lines], ["reply"])

    async def test_listenCountsRestore(self) -> None:
        """
        C{listen --session KEY --count 1} exits after the restore.
        """
        result = await self.runTool("request", self.url, "login", "ada")
        key = result.out.strip()
        result = await self.runTool(
            "listen", self.url, "--session", key, "--count", "1"
        )
        self.assertSucceeded(result)
        self.assertEqual(
            result.lines, [f"connected to {self.url}", f"session restored: {key}"]
        )

    async def test_subProtocolMismatch(self) -> None:
        """
        A sub-protocol mismatch names both sides as a user reads them.
        """
        result = await self.runTool(
            "request", self.url, "echo", "--sub-protocol", "greet"
        )
        self.assertFailed(
            result,
            EXIT_CONNECTION,
            'sub-protocol mismatch: the server speaks none, this client "greet"',
        )

    async def test_help(self) -> None:
        """C{--help} documents the commands and the exit codes."""
        result = await self.runTool("--help")
        self.assertSucceeded(result)
        for text in ("request", "signal", "listen", "restore", "exit codes"):
            self.assertIn(text, result.out)

    async def test_signal(self) -> None:
        """C{signal} sends one signal, and exits once it is sent."""
        app = _Recorder()
        server = LoopbackServer(self, app)
        url = f"ws://127.0.0.1:{server.portNumber}/"
        arrived = app.arrival()
        result = await self.runTool("signal", url, "note", "héllo", "--utf16")
        self.assertSucceeded(result)
        self.assertEqual(result.out, "sent signal note\n")
        await arrived
        [signal] = app.signals
        self.assertEqual(
            (signal.name, signal.payload, signal.encoding),
            ("note", "héllo".encode("utf-16-le"), wire.Encoding.UTF16),
        )
        arrived = app.arrival()
        result = await self.runTool("signal", url, "raw", "0102", "--hex", "--json")
        self.assertEqual(json.loads(result.out), {"type": "sent", "name": "raw"})
        await arrived
        self.assertEqual(
            (app.signals[-1].payload, app.signals[-1].encoding),
            (b"\x01\x02", wire.Encoding.BINARY),
        )

    async def test_interrupted(self) -> None:
        """
        SIGTERM ends a request waiting for its reply with exit 130, and
        C{listen} with exit 0; both close their connection first.
        """
        app = _Recorder()
        server = LoopbackServer(self, app)
        url = f"ws://127.0.0.1:{server.portNumber}/"
        arrived, gone = app.arrival(), app.departure()
        process = self.spawn("request", url, "wait")
        await arrived
        process.terminate()
        result = await process.result()
        self.assertFailed(result, EXIT_INTERRUPTED, "interrupted")
        # The client closed the connection (1000) rather than dropping it.
        self.assertIn("code 1000", await gone)
        gone = app.departure()
        process = self.spawn("listen", url)
        await process.printed("connected to")
        process.terminate()
        result = await process.result()
        self.assertSucceeded(result)
        self.assertEqual(result.lines, [f"connected to {url}"])
        self.assertIn("code 1000", await gone)

    async def test_listen(self) -> None:
        """
        C{listen} prints every signal; with C{--count} it exits after that
        many.
        """
        process = self.spawn("listen", self.url, "--count", "2")
        await process.printed(f"connected to {self.url}\n")
        [connection] = self.server.factory.connections
        connection.signal("ping", "hello")
        connection.signal("odd", b"\x01\x02")
        result = await process.result()
        self.assertSucceeded(result)
        self.assertEqual(
            result.lines,
            [
                f"connected to {self.url}",
                "signal ping: hello",
                "signal odd: binary: 01 02",
            ],
        )

    async def test_listenSessionEventsJSON(self) -> None:
        """
        C{listen --json} prints signals and session events as JSON objects,
        one a line.
        """
        process = self.spawn("listen", self.url, "--count", "3", "--json")
        await process.printed('"type": "connected"')
        [connection] = self.server.factory.connections
        session = await connection.createSession({"user": "ada"})
        connection.signal("odd", wire.Payload.fromText("hé", wire.Encoding.UTF16))
        await connection.closeSession()
        result = await process.result()
        self.assertSucceeded(result)
        events = [json.loads(line) for line in result.lines]
        self.assertEqual(
            [e["type"] for e in events],
            ["connected", "session-created", "signal", "session-closed"],
        )
        self.assertEqual(events[1]["session"]["key"], session.key)
        self.assertEqual(events[1]["session"]["info"], {"user": "ada"})
        self.assertEqual(
            events[2],
            {"type": "signal", "name": "odd", "encoding": "utf16", "payload": "hé"},
        )

    async def test_listenReconnects(self) -> None:
        """
        C{listen} reconnects when the connection is lost, says so, and
        keeps printing.
        """
        process = self.spawn("listen", self.url, "--count", "1")
        await process.printed("connected to")
        [first] = self.server.factory.connections
        await first.close()
        await process.printed(f"reconnected to {self.url}\n")
        [second] = [c for c in self.server.factory.connections if c is not first]
        second.signal("back", "again")
        result = await process.result()
        self.assertSucceeded(result)
        self.assertEqual(result.lines[0], f"connected to {self.url}")
        self.assertTrue(result.lines[1].startswith("disconnected: "), result)
        self.assertEqual(
            result.lines[2:], [f"reconnected to {self.url}", "signal back: again"]
        )

    async def test_loginAndRestore(self) -> None:
        """
        C{request ... login} prints the new session's key; C{restore} prints
        the session; C{request --session} makes the request in it.
        """
        result = await self.runTool("request", self.url, "login", "ada")
        self.assertSucceeded(result)
        key = result.out.strip()
        self.assertTrue(key)
        result = await self.runTool("restore", self.url, "--", key)
        self.assertSucceeded(result)
        session = json.loads(result.out)
        self.assertEqual(
            (session["key"], session["info"]), (key, {"user": "ada"}), result
        )
        self.assertIn("creation", session)
        result = await self.runTool("restore", self.url, "--json", "--", key)
        self.assertEqual(json.loads(result.out)["type"], "session")
        result = await self.runTool("request", self.url, "whoami", "--session", key)
        self.assertSucceeded(result)
        self.assertEqual(result.out, f"{key}\n")

    async def test_keyStartingWithDash(self) -> None:
        """
        A session key may begin with C{-}: C{--session KEY} takes it as it
        is, and C{restore} takes it after C{--}.
        """

        @implementer(ISessionKeyGenerator)
        class DashKeys:
            def generate(self) -> str:
                return "-" + RandomKeyGenerator().generate()[1:]

        server = LoopbackServer(self, ConformanceApplication(), keyGenerator=DashKeys())
        url = f"ws://127.0.0.1:{server.portNumber}/"
        result = await self.runTool("request", url, "login", "ada")
        self.assertSucceeded(result)
        key = result.out.strip()
        self.assertTrue(key.startswith("-"), key)
        result = await self.runTool("request", url, "whoami", "--session", key)
        self.assertSucceeded(result)
        self.assertEqual(result.out, f"{key}\n")
        result = await self.runTool("listen", url, "--session", key, "--count", "1")
        self.assertSucceeded(result)
        self.assertEqual(result.lines[-1], f"session restored: {key}")
        result = await self.runTool("restore", url, "--", key)
        self.assertSucceeded(result)
        self.assertEqual(json.loads(result.out)["key"], key)

    def test_sessionValuesJoined(self) -> None:
        """
        C{--session KEY} is read as C{--session=KEY}, whatever KEY looks
        like, but not after C{--}.
        """
        self.assertEqual(
            _joinSessionValues(["listen", "U", "--session", "-k", "--count", "1"]),
            ["listen", "U", "--session=-k", "--count", "1"],
        )
        self.assertEqual(
            _joinSessionValues(["request", "U", "echo", "--", "--session", "-k"]),
            ["request", "U", "echo", "--", "--session", "-k"],
        )
        # Nothing after it: argparse says the value is missing.
        dangling = ["listen", "--session"]
        self.assertEqual(_joinSessionValues(dangling), dangling)

    async def test_restoreUnknown(self) -> None:
        """Restoring a session the server does not know: exit 1."""
        result = await self.runTool("restore", self.url, "no-such-session")
        self.assertFailed(result, EXIT_FAILURE, "session not found")
