"""
The examples run and do what their docstrings say, over loopback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from datetime import UTC, datetime
from io import StringIO
from typing import cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import (
    ConnectionRefusedError,
    ProcessDone,
    ProcessTerminated,
)
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface.verify import verifyObject

from examples import chatroom, echo, pubsub, quickstart
from examples.cluster import __main__ as clusterMain
from examples.cluster import runner as clusterRunner
from examples.shared_port import SharedPortService
from examples.sqlite_sessions import SQLiteSessionManager
from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    LoopbackServer,
    connectRaw,
    h,
    ident,
    listeningPort,
    makeClient,
    portNumber,
    rawHTTP,
)
from tests.redisserver import startRedis
from tests.test_client import RecordingHooks
from tests.test_redis import adminConnection
from tests.test_twistd import ROOT, TWISTD, startServer
from webwire import wire
from webwire.client import ClientOptions, WebWireClient
from webwire.cluster.redis import RedisCluster
from webwire.conformance import ConformanceApplication
from webwire.errors import RequestError, SessionNotFound
from webwire.interfaces import IConnection, ISessionManager
from webwire.options import ServerOptions
from webwire.sessions import MemorySessionManager, Session
from webwire.web import STATIC


class QuickstartTests(TestCase):
    """
    C{examples/quickstart.py}.
    """

    timeout = 20

    async def test_greet(self) -> None:
        """
        C{greet} answers with a greeting in UTF-8, and errors for an empty
        name or an unknown request.
        """
        server = LoopbackServer(self, quickstart.makeApplication())
        client = await server.connectAccepted()
        greet = wire.encodeRequest(ident(1), "greet", b"Ada", wire.Encoding.UTF8)
        self.assertEqual(
            await client.roundTrip(greet), h("C0") + ident(1) + b"Hello, Ada!"
        )
        empty = wire.encodeRequest(ident(2), "greet", b" ", wire.Encoding.UTF8)
        reply = wire.parse(await client.roundTrip(empty))
        self.assertEqual(
            reply, wire.ErrorReply(ident(2), "BAD_REQUEST", "whom should I greet?")
        )
        other = wire.encodeRequest(ident(3), "other", b"", wire.Encoding.UTF8)
        reply = wire.parse(await client.roundTrip(other))
        self.assertEqual(reply.code, "UNKNOWN_REQUEST")  # type: ignore[union-attr]

    async def test_shout(self) -> None:
        """A C{shout} signal comes back as C{shouted}, in capitals."""
        server = LoopbackServer(self, quickstart.makeApplication())
        client = await server.connectAccepted()
        client.send(wire.encodeSignal("shout", b"hey", wire.Encoding.UTF8))
        self.assertEqual(await client.message(1), h("40 07") + b"shouted" + b"HEY")


class SQLiteSessionsTests(TestCase):
    """
    C{examples/sqlite_sessions.py}: a custom session manager.
    """

    timeout = 30

    async def test_sessionsInSQLite(self) -> None:
        """
        Sessions created through the conformance application are stored in
        SQLite, restored from another connection with their info, and
        forgotten on logout.
        """
        manager = SQLiteSessionManager(self.mktemp())
        self.addCleanup(manager.close)
        verifyObject(ISessionManager, manager)
        server = LoopbackServer(self, ConformanceApplication(), sessionManager=manager)
        first = await server.connectAccepted()
        first.send(wire.encodeRequest(ident(1), "login", b"ada", wire.Encoding.UTF8))
        notification, reply = (await first.receivedCount(3))[1:]
        key = Session.fromJSON(notification[1:]).key
        self.assertEqual(reply, h("C0") + ident(1) + key.encode())
        second = await server.connectAccepted()
        restored = wire.parse(
            await second.roundTrip(wire.encodeRestoreSession(ident(1), key))
        )
        assert isinstance(restored, wire.Reply)
        self.assertEqual(Session.fromJSON(restored.payload).info, {"user": "ada"})
        second.send(wire.encodeCloseSession(ident(2)))
        first.send(wire.encodeRequest(ident(2), "logout", b"", wire.Encoding.UTF8))
        self.assertEqual((await first.receivedCount(5))[4], h("BF") + ident(2))
        await second.message(2)
        third = await server.connectAccepted()
        gone = await third.roundTrip(wire.encodeRestoreSession(ident(1), key))
        self.assertEqual(gone, h("03") + ident(1))

    async def test_stopsCleanly(self) -> None:
        """
        C{main} stopped by SIGTERM after serving a login: the database pool
        is closed once, without a traceback (it closes itself at shutdown).
        """
        boot = (
            "import sys; from twisted.internet.task import react; "
            "from examples.sqlite_sessions import main; "
            "react(main, (sys.argv[1], 'tcp:0:interface=127.0.0.1'))"
        )
        database = FilePath(self.mktemp()).path
        process, transport, port = await startServer(self, ["-c", boot, database])
        client = await connectRaw(port, "/")
        client.send(wire.encodeRequest(ident(1), "login", b"ada", wire.Encoding.UTF8))
        await client.receivedCount(3)
        transport.signalProcess("TERM")
        await process.ended
        output = process.output.decode("utf-8", "replace")
        self.assertIn("shutdown complete", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("AlreadyQuit", output)

    async def test_keysChecked(self) -> None:
        """
        The SQLite manager checks keys as every manager does: one outside
        the generator's alphabet is unknown even if its row exists, closing
        it removes nothing, and it cannot be stored.
        """
        manager = SQLiteSessionManager(self.mktemp())
        self.addCleanup(manager.close)
        await manager._ready
        await manager._pool.runOperation(
            "INSERT INTO sessions VALUES (?, ?, ?, ?)",
            ("chat:abc", "2019-01-15T12:29:22Z", "2019-01-15T12:29:22Z", "{}"),
        )
        self.assertIsNone(await manager.onSessionLookup("chat:abc"))
        await manager.onSessionClosed("chat:abc")
        rows = await manager._pool.runQuery("SELECT key FROM sessions")
        self.assertEqual([row[0] for row in rows], ["chat:abc"])
        now = datetime.now(UTC)
        session = Session("../x", now, now)
        with self.assertRaises(ValueError):
            await manager.onSessionCreated(cast(IConnection, _HasSession(session)))


class _HasSession:
    def __init__(self, session: Session) -> None:
        self.session = session


class EmbeddingExamplesTests(TestCase):
    """
    The embedding examples, run as users run them.
    """

    timeout = 60

    async def test_sharedPort(self) -> None:
        """
        C{examples/shared_port.py}: the page and both WebWire applications
        answer on one port, and stopping the service shuts them down.
        """
        service = SharedPortService("tcp:0:interface=127.0.0.1")
        service.startService()
        port = portNumber(await listeningPort(service))
        response = await rawHTTP(port, b"GET / HTTP/1.0\r\n\r\n")
        self.assertIn(b"share one port", response)
        conformance = await connectRaw(port, "/api/conformance")
        self.assertEqual(await conformance.message(0), DEFAULT_ACCEPT_CONF)
        greeter = WebWireClient(
            f"ws://127.0.0.1:{port}/api/greeter",
            options=ClientOptions(subProtocol="greet", autoconnect=False),
        )
        self.assertEqual((await greeter.request("greet", "Ada")).text(), "Hello, Ada!")
        await service.stopService()
        self.assertEqual((await conformance.closed)[1], 1001)
        await greeter.close()

    async def test_existingApplication(self) -> None:
        """
        C{examples/existing_application.tac} under C{twistd -ny}: the
        application's echo service and the WebWire service both serve.
        """
        argv = [
            *TWISTD,
            "-y",
            ROOT.child("examples").child("existing_application.tac").path,
        ]
        env = {
            "ECHO_LISTEN": "tcp:0:interface=127.0.0.1",
            "WEBWIRE_LISTEN": "tcp:0:interface=127.0.0.1",
        }
        process, transport, port = await startServer(self, argv, env)
        client = WebWireClient(
            f"ws://127.0.0.1:{port}/", options=ClientOptions(autoconnect=False)
        )
        self.assertEqual((await client.request("greet", "Bo")).text(), "Hello, Bo!")
        match = re.search(rb"\] Factory starting on (\d+)", process.output)
        assert match is not None, process.output
        self.assertEqual(
            await echoed(int(match.group(1)), b"still here"), b"still here"
        )
        await client.close()
        transport.signalProcess("TERM")
        await process.ended


class _EchoProbe(Protocol):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.echoed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.loseConnection()
        self.echoed.callback(data)


async def echoed(port: int, data: bytes) -> bytes:
    """What a TCP echo service on C{port} sends back for C{data}."""
    probe = _EchoProbe(data)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), probe)
    return await probe.echoed


class EchoExampleTests(TestCase):
    """
    C{examples/echo.py}: the server part and the client part together.
    """

    timeout = 30

    async def test_echo(self) -> None:
        """
        The client function gets its text back from the server service,
        UTF-8 or not ASCII alike.
        """
        service = echo.makeService("tcp:0:interface=127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        port = portNumber(await listeningPort(service))
        url = f"ws://127.0.0.1:{port}/"
        self.assertEqual(await echo.echo(url, "hello, echo"), "hello, echo")
        self.assertEqual(await echo.echo(url, "grüß 𝄞"), "grüß 𝄞")

    def test_usage(self) -> None:
        """Arguments that name no part exit with status 2 and the usage."""
        stderr = StringIO()
        self.patch(sys, "stderr", stderr)
        for argv in [(), ("serve",), ("server", "extra"), ("client", "a", "b", "c")]:
            with self.assertRaises(SystemExit) as raised:
                echo.main(reactor, *argv)
            self.assertEqual(raised.exception.code, 2)
        self.assertIn("usage:", stderr.getvalue())


class _Signals(RecordingHooks):
    def named(self, name: str) -> list[str]:
        return [
            value.text()
            for kind, value in self.events
            if kind == "signal" and value.name == name
        ]


class _WatchedPubSub(pubsub.PubSub):
    """
    The example's application, also telling the test which connections it
    served and when each went away (the example itself needs neither).
    """

    def __init__(self) -> None:
        self.connections: list[IConnection] = []
        self._gone: dict[IConnection, Deferred[None]] = {}

    def onClientConnected(self, connection: IConnection) -> None:
        self.connections.append(connection)

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        self.gone(connection).callback(None)

    def gone(self, connection: IConnection) -> Deferred[None]:
        """Fire once C{connection} is closed and the server forgot it."""
        return self._gone.setdefault(connection, Deferred())


class PubSubExampleTests(TestCase):
    """
    C{examples/pubsub.py}: topics, subscribers and clean-up, kept by the
    server's cluster; several servers sharing a Redis act as one.
    """

    timeout = 30

    def setUp(self) -> None:
        self.app = _WatchedPubSub()
        self.server = LoopbackServer(self, self.app, ServerOptions(sessions=False))
        self.cluster = self.server.factory.cluster

    def client(self, port: int | None = None) -> tuple[WebWireClient, _Signals]:
        hooks = _Signals()
        client = makeClient(self, port or self.server.portNumber, "/", hooks)
        return client, hooks

    async def publish(self, client: WebWireClient, topic: str, data: object) -> None:
        """Publish; the reply is empty."""
        document = json.dumps({"topic": topic, "data": data})
        self.assertEqual((await client.request("publish", document)).payload, b"")

    async def assertRefused(
        self, client: WebWireClient, name: str, payload: str, code: str
    ) -> None:
        """Request C{name} is answered with error C{code}."""
        try:
            await client.request(name, payload or None)
        except RequestError as e:
            self.assertEqual(e.code, code, (name, payload[:40]))
        else:
            self.fail(f"{name} {payload[:40]!r} succeeded")

    async def test_subscribers(self) -> None:
        """
        A publication reaches the topic's subscribers (the publisher too,
        if subscribed) as a signal named after the topic, once each, and
        nobody else; after unsubscribing it no longer does. Every reply is
        empty.
        """
        (a, aSignals), (b, bSignals), (c, cSignals) = [self.client() for _ in "abc"]
        for client, topic in [(a, "news"), (b, "news"), (c, "sport")]:
            reply = await client.request("subscribe", topic)
            self.assertEqual(reply.payload, b"")
        await a.request("subscribe", "news")  # twice is harmless
        await self.publish(c, "news", {"headline": "grüß"})
        await self.publish(a, "sport", [1, 2])
        # Each client's reply comes after the signals it was sent.
        for client in [a, b, c]:
            reply = await client.request("unsubscribe", "nothing")
            self.assertEqual(reply.payload, b"")
        self.assertEqual(aSignals.named("news"), ['{"headline":"grüß"}'])
        self.assertEqual(bSignals.named("news"), ['{"headline":"grüß"}'])
        self.assertEqual(cSignals.named("news"), [])
        self.assertEqual(cSignals.named("sport"), ["[1,2]"])
        self.assertEqual(aSignals.named("sport") + bSignals.named("sport"), [])
        await b.request("unsubscribe", "news")
        await self.publish(a, "news", "again")
        await b.request("unsubscribe", "news")
        self.assertEqual(aSignals.named("news")[-1], '"again"')
        self.assertEqual(len(bSignals.named("news")), 1)
        await self.publish(b, "empty", None)  # no subscribers: the same reply

    async def test_disconnectCleansUp(self) -> None:
        """
        The subscriptions are the cluster's, and a connection that goes
        away is unsubscribed from everything without the application's
        help.
        """
        (a, _), (b, bSignals) = self.client(), self.client()
        for topic in ["news", "sport"]:
            await a.request("subscribe", topic)
        await b.request("subscribe", "news")
        [aConnection] = [
            c
            for c in self.app.connections
            if self.cluster.topicsOf(c) == {"news", "sport"}
        ]
        [bConnection] = [c for c in self.app.connections if c is not aConnection]
        self.assertEqual(self.cluster.topicsOf(bConnection), {"news"})
        await a.close()
        await self.app.gone(aConnection)
        self.assertEqual(self.cluster.topicsOf(aConnection), frozenset())
        self.assertEqual(self.cluster.subscribers("news"), [bConnection])
        self.assertEqual(self.cluster.subscribers("sport"), [])
        await self.publish(b, "news", 1)
        self.assertEqual(bSignals.named("news"), ["1"])
        await b.close()
        await self.app.gone(bConnection)
        self.assertEqual(self.cluster.subscribers("news"), [])

    async def test_badRequests(self) -> None:
        """
        Bad topics and publications, data too large for a signal included,
        are refused with C{BAD_REQUEST}, other requests with
        C{UNKNOWN_REQUEST}; nobody gets anything.
        """
        client, signals = self.client()
        await client.request("subscribe", "big")
        # Each 1e15 comes out as 1000000000000000.0: the request fits in
        # the server's message buffer, the signal would not.
        big = '{"topic": "big", "data": [' + ",".join(["1e15"] * 1500) + "]}"
        calls = [
            ("subscribe", "", "BAD_REQUEST"),
            ("subscribe", "x" * 65, "BAD_REQUEST"),
            ("subscribe", "grüß", "BAD_REQUEST"),
            ("unsubscribe", "\x01", "BAD_REQUEST"),
            ("publish", "not json", "BAD_REQUEST"),
            ("publish", '{"topic": "news"}', "BAD_REQUEST"),
            ("publish", '{"topic": 1, "data": 1}', "BAD_REQUEST"),
            ("publish", '["news", 1]', "BAD_REQUEST"),
            ("publish", '{"topic": "n", "data": NaN}', "BAD_REQUEST"),
            ("publish", big, "BAD_REQUEST"),
            ("list", "", "UNKNOWN_REQUEST"),
        ]
        for name, payload, code in calls:
            await self.assertRefused(client, name, payload, code)
        self.assertEqual(signals.named("big"), [])

    async def test_tooManyTopics(self) -> None:
        """
        A connection may have L{pubsub.MAX_TOPICS} topics: one more is
        refused with C{TOO_MANY_TOPICS}, one it has already is fine, and
        after unsubscribing from one another one is accepted.
        """
        client, _ = self.client()
        for n in range(pubsub.MAX_TOPICS):
            await client.request("subscribe", f"t{n}")
        await self.assertRefused(client, "subscribe", "one more", "TOO_MANY_TOPICS")
        await client.request("subscribe", "t0")  # already subscribed: fine
        await client.request("unsubscribe", "t0")
        await client.request("subscribe", "one more")
        [connection] = self.app.connections
        self.assertEqual(len(self.cluster.topicsOf(connection)), pubsub.MAX_TOPICS)

    def test_usage(self) -> None:
        """
        Arguments that name no part, or server options other than one
        C{--listen} and one C{--redis-url} with their values, exit with
        status 2 and the usage; a bad Redis URL with status 2 and why.
        """
        stderr = StringIO()
        self.patch(sys, "stderr", stderr)
        for argv in [
            ("serve",),
            ("subscribe",),
            ("publish", "news"),
            ("--listen",),
            ("--listen", "tcp:1", "--listen", "tcp:2"),
            ("--port", "8080"),
        ]:
            with self.assertRaises(SystemExit) as raised:
                pubsub.main(reactor, *argv)
            self.assertEqual(raised.exception.code, 2)
            self.assertIn("usage:", stderr.getvalue())
            stderr.truncate(0)
        with self.assertRaises(SystemExit) as raised:
            pubsub.main(reactor, "--redis-url", "http://localhost/")
        self.assertEqual(raised.exception.code, 2)
        self.assertIn("--redis-url: not a redis:// URL", stderr.getvalue())

    async def test_acrossProcesses(self) -> None:
        """
        Two servers run as C{python -m examples.pubsub --listen ...
        --redis-url URL} share a real Redis: a subscriber of server 1 gets
        what C{publishOnce} (the C{publish} command) publishes on server 2,
        which prints that it published; a subscriber of another topic gets
        nothing of it.
        """
        redis = await startRedis(self)
        argv = ["-m", "examples.pubsub", "--listen", "tcp:0:interface=127.0.0.1"]
        argv += ["--redis-url", redis.url]
        one, _, onePort = await startServer(self, argv)
        two, _, twoPort = await startServer(self, argv)
        # What server 2 publishes reaches server 1 once it is subscribed.
        await one.match(b"subscribed to " + pubsub.CLUSTER_PREFIX.encode())
        await two.match(b"subscribed to " + pubsub.CLUSTER_PREFIX.encode())
        (alice, aliceSignals), (bob, bobSignals) = (
            self.client(onePort),
            self.client(twoPort),
        )
        await alice.request("subscribe", "news")
        await bob.request("subscribe", "sport")
        aliceGot, bobGot = aliceSignals.next("signal"), bobSignals.next("signal")
        stdout = StringIO()
        self.patch(sys, "stdout", stdout)
        url = f"ws://127.0.0.1:{twoPort}/"
        await pubsub.publishOnce(reactor, "news", '{"headline": "grüß"}', url)
        self.assertEqual(stdout.getvalue(), "published to news\n")
        signal = await aliceGot
        self.assertEqual((signal.name, signal.text()), ("news", '{"headline":"grüß"}'))
        await self.publish(alice, "sport", 2)
        signal = await bobGot
        self.assertEqual((signal.name, signal.text()), ("sport", "2"))
        self.assertEqual(aliceSignals.named("sport"), [])

    async def test_deliveryFailed(self) -> None:
        """
        When the other servers cannot be reached (here Redis refuses to
        relay), this server's subscribers still get a publication and the
        publisher gets C{DELIVERY_FAILED}.
        """
        redis = await startRedis(self)
        admin = await adminConnection(self, redis)
        cluster = pubsub.makeCluster(redis.url)
        assert isinstance(cluster, RedisCluster)
        service = pubsub.makeService("tcp:0:interface=127.0.0.1", cluster)
        service.startService()
        self.addCleanup(service.stopService)
        port = portNumber(await listeningPort(service))
        await cluster.whenSubscribed()
        client, signals = self.client(port)
        await client.request("subscribe", "news")
        # Redis answers the cluster's PUBLISH with an error from now on.
        await admin.execute_command("ACL", "SETUSER", "default", "-publish")
        got = signals.next("signal")
        document = json.dumps({"topic": "news", "data": "here only"})
        await self.assertRefused(client, "publish", document, "DELIVERY_FAILED")
        signal = await got
        self.assertEqual((signal.name, signal.text()), ("news", '"here only"'))


class ChatroomExampleTests(TestCase):
    """
    C{examples/chatroom.py}: the chat demo as a service of its own.
    """

    timeout = 30

    async def test_chat(self) -> None:
        """
        Two Python clients sign in, one speaks, both hear it and C{who}
        lists both; the page is served at C{/} once it exists.
        """
        service = chatroom.makeService(
            "tcp:0:interface=127.0.0.1", MemorySessionManager()
        )
        service.startService()
        self.addCleanup(service.stopService)
        port = portNumber(await listeningPort(service))
        (ada, adaHooks), (bob, bobHooks) = [
            self.client(port, path) for path in ["/chat", "/"]
        ]
        key = (await ada.request("login", "ada")).text()
        assert ada.session is not None
        self.assertEqual(ada.session.key, key)
        await bob.request("login", "bob")
        await bob.request("say", "hi ada")
        self.assertEqual(json.loads((await ada.request("who")).text()), ["ada", "bob"])
        for hooks in [adaHooks, bobHooks]:
            [message] = hooks.named("message")
            self.assertEqual(json.loads(message)["text"], "hi ada")
            self.assertEqual(json.loads(hooks.named("presence")[-1]), ["ada", "bob"])
        page = await rawHTTP(port, b"GET / HTTP/1.0\r\n\r\n")
        status = page.split(b"\r\n")[0]
        if STATIC.child("chat.html").exists():
            self.assertIn(b" 200 ", status)
        else:
            self.assertIn(b" 404 ", status)
        await ada.close()
        await bob.close()

    def client(self, port: int, path: str) -> tuple[WebWireClient, _Signals]:
        hooks = _Signals()
        client = makeClient(self, port, path, hooks)
        return client, hooks


def freePorts(count: int) -> list[int]:
    """
    C{count} distinct loopback TCP ports that were free a moment ago (bound
    together, as L{tests.redisserver.freePort} binds one, so that no two are
    the same).
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


_STARTED = re.compile(r"^cluster +\| started (\w+) \(pid (\d+)\)", re.MULTILINE)
_READY = re.compile(r"^cluster +\| ready:", re.MULTILINE)


class _ClusterRunner(ProcessProtocol):
    """
    Watches C{python -m examples.cluster}: C{pids} maps each child's name to
    its pid as the runner announces them, C{ready} fires at the runner's
    ready line (or fails if it exits first), C{ended} with why it exited.
    """

    def __init__(self) -> None:
        self.output = b""
        self.pids: dict[str, int] = {}
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[BaseException | None] = Deferred()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def outReceived(self, data: bytes) -> None:
        self.output += data
        text = self.text
        self.pids.update((n, int(pid)) for n, pid in _STARTED.findall(text))
        if not self.ready.called and _READY.search(text):
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError("the runner exited:\n" + self.text))
        self.ended.callback(reason.value)


def _isClusterChild(pid: int) -> bool:
    """Whether C{pid} is (still) a redis-server or node of the example."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"redis-server" in cmdline or b"examples.cluster" in cmdline


async def _nextSignal(hooks: _Signals, name: str) -> str:
    """The text of the next signal called C{name} that C{hooks} records."""
    while True:
        received = await hooks.next("signal")
        if received.name == name:
            text: str = received.text()
            return text


class ClusterExampleTests(TestCase):
    """
    C{python -m examples.cluster}: Redis and two chat nodes from one
    command, run as users run it.
    """

    timeout = 60

    async def startCluster(
        self,
    ) -> tuple[_ClusterRunner, IProcessTransport, list[int], int]:
        """
        Run the example on free ports until it says it is ready; it (and
        whatever child it leaves behind) is killed at cleanup.

        :returns: The runner's protocol and transport, the nodes' ports and
            Redis's port.
        """
        if clusterRunner.findRedisServer() is None:
            reason = "redis-server is not installed"
            if os.environ.get("WEBWIRE_REQUIRE_REDIS"):
                self.fail(reason + " (WEBWIRE_REQUIRE_REDIS is set)")
            raise SkipTest(reason)
        port1, port2, redisPort = freePorts(3)
        argv = [sys.executable, "-m", "examples.cluster", "--ports"]
        argv += [f"{port1},{port2}", "--redis-port", str(redisPort)]
        process = _ClusterRunner()
        transport = reactor.spawnProcess(
            process,
            sys.executable,
            argv,
            env=dict(os.environ, PYTHONPATH=ROOT.path),
            path=ROOT.path,
        )

        async def kill() -> None:
            if not process.ended.called:
                transport.signalProcess("KILL")
                await process.ended
            # The children run in process groups of their own: a runner
            # killed above leaves them behind.
            for pid in process.pids.values():
                if _isClusterChild(pid):
                    os.kill(pid, signal.SIGKILL)

        self.addCleanup(kill)
        await process.ready
        self.assertEqual(set(process.pids), {"redis", "node1", "node2"})
        return process, transport, [port1, port2], redisPort

    def client(self, port: int) -> tuple[WebWireClient, _Signals]:
        hooks = _Signals()
        return makeClient(self, port, "/chat", hooks), hooks

    async def assertAllGone(self, process: _ClusterRunner, ports: list[int]) -> None:
        """No child process is left, and nothing listens on C{ports}."""
        for name, pid in process.pids.items():
            with self.assertRaises(ProcessLookupError, msg=name):
                os.kill(pid, 0)
        for port in ports:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
            try:
                connected = await connectProtocol(endpoint, Protocol())
            except ConnectionRefusedError:
                continue
            assert connected.transport is not None
            connected.transport.loseConnection()
            self.fail(f"port {port} still accepts connections")

    async def test_chatAcrossNodes(self) -> None:
        """
        A message said on one node reaches the other node's client, both
        ways; C{who} lists each node's own users; a session made on node 1
        and restored on node 2 is signed out there, and that signs out the
        node-1 client too and destroys it. SIGTERM stops the nodes (they
        close their connections), then Redis, and the runner exits with
        status 0, leaving no process and no listening port behind.
        """
        process, transport, (port1, port2), redisPort = await self.startCluster()
        (ada, adaHooks), (bob, bobHooks) = self.client(port1), self.client(port2)
        await ada.request("login", "ada")
        await bob.request("login", "bob")
        for speaker, listener, text in [
            (ada, bobHooks, "hi bob"),
            (bob, adaHooks, "hi ada"),
        ]:
            heard = Deferred.fromCoroutine(_nextSignal(listener, "message"))
            await speaker.request("say", text)
            self.assertEqual(json.loads(await heard)["text"], text)
        self.assertEqual(json.loads((await ada.request("who")).text()), ["ada"])
        self.assertEqual(json.loads((await bob.request("who")).text()), ["bob"])

        assert ada.session is not None
        key = ada.session.key
        carol, carolHooks = self.client(port2)
        self.assertEqual((await carol.restoreSession(key)).info, {"user": "ada"})
        signedOut = adaHooks.next("sessionClosed")
        await carol.request("logout")
        await signedOut
        self.assertIsNone(ada.session)
        self.assertIsNone(carol.session)
        dave, daveHooks = self.client(port1)
        await self.assertFailure(dave.restoreSession(key), SessionNotFound)

        everyHooks = [adaHooks, bobHooks, carolHooks, daveHooks]
        disconnected = [hooks.next("disconnected") for hooks in everyHooks]
        transport.signalProcess("TERM")
        ended = await process.ended
        output = process.text
        self.assertIsInstance(ended, ProcessDone, output)
        await gatherResults(disconnected)
        redisExited = output.index("cluster | redis exited (exit status 0)")
        for node in ["node1", "node2"]:
            nodeExited = output.index(f"cluster | {node} exited (exit status 0)")
            self.assertLess(nodeExited, redisExited)
        self.assertIn("cluster | stopped", output)
        await self.assertAllGone(process, [port1, port2, redisPort])

    async def test_nodeDies(self) -> None:
        """
        A node that dies (SIGKILL) makes the runner stop the other node and
        Redis, and exit with status 1.
        """
        process, transport, ports, redisPort = await self.startCluster()
        os.kill(process.pids["node2"], signal.SIGKILL)
        ended = await process.ended
        output = process.text
        assert isinstance(ended, ProcessTerminated), output
        self.assertEqual(ended.exitCode, 1, output)
        self.assertIn("node2 exited unexpectedly (killed by signal 9)", output)
        self.assertIn("cluster | node1 exited (exit status 0)", output)
        self.assertIn("cluster | redis exited (exit status 0)", output)
        await self.assertAllGone(process, [*ports, redisPort])

    def test_noRedisServer(self) -> None:
        """
        Without redis-server (on C{PATH} or at the usual place) the runner
        says so and exits with status 1, starting nothing.
        """
        self.patch(clusterRunner, "REDIS_SERVER", self.mktemp())
        self.patch(os, "environ", dict(os.environ, PATH=self.mktemp()))
        stderr = StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as raised:
            clusterMain.main(reactor)
        self.assertEqual(raised.exception.code, 1)
        self.assertIn("redis-server was not found", stderr.getvalue())

    def test_usage(self) -> None:
        """Bad ports are refused with status 2 and the usage."""
        stderr = StringIO()
        self.patch(sys, "stderr", stderr)
        for ports in ["8080,8080", "8080,x", "0", "70000"]:
            with self.assertRaises(SystemExit) as raised:
                clusterMain.main(reactor, "--ports", ports)
            self.assertEqual(raised.exception.code, 2)
        self.assertIn("usage:", stderr.getvalue())
