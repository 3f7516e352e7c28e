"""
The examples run and do what their docstrings say, over loopback.
"""

from __future__ import annotations

import json
import re
import sys
from io import StringIO

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from examples import chatroom, echo, pubsub, quickstart
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
from tests.test_client import RecordingHooks
from tests.test_twistd import ROOT, TWISTD, startServer
from webwire import wire
from webwire.client import ClientOptions, WebWireClient
from webwire.conformance import ConformanceApplication
from webwire.errors import RequestError
from webwire.interfaces import ISessionManager
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


class PubSubExampleTests(TestCase):
    """
    C{examples/pubsub.py}: topics, subscribers and clean-up.
    """

    timeout = 30

    def setUp(self) -> None:
        self.app = pubsub.PubSub()
        self.server = LoopbackServer(self, self.app, ServerOptions(sessions=False))

    def client(self) -> tuple[WebWireClient, _Signals]:
        hooks = _Signals()
        client = makeClient(self, self.server.portNumber, "/", hooks)
        return client, hooks

    async def publish(self, client: WebWireClient, topic: str, data: object) -> int:
        document = json.dumps({"topic": topic, "data": data})
        return int((await client.request("publish", document)).text())

    async def test_subscribers(self) -> None:
        """
        A publication reaches the topic's subscribers (the publisher too,
        if subscribed) as a signal named after the topic, and nobody else;
        after unsubscribing it no longer does.
        """
        (a, aSignals), (b, bSignals), (c, cSignals) = [self.client() for _ in "abc"]
        for client, topic in [(a, "news"), (b, "news"), (c, "sport")]:
            reply = await client.request("subscribe", topic)
            self.assertEqual(reply.payload, b"")
        await a.request("subscribe", "news")  # twice is harmless
        self.assertEqual(await self.publish(c, "news", {"headline": "grüß"}), 2)
        self.assertEqual(await self.publish(a, "sport", [1, 2]), 1)
        # Each client's reply comes after the signals it was sent.
        for client in [a, b, c]:
            await client.request("unsubscribe", "nothing")
        self.assertEqual(aSignals.named("news"), ['{"headline":"grüß"}'])
        self.assertEqual(bSignals.named("news"), ['{"headline":"grüß"}'])
        self.assertEqual(cSignals.named("news"), [])
        self.assertEqual(cSignals.named("sport"), ["[1,2]"])
        self.assertEqual(aSignals.named("sport") + bSignals.named("sport"), [])
        await b.request("unsubscribe", "news")
        self.assertEqual(await self.publish(a, "news", "again"), 1)
        await b.request("unsubscribe", "news")
        self.assertEqual(aSignals.named("news")[-1], '"again"')
        self.assertEqual(len(bSignals.named("news")), 1)
        self.assertEqual(await self.publish(b, "empty", None), 0)

    async def test_disconnectCleansUp(self) -> None:
        """
        A connection that goes away is unsubscribed from everything: the
        application's state no longer holds it.
        """
        (a, _), (b, _) = self.client(), self.client()
        for topic in ["news", "sport"]:
            await a.request("subscribe", topic)
        await b.request("subscribe", "news")
        [aConnection] = [
            c for c, topics in self.app.topics.items() if topics == {"news", "sport"}
        ]
        await a.close()
        for _ in range(200):
            if aConnection not in self.app.topics:
                break
            await self.server.tick()
        self.assertEqual(self.app.subscribers, {"news": set(self.app.topics)})
        self.assertNotIn(aConnection, self.app.topics)
        self.assertEqual(len(self.app.topics), 1)
        self.assertEqual(await self.publish(b, "news", 1), 1)
        self.assertEqual(await self.publish(b, "sport", 1), 0)
        await b.close()
        for _ in range(200):
            if not self.app.topics:
                break
            await self.server.tick()
        self.assertEqual((self.app.subscribers, self.app.topics), ({}, {}))

    async def test_badRequests(self) -> None:
        """
        Bad topics and publications are refused with C{BAD_REQUEST}, more
        than L{pubsub.MAX_TOPICS} topics with C{TOO_MANY_TOPICS}, other
        requests with C{UNKNOWN_REQUEST}.
        """
        client, _ = self.client()
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
            ("list", "", "UNKNOWN_REQUEST"),
        ]
        for name, payload, code in calls:
            try:
                await client.request(name, payload or None)
            except RequestError as e:
                self.assertEqual(e.code, code, (name, payload))
            else:
                self.fail(f"{name} {payload!r} succeeded")
        for n in range(pubsub.MAX_TOPICS):
            await client.request("subscribe", f"t{n}")
        try:
            await client.request("subscribe", "one more")
        except RequestError as e:
            self.assertEqual(e.code, "TOO_MANY_TOPICS")
        else:
            self.fail("subscribed to too many topics")
        await client.request("subscribe", "t0")  # already subscribed: fine


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
