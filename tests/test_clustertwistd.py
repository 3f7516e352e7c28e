"""
C{twistd webwire --cluster} as users run it: two real server processes that
share one real Redis act as one chat server (the chat demo at C{/chat}).
"""

from __future__ import annotations

import re
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IProcessTransport
from twisted.trial.unittest import TestCase

from tests.helpers import failsWithCode, makeClient
from tests.redisserver import RedisServer, startRedis
from tests.test_demo import ChatHooks
from tests.test_redis import adminConnection
from tests.test_twistd import LISTEN, TWISTD, ServerProcess, startServer
from webwire.client import WebWireClient
from webwire.errors import MaxSessionConnections, SessionNotFound

CHAT_PREFIX = "webwire:chat:cluster:"
"""The prefix of the chat demo's cluster (keys and channel)."""

SUBSCRIBED = "cluster node {node} subscribed to " + CHAT_PREFIX + "events"
LOST = "cluster node {node} lost its Redis subscription"
UNREACHABLE = "cluster node {node} cannot reach Redis"
BACK = "cluster node {node}: Redis is back"

_FIRST_SUBSCRIBED = re.compile(
    rb"cluster node (\w+) subscribed to "
    + re.escape(CHAT_PREFIX.encode())
    + rb"events$",
    re.MULTILINE,
)

EXPIRED = "__keyevent@0__:expired"
"""The channel of Redis's expiry events of database 0."""


class Node:
    """
    A C{twistd webwire --cluster} process whose chat cluster node is
    subscribed.

    :ivar nodeId: Its chat cluster's node id.
    """

    def __init__(
        self,
        process: ServerProcess,
        transport: IProcessTransport,
        port: int,
        nodeId: str,
    ) -> None:
        self.process = process
        self.transport = transport
        self.port = port
        self.nodeId = nodeId

    def logged(self, text: str, n: int = 1) -> Deferred[re.Match[bytes]]:
        """
        Fire once the process logged C{text}, its field C{node} filled in
        with L{nodeId}, C{n} times.
        """
        line = text.format(node=self.nodeId).encode("utf-8")
        return self.process.match(line, n)


async def startNode(testCase: TestCase, redis: RedisServer, *more: str) -> Node:
    """
    Start C{twistd -n webwire} with Redis sessions and C{--cluster} (and
    C{more} options) on C{redis}; return once its chat cluster is
    subscribed. It is killed in C{testCase}'s cleanup.
    """
    argv = [*TWISTD, "webwire", *LISTEN, "--sessions", "redis"]
    argv += ["--redis-url", redis.url, "--cluster", "--cluster-heartbeat", "0.5"]
    process, transport, port = await startServer(testCase, [*argv, *more])
    subscribed = await process.match(_FIRST_SUBSCRIBED)
    return Node(process, transport, port, subscribed.group(1).decode("ascii"))


class _ExpiredKeys(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.expired(message)


class ExpiryWatcher(txredisapi.SubscriberFactory):  # type: ignore[misc]
    """
    A connection subscribed to Redis's expiry events (the test's Redis must
    have C{notify-keyspace-events} set to include C{Ex}).
    """

    protocol = _ExpiredKeys

    def __init__(self) -> None:
        super().__init__()
        self.reconnect = False
        self._waiting: dict[str, Deferred[None]] = {}

    def expired(self, key: str) -> None:
        waiter = self._waiting.pop(key, None)
        if waiter is not None:
            waiter.callback(None)

    def whenExpired(self, key: str) -> Deferred[None]:
        """Fire when Redis expires C{key} (from now on)."""
        waiter: Deferred[None] = Deferred()
        self._waiting[key] = waiter
        return waiter


async def watchExpiry(testCase: TestCase, redis: RedisServer) -> ExpiryWatcher:
    """
    Turn on C{redis}'s expiry events and subscribe to them; disconnected in
    C{testCase}'s cleanup.
    """
    admin = await adminConnection(testCase, redis)
    await admin.execute_command("CONFIG", "SET", "notify-keyspace-events", "Ex")
    watcher = ExpiryWatcher()
    watcher.startConnecting(TCP4ClientEndpoint(reactor, "127.0.0.1", redis.port))
    handler = await watcher.deferred
    testCase.addCleanup(watcher.disconnect)
    await handler.subscribe(EXPIRED)
    return watcher


class ClusterTwistdTests(TestCase):
    """
    Two C{twistd webwire --cluster} processes, A and B, on one redis-server:
    sessions, messages and session closes of the chat demo cross processes.
    """

    timeout = 60

    async def startCluster(self, *more: str) -> tuple[RedisServer, Node, Node]:
        """Start Redis, then A and B (side by side) with C{more} options."""
        redis = await startRedis(self)
        starting = [Deferred.fromCoroutine(startNode(self, redis, *more)) for _ in "ab"]
        a, b = await gatherResults(starting)
        return redis, a, b

    def chatClient(self, node: Node) -> tuple[WebWireClient, ChatHooks]:
        """A client of C{node}'s chat (it connects on first use)."""
        hooks = ChatHooks()
        return makeClient(self, node.port, "/chat", hooks), hooks

    async def login(self, node: Node, name: str) -> tuple[WebWireClient, ChatHooks]:
        """A client of C{node}'s chat signed in as C{name}."""
        client, hooks = self.chatClient(node)
        await client.request("login", name)
        return client, hooks

    async def connected(self, node: Node) -> tuple[WebWireClient, ChatHooks]:
        """A client of C{node}'s chat, connected, not signed in."""
        client, hooks = self.chatClient(node)
        await client.connect()
        return client, hooks

    async def test_sessionRestoredElsewhere(self) -> None:
        """
        A session created on A is restored on B, with its info; B then
        counts its user as online there.
        """
        redis, a, b = await self.startCluster()
        ada, _ = await self.login(a, "ada")
        assert ada.session is not None
        onB, _ = self.chatClient(b)
        session = await onB.restoreSession(ada.session.key)
        self.assertEqual(session.key, ada.session.key)
        self.assertEqual(session.info, {"user": "ada"})
        self.assertEqual((await onB.request("who")).text(), '["ada"]')

    async def test_messageReachesOtherProcess(self) -> None:
        """
        C{say} on A sends signal C{message} to the chat connections of B,
        signed in or not, and of A.
        """
        redis, a, b = await self.startCluster()
        ada, adaHooks = await self.login(a, "ada")
        bob, bobHooks = await self.login(b, "bob")
        guest, guestHooks = await self.connected(b)
        reply = await ada.request("say", "hello, B")
        self.assertEqual(reply.payload, b"")
        for hooks in (adaHooks, bobHooks, guestHooks):
            [message] = await hooks.received("message", 1)
            self.assertEqual(
                (message["user"], message["text"]), ("ada", "hello, B"), hooks
            )

    async def test_logoutElsewhere(self) -> None:
        """
        C{logout} on B closes the session on A too (A's client is told) and
        the session can no longer be restored on A or B.
        """
        redis, a, b = await self.startCluster()
        ada, adaHooks = await self.login(a, "ada")
        assert ada.session is not None
        key = ada.session.key
        onB, onBHooks = self.chatClient(b)
        await onB.restoreSession(key)
        closedOnA = adaHooks.next("sessionClosed")
        await onB.request("logout")
        self.assertIsNone(onB.session)
        await closedOnA
        self.assertIsNone(ada.session)
        self.assertEqual(onBHooks.kinds().count("sessionClosed"), 1)
        for node in (a, b):
            client, _ = self.chatClient(node)
            with self.assertRaises(SessionNotFound):
                await client.restoreSession(key)

    async def test_redisRestart(self) -> None:
        """
        While Redis is down, C{say} on A reaches A's clients only and is
        answered with C{DELIVERY_FAILED}; once Redis is back (empty), both
        processes subscribe again and messages cross again.
        """
        redis, a, b = await self.startCluster()
        ada, adaHooks = await self.login(a, "ada")
        guest, guestHooks = await self.connected(b)
        await ada.request("say", "before")
        await guestHooks.received("message", 1)
        lost = a.logged(LOST)
        await redis.stop()
        await lost
        # Answered once the publish times out (the cluster's 5 s): the
        # connection to Redis is not back while Redis is down.
        await failsWithCode(self, ada.request("say", "during"), "DELIVERY_FAILED")
        self.assertEqual(
            [m["text"] for m in await adaHooks.received("message", 2)],
            ["before", "during"],
        )
        # A heartbeat failed too: "Redis is back" follows once A's commands
        # reach Redis again (its connection pool reconnects at its own pace).
        await a.logged(UNREACHABLE)
        await redis.start()
        await gatherResults([a.logged(SUBSCRIBED, 2), b.logged(SUBSCRIBED, 2)])
        await a.logged(BACK)
        await ada.request("say", "after")
        messages = await guestHooks.received("message", 2)
        self.assertEqual([m["text"] for m in messages], ["before", "after"])

    async def test_killedNode(self) -> None:
        """
        With one connection per session, a session held on A is refused on
        B; once A is killed, B keeps serving, and when A's registration
        expires in Redis the session can be restored on B.
        """
        redis, a, b = await self.startCluster("--max-session-connections", "1")
        expiry = await watchExpiry(self, redis)
        ada, adaHooks = await self.login(a, "ada")
        assert ada.session is not None
        key = ada.session.key
        onB, _ = self.chatClient(b)
        with self.assertRaises(MaxSessionConnections):
            await onB.restoreSession(key)
        expired = expiry.whenExpired(f"{CHAT_PREFIX}node:{a.nodeId}")
        disconnected = adaHooks.next("disconnected")
        a.transport.signalProcess("KILL")
        await disconnected
        bob, bobHooks = await self.login(b, "bob")
        await bob.request("say", "still here")
        [message] = await bobHooks.received("message", 1)
        self.assertEqual((message["user"], message["text"]), ("bob", "still here"))
        await expired
        session = await onB.restoreSession(key)
        self.assertEqual(session.info, {"user": "ada"})
