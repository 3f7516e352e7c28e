# -*- test-case-name: tests.test_workers -*-
"""
C{twistd webwire --workers N}: N worker processes serve the same listening
sockets, supervised by the twistd process.

How the sockets are shared: the parent (the twistd process) creates every
listening socket named by C{--listen}, in L{WorkerSupervisor.privilegedStartService}
(after daemonizing, before twistd drops privileges, so that ports below 1024
work with C{--uid}), never accepts on them, and starts the workers, which
inherit them as descriptors 4, 5, ... and adopt them
(C{IReactorSocket.adoptStreamPort}, as Twisted's documentation shows for
sharing a port between processes); for C{ssl:} a worker wraps its factory in
a C{TLSMemoryBIOFactory} with the endpoint's own TLS context, as
C{listenSSL} does. Each new connection goes to whichever worker accepts it
first. This was chosen over each worker binding its own socket with
C{SO_REUSEPORT} because it works on every POSIX system (C{SO_REUSEPORT}
balances only on Linux), for C{unix:} sockets too, with C{tcp:0} (one port,
chosen once), with privileged ports, and because a bind error is reported
once, by the parent, before any worker starts; and while a worker is down
the others accept every connection, where a dead worker's C{SO_REUSEPORT}
socket would hold its share of new connections until it is back.

Supervision: the parent keeps a pipe to each worker's standard input. A
worker that sees it end (the parent exited, even killed with SIGKILL) shuts
down gracefully, as on SIGTERM; this works on every system, where Linux's
C{PR_SET_PDEATHSIG} would not, and it cannot miss a parent that died
before the worker started watching. A worker that exits on its own is
restarted after a delay that doubles (from L{FIRST_DELAY} to L{MAX_DELAY}
seconds) while restarted workers keep dying within L{STABLE} seconds; each
exit is logged with its status. Stopping the parent (SIGTERM, SIGINT)
sends SIGTERM to every worker, which shuts down gracefully (503 to new
handshakes, ReplyShutdown to new requests, running handlers drained, 1001),
and waits for all of them; a worker still running C{--shutdown-timeout}
plus L{KILL_GRACE} seconds later is killed. Workers run in a process group
of their own, so that a terminal's Ctrl-C reaches the parent only, which
passes it on once.

Logging: a worker writes its log events as JSON lines to descriptor 3; the
parent logs each one (through its own observers: C{--logfile}, syslog,
standard output) with the worker's number in the event's system, e.g.
C{[worker 2,-] Site starting on 8080}. Lines a worker writes to its
standard output or error are logged the same way.

A worker knows its number from the environment variable C{WEBWIRE_WORKER}
(1 to N); the conformance application's C{worker} request answers it with
the process id. A worker runs the parent's kind of reactor (C{twistd -r}),
named in L{REACTOR_ENVIRONMENT}.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.application.reactors import getReactorTypes, installReactor
from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
    serverFromString,
)
from twisted.internet.error import ProcessExitedAlready, ReactorNotRunning
from twisted.internet.interfaces import (
    IListeningPort,
    IProcessTransport,
    IReadDescriptor,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, ProcessProtocol, ServerFactory
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    globalLogBeginner,
    globalLogPublisher,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.reflect import qual
from zope.interface import implementer

from webwire._reactor import IWebWireReactor, defaultReactor

__all__ = [
    "REACTOR_ENVIRONMENT",
    "WORKER_ENVIRONMENT",
    "InheritedEndpoint",
    "Listen",
    "WorkerSupervisor",
    "checkWorkerOptions",
    "parseListen",
    "parseWorkers",
    "runWorker",
]

WORKER_ENVIRONMENT = "WEBWIRE_WORKER"
"""The environment variable that holds a worker's number (1 to N)."""

REACTOR_ENVIRONMENT = "WEBWIRE_REACTOR"
"""
The environment variable that holds the name (as C{twistd -r} takes it) of
the reactor a worker installs: the parent's.
"""

FIRST_DELAY = 0.1
"""Seconds before the first restart of a worker that died."""
MAX_DELAY = 30.0
"""The longest wait before a restart."""
STABLE = 10.0
"""A worker that ran this many seconds resets its restart delay."""
KILL_GRACE = 5.0
"""Seconds past C{--shutdown-timeout} a stopping worker has before SIGKILL."""

LOG_FD = 3
"""The worker's descriptor for its log events (JSON lines)."""
FIRST_SOCKET_FD = 4
"""The worker's descriptor of the first inherited listening socket."""

PER_WORKER = (
    "without --cluster each worker is on its own: signals to a session, "
    "topics and broadcasts reach the connections of one worker only (so do "
    "the chat demo's messages and who is online), a session closed by key "
    "is closed on that worker only, and --max-session-connections and "
    "--max-connections count per worker"
)


def parseWorkers(text: str) -> int:
    """
    Read C{--workers}: a whole number, 1 or more, or C{auto} for the number
    of CPUs this process may run on.

    :raises ValueError: For anything else.
    """
    if text == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"--workers takes a whole number, 1 or more, or 'auto', not {text!r}"
        )
    return value


parseWorkers.coerceDoc = "A whole number, 1 or more, or 'auto'."  # type: ignore[attr-defined]


# Endpoints --------------------------------------------------------------


@dataclass
class Listen:
    """
    How an endpoint string listens, as recorded from its endpoint: C{kind}
    (C{tcp}, C{ssl} or C{unix}), the arguments of the reactor's C{listen}
    method (without the factory) and, for C{ssl}, the TLS context factory.
    """

    description: str
    kind: str
    arguments: dict[str, Any] = field(default_factory=dict)
    contextFactory: Any = None


class _Recorder:
    """A stand-in reactor that records how an endpoint asks to listen."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.listens: list[Listen] = []

    def _record(self, kind: str, contextFactory: Any = None, **arguments: Any) -> None:
        self.listens.append(Listen(self.description, kind, arguments, contextFactory))

    def listenTCP(
        self, port: int, factory: object, backlog: int = 50, interface: str = ""
    ) -> None:
        self._record("tcp", port=port, backlog=backlog, interface=interface)

    def listenSSL(
        self,
        port: int,
        factory: object,
        contextFactory: object,
        backlog: int = 50,
        interface: str = "",
    ) -> None:
        arguments = {"port": port, "backlog": backlog, "interface": interface}
        self._record("ssl", contextFactory, **arguments)

    def listenUNIX(
        self,
        address: str,
        factory: object,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: int = 0,
    ) -> None:
        arguments = {"address": address, "backlog": backlog, "mode": mode}
        self._record("unix", wantPID=wantPID, **arguments)


def parseListen(description: str) -> Listen:
    """
    Find how the server endpoint string C{description} listens. The files
    of an C{ssl:} endpoint are read.

    :raises ValueError: If it cannot be parsed, or is neither a C{tcp:}
        (C{tcp6:}), C{ssl:} nor C{unix:} endpoint (workers can share only
        those).
    """
    recorder = _Recorder(description)
    try:
        endpoint = serverFromString(recorder, description)
    except Exception as e:
        raise ValueError(f"--listen {description}: {e}") from None
    # Exactly these: a wrapping endpoint would listen through one of them
    # with a factory of its own, which the workers would not know.
    if type(endpoint) not in _SHAREABLE:
        raise ValueError(
            f"--listen {description}: --workers shares tcp:, ssl: and unix: "
            "endpoints only"
        )
    endpoint.listen(Factory())
    return recorder.listens[0]


_SHAREABLE = (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    SSL4ServerEndpoint,
    UNIXServerEndpoint,
)


class _SharedSocket(ServerFactory):
    """What the parent's ports would serve: nothing, they never accept."""

    def logPrefix(self) -> str:
        return "shared socket"


def listenShared(reactor: IWebWireReactor, listen: Listen) -> IListeningPort:
    """
    Create the listening socket of C{listen} on C{reactor}, as its endpoint
    would (for C{ssl}: without TLS, which the workers add), and never
    accept on it.
    """
    arguments = dict(listen.arguments)
    factory = _SharedSocket()
    if listen.kind == "unix":
        port = reactor.listenUNIX(arguments.pop("address"), factory, **arguments)
    else:
        port = reactor.listenTCP(arguments.pop("port"), factory, **arguments)
    cast(FileDescriptor, port).stopReading()  # the workers accept
    return port


def _socketFamily(fileno: int) -> int:
    probe = socket.socket(fileno=fileno)
    try:
        return int(probe.family)
    finally:
        probe.detach()


class _SharedUNIXPort:
    """
    Makes a UNIX port adopted by a worker leave the socket's file alone
    when it stops: the parent owns it, and the other workers still use it.
    """

    @staticmethod
    def adopt(reactor: IWebWireReactor, fileno: int, factory: Any) -> IListeningPort:
        from twisted.internet import unix

        class Port(unix.Port):
            def connectionLost(self, reason: Failure) -> None:
                tcp.Port.connectionLost(self, reason)

        port = Port._fromListeningDescriptor(reactor, fileno, factory)
        port.startListening()
        return port  # type: ignore[no-any-return]


@implementer(IStreamServerEndpoint)
class InheritedEndpoint:
    """
    An endpoint that listens on a listening socket this process inherited
    (descriptor C{fileno}), as C{listen} describes it: for C{ssl}, with TLS.

    Embedders that start worker processes of their own can pass these to
    L{webwire.service.WebWireService} in place of endpoint strings.
    """

    def __init__(self, reactor: IWebWireReactor, fileno: int, listen: Listen) -> None:
        """
        :param reactor: The reactor to adopt the socket with.
        :param fileno: The inherited descriptor of a listening stream
            socket; it is closed once adopted (the port keeps its own).
        :param listen: What the socket is (L{parseListen}).
        """
        self._reactor = reactor
        self._fileno = fileno
        self._listen = listen

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:
        factory = protocolFactory
        if self._listen.kind == "ssl":
            factory = TLSMemoryBIOFactory(
                self._listen.contextFactory, False, protocolFactory
            )
        family = _socketFamily(self._fileno)
        if family == socket.AF_UNIX:
            port = _SharedUNIXPort.adopt(self._reactor, self._fileno, factory)
        else:
            port = self._reactor.adoptStreamPort(
                self._fileno, socket.AddressFamily(family), factory
            )
        os.close(self._fileno)
        return succeed(port)


def checkWorkerOptions(config: Any) -> None:
    """
    Check the options of C{twistd webwire} for C{--workers} above 1: memory
    sessions cannot be shared, metrics cannot be scraped from one endpoint,
    and every C{--listen} must be one workers can share.

    :raises ValueError: With a one-line reason otherwise.
    """
    if config["workers"] <= 1:
        return
    if config["sessions"] == "memory":
        raise ValueError(
            "--sessions memory cannot be shared by --workers above 1: use "
            "file (the default) or redis"
        )
    if config.get("metrics") is not None:
        raise ValueError(
            "--metrics cannot be used with --workers above 1: each worker "
            "counts only its own connections, and one scrape endpoint would "
            "reach only one of them"
        )
    for description in config["listen"]:
        parseListen(description)


# The parent -------------------------------------------------------------


class _Worker(ProcessProtocol):
    """The parent's view of one worker process: its output, its exit."""

    def __init__(self, supervisor: WorkerSupervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.pid: int | None = None
        self.started = 0.0
        self.ended: Deferred[None] = Deferred()
        self._buffers: dict[int, bytes] = {}

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pid = self.transport.pid

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        *lines, self._buffers[childFD] = (self._buffers.get(childFD, b"") + data).split(
            b"\n"
        )
        for line in lines:
            self._line(childFD, line)

    def _line(self, childFD: int, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if childFD == LOG_FD:
            try:
                event = eventFromJSON(text)
            except ValueError:
                event = None
            if isinstance(event, dict):
                self.supervisor.relay(self.number, event)
                return
        if text:
            level = LogLevel.info if childFD == 1 else LogLevel.warn
            self.supervisor.log.emit(
                level, "{text}", text=text, log_system=f"worker {self.number}"
            )

    def processEnded(self, reason: Failure) -> None:
        for childFD, rest in self._buffers.items():
            if rest:
                self._line(childFD, rest)
        self._buffers.clear()
        self.supervisor.ended(self, reason)
        self.ended.callback(None)


def _exitStatus(reason: Failure) -> str:
    exitCode = getattr(reason.value, "exitCode", None)
    signalNumber = getattr(reason.value, "signal", None)
    if signalNumber is not None:
        try:
            name = signal.Signals(signalNumber).name
        except ValueError:
            name = str(signalNumber)
        return f"was killed by {name}"
    return f"exited with status {exitCode}"


class WorkerSupervisor(Service):
    """
    The service of C{twistd webwire --workers N} for N above 1: creates the
    listening sockets, runs N workers on them, restarts those that die and
    stops them all gracefully when stopped (see the module docstring).

    :ivar workers: The running workers by number (1 to N).
    """

    log = Logger()

    def __init__(
        self,
        argv: list[str],
        listens: list[Listen],
        workers: int,
        shutdownTimeout: float,
        *,
        cluster: bool = False,
        reactor: IWebWireReactor | None = None,
    ) -> None:
        """
        :param argv: The C{twistd webwire} options the workers parse.
        :param listens: What to listen on (L{parseListen}).
        :param workers: How many workers to run, 2 or more.
        :param shutdownTimeout: The workers' C{--shutdown-timeout}, seconds.
        :param cluster: Whether the workers join a Redis cluster (if not,
            a warning says what is per worker).
        :param reactor: The reactor; the global one if omitted.
        """
        self._reactor = defaultReactor(reactor)
        self._argv = argv
        self._listens = listens
        self._count = workers
        self._shutdownTimeout = shutdownTimeout
        self._cluster = cluster
        self._ports: list[IListeningPort] = []
        self.workers: dict[int, _Worker] = {}
        self._delays: dict[int, float] = {}
        self._restarts: dict[int, Any] = {}
        self._stopping = False

    def privilegedStartService(self) -> None:
        """Create the listening sockets (before twistd drops privileges)."""
        super().privilegedStartService()
        if not self._ports:
            self._ports = [listenShared(self._reactor, lst) for lst in self._listens]

    def startService(self) -> None:
        """Start every worker."""
        super().startService()
        self.privilegedStartService()
        if not self._cluster:
            self.log.warn("{workers} workers: " + PER_WORKER, workers=self._count)
        for number in range(1, self._count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self._restarts.pop(number, None)
        worker = _Worker(self, number)
        childFDs: dict[int, int | str] = {0: "w", 1: "r", 2: "r", LOG_FD: "r"}
        for index, port in enumerate(self._ports):
            childFDs[FIRST_SOCKET_FD + index] = port.fileno()  # type: ignore[attr-defined]
        path = [os.path.abspath(entry) for entry in sys.path]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        env[WORKER_ENVIRONMENT] = str(number)
        env.pop(REACTOR_ENVIRONMENT, None)
        reactorName = _reactorName(self._reactor)
        if reactorName is not None:
            env[REACTOR_ENVIRONMENT] = reactorName
        boot = "from webwire.workers import runWorker; runWorker()"
        argv = [sys.executable, "-c", boot, *self._argv]
        worker.started = self._reactor.seconds()
        self._reactor.spawnProcess(
            worker, sys.executable, argv, env=env, childFDs=childFDs
        )
        self.workers[number] = worker
        self.log.info(
            "worker {number} started (pid {pid})", number=number, pid=worker.pid
        )

    def relay(self, number: int, event: dict[str, Any]) -> None:
        """Log C{event}, which worker C{number} logged, as its own."""
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            name = getattr(level, "name", "-")
            system = f"{event.get('log_namespace', '-')}#{name}"
        event["log_system"] = f"worker {number},{system}"
        event["webwire_worker"] = number
        globalLogPublisher(event)

    def ended(self, worker: _Worker, reason: Failure) -> None:
        """Worker C{worker} exited: restart it unless stopping."""
        number = worker.number
        if self.workers.get(number) is worker:
            del self.workers[number]
        status = _exitStatus(reason)
        if self._stopping:
            self.log.info(
                "worker {number} (pid {pid}) {status}",
                number=number,
                pid=worker.pid,
                status=status,
            )
            return
        lived = self._reactor.seconds() - worker.started
        # The delay before the last restart: doubled while restarted
        # workers keep dying young, FIRST_DELAY again after one lived.
        previous = self._delays.get(number)
        if previous is None or lived >= STABLE:
            delay = FIRST_DELAY
        else:
            delay = min(previous * 2, MAX_DELAY)
        self._delays[number] = delay
        self.log.warn(
            "worker {number} (pid {pid}) {status}; restarting it in {delay:g} s",
            number=number,
            pid=worker.pid,
            status=status,
            delay=delay,
        )
        self._restarts[number] = self._reactor.callLater(delay, self._spawn, number)

    def stopService(self) -> Deferred[None]:
        """
        Stop every worker gracefully (SIGTERM), kill those still running
        after the shutdown timeout and L{KILL_GRACE}, then close the
        listening sockets.

        :returns: A Deferred that fires once all of that is done.
        """
        super().stopService()
        self._stopping = True
        for restart in self._restarts.values():
            restart.cancel()
        self._restarts.clear()
        running = list(self.workers.values())
        for worker in running:
            _signal(worker, "TERM")
        timeout = self._shutdownTimeout + KILL_GRACE
        killer = self._reactor.callLater(timeout, self._kill, running)
        done = Deferred.fromCoroutine(self._stopped(running, killer))
        return done

    async def _stopped(self, running: list[_Worker], killer: Any) -> None:
        for worker in running:
            await worker.ended
        if killer.active():
            killer.cancel()
        ports, self._ports = self._ports, []
        for port in ports:
            await maybeDeferred(port.stopListening)
        self.log.info("every worker stopped")

    def _kill(self, running: list[_Worker]) -> None:
        for worker in running:
            if not worker.ended.called:
                self.log.warn(
                    "worker {number} (pid {pid}) still running: killing it",
                    number=worker.number,
                    pid=worker.pid,
                )
                _signal(worker, "KILL")


def _reactorName(reactor: object) -> str | None:
    """
    The name C{twistd -r} gives C{reactor}'s kind, or C{None} for one it
    does not know (a test's reactor, a reactor of an embedder's own).
    """
    module = type(reactor).__module__
    for reactorType in getReactorTypes():
        if getattr(reactorType, "moduleName", None) == module:
            return str(reactorType.shortName)
    return None


def _signal(worker: _Worker, name: str) -> None:
    transport: IProcessTransport | None = worker.transport
    if transport is None:
        return
    try:
        transport.signalProcess(name)
    except ProcessExitedAlready:
        pass


# The worker -------------------------------------------------------------


@implementer(ILogObserver)
class _JSONLines:
    """A log observer writing events as JSON lines to a file."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self._write(eventAsJSON(event) + "\n")
        except (OSError, ValueError):
            pass  # the parent is gone: the worker is stopping anyway


@implementer(IReadDescriptor)
class _ParentWatch:
    """Calls C{gone} once the parent's end of standard input closes."""

    def __init__(
        self, reactor: IWebWireReactor, fileno: int, gone: Callable[[], None]
    ) -> None:
        self._reactor = reactor
        self._fileno = fileno
        self._gone = gone

    def fileno(self) -> int:
        return self._fileno

    def doRead(self) -> None:
        try:
            data = os.read(self._fileno, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._reactor.removeReader(self)
            self._gone()

    def connectionLost(self, reason: Failure) -> None:
        # What the reactor calls when the pipe hangs up without data to read.
        self._gone()

    def logPrefix(self) -> str:
        return "parent"


def runWorker(argv: list[str] | None = None) -> None:
    """
    Run one worker: the process a L{WorkerSupervisor} starts, with the
    C{twistd webwire} options C{argv} (by default C{sys.argv[1:]}), its
    number in C{WEBWIRE_WORKER}, the parent's kind of reactor (C{twistd -r})
    in L{REACTOR_ENVIRONMENT}, the listening sockets from descriptor
    L{FIRST_SOCKET_FD} on, in the order of C{--listen}, log events to
    descriptor L{LOG_FD}. It stops gracefully on SIGTERM or once its
    standard input ends.
    """
    os.setpgrp()  # a terminal's Ctrl-C is for the parent, which passes it on
    if argv is None:
        argv = sys.argv[1:]
    reactorName = os.environ.get(REACTOR_ENVIRONMENT)
    if reactorName:
        installReactor(reactorName)
    reactor = defaultReactor()

    logFile = os.fdopen(LOG_FD, "w", buffering=1, encoding="utf-8")
    globalLogBeginner.beginLoggingTo([_JSONLines(logFile.write)])
    log = Logger(namespace="webwire.workers")
    log.info("reactor class: {reactorClass}", reactorClass=qual(type(reactor)))

    from webwire.tap import Options, makeService

    config = Options()
    config.parseOptions(argv)
    config["listen"] = [
        InheritedEndpoint(reactor, FIRST_SOCKET_FD + index, parseListen(description))
        for index, description in enumerate(config["listen"])
    ]
    config["workers"] = 1
    service = makeService(config, reactor)

    def parentGone() -> None:
        log.warn("the parent process is gone: shutting down")
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping

    reactor.addReader(_ParentWatch(reactor, 0, parentGone))
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
