"""
C{twistd webwire --workers N}: the options, and real worker processes
sharing one port, supervised by a real twistd process.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReadDescriptor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.helpers import (
    RawClientProtocol,
    connectRaw,
    echoRequest,
    h,
    ident,
    sleepRequest,
)
from tests.test_twistd import LISTEN, ROOT, TWISTD, ServerProcess
from webwire import wire
from webwire.client import ClientOptions, WebWireClient
from webwire.tap import Options, makeService
from webwire.workers import WorkerSupervisor, parseListen, parseWorkers

_STARTED = re.compile(rb"worker (\d+) started \(pid (\d+)\)")
# A worker's site, plain or behind TLS.
_SITE_STARTING = r"Site(?: \(TLS\))? starting on "


class WorkersOptionTests(SynchronousTestCase):
    """
    C{--workers} and the options it does not go with.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def assertUsageError(self, *argv: str) -> str:
        """C{argv} is a one-line usage error; return its text."""
        error = self.assertRaises(usage.UsageError, self.parse, *argv)
        self.assertNotIn("\n", str(error))
        return str(error)

    def test_default(self) -> None:
        """One process by default: the service is no supervisor."""
        options = self.parse()
        self.assertEqual(options["workers"], 1)
        self.assertNotIsInstance(makeService(options), WorkerSupervisor)

    def test_auto(self) -> None:
        """C{auto} is the number of CPUs this process may use."""
        self.assertEqual(parseWorkers("auto"), len(os.sched_getaffinity(0)))
        self.assertEqual(self.parse("--workers", "3")["workers"], 3)

    def test_badCounts(self) -> None:
        """C{--workers 0}, C{x}, C{-1} are one-line usage errors."""
        for bad in ("0", "x", "-1", "1.5"):
            message = self.assertUsageError("--workers", bad)
            self.assertIn("--workers takes a whole number", message)
            self.assertIn(repr(bad), message)

    def test_memorySessions(self) -> None:
        """Memory sessions cannot be shared by workers."""
        message = self.assertUsageError("--workers", "2", "--sessions", "memory")
        self.assertIn("--sessions memory", message)
        self.assertEqual(
            self.parse("--workers", "1", "--sessions", "memory")["workers"], 1
        )

    def test_metrics(self) -> None:
        """
        One metrics endpoint cannot serve several workers: refused in one
        line.
        """
        message = self.assertUsageError(
            "--workers", "2", "--metrics", "tcp:0:interface=127.0.0.1"
        )
        self.assertIn("--metrics cannot be used with --workers", message)
        config = self.parse("--workers", "1", "--metrics", "tcp:0")
        self.assertEqual(config["metrics"], "tcp:0")

    def test_endpoints(self) -> None:
        """
        tcp, tcp6, unix and ssl endpoints can be shared; a wrapping
        endpoint is refused in one line.
        """
        listens = ["tcp:0", "tcp6:0:interface=\\:\\:1", "unix:ww.sock"]
        kinds = [parseListen(d).kind for d in listens]
        self.assertEqual(kinds, ["tcp", "tcp", "unix"])
        message = self.assertUsageError(
            "--workers", "2", "--listen", "autobahn:tcp\\:0:url=ws\\://localhost\\:0"
        )
        self.assertIn("shares tcp:, ssl: and unix: endpoints only", message)

    def test_supervisor(self) -> None:
        """With 2 workers the service is a supervisor, given the options."""
        argv = ["--workers", "2", "--listen", "tcp:0"]
        service = makeService(self.parse(*argv))
        self.assertIsInstance(service, WorkerSupervisor)


@implementer(IReadDescriptor)
class _ExitWatch:
    """Fires C{gone} when a process (not necessarily a child) exits."""

    def __init__(self, fileno: int) -> None:
        self._fileno = fileno
        self.gone: Deferred[None] = Deferred()

    def fileno(self) -> int:
        return self._fileno

    def doRead(self) -> None:
        reactor.removeReader(self)
        os.close(self._fileno)
        self.gone.callback(None)

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return "exit watch"


def processGone(pid: int) -> Deferred[None]:
    """Fire once process C{pid} has exited (a pidfd, Linux)."""
    try:
        fileno = os.pidfd_open(pid)
    except ProcessLookupError:
        return succeed(None)
    watch = _ExitWatch(fileno)
    reactor.addReader(watch)
    return watch.gone


class Server:
    """A C{twistd -n webwire --workers N} process whose workers listen."""

    def __init__(
        self, process: ServerProcess, transport: IProcessTransport, port: int
    ) -> None:
        self.process = process
        self.transport = transport
        self.port = port

    def pids(self) -> dict[int, int]:
        """The latest pid of each worker, by number, from the log."""
        return {
            int(m.group(1)): int(m.group(2)) for m in self.process.matches(_STARTED)
        }

    async def serving(self, number: int, n: int = 1) -> None:
        """Wait until worker C{number} listens for the C{n}th time."""
        line = rf"\[worker {number},-\] {_SITE_STARTING}".encode()
        await self.process.match(re.compile(line), n)


async def startWorkers(
    testCase: TestCase,
    *listen: str,
    workers: int = 2,
    twistdOptions: tuple[str, ...] = (),
) -> Server:
    """
    Start C{twistd -n [twistdOptions] webwire --workers N} (sessions in a
    directory of the test's; C{listen} or a TCP port of its choice); return
    once every worker listens. It is stopped with SIGTERM in the test's
    cleanup.
    """
    sessions = testCase.mktemp()
    argv = [*TWISTD, *twistdOptions, "webwire", "--workers", str(workers)]
    argv += ["--session-directory"]
    argv += [sessions, *(listen or LISTEN)]
    process = ServerProcess()
    process.listening.addErrback(lambda _: 0)  # UNIX sockets have no number
    env = dict(os.environ, PYTHONPATH=ROOT.path)
    transport = reactor.spawnProcess(
        process, sys.executable, [sys.executable, *argv], env=env
    )

    async def stop() -> None:
        try:
            transport.signalProcess("TERM")
        except ProcessExitedAlready:
            pass
        await process.ended

    testCase.addCleanup(stop)
    server = Server(process, transport, 0)
    await gatherResults(
        [Deferred.fromCoroutine(server.serving(n)) for n in range(1, workers + 1)]
    )
    if not listen:
        server.port = await process.listening
    return server


async def askWorker(client: RawClientProtocol, n: int) -> tuple[int, int]:
    """The worker number and pid that serve C{client} (request C{n})."""
    reply = await client.roundTrip(echoRequest(n, b"", "worker"))
    assert reply[:9] == h("C0") + ident(n), reply
    number, pid = reply[9:].decode().split()
    return int(number), int(pid)


async def connectTo(testCase: TestCase, port: int, pid: int, path: str = "/") -> Any:
    """
    A raw client of the worker C{pid}: connect until one lands there (the
    kernel gives each connection to whichever worker accepts first).
    """
    for _ in range(200):
        client = await connectRaw(port, path)
        await client.message(0)  # AcceptConf
        transport: Any = client.transport
        testCase.addCleanup(transport.abortConnection)
        if (await askWorker(client, 1))[1] == pid:
            return client
        transport.abortConnection()
    testCase.fail(f"no connection reached worker pid {pid}")


async def stopWithRequestsInFlight(
    testCase: TestCase, signalNumber: int
) -> tuple[dict[int, int], BaseException | None]:
    """
    Start two workers, put a request in flight on each, send C{signalNumber}
    to the parent and check that the workers stop gracefully: each request
    is answered, each connection closed with 1001, the parent logs that
    every worker stopped and each worker exited with status 0.

    @return: The workers' pids by number, and how the parent ended.
    """
    server = await startWorkers(testCase)
    pids = server.pids()
    clients = [await connectTo(testCase, server.port, pid) for pid in pids.values()]
    for client in clients:
        client.send(sleepRequest(2, 300))
        await client.roundTrip(echoRequest(3, b""))  # the sleep runs
    server.transport.signalProcess(signalNumber)
    for client in clients:
        wasClean, code, reason = await client.closed
        testCase.assertEqual(code, 1001)
        testCase.assertIn(h("C0") + ident(2) + b"300", client.received)
    ended = await server.process.ended
    output = server.process.output.decode()
    testCase.assertIn("every worker stopped", output)
    for number, pid in pids.items():
        testCase.assertIn(f"worker {number} (pid {pid}) exited with status 0", output)
    return pids, ended


class WorkersTests(TestCase):
    """
    C{twistd -n webwire --workers 2}: two worker processes on one port.
    """

    timeout = 60

    async def test_twoWorkers(self) -> None:
        """
        Connections to one port are served by two worker processes, which
        say their numbers and pids; the log says which worker logged what.
        """
        server = await startWorkers(self)
        pids = server.pids()
        self.assertEqual(sorted(pids), [1, 2])
        self.assertNotIn(server.transport.pid, pids.values())
        for number, pid in pids.items():
            client = await connectTo(self, server.port, pid)
            self.assertEqual(await askWorker(client, 2), (number, pid))
            reply = await client.roundTrip(echoRequest(3, b"hi"))
            self.assertEqual(reply, h("BF") + ident(3) + b"hi")
        output = server.process.output.decode()
        self.assertIn("2 workers: without --cluster each worker is on its own", output)

    async def test_sessionOnOtherWorker(self) -> None:
        """A session created through one worker is restored through the other."""
        server = await startWorkers(self)
        pids = server.pids()
        first = await connectTo(self, server.port, pids[1])
        login = wire.encodeRequest(ident(2), "login", b"ada", wire.Encoding.UTF8)
        first.send(login)
        reply = await first.message(3)  # after the notification
        self.assertEqual(reply[:9], h("C0") + ident(2))
        key = reply[9:].decode()
        second = await connectTo(self, server.port, pids[2])
        restore = wire.encodeRestoreSession(ident(2), key)
        restored = await second.roundTrip(restore)
        self.assertEqual(restored[:9], h("C0") + ident(2))
        self.assertIn(b'"i":{"user":"ada"}', restored.replace(b" ", b""))

    async def test_killedWorker(self) -> None:
        """
        A worker killed with SIGKILL leaves the other serving, and the
        parent logs its status and restarts it.
        """
        server = await startWorkers(self)
        pids = server.pids()
        other = await connectTo(self, server.port, pids[2])
        victim = await connectTo(self, server.port, pids[1])
        os.kill(pids[1], signal.SIGKILL)
        await victim.closed
        await server.process.match(
            f"worker 1 (pid {pids[1]}) was killed by SIGKILL; restarting it in".encode()
        )
        reply = await other.roundTrip(echoRequest(2, b"still"))
        self.assertEqual(reply, h("BF") + ident(2) + b"still")
        await server.process.match(_STARTED, 3)
        await server.serving(1, 2)
        restarted = server.pids()[1]
        self.assertNotEqual(restarted, pids[1])
        client = await connectTo(self, server.port, restarted)
        self.assertEqual(await askWorker(client, 2), (1, restarted))

    async def test_sigterm(self) -> None:
        """
        SIGTERM to the parent: requests in flight on every worker are
        answered, connections are closed with 1001, every worker exits and
        then the parent.
        """
        pids, _ = await stopWithRequestsInFlight(self, signal.SIGTERM)
        for pid in pids.values():  # the parent reaped them before it exited
            self.assertRaises(ProcessLookupError, os.kill, pid, 0)

    async def test_sigkillParent(self) -> None:
        """
        Killing the parent with SIGKILL leaves no orphan: every worker
        shuts down gracefully (1001) and exits.
        """
        if not hasattr(os, "pidfd_open"):
            self.skipTest("waiting for a process that is not a child needs pidfd")
        server = await startWorkers(self)
        pids = server.pids()
        clients = [await connectTo(self, server.port, pid) for pid in pids.values()]
        gone = [processGone(pid) for pid in pids.values()]
        server.transport.signalProcess(signal.SIGKILL)
        for client in clients:
            wasClean, code, reason = await client.closed
            self.assertEqual(code, 1001)
        await gatherResults(gone)

    async def test_unixSocket(self) -> None:
        """
        Workers share a UNIX socket too; a restarted worker leaves its file
        in place, and the parent removes it when it stops.
        """
        socket = FilePath(self.mktemp())
        path = socket.path
        server = await startWorkers(self, "--listen", f"unix:{path}")
        socket.changed()
        self.assertTrue(socket.exists())
        pids = server.pids()
        os.kill(pids[1], signal.SIGKILL)
        await server.process.match(b"worker 1 (pid")
        await server.serving(1, 2)
        socket.changed()
        self.assertTrue(socket.exists())
        client = WebWireClient(
            "ws://localhost/",
            endpoint=UNIXClientEndpoint(reactor, path),
            options=ClientOptions(autoconnect=False),
        )
        self.addCleanup(client.close)
        number, pid = (await client.request("worker")).text().split()
        self.assertIn(int(pid), server.pids().values())
        server.transport.signalProcess(signal.SIGTERM)
        await server.process.ended
        socket.changed()
        self.assertFalse(socket.exists())


class WorkersUsageTests(TestCase):
    """
    The usage errors of C{--workers}, as C{twistd} prints them.
    """

    timeout = 60

    async def test_usageErrors(self) -> None:
        """
        C{--workers 0} and C{--workers x}: twistd fails with one line that
        says what is wrong.
        """
        for bad in ("0", "x"):
            process = ServerProcess()
            process.listening.addErrback(lambda _: None)  # it never listens
            argv = [*TWISTD, "webwire", "--workers", bad]
            env = dict(os.environ, PYTHONPATH=ROOT.path)
            reactor.spawnProcess(
                process, sys.executable, [sys.executable, *argv], env=env
            )
            ended = await process.ended
            self.assertNotIn(getattr(ended, "exitCode", None), (None, 0))
            output = process.output.decode()
            [line] = [line for line in output.splitlines() if "--workers takes" in line]
            self.assertIn("--workers takes a whole number, 1 or more", line)
            self.assertIn(repr(bad), line)


class _SpawnedProcess:
    """What L{_SpawningReactor} gives a protocol: a pid and the signals sent."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class _SpawningReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that records the processes it is asked to
    spawn (protocol, argv, env) and connects each protocol to a
    L{_SpawnedProcess}, without starting any.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[str, str]]] = []

    def spawnProcess(
        self,
        processProtocol: Any,
        executable: Any,
        args: Any = (),
        env: Any = None,
        path: Any = None,
        uid: Any = None,
        gid: Any = None,
        usePTY: Any = False,
        childFDs: Any = None,
    ) -> _SpawnedProcess:
        transport = _SpawnedProcess(1000 + len(self.spawned))
        self.spawned.append((processProtocol, list(args), dict(env or {})))
        processProtocol.makeConnection(transport)
        return transport


class RestartBackoffTests(SynchronousTestCase):
    """
    L{WorkerSupervisor} restarts a worker that exits after a delay that
    doubles while restarted workers die young, on its reactor's clock.
    """

    def setUp(self) -> None:
        self.reactor = _SpawningReactor()
        self.supervisor = WorkerSupervisor(
            [], [], 2, 1.0, cluster=True, reactor=cast(Any, self.reactor)
        )
        self.events: list[dict[str, Any]] = []
        self.supervisor.log = Logger(observer=cast(ILogObserver, self.events.append))
        self.supervisor.startService()

    def die(self, number: int, after: float) -> float:
        """
        Let worker C{number} live C{after} seconds and exit with status 1;
        return the delay until the parent started it again.
        """
        self.reactor.advance(after)
        worker = self.supervisor.workers[number]
        spawned = len(self.reactor.spawned)
        worker.processEnded(Failure(ProcessTerminated(exitCode=1)))
        delay: float = self.events[-1]["delay"]
        self.reactor.advance(delay * 0.99)
        self.assertEqual(len(self.reactor.spawned), spawned)
        self.reactor.advance(delay * 0.02)
        self.assertEqual(len(self.reactor.spawned), spawned + 1)
        self.assertIsNot(self.supervisor.workers[number], worker)
        return delay

    def test_doubling(self) -> None:
        """
        0.1 s first, doubling while workers die within 10 s, at most 30 s;
        the other worker's delay is its own.
        """
        self.assertEqual(len(self.reactor.spawned), 2)
        delays = [self.die(1, 9.9) for _ in range(12)]
        self.assertEqual(
            delays,
            [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0],
        )
        self.assertEqual(self.die(2, 1), 0.1)
        warning = self.events[-2]
        self.assertEqual(warning["log_level"], LogLevel.warn)
        self.assertEqual(
            formatEvent(warning),
            "worker 2 (pid 1001) exited with status 1; restarting it in 0.1 s",
        )

    def test_reset(self) -> None:
        """
        A worker that lived 10 s resets the delay: 0.1 s, and doubling
        again from there.
        """
        delays = [self.die(1, 0) for _ in range(4)]
        self.assertEqual(delays, [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(self.die(1, 10), 0.1)
        self.assertEqual(self.die(1, 0), 0.2)

    def test_longCrashLoop(self) -> None:
        """
        A worker dying young for hours (here 1,100 times) is still
        restarted every 30 s.
        """
        for _ in range(1100):
            delay = self.die(1, 0)
        self.assertEqual(delay, 30.0)

    def test_stopping(self) -> None:
        """
        Stopping cancels a pending restart, sends SIGTERM to the running
        workers, and a worker exiting then is not restarted.
        """
        self.supervisor.workers[1].processEnded(Failure(ProcessTerminated(exitCode=1)))
        running = self.supervisor.workers[2]
        stopped = self.supervisor.stopService()
        self.assertEqual(running.transport.signals, ["TERM"])  # type: ignore[union-attr]
        running.processEnded(Failure(ProcessDone(0)))
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.supervisor.workers, {})
