"""
C{twistd webwire --workers N} with twistd's own options and the other kinds
of endpoint: C{ssl:}, daemonizing with C{--pidfile} and C{--logfile},
C{-n --logfile}, SIGINT, C{-r}; real processes over real sockets.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from twisted.internet import inotify, reactor
from twisted.internet.defer import Deferred, TimeoutError, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.test_tls import sslDescription
from tests.test_twistd import LISTEN, ROOT, ServerProcess
from tests.test_workers import (
    _SITE_STARTING,
    _STARTED,
    askWorker,
    connectTo,
    processGone,
    startWorkers,
    stopWithRequestsInFlight,
)
from tests.tlshelpers import makeTLSFiles
from webwire.client import ClientOptions, WebWireClient

_T = TypeVar("_T")

RUN_TWISTD = ["-c", "from twisted.scripts.twistd import run; run()"]


async def waitUntil(
    condition: Callable[[], _T | None],
    what: str,
    directory: FilePath[str],
    within: float = 30.0,
) -> _T:
    """
    Check C{condition} now and each time a file in C{directory} changes
    (inotify), until it returns something true, and return that; fail after
    C{within} seconds. For what no event of ours announces: a file another
    process (a daemon, whose output is not ours to read) writes.
    """
    value = condition()
    if value:
        return value
    found: Deferred[_T] = Deferred()

    def changed(ignored: object, path: FilePath[str], mask: int) -> None:
        if found.called:
            return
        value = condition()
        if value:
            found.callback(value)

    notifier = inotify.INotify(reactor)
    notifier.startReading()
    try:
        notifier.watch(
            directory,
            mask=inotify.IN_MODIFY | inotify.IN_CREATE | inotify.IN_MOVED_TO,
            callbacks=[changed],
        )
        changed(None, directory, 0)  # what happened before the watch began
        found.addTimeout(within, reactor)
        try:
            return await found
        except TimeoutError:
            raise AssertionError(f"no {what} within {within} s") from None
    finally:
        notifier.loseConnection()


def readText(path: str) -> str:
    """The text of the file C{path}; empty while it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def workersServing(path: str, workers: int = 2) -> tuple[int, dict[int, int]] | None:
    """
    Once the log file C{path} says every worker listens: the port and the
    pid of each worker by number; C{None} before.
    """
    text = readText(path).encode()
    pids = {int(m.group(1)): int(m.group(2)) for m in _STARTED.finditer(text)}
    ports = set()
    for number in range(1, workers + 1):
        line = rf"\[worker {number},-\] {_SITE_STARTING}(\d+)".encode()
        match = re.search(line, text)
        if match is None:
            return None
        ports.add(int(match.group(1)))
    [port] = ports
    return port, pids


def assertStoppedBy(ended: BaseException | None, signalNumber: int) -> None:
    """
    C{ended} (how a twistd process ended) says it stopped on
    C{signalNumber}: once its reactor has stopped, twistd ends itself with
    the signal that stopped it.
    """
    assert isinstance(ended, ProcessTerminated), ended
    assert ended.signal == signalNumber, ended


def holdsEpoll(pid: int) -> bool:
    """Whether process C{pid} has an epoll descriptor open (Linux)."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass  # closed meanwhile
    return "anon_inode:[eventpoll]" in links


def parentOf(pid: int) -> int:
    """The parent process id of process C{pid} (Linux's C{/proc})."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # pid (comm) state ppid ...: comm may hold spaces, not a ")".
        return int(f.read().rsplit(")", 1)[1].split()[1])


class WorkersTLSTests(TestCase):
    """
    C{--workers 2 --listen ssl:...}: the workers serve C{wss://}.
    """

    timeout = 60

    async def test_tls(self) -> None:
        """
        Two workers answer over TLS, with the certificate a client verifies
        against its CA; the parent then stops them and itself cleanly.
        """
        files = makeTLSFiles(self.mktemp())
        server = await startWorkers(
            self, "--listen", sslDescription(files.server), "--path", "/"
        )
        first = server.process.matches(
            re.compile(rf"\[worker 1,-\] {_SITE_STARTING}(\d+)".encode())
        )
        port = int(first[0].group(1))
        self.assertIn(f"Site (TLS) starting on {port}", server.process.output.decode())
        pids = server.pids()
        answered: dict[int, int] = {}
        for _ in range(200):
            client = WebWireClient(
                f"wss://localhost:{port}/",
                options=ClientOptions(
                    caCertificates=files.caCert, autoconnect=False, dialTimeout=5
                ),
            )
            try:
                reply = (await client.request("worker")).text()
                echoed = (await client.request("echo", b"over tls")).payload
            finally:
                await client.close()
            self.assertEqual(echoed, b"over tls")
            number, pid = reply.split()
            answered[int(number)] = int(pid)
            if len(answered) == 2:
                break
        self.assertEqual(answered, pids)
        self.assertEqual(len(set(answered.values())), 2)
        server.transport.signalProcess(signal.SIGTERM)
        assertStoppedBy(await server.process.ended, signal.SIGTERM)
        output = server.process.output.decode()
        self.assertIn("every worker stopped", output)
        for n, p in pids.items():
            self.assertIn(f"worker {n} (pid {p}) exited with status 0", output)
            self.assertRaises(ProcessLookupError, os.kill, p, 0)


class WorkersTwistdOptionsTests(TestCase):
    """
    twistd's own options apply to the parent, and the workers' log lines
    reach the parent's log wherever it goes.
    """

    timeout = 60

    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.logfile = self.directory.child("twistd.log").path
        self.sessions = self.directory.child("sessions").path

    def spawn(self, *twistdOptions: str) -> ServerProcess:
        """
        Run C{twistd [twistdOptions] webwire --workers 2} on a TCP port of
        its choice, logging to the test's log file.
        """
        argv = [*RUN_TWISTD, *twistdOptions, "--logfile", self.logfile, "webwire"]
        argv += ["--workers", "2", "--session-directory", self.sessions, *LISTEN]
        process = ServerProcess()
        process.listening.addErrback(lambda _: 0)  # it logs to the file
        env = dict(os.environ, PYTHONPATH=ROOT.path)
        reactor.spawnProcess(process, sys.executable, [sys.executable, *argv], env=env)
        return process

    async def test_daemon(self) -> None:
        """
        Without C{-n} the parent daemonizes: the pid file holds its pid, its
        workers (its children) serve, their lines are in the log file with
        their numbers; SIGTERM to the pid in the pid file stops every
        worker and then the parent, and removes the pid file.
        """
        pidfilePath = self.directory.child("twistd.pid")
        pidfile = pidfilePath.path
        starter = self.spawn("--pidfile", pidfile)
        # twistd's first process exits once the daemon has started.
        self.assertIsInstance(await starter.ended, ProcessDone)
        daemon = int(readText(pidfile))
        self.addCleanup(self.killed, daemon)
        port, pids = await waitUntil(
            lambda: workersServing(self.logfile),
            "worker serving in the log",
            self.directory,
        )
        self.assertEqual(sorted(pids), [1, 2])
        for number, pid in pids.items():
            self.assertEqual(parentOf(pid), daemon)
            client = await connectTo(self, port, pid)
            self.assertEqual(await askWorker(client, 2), (number, pid))
        gone = [processGone(pid) for pid in [daemon, *pids.values()]]
        os.kill(daemon, signal.SIGTERM)
        await gatherResults(gone)
        log = readText(self.logfile)
        self.assertIn("every worker stopped", log)
        for number, pid in pids.items():
            self.assertIn(f"worker {number} (pid {pid}) exited with status 0", log)
        pidfilePath.changed()
        self.assertFalse(pidfilePath.exists())

    async def killed(self, pid: int) -> None:
        """
        Make sure the daemon C{pid} is gone (a failed test's), and with it
        its workers, which stop once their parent is gone.
        """
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        await processGone(pid)

    async def test_logfile(self) -> None:
        """
        C{-n --logfile}: every worker's lines, with its number, are in the
        log file, none on standard output.
        """
        process = self.spawn("-n", "--pidfile=")
        port, pids = await waitUntil(
            lambda: workersServing(self.logfile),
            "worker serving in the log",
            self.directory,
        )
        for pid in pids.values():
            await askWorker(await connectTo(self, port, pid), 2)
        process.transport.signalProcess(signal.SIGTERM)  # type: ignore[union-attr]
        assertStoppedBy(await process.ended, signal.SIGTERM)
        log = readText(self.logfile)
        for number, pid in pids.items():
            self.assertIn(f"[worker {number},-] Site starting on {port}", log)
            self.assertIn(f"worker {number} (pid {pid}) exited with status 0", log)
        self.assertIn("every worker stopped", log)
        self.assertNotIn(b"[worker ", process.output)

    async def test_sigint(self) -> None:
        """
        SIGINT to the parent, as a terminal's Ctrl-C sends it, stops every
        worker gracefully: a request in flight is answered, the connection
        is closed with 1001, the workers exit with status 0, then the
        parent.
        """
        _, ended = await stopWithRequestsInFlight(self, signal.SIGINT)
        assertStoppedBy(ended, signal.SIGINT)

    async def test_reactor(self) -> None:
        """
        The workers run the reactor C{twistd -r} chose for the parent.
        """
        server = await startWorkers(self, twistdOptions=("-r", "poll"))
        line = rb"\[worker (\d),[^\]]*\] reactor class: ([\w.]+)"
        found = {
            int(m.group(1)): m.group(2).decode()
            for m in server.process.matches(re.compile(line))
        }
        poll = "twisted.internet.pollreactor.PollReactor"
        self.assertEqual(found, {1: poll, 2: poll})
        # What the log says, the kernel confirms: an epoll reactor (this
        # process's) holds an epoll descriptor, the workers hold none.
        self.assertTrue(holdsEpoll(os.getpid()))
        for number, pid in server.pids().items():
            self.assertFalse(holdsEpoll(pid))
            client = await connectTo(self, server.port, pid)
            self.assertEqual(await askWorker(client, 2), (number, pid))
