"""
Every shell command of the README, run as written from the root of a fresh
copy of the tree, so that none of them can silently rot.

The commands are those of the README's C{sh} blocks, and the C{twistd -n}
commands written inline. Each must have a check below (a command without
one fails the test, and so does a check whose command left the README):

  - C{run}: it ends with status 0 (and prints what its C{# prints:}
    comment says);
  - C{serve}: a server; the test waits for it to listen, probes it (the
    README's C{webwire} commands are the probes of the default server),
    stops it by the PID in its pid file (SIGTERM) and expects a clean exit;
  - C{fails}: a command with example paths that do not exist here: it must
    fail with one clear line.

The README's own commands create C{.venv} in the copy and install the
package into it (C{pip} as configured: an index or a local wheel house);
commands written without C{.venv/bin/} run with C{.venv/bin} first on
C{PATH}, as for a user who activated it. Three substitutions keep the run
short, each written down in L{SUBSTITUTIONS}: the test command runs one
test module instead of all of C{tests} (this module among them: it would
run itself), the benchmarks measure for a fraction of a second (the
round-trip one as its C{--quick} smoke test), and the stress run sends
3,000 messages with twice the default bound on log bytes per message (a
short run opens more connections per message, and each logs its own
lines; C{tests/test_stress.py} holds the full run to the default). The
session C{KEY} of the command-line examples is the one C{login} printed.

The servers listen on the README's ports (8080, 8081, 8443, Redis on
6379): a port already in use here skips the commands that need it, saying
which.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from tests.redisserver import REDIS_SERVER, RedisServer
from tests.test_twistd import ServerProcess

_log = Logger()
_INSIDE = "WEBWIRE_README_COMMANDS"
"""Set for the commands: this test never runs inside one of them."""
ROOT = FilePath(__file__).parent().parent()
README = ROOT.child("README.md")

_IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "_trial_temp*",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "artifacts",
    "wwrsess",
    ".mypy_cache",
    ".ruff_cache",
    "*.pid",
    "*.pem",
)


def readmeCommands(text: str) -> list[str]:
    """
    The shell commands of a README, in order: every line of every C{sh}
    block (continuation lines joined), then every inline C{twistd -n...}
    command not already in a block.
    """
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = re.sub(r"\s+", " ", line).strip()
            if line:
                commands.append(line)
    for inline in re.findall(r"`(twistd -ny? [^`]+)`", text):
        if inline not in commands:
            commands.append(inline)
    return commands


def _substitute(command: str) -> str:
    """C{command} with the end L{SUBSTITUTIONS} replaces replaced."""
    for old, new in SUBSTITUTIONS.items():
        if command == old or command.endswith(" " + old):
            return command[: -len(old)] + new
    return command


def _withoutComment(command: str) -> tuple[str, str | None]:
    """A command and what its C{# prints: ...} comment says, if any."""
    head, sep, comment = command.partition(" # ")
    if not sep:
        return command, None
    printed = comment.strip()
    return head.strip(), (
        printed.removeprefix("prints: ") if printed.startswith("prints: ") else None
    )


@dataclass
class Check:
    """
    What a README command must do.

    :ivar kind: C{run}, C{serve} or C{fails}.
    :ivar ports: The ports a server listens on (C{serve}), or needs free.
    :ivar probes: Commands run against a server, each with the text its
        output must contain (C{None}: just status 0).
    :ivar lastLine: For C{fails}: what the last line of its output ends
        with.
    :ivar pidFiles: Where a server's PIDs are written.
    :ivar needsRedis: A Redis on port 6379 must run.
    :ivar output: For C{run}: text the output must contain.
    """

    kind: str
    ports: tuple[int, ...] = ()
    probes: list[tuple[str, str | None]] = field(default_factory=list)
    lastLine: str = ""
    pidFiles: tuple[str, ...] = ("twistd.pid",)
    needsRedis: bool = False
    output: str = ""


CHAT_PAGE = (
    'python -c "import urllib.request; print(urllib.request'
    ".urlopen('http://localhost:8080/').read().decode())\""
)
CHAT: list[tuple[str, str | None]] = [(CHAT_PAGE, "/chat")]
GREET: list[tuple[str, str | None]] = [
    ("webwire request ws://localhost:8080/ greet Ada", "Hello, Ada!")
]

# Substituted on purpose; see the module docstring.
SUBSTITUTIONS = {
    ".venv/bin/python -m twisted.trial -j auto tests": (
        ".venv/bin/python -m twisted.trial -j auto tests.test_options"
    ),
    ".venv/bin/python -m benchmarks.roundtrip": (
        ".venv/bin/python -m benchmarks.roundtrip --quick --startups 1"
    ),
    ".venv/bin/python -m benchmarks.cluster": (
        ".venv/bin/python -m benchmarks.cluster --seconds 0.2 --warmup 0.1 "
        "--rounds 1 --processes 1"
    ),
    ".venv/bin/python -m benchmarks.workers": (
        ".venv/bin/python -m benchmarks.workers --workers 1 --seconds 0.2 "
        "--warmup 0.1 --rounds 1 --clients-processes 1 --connections 2"
    ),
    ".venv/bin/python -m benchmarks.stress": (
        ".venv/bin/python -m benchmarks.stress --messages 3000 --processes 1 "
        "--log-bound 16"
    ),
    ".venv/bin/python -m benchmarks.stress --messages 1000000 --duration 1800": (
        ".venv/bin/python -m benchmarks.stress --messages 3000 --processes 1 "
        "--log-bound 16 --duration 60"
    ),
}

CHECKS: dict[str, Check] = {
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/twistd -n "
    "webwire": Check(
        "serve",
        (8080,),
        # The chat page, then the README's command-line examples.
        [
            (
                '.venv/bin/python -c "import urllib.request; print(urllib.request'
                ".urlopen('http://localhost:8080/').read().decode())\"",
                "/chat",
            )
        ],
    ),
    "python3 -m venv .venv && .venv/bin/pip install -q '.[test]' && "
    ".venv/bin/python -m twisted.trial -j auto tests": Check("run", output="PASSED"),
    "twistd -n webwire": Check("serve", (8080,), CHAT),
    ".venv/bin/twistd -n webwire --app examples.quickstart.makeApplication": Check(
        "serve", (8080,), GREET
    ),
    "twistd -n webwire --app examples.routed.makeApplication": Check(
        "serve", (8080,), GREET
    ),
    "twistd -ny examples/existing_application.tac": Check("serve", (7007, 8080), GREET),
    "twistd -n webwire --listen "
    "'ssl:8443:privateKey=/etc/ww/key.pem:certKey=/etc/ww/cert.pem'": Check(
        "fails",
        lastLine="cannot read privateKey /etc/ww/key.pem: No such file or directory",
    ),
    "twistd -n webwire --listen 'ssl:443:privateKey=/etc/letsencrypt/live/"
    "ww.example.com/privkey.pem:certKey=/etc/letsencrypt/live/ww.example.com/"
    "cert.pem:extraCertChain=/etc/letsencrypt/live/ww.example.com/chain.pem'": Check(
        "fails",
        lastLine="cannot read privateKey "
        "/etc/letsencrypt/live/ww.example.com/privkey.pem: No such file or directory",
    ),
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "
    "30 -keyout key.pem -out cert.pem -subj /CN=localhost -addext "
    "'subjectAltName=DNS:localhost,IP:127.0.0.1'": Check("run"),
    "twistd -n webwire --workers auto --listen tcp:8080": Check("serve", (8080,), CHAT),
    "twistd -n --pidfile=a.pid webwire --listen tcp:8080 --sessions redis "
    "--cluster --redis-url redis://127.0.0.1:6379/0": Check(
        "serve", (8080,), pidFiles=("a.pid",), needsRedis=True
    ),
    "twistd -n --pidfile=b.pid webwire --listen tcp:8081 --sessions redis "
    "--cluster --redis-url redis://127.0.0.1:6379/0": Check(
        "serve", (8081,), pidFiles=("b.pid",), needsRedis=True
    ),
    "twistd -n webwire --backend http://127.0.0.1:8081/api/": Check("serve", (8080,)),
    "python3 -m venv .venv && .venv/bin/pip install -q '.[dev]'": Check("run"),
    ".venv/bin/python -m twisted.trial tests.test_options # one module": Check(
        "run", output="PASSED"
    ),
    ".venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy "
    "webwire tests": Check("run", output="Success: no issues found"),
    ".venv/bin/python -m benchmarks.roundtrip # server CPU/request vs a bare "
    "Autobahn echo server": Check("run"),
    ".venv/bin/python -m benchmarks.cluster # 1 vs 2 server processes on one "
    "port, Redis sessions": Check("run", needsRedis=True),
    ".venv/bin/python -m benchmarks.workers # twistd webwire --workers 1 vs 2": Check(
        "run"
    ),
    ".venv/bin/python -m benchmarks.stress # fuzz-and-soak, 20,000 messages, every "
    "reply checked": Check("run", output="all checks passed"),
    ".venv/bin/python -m benchmarks.stress --messages 1000000 --duration 1800 # the "
    "long run": Check("run", output="all checks passed"),
    ".venv/bin/pip install -e '.[dev]' --config-settings editable_mode=compat": Check(
        "run"
    ),
    ".venv/bin/python -m pydoctor": Check("run"),
    ".venv/bin/towncrier build --yes --version \"$(.venv/bin/python -c 'import "
    "webwire; print(webwire.__version__)')\"": Check("run"),
    "rm -rf dist && .venv/bin/python -m build && .venv/bin/twine check --strict "
    "dist/*": Check("run", output="PASSED"),
}
"""Every README command; the command-line examples are probes instead."""

CLI_PREFIX = "webwire "


class CoverageTests(SynchronousTestCase):
    """
    Every README command has a check, and every check a command.
    """

    def test_everyCommandChecked(self) -> None:
        """
        The README's commands are exactly those checked here, and the
        command-line examples.
        """
        commands = readmeCommands(README.getContent().decode("utf-8"))
        unchecked = [
            c for c in commands if c not in CHECKS and not c.startswith(CLI_PREFIX)
        ]
        self.assertEqual(unchecked, [], "README commands without a check")
        gone = [c for c in CHECKS if c not in commands]
        self.assertEqual(gone, [], "checks of commands no longer in the README")
        self.assertGreater(
            len([c for c in commands if c.startswith(CLI_PREFIX)]), 5, commands
        )


def _pythonVersion(executable: str | None) -> str | None:
    """C{"3.11"} for the Python at C{executable}, C{None} if there is none."""
    if executable is None:
        return None
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.strip()


def _portFree(port: int) -> bool:
    with socket.socket() as s:
        # As servers listen: connections of a server that just stopped,
        # waiting out TIME_WAIT, do not keep the next from listening.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class ReadmeCommandTests(TestCase):
    """
    Every README command, run.
    """

    timeout = 600

    def setUp(self) -> None:
        if os.environ.get(_INSIDE):
            raise SkipTest("run by a README command: it would run itself")
        readmePython = _pythonVersion(shutil.which("python3"))
        running = "{}.{}".format(*sys.version_info[:2])
        if readmePython != running:
            # The README's commands make their venv with the python3 on
            # PATH: run under another interpreter, this test would only
            # repeat that one's run (CI runs it once, under python3).
            raise SkipTest(
                f"the README's commands run python3 ({readmePython}), not "
                f"this Python {running}"
            )
        self.directory = os.path.abspath(self.mktemp())
        shutil.copytree(ROOT.path, self.directory, ignore=_IGNORED)
        venvBin = os.path.join(self.directory, ".venv", "bin")
        self.env = dict(os.environ)
        for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            self.env.pop(name, None)
        self.env[_INSIDE] = "1"
        self.env["PATH"] = venvBin + os.pathsep + self.env.get("PATH", "")
        self.skipped: list[str] = []
        self.key = ""

    async def shell(self, command: str) -> tuple[int, str]:
        """Run a command with bash in the copy; its status and output."""
        _log.info("README command: {command}", command=command)
        out, err, code = await getProcessOutputAndValue(
            "/bin/bash", ["-c", command], env=self.env, path=self.directory
        )
        output = (out + err).decode("utf-8", "replace")
        _log.info("exit {code}:\n{output}", code=code, output=output[-2000:])
        return code, output

    async def runCommand(self, command: str, check: Check) -> None:
        line, printed = _withoutComment(command)
        code, output = await self.shell(_substitute(line))
        if check.kind == "fails":
            self.assertNotEqual(code, 0, output)
            self.assertNotIn("Traceback", output)
            self.assertTrue(
                output.rstrip().splitlines()[-1].endswith(check.lastLine),
                f"{command}:\n{output}",
            )
            return
        self.assertEqual(code, 0, f"{command}:\n{output}")
        if printed is not None:
            self.assertEqual(output.strip(), printed, command)
        self.assertIn(check.output, output, command)

    async def probe(self, command: str, expected: str | None) -> None:
        line, printed = _withoutComment(command.replace("KEY", self.key))
        code, output = await self.shell(line)
        self.assertEqual(code, 0, f"{line}:\n{output}")
        if "login" in line:
            self.key = output.strip()
        if printed is not None:
            self.assertEqual(output.strip(), printed, line)
        if expected is not None:
            self.assertIn(expected, output, line)

    async def serve(
        self, command: str, check: Check, probes: list[tuple[str, str | None]]
    ) -> None:
        _log.info("README server: {command}", command=command)
        process = ServerProcess()
        transport: IProcessTransport = reactor.spawnProcess(
            process,
            "/bin/bash",
            ["/bin/bash", "-c", command],
            env=self.env,
            path=self.directory,
        )

        def kill() -> Deferred[BaseException | None]:
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
            return process.ended

        self.addCleanup(kill)
        for n in range(1, len(check.ports) + 1):
            await process.match(re.compile(rb"starting on (\d+)"), n)
        await _answering(check.ports[-1])
        for probe, expected in [*check.probes, *probes]:
            await self.probe(probe, expected)
        for pidFile in check.pidFiles:
            _terminate(os.path.join(self.directory, pidFile))
        await process.ended
        output = process.output.decode("utf-8", "replace")
        self.assertNotIn("Traceback", output, f"{command}:\n{output}")
        self.assertIn("Server Shut Down", output, f"{command}:\n{output}")

    async def test_everyCommand(self) -> None:
        """
        Each README command does what its check says; the command-line
        examples work against the default server.
        """
        commands = readmeCommands(README.getContent().decode("utf-8"))
        cli: list[tuple[str, str | None]] = [
            (c, None) for c in commands if c.startswith(CLI_PREFIX)
        ]
        cluster = [
            c
            for c in commands
            if c in CHECKS and CHECKS[c].kind == "serve" and CHECKS[c].needsRedis
        ]
        redis: RedisServer | None = None
        for command in commands:
            if command.startswith(CLI_PREFIX) or command in cluster[1:]:
                continue
            together = cluster if command in cluster else [command]
            checks = [CHECKS[c] for c in together]
            busy = [p for check in checks for p in check.ports if not _portFree(p)]
            if busy:
                self.noteSkipped(together, f"port {busy} in use")
                continue
            if any(check.needsRedis for check in checks) and redis is None:
                redis = await self.redis()
                if redis is None:
                    self.noteSkipped(together, "no redis-server, or port 6379 in use")
                    continue
            check = checks[0]
            if len(together) > 1:
                await self.serveTogether(list(zip(together, checks, strict=True)))
            elif check.kind == "serve":
                first = command.startswith("python3 -m venv")
                await self.serve(command, check, cli if first else [])
            else:
                await self.runCommand(command, check)
        if self.skipped:
            raise SkipTest("not run: " + "; ".join(self.skipped))

    def noteSkipped(self, commands: list[str], why: str) -> None:
        """Note that C{commands} were not run, and why."""
        _log.info("README: not run ({why}): {commands}", why=why, commands=commands)
        self.skipped.extend(f"{c} ({why})" for c in commands)

    async def redis(self) -> RedisServer | None:
        """A redis-server on the README's port 6379, if possible."""
        if not _portFree(6379) or not os.access(REDIS_SERVER, os.X_OK):
            return None
        directory = self.mktemp()
        os.makedirs(directory)
        server = RedisServer(directory)
        server.port = 6379  # start() keeps a port it was given
        self.addCleanup(server.stop)
        await server.start()
        return server

    async def serveTogether(self, servers: list[tuple[str, Check]]) -> None:
        """
        Start several servers (a cluster), probe across them: a session
        made on the first is restored on the second.
        """
        processes = []
        for command, _ in servers:
            _log.info("README server: {command}", command=command)
            process = ServerProcess()
            transport = reactor.spawnProcess(
                process,
                "/bin/bash",
                ["/bin/bash", "-c", command],
                env=self.env,
                path=self.directory,
            )
            self.addCleanup(_kill, transport, process)
            await process.match(re.compile(rb"starting on (\d+)"))
            processes.append(process)
        await self.probe("webwire request ws://localhost:8080/ login ada", None)
        await self.probe("webwire restore ws://localhost:8081/ -- KEY", '"ada"')
        for (command, check), process in zip(servers, processes, strict=True):
            for pidFile in check.pidFiles:
                _terminate(os.path.join(self.directory, pidFile))
            await process.ended
            output = process.output.decode("utf-8", "replace")
            self.assertNotIn("Traceback", output, command)


async def _answering(port: int) -> None:
    """
    Wait for an HTTP answer on C{port}, whatever it is: the server's reactor
    runs (a server that logged its port may not yet be handling signals, and
    SIGTERM would kill it without a clean shutdown).
    """
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = await agent.request(b"GET", f"http://127.0.0.1:{port}/".encode())
    await readBody(response)


def _terminate(pidFile: str) -> None:
    """Send SIGTERM to the process whose PID C{pidFile} holds."""
    with open(pidFile) as f:
        os.kill(int(f.read().strip()), signal.SIGTERM)


def _kill(
    transport: IProcessTransport, process: ServerProcess
) -> Deferred[BaseException | None]:
    try:
        transport.signalProcess("KILL")
    except ProcessExitedAlready:
        pass
    return process.ended
