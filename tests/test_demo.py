"""
L{webwire.demo}: the chat application with Python clients over loopback,
and the demo site C{twistd webwire} serves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.helpers import LoopbackServer, failsWithCode, makeClient, portNumber, rawHTTP
from tests.test_client import RecordingHooks
from webwire import wire
from webwire.client import WebWireClient
from webwire.cluster import LocalCluster
from webwire.conformance import ConformanceApplication
from webwire.demo import ChatApplication, makeDemoRoot
from webwire.errors import RequestError
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory
from webwire.sessions import MemorySessionManager
from webwire.web import STATIC, clientScript, makeSite

NOW = 1767323045.25
NOW_TEXT = "2026-01-02T03:04:05.25Z"


class ChatHooks(RecordingHooks):
    """Recording hooks that can also wait for the n-th signal of a name."""

    def __init__(self) -> None:
        super().__init__()
        self._counted: list[tuple[str, int, Deferred[list[Any]]]] = []

    def signals(self, name: str) -> list[Any]:
        """The JSON documents of the signals named C{name}, in order."""
        return [
            json.loads(value.text())
            for kind, value in self.events
            if kind == "signal" and value.name == name
        ]

    def received(self, name: str, count: int) -> Deferred[list[Any]]:
        """Fire with the documents of signal C{name} once C{count} arrived."""
        d: Deferred[list[Any]] = Deferred()
        self._counted.append((name, count, d))
        self._wake()
        return d

    def onSignal(self, client: WebWireClient, signal: wire.Signal) -> None:
        super().onSignal(client, signal)
        self._wake()

    def _wake(self) -> None:
        waiting, self._counted = self._counted, []
        for name, count, d in waiting:
            documents = self.signals(name)
            if len(documents) >= count:
                d.callback(documents)
            else:
                self._counted.append((name, count, d))


async def until(server: LoopbackServer, condition: Callable[[], bool]) -> None:
    """Let the server run (ping round trips) until C{condition} holds."""
    for _ in range(200):
        if condition():
            return
        await server.tick()
    raise AssertionError("condition never held")


class ChatTestCase(TestCase):
    """A chat server on loopback whose clock stands at L{NOW}."""

    timeout = 30

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.app = ChatApplication(self.clock)
        self.server = LoopbackServer(self, self.app)

    def connect(self, path: str = "/") -> tuple[WebWireClient, ChatHooks]:
        """A client of the chat server (it connects on first use)."""
        hooks = ChatHooks()
        client = makeClient(self, self.server.portNumber, path, hooks)
        return client, hooks

    async def login(self, name: str) -> tuple[WebWireClient, ChatHooks]:
        """A client signed in as C{name}."""
        client, hooks = self.connect()
        await client.request("login", name)
        return client, hooks

    async def close(self, client: WebWireClient) -> None:
        """Close C{client} and wait until the application saw it go."""
        # The server learns of the close after the client does (it reads
        # until the client's end closes): wait for that very connection.
        assert client._protocol is not None
        port = client._protocol.transport.getHost().port  # type: ignore[union-attr]
        [gone] = [c for c in self.app.connections if c.peer.port == port]
        await client.close()
        await until(self.server, lambda: gone not in self.app.connections)


class ChatTests(ChatTestCase):
    """
    L{ChatApplication}: login, say, who, logout and presence.
    """

    async def test_round(self) -> None:
        """
        Login replies with the new session's key (info C{{"user": name}}),
        C{say} replies empty and sends C{message}, C{who} lists the names
        online, C{logout} closes the session; C{presence} follows every
        change.
        """
        ada, adaHooks = self.connect()
        key = await ada.request("login", "ada")
        self.assertEqual(key.encoding, wire.Encoding.UTF8)
        assert ada.session is not None
        self.assertEqual(key.text(), ada.session.key)
        self.assertEqual(ada.session.info, {"user": "ada"})
        self.assertEqual(adaHooks.signals("presence"), [["ada"]])
        bob, bobHooks = await self.login("bob")
        self.assertEqual(bobHooks.signals("presence"), [["ada", "bob"]])
        self.assertEqual(
            await adaHooks.received("presence", 2), [["ada"], ["ada", "bob"]]
        )
        said = await ada.request("say", "hello, bob")
        self.assertEqual((said.payload, said.encoding), (b"", wire.Encoding.BINARY))
        message = {"user": "ada", "text": "hello, bob", "time": NOW_TEXT}
        self.assertEqual(adaHooks.signals("message"), [message])
        self.assertEqual(await bobHooks.received("message", 1), [message])
        who = await bob.request("who")
        self.assertEqual(who.encoding, wire.Encoding.UTF8)
        self.assertEqual(json.loads(who.text()), ["ada", "bob"])
        out = await ada.request("logout")
        self.assertEqual((out.payload, out.encoding), (b"", wire.Encoding.BINARY))
        self.assertIsNone(ada.session)
        self.assertIn("sessionClosed", adaHooks.kinds())
        self.assertEqual(adaHooks.signals("presence")[-1], ["bob"])
        self.assertEqual((await bobHooks.received("presence", 2))[-1], ["bob"])
        self.assertEqual(json.loads((await bob.request("who")).text()), ["bob"])
        await failsWithCode(self, ada.request("say", "still here?"), "NOT_SIGNED_IN")

    async def test_messageReachesEveryone(self) -> None:
        """
        C{message} goes to every open connection: the sender, other users
        and connections that did not sign in; its time is the clock's.
        """
        ada, adaHooks = await self.login("ada")
        bob, bobHooks = await self.login("bob")
        watcher, watcherHooks = self.connect()
        await watcher.connect()
        self.clock.advance(1.5)
        await bob.request("say", "hi all")
        message = {"user": "bob", "text": "hi all", "time": "2026-01-02T03:04:06.75Z"}
        for hooks in [adaHooks, bobHooks, watcherHooks]:
            self.assertEqual(await hooks.received("message", 1), [message])

    async def test_presenceOnLoginAndDisconnect(self) -> None:
        """
        Everyone gets C{presence} when a user signs in, and when the last
        connection of a user goes away, but not while the user still has
        another connection.
        """
        watcher, watcherHooks = self.connect()
        await watcher.connect()
        ada, adaHooks = await self.login("ada")
        self.assertEqual(await watcherHooks.received("presence", 1), [["ada"]])
        assert ada.session is not None
        second, secondHooks = self.connect()
        await second.restoreSession(ada.session.key)
        await self.close(ada)
        # The disconnect was handled; a reply to the watcher comes after
        # anything it was sent.
        self.assertEqual(json.loads((await watcher.request("who")).text()), ["ada"])
        self.assertEqual(watcherHooks.signals("presence"), [["ada"]])
        await self.close(second)
        self.assertEqual(await watcherHooks.received("presence", 2), [["ada"], []])
        self.assertEqual(self.app.online(), [])

    async def test_presenceOnWhoAfterRestore(self) -> None:
        """
        A session restored on a new connection is not announced until that
        connection asks C{who}; then everyone gets C{presence}. Asking again
        changes nothing.
        """
        watcher, watcherHooks = self.connect()
        await watcher.connect()
        ada, _ = await self.login("ada")
        assert ada.session is not None
        key = ada.session.key
        await self.close(ada)
        self.assertEqual(await watcherHooks.received("presence", 2), [["ada"], []])
        back, backHooks = self.connect()
        restored = await back.restoreSession(key)
        self.assertEqual(restored.info, {"user": "ada"})
        self.assertEqual(watcherHooks.signals("presence"), [["ada"], []])
        who = await back.request("who")
        self.assertEqual(json.loads(who.text()), ["ada"])
        self.assertEqual(backHooks.signals("presence"), [["ada"]])
        self.assertEqual(
            await watcherHooks.received("presence", 3), [["ada"], [], ["ada"]]
        )
        await back.request("who")
        await back.request("say", "back again")
        self.assertEqual(
            await watcherHooks.received("message", 1),
            [{"user": "ada", "text": "back again", "time": NOW_TEXT}],
        )
        self.assertEqual(len(watcherHooks.signals("presence")), 3)
        self.assertEqual(backHooks.signals("presence"), [["ada"]])

    async def test_sameNameTwice(self) -> None:
        """
        Two sessions may carry the same name: it is listed once, and stays
        online until both are gone.
        """
        first, firstHooks = await self.login("ada")
        second, _ = await self.login("ada")
        self.assertEqual(json.loads((await first.request("who")).text()), ["ada"])
        await second.request("logout")
        await first.request("say", "sync")
        self.assertEqual(firstHooks.signals("presence"), [["ada"]])

    async def test_utf16(self) -> None:
        """
        Names and messages sent as UTF-16 are converted: the session info,
        C{presence} and C{message} carry the same text; replies are UTF-8.
        """
        name = "Zoë 𝄞"
        client, hooks = self.connect()
        key = await client.request("login", name, wire.Encoding.UTF16)
        self.assertEqual(key.encoding, wire.Encoding.UTF8)
        assert client.session is not None
        self.assertEqual(client.session.info, {"user": name})
        self.assertEqual(hooks.signals("presence"), [[name]])
        await client.request("say", "grüß 𝄞", wire.Encoding.UTF16)
        self.assertEqual(
            hooks.signals("message"),
            [{"user": name, "text": "grüß 𝄞", "time": NOW_TEXT}],
        )
        who = await client.request("who")
        self.assertEqual(json.loads(who.text()), [name])

    async def test_nameLimits(self) -> None:
        """
        Names are 1 to 32 characters (code points, so 32 astral ones are
        fine), surrounding white space removed, without control characters;
        others are refused with C{BAD_REQUEST}.
        """
        client, _ = self.connect()
        for bad in ["", "   ", "a" * 33, "a\x07b", "a\nb", "\x7f", "a\x85b"]:
            await failsWithCode(self, client.request("login", bad), "BAD_REQUEST")
        await failsWithCode(self, client.request("login", b"\xff\xfe"), "BAD_REQUEST")
        self.assertIsNone(client.session)
        longest, _ = await self.login("𝄞" * 32)
        assert longest.session is not None
        self.assertEqual(longest.session.info, {"user": "𝄞" * 32})
        padded, _ = await self.login("  bo b\t")
        assert padded.session is not None
        self.assertEqual(padded.session.info, {"user": "bo b"})

    async def test_loginTwice(self) -> None:
        """A connection that has a session gets C{SESSION_ACTIVE}."""
        client, _ = await self.login("ada")
        await failsWithCode(self, client.request("login", "bob"), "SESSION_ACTIVE")
        assert client.session is not None
        self.assertEqual(client.session.info, {"user": "ada"})

    async def test_sayLimits(self) -> None:
        """
        C{say} needs a session (C{NOT_SIGNED_IN}) and 1 to 1000 characters
        that are not all white space (C{BAD_REQUEST}); a refused message
        reaches nobody.
        """
        anonymous, _ = self.connect()
        await failsWithCode(self, anonymous.request("say", "hello"), "NOT_SIGNED_IN")
        client, hooks = await self.login("ada")
        for bad in ["", " \n ", "x" * 1001, "𝄞" * 1001]:
            await failsWithCode(self, client.request("say", bad), "BAD_REQUEST")
        await failsWithCode(self, client.request("say", b"\xc3"), "BAD_REQUEST")
        self.assertEqual(hooks.signals("message"), [])
        await client.request("say", "𝄞" * 1000)
        [message] = hooks.signals("message")
        self.assertEqual(message["text"], "𝄞" * 1000)

    async def test_logoutSignsOutEverywhere(self) -> None:
        """
        C{logout} closes the session on every connection that holds it:
        another tab of the same session is signed out too, and nobody
        named is left online.
        """
        ada, _ = await self.login("ada")
        assert ada.session is not None
        tab, tabHooks = self.connect()
        await tab.restoreSession(ada.session.key)
        await ada.request("logout")
        await tab.request("who")  # its reply follows the notification
        self.assertIsNone(tab.session)
        self.assertIn(("sessionClosed", None), tabHooks.events)
        self.assertEqual(self.app.online(), [])
        await failsWithCode(self, tab.request("say", "still here?"), "NOT_SIGNED_IN")

    async def test_logoutWithoutSession(self) -> None:
        """
        C{logout} without a session just replies, and nobody is told.
        """
        client, hooks = self.connect()
        out = await client.request("logout")
        self.assertEqual((out.payload, out.encoding), (b"", wire.Encoding.BINARY))
        self.assertEqual(hooks.signals("presence"), [])
        self.assertNotIn("sessionClosed", hooks.kinds())

    async def test_unknownRequest(self) -> None:
        """Other requests get C{UNKNOWN_REQUEST}."""
        client, _ = self.connect()
        await failsWithCode(self, client.request("echo", "hi"), "UNKNOWN_REQUEST")

    async def test_connectionsTracked(self) -> None:
        """
        The application holds the open connections only: a connection that
        went away is forgotten.
        """
        client, _ = await self.login("ada")
        await until(self.server, lambda: len(self.app.connections) == 1)
        [connection] = self.app.connections
        await self.close(client)
        self.assertNotIn(connection, self.app.connections)
        self.assertEqual(self.app.online(), [])


class _PendingCloseCluster(LocalCluster):
    """A cluster whose session closes the test answers."""

    def __init__(self) -> None:
        super().__init__()
        self.closing: list[Deferred[None]] = []

    def closeSession(self, key: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.closing.append(d)
        return d


class ChatLogoutCancelledTests(TestCase):
    timeout = 30

    async def test_cancelledLogoutIsNoFailure(self) -> None:
        """
        A C{logout} cancelled while the cluster closes the session (a
        shutdown's deadline) is cancelled, not answered as a sign-out that
        failed (C{SIGN_OUT_INCOMPLETE}).
        """
        cluster = _PendingCloseCluster()
        app = ChatApplication(Clock())
        server = LoopbackServer(self, app, cluster=cluster)
        client = makeClient(self, server.portNumber, "/", ChatHooks())
        await client.request("login", "ada")
        await until(server, lambda: len(app.connections) == 1)
        (connection,) = app.connections
        loggingOut = Deferred.fromCoroutine(app._logout(connection))
        self.assertEqual(len(cluster.closing), 1)
        loggingOut.cancel()
        self.failureResultOf(loggingOut, CancelledError)


class ChatWithoutSessionsTests(TestCase):
    """
    L{ChatApplication} on a server without sessions.
    """

    timeout = 30

    async def test_sessionsUnavailable(self) -> None:
        """C{login} fails with C{SESSIONS_UNAVAILABLE}."""
        server = LoopbackServer(
            self, ChatApplication(Clock()), ServerOptions(sessions=False)
        )
        client = makeClient(self, server.portNumber, "/")
        try:
            await client.request("login", "ada")
        except RequestError as e:
            self.assertEqual(e.code, "SESSIONS_UNAVAILABLE")
        else:
            self.fail("login without sessions succeeded")


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _body(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


class DemoRootTests(TestCase):
    """
    L{makeDemoRoot} in a site on loopback: the chat page and script, the
    browser client, the chat application on C{/chat} and the conformance
    application everywhere else.
    """

    timeout = 30

    def setUp(self) -> None:
        self.conformance = WebWireServerFactory(
            ConformanceApplication(), sessionManager=MemorySessionManager()
        )
        self.chat = WebWireServerFactory(
            ChatApplication(), sessionManager=MemorySessionManager()
        )
        site: Any = makeSite(makeDemoRoot(self.conformance, self.chat))
        self.listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.port = portNumber(self.listening)
        self.addCleanup(self.stop)

    async def stop(self) -> None:
        await self.conformance.shutdown()
        await self.chat.shutdown()
        await maybeDeferred(self.listening.stopListening)

    def client(self, path: str) -> WebWireClient:
        client = makeClient(self, self.port, path)
        return client

    async def get(self, path: str) -> bytes:
        return await rawHTTP(self.port, f"GET {path} HTTP/1.0\r\n\r\n".encode())

    async def test_files(self) -> None:
        """
        C{/} is the chat page, C{/chat.js} its script and C{/webwire.js}
        the browser client, each with its content type; a plain GET on
        C{/chat} is told to upgrade.
        """
        for path, file, contentType in [
            ("/", STATIC.child("chat.html"), b"text/html"),
            ("/chat.js", STATIC.child("chat.js"), b"javascript"),
            ("/webwire.js", clientScript(), b"javascript"),
        ]:
            response = await self.get(path)
            self.assertEqual(_status(response), 200, path)
            self.assertEqual(_body(response), file.getContent())
            headers = response.split(b"\r\n\r\n", 1)[0].lower()
            self.assertIn(b"content-type: ", headers)
            self.assertIn(contentType, headers.split(b"content-type: ")[1])
        self.assertEqual(_status(await self.get("/chat")), 426)
        self.assertEqual(_status(await self.get("/nothing")), 404)

    async def test_chatOnChatPath(self) -> None:
        """A WebWire client on C{/chat} talks to the chat application."""
        client = self.client("/chat")
        self.assertEqual((await client.request("who")).text(), "[]")
        try:
            await client.request("echo", "hi")
        except RequestError as e:
            self.assertEqual(e.code, "UNKNOWN_REQUEST")
        else:
            self.fail("echo reached the conformance application on /chat")

    async def test_conformanceElsewhere(self) -> None:
        """
        On C{/}, C{/chat.js} and any other path, WebWire clients talk to
        the conformance application.
        """
        for path in ["/", "/anything", "/chat.js", "/a/b"]:
            client = self.client(path)
            self.assertEqual((await client.request("echo", path)).text(), path)
            await client.close()
