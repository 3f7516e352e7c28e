"""
Tests for L{webwire.tap} (the options and service of C{twistd webwire}),
L{webwire.service} and the twistd plugin, on a L{MemoryReactor}.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import txaio
from twisted.application.service import IService, IServiceMaker, Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers import asReactor, ident
from tests.test_server import ControlledApplication, reply, request
from webwire._reactor import IWebWireReactor
from webwire.application import Application
from webwire.cluster import LocalCluster
from webwire.cluster.redis import RedisCluster
from webwire.conformance import ConformanceApplication
from webwire.gateway import HTTPGateway
from webwire.interfaces import IWebWireServer
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.sessions import FileSessionManager, MemorySessionManager
from webwire.sessions import redis as redisModule
from webwire.tap import Options, makeService, servedSummary
from webwire.testing import Pair
from webwire.web import WebWireRoot

# Targets of --app in these tests.
providedApplication = Application()


def makeTestApplication() -> Application:
    """A callable returning a new application."""
    return ControlledApplication()


def failingFactory() -> Application:
    """A callable that fails."""
    raise RuntimeError("no application today")


def makeNothing() -> object:
    """A callable returning something that is not an application."""
    return 42


notAnApplication = object()


def memoryReactor() -> IWebWireReactor:
    return asReactor(MemoryReactorClock())


def parse(*arguments: str) -> Options:
    """Parse C{arguments} as C{twistd webwire} would."""
    config = Options()
    config.parseOptions(list(arguments))
    return config


@implementer(IListeningPort)
class RecordingPort:
    """
    A listening port that remembers whether it was stopped.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.listening = True

    def startListening(self) -> None:
        self.listening = True

    def stopListening(self) -> None:
        self.listening = False

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "0.0.0.0", self.port)


class ListeningReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} whose TCP ports can be watched.

    :ivar ports: The ports listened on, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[RecordingPort] = []

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> RecordingPort:
        super().listenTCP(port, factory, backlog, interface)
        listening = RecordingPort(port)
        self.ports.append(listening)
        return listening


class OptionsTests(SynchronousTestCase):
    """
    L{webwire.tap.Options}: C{--listen} and C{--app}.
    """

    def test_defaults(self) -> None:
        """
        Without arguments, the conformance application is served on
        tcp:8080.
        """
        config = parse()
        self.assertEqual(config["listen"], ["tcp:8080"])
        self.assertEqual(config["app"], "webwire.conformance.makeApplication")
        self.assertIsInstance(config["application"], ConformanceApplication)

    def test_listenRepeated(self) -> None:
        """
        C{--listen} may be repeated; the endpoints are kept in order and
        replace the default.
        """
        config = parse("--listen", "tcp:8081", "--listen", "unix:/tmp/ww.sock")
        self.assertEqual(config["listen"], ["tcp:8081", "unix:/tmp/ww.sock"])

    def test_freshOptions(self) -> None:
        """
        Each L{Options} has its own list of endpoints.
        """
        parse("--listen", "tcp:8081")
        self.assertEqual(parse()["listen"], ["tcp:8080"])

    def test_appProvider(self) -> None:
        """
        C{--app} may name an object that provides L{IWebWireServer}; it is
        used as it is.
        """
        config = parse("--app", "tests.test_tap.providedApplication")
        self.assertIs(config["application"], providedApplication)

    def test_appCallable(self) -> None:
        """
        C{--app} may name a callable that returns an L{IWebWireServer}; it
        is called once, without arguments.
        """
        config = parse("-a", "tests.test_tap.makeTestApplication")
        self.assertIsInstance(config["application"], ControlledApplication)
        self.assertTrue(IWebWireServer.providedBy(config["application"]))

    def assertUsageError(self, name: str, *fragments: str) -> str:
        """
        C{--app name} fails with a one-line L{usage.UsageError} naming
        C{name} and containing each of C{fragments}.
        """
        error = self.assertRaises(usage.UsageError, parse, "--app", name)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertIn(name, message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_appNotImportable(self) -> None:
        """
        A name that cannot be found is a usage error that says what was
        tried: a missing attribute of a module that exists, or a module
        that does not (and where it was looked for).
        """
        self.assertUsageError(
            "tests.test_tap.doesNotExist", "tests.test_tap has no attribute"
        )
        self.assertUsageError(
            "tests.test_tap:doesNotExist", "tests.test_tap has no attribute"
        )
        self.assertUsageError(
            "no_such_package.app",
            "no module named 'no_such_package'",
            os.path.abspath("."),
        )
        self.assertUsageError("no_such_package:app", "no module named")
        self.assertUsageError("tests.test_tap:", "expected module:attribute")

    def writeModule(self, source: str) -> tuple[str, str]:
        """
        Write a module of a name unique to this test into a new directory.

        :returns: The directory and the module's name.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        name = "appdir_" + self.id().rsplit(".", 1)[-1]
        with open(os.path.join(directory, name + ".py"), "w") as f:
            f.write(source)
        self.addCleanup(sys.modules.pop, name, None)
        return directory, name

    def test_appDir(self) -> None:
        """
        C{--app} finds modules in C{--app-dir} (C{module:attr} as well as
        C{module.attr}), before the installed packages.
        """
        directory, name = self.writeModule(
            "from webwire.application import Application\n"
            "def make():\n    return Application()\n"
        )
        self.addCleanup(sys.path.remove, os.path.abspath(directory))
        for app in (f"{name}:make", f"{name}.make"):
            config = parse("--app-dir", directory, "--app", app)
            self.assertIsInstance(config["application"], Application)

    def test_appDirDefault(self) -> None:
        """
        Without C{--app-dir} the current directory is searched.
        """
        directory, name = self.writeModule(
            "from webwire.application import Application\napp = Application()\n"
        )
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        self.addCleanup(sys.path.remove, os.path.abspath("."))
        config = parse("--app", f"{name}:app")
        self.assertIsInstance(config["application"], Application)

    def test_appDirNotADirectory(self) -> None:
        """
        An C{--app-dir} that is not a directory is a usage error.
        """
        error = self.assertRaises(
            usage.UsageError, parse, "--app-dir", "no/such/dir", "--app", "x:y"
        )
        self.assertEqual(str(error), "--app-dir no/such/dir: not a directory")

    def test_appImportRaises(self) -> None:
        """
        A module that raises when imported is a usage error with the
        exception's type and first line, also when what it raises is a
        missing module of its own.
        """
        directory, name = self.writeModule(
            "raise RuntimeError('database down\\nsecond line')\n"
        )
        self.addCleanup(sys.path.remove, os.path.abspath(directory))
        error = self.assertRaises(
            usage.UsageError, parse, "--app-dir", directory, "--app", f"{name}:app"
        )
        self.assertEqual(
            str(error),
            f"--app {name}:app: importing {name} raised RuntimeError: database down",
        )
        directory, name = self.writeModule("import no_such_dependency\n")
        self.addCleanup(sys.path.remove, os.path.abspath(directory))
        error = self.assertRaises(
            usage.UsageError, parse, "--app-dir", directory, "--app", f"{name}.app"
        )
        self.assertIn(
            f"importing {name} raised ModuleNotFoundError: No module named "
            "'no_such_dependency'",
            str(error),
        )

    def test_appCallableRaises(self) -> None:
        """
        A callable that raises is a usage error that says why.
        """
        self.assertUsageError(
            "tests.test_tap.failingFactory", "calling it failed", "no application"
        )

    def test_appProvidesNothing(self) -> None:
        """
        An object that neither provides L{IWebWireServer} nor can be called
        is a usage error.
        """
        self.assertUsageError("tests.test_tap.notAnApplication", "neither")

    def test_appReturnsNothing(self) -> None:
        """
        A callable whose result does not provide L{IWebWireServer} is a
        usage error.
        """
        self.assertUsageError(
            "tests.test_tap.makeNothing", "42", "does not provide IWebWireServer"
        )


class MakeServiceTests(SynchronousTestCase):
    """
    L{webwire.tap.makeService} and the L{WebWireService} it returns.
    """

    def test_listens(self) -> None:
        """
        Starting the service listens with one site, whose root hands
        upgrades to the factory serving the configured application, on each
        C{--listen} endpoint.
        """
        reactor = MemoryReactor()
        config = parse(
            "--listen",
            "tcp:8081",
            "--listen",
            "tcp:8082:interface=127.0.0.1",
            "--app",
            "tests.test_tap.providedApplication",
        )
        service = makeService(config, reactor=asReactor(reactor))
        assert isinstance(service, WebWireService)
        self.assertEqual(reactor.tcpServers, [])
        service.startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(8081, ""), (8082, "127.0.0.1")],
        )
        [listener] = {site for _, site, _, _ in reactor.tcpServers}
        assert isinstance(listener, Site)
        site = listener
        self.assertIsInstance(site.resource, WebWireRoot)
        self.assertIs(site.resource.factory, service.factory)
        self.assertIsInstance(service.factory, WebWireServerFactory)
        self.assertIs(service.factory.application, providedApplication)

    def test_defaultEndpoint(self) -> None:
        """
        Without C{--listen}, the service listens on TCP port 8080.
        """
        reactor = MemoryReactor()
        service = makeService(parse(), reactor=asReactor(reactor))
        service.startService()
        self.assertEqual([entry[0] for entry in reactor.tcpServers], [8080])

    def test_unixEndpoint(self) -> None:
        """A UNIX socket endpoint listens with the same site."""
        reactor = MemoryReactor()
        service = makeService(
            parse("--listen", "unix:/tmp/ww.sock"), reactor=asReactor(reactor)
        )
        assert isinstance(service, WebWireService)
        service.startService()
        [(address, site, *_)] = reactor.unixServers
        self.assertEqual(address, "/tmp/ww.sock")
        assert isinstance(site, Site)
        self.assertIs(site.resource.factory, service.factory)

    def test_stopWithoutConnections(self) -> None:
        """
        Stopping a service without connections shuts the factory down and
        stops listening at once.
        """
        reactor = ListeningReactor()
        service = makeService(parse("--listen", "tcp:8081"), reactor=asReactor(reactor))
        assert isinstance(service, WebWireService)
        service.startService()
        self.successResultOf(service.stopService())
        self.assertTrue(service.factory.isShuttingDown)
        self.assertEqual([port.listening for port in reactor.ports], [False])
        self.assertFalse(service.running)

    def test_stopAfterShutdown(self) -> None:
        """
        C{stopService} returns a Deferred that fires only after the
        factory's graceful shutdown: the ports keep listening while a
        handler runs, and stop once it has finished and the connection is
        closed.
        """
        reactor = ListeningReactor()
        self.patch(txaio.config, "loop", reactor)  # type: ignore[attr-defined]
        config = parse(
            "--listen",
            "tcp:8081",
            "--listen",
            "tcp:8082",
            "--app",
            "tests.test_tap.makeTestApplication",
        )
        app = config["application"]
        assert isinstance(app, ControlledApplication)
        app.deferRequests()
        service = makeService(config, reactor=asReactor(reactor))
        assert isinstance(service, WebWireService)
        service.startService()
        pair = Pair(service.factory, reactor)
        pair.send(request(1))
        stopped = service.stopService()
        pair.flush()
        self.assertNoResult(stopped)
        self.assertEqual([port.listening for port in reactor.ports], [True, True])
        app.pending[ident(1)].callback(b"done")
        pair.flush()
        self.assertEqual(pair.replies, [reply(1, b"done")])
        self.assertEqual(pair.client.closeCode, 1001)
        self.successResultOf(stopped)
        self.assertEqual([port.listening for port in reactor.ports], [False, False])

    def test_helpers(self) -> None:
        """
        The C{helpers} of a L{WebWireService} are started before it listens
        and stopped only after the drain: while a handler still runs, they
        run.
        """
        reactor = ListeningReactor()
        self.patch(txaio.config, "loop", reactor)  # type: ignore[attr-defined]
        app = ControlledApplication()
        app.deferRequests()
        factory = WebWireServerFactory(app, reactor=reactor)
        portsAtStart: list[int] = []

        class Helper(Service):
            def startService(self) -> None:
                portsAtStart.append(len(reactor.ports))
                super().startService()

        helper = Helper()
        service = WebWireService(
            factory, ["tcp:8081"], asReactor(reactor), helpers=[helper]
        )
        service.startService()
        self.assertEqual((portsAtStart, helper.running), ([0], True))
        pair = Pair(factory, reactor)
        pair.send(request(1))
        stopped = service.stopService()
        pair.flush()
        self.assertNoResult(stopped)
        self.assertTrue(helper.running)
        app.pending[ident(1)].callback(b"done")
        pair.flush()
        self.successResultOf(stopped)
        self.assertFalse(helper.running)

    def test_noEndpoints(self) -> None:
        """A L{WebWireService} needs at least one endpoint."""
        factory = WebWireServerFactory(Application(), reactor=MemoryReactorClock())
        self.assertRaises(ValueError, WebWireService, factory, [])
        self.assertRaises(ValueError, WebWireService, factory, iter([]))

    def test_badEndpoint(self) -> None:
        """
        An endpoint description that cannot be parsed is refused when the
        service is made.
        """
        factory = WebWireServerFactory(Application(), reactor=MemoryReactorClock())
        self.assertRaises(
            ValueError, WebWireService, factory, ["nonsense:1"], MemoryReactor()
        )


class PluginTests(SynchronousTestCase):
    """
    The C{webwire} twistd plugin.
    """

    def test_discoverable(self) -> None:
        """
        twistd finds a C{webwire} service maker, which provides
        L{IServiceMaker} and uses L{webwire.tap}.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("webwire", makers)
        maker = makers["webwire"]
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertIsInstance(maker.options(), Options)
        self.assertIs(maker.makeService, makeService)


class ServerOptionTests(SynchronousTestCase):
    """
    Every server setting can be given on the command line.
    """

    def test_allOptions(self) -> None:
        """Each option ends up in the ServerOptions the service uses."""
        config = Options()
        config.parseOptions(
            [
                "--read-timeout=3",
                "--message-buffer-size=4096",
                "--concurrency=unlimited",
                "--sub-protocol=chat",
                "--max-connections=100",
                "--shutdown-timeout=5",
                "--close-timeout=2.5",
                "--open-handshake-timeout=3",
                "--max-session-connections=2",
                "--allowed-origin=https://a.example",
                "--allowed-origin=https://*.b.example",
                "--compression",
                "--path=/ws",
                "--path=/api",
            ]
        )
        self.assertEqual(
            config["options"],
            ServerOptions(
                readTimeout=3.0,
                messageBufferSize=4096,
                concurrency=None,
                subProtocol="chat",
                maxConnections=100,
                shutdownTimeout=5.0,
                closeTimeout=2.5,
                openHandshakeTimeout=3.0,
                maxSessionConnections=2,
                allowedOrigins=("https://a.example", "https://*.b.example"),
                compression=True,
                paths=("/ws", "/api"),
            ),
        )

    def test_defaults(self) -> None:
        """Without options, the ServerOptions defaults apply."""
        config = Options()
        config.parseOptions([])
        self.assertEqual(config["options"], ServerOptions())

    def test_badValues(self) -> None:
        """Each bad value is a one-line usage error."""
        for argv in [
            ["--read-timeout=-1"],
            ["--read-timeout=soon"],
            ["--read-timeout=0"],
            ["--close-timeout=0"],
            ["--open-handshake-timeout=0"],
            ["--message-buffer-size=16"],
            ["--concurrency=0"],
            ["--concurrency=many"],
            ["--sessions=redis-someday"],
            ["--path=ws"],
            ["--max-connections=-5"],
            ["--session-max-idle=-1"],
        ]:
            error = self.assertRaises(usage.UsageError, Options().parseOptions, argv)
            self.assertNotIn("\n", str(error), argv)
            self.assertTrue(str(error), argv)

    def test_sessionManagers(self) -> None:
        """
        --sessions chooses the manager: files in --session-directory, memory,
        or none at all; --session-max-idle sets the expiry.
        """
        directory = self.mktemp()
        config = Options()
        config.parseOptions(
            ["--session-directory", directory, "--session-max-idle", "600"]
        )
        manager = makeService(config, memoryReactor()).factory.sessionManager  # type: ignore[attr-defined]
        assert isinstance(manager, FileSessionManager)
        self.assertEqual(manager.directory.path, os.path.abspath(directory))
        self.assertEqual(manager.maxIdle, 600)
        config = Options()
        config.parseOptions(["--sessions", "memory"])
        manager = makeService(config, memoryReactor()).factory.sessionManager  # type: ignore[attr-defined]
        self.assertIsInstance(manager, MemorySessionManager)
        config = Options()
        config.parseOptions(["--sessions", "off"])
        factory = makeService(config, memoryReactor()).factory  # type: ignore[attr-defined]
        self.assertIsNone(factory.sessionManager)
        self.assertFalse(factory.options.sessions)


class BackendOptionTests(SynchronousTestCase):
    """
    --backend serves the HTTP backend gateway.
    """

    def test_backend(self) -> None:
        """
        --backend builds a gateway with the timeout, signal forwarding and
        message buffer size given; stopping the service closes it.
        """
        config = Options()
        config.parseOptions(
            [
                "--backend=http://127.0.0.1:8081/api/",
                "--backend-timeout=3",
                "--forward-signals",
                "--message-buffer-size=4096",
            ]
        )
        gateway = config["application"]
        self.assertIsInstance(gateway, HTTPGateway)
        self.assertEqual(
            (gateway.timeout, gateway.forwardSignals, gateway.maxReplySize),
            (3.0, True, 4096 - 9),
        )
        closed: list[bool] = []

        def close() -> Deferred[None]:
            closed.append(True)
            return succeed(None)

        gateway.close = close
        service = makeService(config, memoryReactor())
        service.startService()
        self.successResultOf(service.stopService())
        self.assertEqual(closed, [True])

    def test_backendErrors(self) -> None:
        """--backend with --app, or with a URL that is not HTTP, is refused."""
        for argv in [
            [
                "--backend=http://127.0.0.1:8081/",
                "--app=tests.test_tap.providedApplication",
            ],
            ["--backend=ftp://example.org/"],
        ]:
            error = self.assertRaises(usage.UsageError, Options().parseOptions, argv)
            self.assertNotIn("\n", str(error))


class _RecordedRedisManager(MemorySessionManager):
    """Stands in for RedisSessionManager, which would connect at once."""

    made: list[tuple[str, str, float | None]] = []

    def __init__(
        self, url: str, prefix: str, maxIdle: float | None, clock: Any
    ) -> None:
        super().__init__()
        self.made.append((url, prefix, maxIdle))

    def disconnect(self) -> Deferred[None]:
        return succeed(None)


class RedisOptionTests(SynchronousTestCase):
    """
    --sessions redis keeps sessions in Redis.
    """

    def test_redis(self) -> None:
        """
        --sessions redis with --redis-url makes Redis session managers with
        the idle expiry given (the chat demo's under a prefix of its own); a
        bad URL is a one-line usage error.
        """
        self.patch(_RecordedRedisManager, "made", [])
        self.patch(redisModule, "RedisSessionManager", _RecordedRedisManager)
        config = Options()
        config.parseOptions(
            [
                "--sessions=redis",
                "--redis-url=redis://127.0.0.1:6390/2",
                "--session-max-idle=60",
            ]
        )
        service = makeService(config, memoryReactor())
        self.assertIsInstance(service.factory.sessionManager, _RecordedRedisManager)  # type: ignore[attr-defined]
        self.assertEqual(
            _RecordedRedisManager.made,
            [
                ("redis://127.0.0.1:6390/2", "webwire:session:", 60),
                ("redis://127.0.0.1:6390/2", "webwire:chat:session:", 60),
            ],
        )
        error = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            ["--sessions=redis", "--redis-url=rediss://example.org/0"],
        )
        self.assertNotIn("\n", str(error))


class ClusterOptionTests(SynchronousTestCase):
    """
    --cluster shares signals, session closes and limits through Redis.
    """

    def test_cluster(self) -> None:
        """
        --cluster gives the application and the chat demo a Redis cluster
        each, on --redis-url, under prefixes of their own, with the
        heartbeat given; both are child services, started with the server.
        """
        config = parse(
            "--cluster",
            "--redis-url=redis://127.0.0.1:6390/2",
            "--cluster-heartbeat=0.5",
        )
        service = makeService(config, memoryReactor())
        assert isinstance(service, WebWireService)
        clusters = [f.cluster for f in service.factories]
        self.assertEqual(
            [(type(c), c.prefix, c.heartbeat) for c in clusters],  # type: ignore[attr-defined]
            [
                (RedisCluster, "webwire:cluster:", 0.5),
                (RedisCluster, "webwire:chat:cluster:", 0.5),
            ],
        )
        for cluster in clusters:
            self.assertEqual(cluster._port, 6390)  # type: ignore[attr-defined]
            self.assertIs(IService(cluster).parent, service)
        self.assertIs(clusters[0].server, service.factory)  # type: ignore[attr-defined]

    def test_noCluster(self) -> None:
        """Without --cluster, each server has its own local cluster."""
        service = makeService(parse(), memoryReactor())
        assert isinstance(service, WebWireService)
        for factory in service.factories:
            self.assertIs(type(factory.cluster), LocalCluster)

    def test_badValues(self) -> None:
        """A bad URL or heartbeat is a one-line usage error."""
        for argv in [
            ["--cluster", "--redis-url=http://example.org/"],
            ["--cluster", "--cluster-heartbeat=0"],
            ["--cluster", "--cluster-heartbeat=-1"],
            ["--cluster", "--cluster-heartbeat=soon"],
        ]:
            error = self.assertRaises(usage.UsageError, Options().parseOptions, argv)
            self.assertNotIn("\n", str(error))


class StartupChecksTests(SynchronousTestCase):
    """
    Problems C{twistd webwire} finds before it starts: one line each.
    """

    def assertRefused(self, expected: str, *arguments: str) -> None:
        error = self.assertRaises(usage.UsageError, parse, *arguments)
        self.assertEqual(str(error), expected)

    def test_sessionDirectoryUnusable(self) -> None:
        """
        A session directory that is a file, or cannot be created or written
        in, is refused at start-up rather than losing every session.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("")
        self.assertRefused(
            f"--session-directory {path}: not a directory",
            "--session-directory",
            path,
        )
        self.assertRefused(
            f"--session-directory {path}/sub: cannot create it: "
            f"{os.path.abspath(path)} is not a directory",
            "--session-directory",
            f"{path}/sub",
        )
        error = self.assertRaises(
            usage.UsageError, parse, "--session-directory", "/proc/1"
        )
        self.assertTrue(
            str(error).startswith("--session-directory /proc/1: cannot write in it: "),
            error,
        )

    def test_sessionDirectoryNotCreated(self) -> None:
        """
        A missing session directory that can be made is accepted, and not
        made before it is used; nothing is left in an existing one.
        """
        path = self.mktemp()
        parse("--session-directory", os.path.join(path, "a", "b"))
        self.assertFalse(os.path.exists(path))
        os.makedirs(path)
        parse("--session-directory", path)
        self.assertEqual(os.listdir(path), [])

    def test_optionsThatDoNotApply(self) -> None:
        """
        Options that would be ignored are refused.
        """
        self.assertRefused(
            "--forward-signals applies only with --backend", "--forward-signals"
        )
        self.assertRefused(
            "--backend-timeout applies only with --backend", "--backend-timeout", "3"
        )
        self.assertRefused(
            "--redis-url applies only with --sessions redis or --cluster",
            "--redis-url",
            "redis://127.0.0.1:1/0",
        )


class ServedSummaryTests(SynchronousTestCase):
    """
    The start-up line of C{twistd webwire} says what is served.
    """

    def summary(self, *argv: str) -> str:
        config = Options()
        config.parseOptions(list(argv))
        return servedSummary(config)

    def test_default(self) -> None:
        """The application, endpoint, paths, chat page and session store."""
        self.assertEqual(
            self.summary("--listen", "tcp:8080", "--sessions", "memory"),
            "serving ConformanceApplication (webwire.conformance.makeApplication) "
            "on tcp:8080, WebSocket upgrades on any path; the chat demo at /chat, "
            "its page at http://localhost:8080/; sessions in memory",
        )

    def test_redisMetricsPaths(self) -> None:
        """Redis without its password, the paths, metrics and workers."""
        self.assertEqual(
            self.summary(
                "--listen=tcp:9443:interface=127.0.0.1",
                "--path=/ws",
                "--sessions=redis",
                "--redis-url=redis://:s3cret@127.0.0.1:6380/1",
                "--cluster",
                "--metrics=tcp:9100",
                "--app=examples.quickstart.makeApplication",
            ),
            "serving Greeter (examples.quickstart.makeApplication) on "
            "tcp:9443:interface=127.0.0.1, WebSocket upgrades on /ws; sessions in "
            "Redis at redis://:***@127.0.0.1:6380/1, clustered through Redis; "
            "metrics at /metrics on tcp:9100",
        )
