"""
L{webwire.cluster}: reaching a session's, a topic's or every connection,
on one server (L{LocalCluster}) and across servers sharing a real Redis
(L{RedisCluster}); the cluster messages' format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, TimeoutError, fail, succeed
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    globalLogPublisher,
)
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers import LoopbackServer, RawClientProtocol, captureLogs, ident
from tests.redisserver import freePort, startRedis
from tests.test_redis import adminConnection
from tests.test_sessionsendtoend import loggedIn
from webwire import wire
from webwire.cluster import LocalCluster
from webwire.cluster._envelope import Envelope, pack, unpack
from webwire.cluster.redis import RedisCluster
from webwire.conformance import ConformanceApplication
from webwire.errors import Disconnected, MessageTooLarge
from webwire.interfaces import ICluster, IConnection, IServerCluster
from webwire.options import ServerOptions
from webwire.outage import Unavailable
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.sessions import MemorySessionManager
from webwire.sessions.redis import RedisSessionManager
from webwire.sessions.session import Session

PREFIX = "test:cluster:"


def signal(name: str, text: str) -> bytes:
    """A UTF-8 signal as clients receive it."""
    return wire.encodeSignal(name, text.encode("utf-8"), wire.Encoding.UTF8)


class Inbox:
    """
    What a client receives from the moment the inbox is made on, in order.
    """

    def __init__(self, client: RawClientProtocol) -> None:
        self.client = client
        self.read = len(client.received)

    async def next(self) -> bytes:
        """The next message."""
        self.read += 1
        return (await self.client.receivedCount(self.read))[self.read - 1]


def connectionOf(server: LoopbackServer, index: int) -> IConnection:
    """The server side of its C{index}th open connection, oldest first."""
    connection = server.serverProtocols()[index].connection
    assert connection is not None
    return connection


class EnvelopeTests(TestCase):
    """
    The messages between processes.
    """

    def test_roundTrip(self) -> None:
        """What L{pack} makes, L{unpack} reads back."""
        data = signal("news", "héllo")
        for kind, target in [(b"S", "key"), (b"T", "tópic"), (b"B", ""), (b"C", "k")]:
            message = pack(kind, "node1", target, data)
            self.assertEqual(unpack(message), Envelope(kind, "node1", target, data))

    def test_layout(self) -> None:
        """The layout documented in the module, byte by byte."""
        self.assertEqual(pack(b"T", "n", "ab", b"\x40x"), b"T\x01n\x00\x02ab\x40x")

    def test_malformed(self) -> None:
        """Anything else is refused with C{ValueError}."""
        for message in [
            b"",
            b"S\x01",
            b"X\x01n\x00\x00",
            b"S\x05n\x00\x00",
            b"S\x01n\x00\x09ab",
            b"S\x01\xff\x00\x00",
            b"S\x01n\x00\x01\xff",
        ]:
            self.assertRaises(ValueError, unpack, message)

    def test_packRefuses(self) -> None:
        """Unknown kinds and oversized parts are refused."""
        self.assertRaises(ValueError, pack, b"X", "n", "", b"")
        self.assertRaises(ValueError, pack, b"S", "n" * 256, "", b"")
        self.assertRaises(ValueError, pack, b"S", "n", "t" * 0x10000, b"")


if TYPE_CHECKING:
    _ContractBase = TestCase
else:
    _ContractBase = object


class ClusterContract(_ContractBase):
    """
    What every L{IServerCluster} does for the connections of its own
    server, over loopback: signals to a session, a topic or all, topics,
    session closes and counting. Mix into a (trial) L{TestCase} that
    implements L{makeCluster}; the server is made in C{setUp}, with a
    L{MemorySessionManager}.
    """

    timeout = 30

    async def makeCluster(self) -> IServerCluster:
        """A new cluster, ready to serve (started if it is a service)."""
        raise NotImplementedError()

    async def setUp(self) -> None:  # type: ignore[override]
        self.manager = MemorySessionManager()
        cluster = await self.makeCluster()
        self.server = LoopbackServer(
            self, ConformanceApplication(), sessionManager=self.manager, cluster=cluster
        )
        self.cluster = self.server.factory.cluster

    def test_provides(self) -> None:
        """
        The cluster provides both faces: the application's L{ICluster} and
        the server's L{IServerCluster}; it serves the server it was given to.
        """
        self.assertTrue(verifyObject(ICluster, self.cluster))
        self.assertTrue(verifyObject(IServerCluster, self.cluster))
        self.assertIs(self.cluster.server, self.server.factory)  # type: ignore[attr-defined]

    async def test_connectionSeesCluster(self) -> None:
        """A handler reaches the cluster through its connection."""
        await self.server.connectAccepted()
        self.assertIs(connectionOf(self.server, 0).cluster, self.cluster)

    async def test_broadcast(self) -> None:
        """A broadcast reaches every open connection, once."""
        inboxes = [Inbox(await self.server.connectAccepted()) for _ in range(3)]
        await self.cluster.broadcast("news", "hello")
        for inbox in inboxes:
            self.assertEqual(await inbox.next(), signal("news", "hello"))

    async def test_broadcastEncodings(self) -> None:
        """Name, payload and encoding are taken as L{IConnection.signal} takes them."""
        inbox = Inbox(await self.server.connectAccepted())
        await self.cluster.broadcast("u16", "hé", wire.Encoding.UTF16)
        await self.cluster.broadcast("", b"\x00\x01")
        self.assertEqual(
            await inbox.next(),
            wire.encodeSignal("u16", "hé".encode("utf-16-le"), wire.Encoding.UTF16),
        )
        self.assertEqual(
            await inbox.next(), wire.encodeSignal("", b"\x00\x01", wire.Encoding.BINARY)
        )

    async def test_tooLarge(self) -> None:
        """
        A signal over the message buffer size is refused at once, and
        reaches nobody.
        """
        inbox = Inbox(await self.server.connectAccepted())
        size = ServerOptions().messageBufferSize
        self.assertRaises(MessageTooLarge, self.cluster.broadcast, "big", b"x" * size)
        self.assertRaises(wire.InvalidMessage, self.cluster.broadcast, "bad\x00")
        await self.cluster.broadcast("after", "x")
        self.assertEqual(await inbox.next(), signal("after", "x"))

    async def test_signalSession(self) -> None:
        """
        A session's signal reaches every connection that holds it, and no
        other.
        """
        first = await self.server.connectAccepted()
        session, _ = await loggedIn(first)
        second = await self.server.connectAccepted()
        await second.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        other = await self.server.connectAccepted()
        inboxes = [Inbox(client) for client in (first, second, other)]
        await self.cluster.signalSession(session.key, "private", "psst")
        await self.cluster.signalSession("no-such-key", "private", "lost")
        await self.cluster.broadcast("public", "all")
        for inbox in inboxes[:2]:
            self.assertEqual(await inbox.next(), signal("private", "psst"))
        for inbox in inboxes:
            self.assertEqual(await inbox.next(), signal("public", "all"))

    async def test_topics(self) -> None:
        """
        What is published to a topic reaches its subscribers; unsubscribing
        and closing end a subscription.
        """
        clients = [await self.server.connectAccepted() for _ in range(3)]
        inboxes = [Inbox(client) for client in clients]
        connections = [connectionOf(self.server, i) for i in range(3)]
        for connection in connections[:2]:
            self.cluster.subscribe(connection, "room")
            self.cluster.subscribe(connection, "room")  # again: no change
        self.cluster.subscribe(connections[0], "other")
        self.assertEqual(self.cluster.topicsOf(connections[0]), {"room", "other"})
        self.assertEqual(set(self.cluster.subscribers("room")), set(connections[:2]))
        await self.cluster.publish("room", "said", "one")
        self.cluster.unsubscribe(connections[1], "room")
        self.cluster.unsubscribe(connections[1], "room")  # again: no change
        self.cluster.unsubscribe(connections[2], "never")
        await self.cluster.publish("room", "said", "two")
        await self.cluster.broadcast("end", "")
        self.assertEqual(await inboxes[0].next(), signal("said", "one"))
        self.assertEqual(await inboxes[0].next(), signal("said", "two"))
        self.assertEqual(await inboxes[1].next(), signal("said", "one"))
        self.assertEqual(await inboxes[1].next(), signal("end", ""))
        self.assertEqual(await inboxes[2].next(), signal("end", ""))

        clients[0].sendClose()
        await clients[0].closed
        await self.server.tick()
        self.assertEqual(self.cluster.subscribers("room"), [])
        self.assertEqual(self.cluster.subscribers("other"), [])
        self.assertEqual(self.cluster.topicsOf(connections[0]), frozenset())

    async def test_subscribeRefused(self) -> None:
        """
        Bad topics, closed connections and foreign objects are refused with
        clear errors.
        """
        client = await self.server.connectAccepted()
        connection = connectionOf(self.server, 0)
        for topic in ["", "x" * 256, "é" * 128]:
            self.assertRaises(ValueError, self.cluster.subscribe, connection, topic)
            self.assertRaises(ValueError, self.cluster.publish, topic, "n")
        self.assertRaises(TypeError, self.cluster.subscribe, connection, b"bytes")
        self.assertRaises(TypeError, self.cluster.subscribe, object(), "room")
        self.cluster.subscribe(connection, "x" * 255)
        client.sendClose()
        await client.closed
        await self.server.tick()
        self.assertRaises(Disconnected, self.cluster.subscribe, connection, "room")

    async def test_closeSession(self) -> None:
        """
        Closing a session by key tells each of its connections and
        destroys it once; one that no connection holds is destroyed too.
        """
        closed: list[str] = []
        onSessionClosed = self.manager.onSessionClosed

        def spy(key: str) -> Any:
            closed.append(key)
            return onSessionClosed(key)

        self.manager.onSessionClosed = spy  # type: ignore[method-assign]
        first = await self.server.connectAccepted()
        session, _ = await loggedIn(first)
        second = await self.server.connectAccepted()
        await second.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        inboxes = [Inbox(first), Inbox(second)]
        await self.server.factory.closeSession(session.key)
        for inbox in inboxes:
            self.assertEqual(await inbox.next(), wire.encodeSessionClosed())
        self.assertEqual(closed, [session.key])
        self.assertIsNone(self.manager.onSessionLookup(session.key))

        gone = await self.server.connectAccepted()
        idle, _ = await loggedIn(gone, "bob", 2)
        gone.sendClose()
        await gone.closed
        await self.server.tick()
        self.assertEqual(self.server.factory.sessionConnections(idle.key), [])
        await self.cluster.closeSession(idle.key)
        self.assertEqual(closed, [session.key, idle.key])
        self.assertIsNone(self.manager.onSessionLookup(idle.key))

    async def test_counting(self) -> None:
        """Connections are counted per key, up to a maximum."""
        cluster = self.cluster
        self.assertTrue(await cluster.reserve("k", 2))
        await cluster.add("k")
        self.assertFalse(await cluster.reserve("k", 2))
        self.assertTrue(await cluster.reserve("other", 2))
        self.assertEqual(await cluster.release("k"), 1)
        self.assertTrue(await cluster.reserve("k", 0))
        self.assertEqual(await cluster.release("k"), 1)
        self.assertEqual(await cluster.release("k"), 0)
        self.assertEqual(await cluster.release("k"), 0)
        self.assertEqual(await cluster.release("other"), 0)


class LocalClusterTests(ClusterContract, TestCase):
    """
    The default cluster: this server's connections, over loopback.
    """

    async def makeCluster(self) -> IServerCluster:
        return LocalCluster()

    def test_default(self) -> None:
        """Every server has a L{LocalCluster} by default."""
        factory = WebWireServerFactory(ConformanceApplication())
        self.assertIsInstance(factory.cluster, LocalCluster)
        self.assertIs(factory.cluster.server, factory)  # type: ignore[attr-defined]
        self.assertTrue(verifyObject(IServerCluster, RedisCluster()))

    def test_oneServerOnly(self) -> None:
        """A cluster serves one server; a second is refused."""
        self.assertRaises(
            RuntimeError,
            WebWireServerFactory,
            ConformanceApplication(),
            cluster=self.cluster,
        )

    def test_attachedOnlyOnceMade(self) -> None:
        """
        A cluster given to a server that could not be made is free to serve
        another.
        """
        cluster = LocalCluster()
        self.assertRaises(
            ValueError,
            WebWireServerFactory,
            ConformanceApplication(),
            ServerOptions(sessions=False),
            sessionManager=MemorySessionManager(),
            cluster=cluster,
        )
        factory = WebWireServerFactory(ConformanceApplication(), cluster=cluster)
        self.assertIs(cluster.server, factory)

    def test_notACluster(self) -> None:
        """Something that is no L{ICluster} is refused."""
        self.assertRaises(
            TypeError, WebWireServerFactory, ConformanceApplication(), cluster=object()
        )


class RedisClusterContractTests(ClusterContract, TestCase):
    """
    L{RedisCluster} fulfils the contract for its own process's connections,
    on a real redis-server (the other processes are for
    L{RedisClusterTests}).
    """

    timeout = 60

    async def makeCluster(self) -> IServerCluster:
        redis = await startRedis(self)
        cluster = RedisCluster(redis.url, prefix=PREFIX, timeout=2.0)
        cluster.startService()
        self.addCleanup(cluster.stopService)
        await cluster.whenSubscribed()
        return cluster


class RedisClusterTests(TestCase):
    """
    Two servers, each with its own L{RedisCluster} and L{RedisSessionManager},
    sharing one real redis-server.
    """

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.redis = await startRedis(self)
        self.admin = await adminConnection(self, self.redis)
        self.a = self.makeServer()
        self.b = self.makeServer()
        await gatherSubscribed(self.a, self.b)

    def makeServer(
        self, options: ServerOptions | None = None, manager: Any = None
    ) -> LoopbackServer:
        """
        A server on a started cluster (stopped after the server in the
        test's cleanup) with Redis sessions unless C{manager} is given.
        """
        cluster = RedisCluster(self.redis.url, prefix=PREFIX, timeout=2.0)
        cluster.startService()
        self.addCleanup(cluster.stopService)
        if manager is None:
            manager = RedisSessionManager(self.redis.url, prefix="test:session:")
            manager.startService()
            self.addCleanup(manager.stopService)
        return LoopbackServer(
            self,
            ConformanceApplication(),
            options,
            sessionManager=manager,
            cluster=cluster,
        )

    def clusterOf(self, server: LoopbackServer) -> RedisCluster:
        cluster = server.factory.cluster
        assert isinstance(cluster, RedisCluster)
        return cluster

    async def sharedSession(
        self,
    ) -> tuple[Session, RawClientProtocol, RawClientProtocol]:
        """A session created on A and restored on B; both clients."""
        onA = await self.a.connectAccepted()
        session, _ = await loggedIn(onA)
        onB = await self.b.connectAccepted()
        reply = await onB.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        self.assertIsInstance(wire.parse(reply), wire.Reply)
        return session, onA, onB

    async def test_signalSessionAcrossServers(self) -> None:
        """
        A session's signal sent on A reaches its connections on A and on B,
        and no other.
        """
        session, onA, onB = await self.sharedSession()
        other = await self.b.connectAccepted()
        inboxes = [Inbox(onA), Inbox(onB), Inbox(other)]
        await self.a.factory.cluster.signalSession(session.key, "private", "psst")
        await self.a.factory.cluster.broadcast("public", "all")
        for inbox in inboxes[:2]:
            self.assertEqual(await inbox.next(), signal("private", "psst"))
        for inbox in inboxes:
            self.assertEqual(await inbox.next(), signal("public", "all"))

    async def test_topicsAcrossServers(self) -> None:
        """
        What A publishes to a topic reaches its subscribers on A and B, in
        the order sent; not the others.
        """
        clients = [
            await self.a.connectAccepted(),
            await self.b.connectAccepted(),
            await self.b.connectAccepted(),
        ]
        inboxes = [Inbox(client) for client in clients]
        self.a.factory.cluster.subscribe(connectionOf(self.a, 0), "room")
        self.b.factory.cluster.subscribe(connectionOf(self.b, 0), "room")
        for n in range(3):
            await self.a.factory.cluster.publish("room", "said", str(n))
        await self.a.factory.cluster.broadcast("end", "")
        for inbox in inboxes[:2]:
            for n in range(3):
                self.assertEqual(await inbox.next(), signal("said", str(n)))
            self.assertEqual(await inbox.next(), signal("end", ""))
        self.assertEqual(await inboxes[2].next(), signal("end", ""))

    async def test_closeSessionAcrossServers(self) -> None:
        """
        Closing a session on B tells its clients on A and on B, and the
        session manager's close hook runs once, on B.
        """
        session, onA, onB = await self.sharedSession()
        hooks = {"a": 0, "b": 0}
        for name, server in [("a", self.a), ("b", self.b)]:
            manager = server.factory.sessionManager
            self.spyOnClose(manager, hooks, name)
        inboxes = [Inbox(onA), Inbox(onB)]
        await self.b.factory.closeSession(session.key)
        for inbox in inboxes:
            self.assertEqual(await inbox.next(), wire.encodeSessionClosed())
        self.assertEqual(hooks, {"a": 0, "b": 1})
        self.assertEqual(self.a.factory.sessionConnections(session.key), [])
        self.assertEqual(await self.admin.exists("test:session:" + session.key), 0)

    def spyOnClose(self, manager: Any, hooks: dict[str, int], name: str) -> None:
        onSessionClosed = manager.onSessionClosed

        def spy(key: str) -> Any:
            hooks[name] += 1
            return onSessionClosed(key)

        manager.onSessionClosed = spy

    async def test_lastConnectionAnywhere(self) -> None:
        """
        A session is destroyed when its last connection in the cluster
        closes it, not when the last one on one server does.
        """
        session, onA, onB = await self.sharedSession()
        name = "test:session:" + session.key
        await onA.roundTrip(wire.encodeCloseSession(ident(2)))
        self.assertEqual(await self.admin.exists(name), 1)
        await onB.roundTrip(wire.encodeCloseSession(ident(3)))
        self.assertEqual(await self.admin.exists(name), 0)

    async def test_maxConnectionsAcrossServers(self) -> None:
        """
        The maximum connections per session counts every server's; a
        connection that goes gives its place back.
        """
        options = ServerOptions(maxSessionConnections=2)
        self.a, self.b = self.makeServer(options), self.makeServer(options)
        await gatherSubscribed(self.a, self.b)
        session, onA, onB = await self.sharedSession()
        restore = wire.encodeRestoreSession(ident(1), session.key)
        for server in (self.a, self.b):
            client = await server.connectAccepted()
            refused = wire.parse(await client.roundTrip(restore))
            self.assertEqual(
                refused,
                wire.SpecialReply(
                    wire.MessageType.REPLY_MAX_SESSION_CONNECTIONS_REACHED, ident(1)
                ),
            )
        released = self.nextRelease(self.clusterOf(self.b))
        onB.sendClose()
        self.assertEqual(await released, 1)
        client = await self.a.connectAccepted()
        self.assertIsInstance(wire.parse(await client.roundTrip(restore)), wire.Reply)

    def nextRelease(self, cluster: RedisCluster) -> Deferred[int]:
        """Fires with the count left by the next release C{cluster} makes."""
        result: Deferred[int] = Deferred()
        release = cluster.release

        def spy(key: str) -> Deferred[int]:
            cluster.release = release  # type: ignore[method-assign]

            def released(left: int) -> int:
                result.callback(left)
                return left

            return release(key).addCallback(released)

        cluster.release = spy  # type: ignore[method-assign]
        return result

    async def test_deadNodeStopsCounting(self) -> None:
        """
        A node whose registration is gone (it stopped renewing it) no longer
        counts, and its counts are removed; a live node's registration
        lasts three heartbeats.
        """
        options = ServerOptions(maxSessionConnections=1)
        self.a = self.makeServer(options)
        await gatherSubscribed(self.a)
        onA = await self.a.connectAccepted()
        session, _ = await loggedIn(onA)
        released = self.nextRelease(self.clusterOf(self.a))
        onA.sendClose()
        self.assertEqual(await released, 0)
        # A ghost of a crashed process holds the session's only place.
        await self.admin.execute_command("SET", PREFIX + "node:ghost", "1", "EX", "60")
        await self.admin.sadd(PREFIX + "nodes", "ghost")
        await self.admin.hset(PREFIX + "node:ghost:sessions", session.key, "1")
        restore = wire.encodeRestoreSession(ident(1), session.key)
        client = await self.a.connectAccepted()
        refused = wire.parse(await client.roundTrip(restore))
        self.assertIsInstance(refused, wire.SpecialReply)
        await self.admin.delete(PREFIX + "node:ghost")  # its time ran out
        self.assertIsInstance(wire.parse(await client.roundTrip(restore)), wire.Reply)
        self.assertEqual(await self.admin.exists(PREFIX + "node:ghost:sessions"), 0)
        self.assertNotIn("ghost", await self.admin.smembers(PREFIX + "nodes"))
        ttl = await self.admin.ttl(PREFIX + "node:" + self.clusterOf(self.a).nodeId)
        self.assertTrue(0 < int(ttl) <= 15, ttl)

    async def test_redisRestart(self) -> None:
        """
        While Redis is down, signals reach this server's connections and
        the sender learns the others were not reached; once it is back, the
        clusters subscribe again and write their counts again.
        """
        session, onA, onB = await self.sharedSession()
        inboxA, inboxB = Inbox(onA), Inbox(onB)
        await self.redis.stop()
        sent = self.a.factory.cluster.broadcast("during", "")
        self.assertEqual(await inboxA.next(), signal("during", ""))
        await self.assertFailure(
            sent, TimeoutError, txredisapi.ConnectionError, Unavailable
        )
        await self.redis.start()  # empty: persistence is off
        await gatherSubscribed(self.a, self.b)
        for server in (self.a, self.b):
            await beatUntilReachable(self.clusterOf(server))
        await self.a.factory.cluster.broadcast("after", "")
        self.assertEqual(await inboxB.next(), signal("after", ""))
        self.assertEqual(await inboxA.next(), signal("after", ""))
        admin = await adminConnection(self, self.redis)
        for server in (self.a, self.b):
            cluster = self.clusterOf(server)
            counts = await admin.hgetall(PREFIX + f"node:{cluster.nodeId}:sessions")
            self.assertEqual(counts, {session.key: "1"})

    async def test_restoreWhileRedisIsDown(self) -> None:
        """
        A restore that cannot be counted is answered with an internal
        error, never "not found"; the failure is logged.
        """
        self.a = self.makeServer(manager=MemorySessionManager())
        await gatherSubscribed(self.a)
        session, _ = await loggedIn(await self.a.connectAccepted())
        await self.redis.stop()
        client = await self.a.connectAccepted()
        reply = await client.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        self.assertEqual(
            wire.parse(reply),
            wire.SpecialReply(wire.MessageType.REPLY_INTERNAL_ERROR, ident(1)),
        )
        self.assertTrue(
            self.flushLoggedErrors(TimeoutError, txredisapi.ConnectionError)
        )

    async def test_foreignMessages(self) -> None:
        """
        A signal published by another program in the documented format is
        delivered on every server; malformed messages and non-signals are
        dropped with a warning.
        """
        logged = captureLogs(self)
        inboxes = [Inbox(await s.connectAccepted()) for s in (self.a, self.b)]
        channel = PREFIX + "events"
        await self.admin.publish(channel, b"garbage")
        await self.admin.publish(channel, pack(b"B", "job", "", b"\x00\x00"))
        await self.admin.publish(channel, pack(b"B", "job", "", signal("job", "done")))
        for inbox in inboxes:
            self.assertEqual(await inbox.next(), signal("job", "done"))
        warnings = {e["log_format"] for e in logged if e["log_level"] is LogLevel.warn}
        self.assertEqual(
            sorted(warnings),
            [
                "dropped a cluster message from node {node}: not a signal",
                "dropped a malformed cluster message: {error}",
            ],
        )

    async def test_stopUnregisters(self) -> None:
        """A stopped cluster's node is gone from Redis at once."""
        cluster = self.clusterOf(self.a)
        await loggedIn(await self.a.connectAccepted())
        await beatUntilReachable(cluster)
        self.assertIn(cluster.nodeId, await self.admin.smembers(PREFIX + "nodes"))
        await cluster.stopService()
        self.assertNotIn(cluster.nodeId, await self.admin.smembers(PREFIX + "nodes"))
        for suffix in ("", ":sessions"):
            name = f"{PREFIX}node:{cluster.nodeId}{suffix}"
            self.assertEqual(await self.admin.exists(name), 0)

    async def test_service(self) -> None:
        """
        L{WebWireService} starts its server's Redis cluster before
        listening and stops it after the drain: the node is registered
        while it runs and gone once it stopped.
        """
        cluster = RedisCluster(self.redis.url, prefix=PREFIX)
        factory = WebWireServerFactory(
            ConformanceApplication(), ServerOptions(sessions=False), cluster=cluster
        )
        service = WebWireService(factory, ["tcp:0:interface=127.0.0.1"])
        service.startService()
        self.assertTrue(cluster.running)
        await cluster.whenSubscribed()
        await beatUntilReachable(cluster)
        self.assertIn(cluster.nodeId, await self.admin.smembers(PREFIX + "nodes"))
        await service.stopService()
        self.assertFalse(cluster.running)
        self.assertNotIn(cluster.nodeId, await self.admin.smembers(PREFIX + "nodes"))

    async def test_notStarted(self) -> None:
        """
        A cluster that is not started delivers on its server only, and says
        the others were not reached; counting fails.
        """
        cluster = RedisCluster(f"redis://127.0.0.1:{freePort()}/0")
        server = LoopbackServer(self, ConformanceApplication(), cluster=cluster)
        inbox = Inbox(await server.connectAccepted())
        await self.assertFailure(cluster.broadcast("only", "here"), RuntimeError)
        self.assertEqual(await inbox.next(), signal("only", "here"))
        await self.assertFailure(cluster.reserve("k", 0), RuntimeError)
        await cluster.stopService()
        self.assertFalse(cluster.running)


class RedisPasswordTests(TestCase):
    """
    A Redis that wants a password, and a database other than 0.
    """

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.redis = await startRedis(self, "--requirepass", "s3cret")
        self.url = f"redis://:s3cret@127.0.0.1:{self.redis.port}/3"

    def makeServer(self, url: str) -> LoopbackServer:
        cluster = RedisCluster(url, prefix=PREFIX, timeout=2.0)
        cluster.startService()
        self.addCleanup(cluster.stopService)
        manager = RedisSessionManager(url, prefix="test:session:", timeout=2.0)
        manager.startService()
        self.addCleanup(manager.stopService)
        return LoopbackServer(
            self, ConformanceApplication(), sessionManager=manager, cluster=cluster
        )

    async def test_password(self) -> None:
        """
        Sessions, signals and counts work with the password and database of
        the URL.
        """
        a, b = self.makeServer(self.url), self.makeServer(self.url)
        await gatherSubscribed(a, b)
        session, _ = await loggedIn(await a.connectAccepted())
        onB = await b.connectAccepted()
        reply = await onB.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        self.assertIsInstance(wire.parse(reply), wire.Reply)
        inbox = Inbox(onB)
        await a.factory.cluster.broadcast("news", "x")
        self.assertEqual(await inbox.next(), signal("news", "x"))
        admin = await txredisapi.Connection(
            "127.0.0.1",
            self.redis.port,
            dbid=3,
            password="s3cret",
            reconnect=False,
            convertNumbers=False,
        )
        self.addCleanup(admin.disconnect)
        self.assertEqual(await admin.exists("test:session:" + session.key), 1)
        node = b.factory.cluster.nodeId  # type: ignore[attr-defined]
        counts = await admin.hgetall(f"{PREFIX}node:{node}:sessions")
        self.assertEqual(counts, {session.key: "1"})

    async def test_wrongPassword(self) -> None:
        """
        With a wrong password, the subscription and the connection pool say
        so in the log, and publishing fails at once: signals reach this
        server's connections only.
        """
        logged: Deferred[None] = Deferred()
        expected = {
            "cluster subscription: {why}",
            "cannot use Redis at {host}:{port}: {error}",
        }

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            if (
                event.get("log_format") in expected
                and event["log_level"] is LogLevel.error
            ):
                text = formatEvent(event)
                self.assertIn("WRONGPASS", text)
                expected.discard(event["log_format"])
                if not expected and not logged.called:
                    logged.callback(None)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        server = self.makeServer(self.url.replace("s3cret", "wrong"))
        await logged
        cluster = server.factory.cluster
        self.assertFalse(cluster.isSubscribed)  # type: ignore[attr-defined]
        inbox = Inbox(await server.connectAccepted())
        await self.assertFailure(
            cluster.broadcast("local", ""), txredisapi.ConnectionError
        )
        self.assertEqual(await inbox.next(), signal("local", ""))


async def gatherSubscribed(*servers: LoopbackServer) -> None:
    """Wait until the clusters of C{servers} are subscribed."""
    for server in servers:
        cluster = server.factory.cluster
        assert isinstance(cluster, RedisCluster)
        await cluster.whenSubscribed()


async def beatUntilReachable(cluster: RedisCluster) -> None:
    """
    Renew C{cluster}'s registration now, again until Redis answers (its
    connection pool reconnects at its own pace, and fails at once while it
    knows Redis is down).
    """
    for _ in range(60):  # each attempt waits up to the cluster's timeout
        await cluster._pool.availability.whenUp()
        await cluster._beat()
        if cluster._reachable and not cluster._dirty:
            return
    raise AssertionError("the cluster did not reach Redis again")


class RedisClusterUnitTests(TestCase):
    """
    L{RedisCluster} without Redis: its heartbeat with Redis's answers
    scripted, and what it receives before it serves a server.
    """

    def test_receivedBeforeServing(self) -> None:
        """
        A cluster that serves no server yet drops what it receives, without
        raising (which would cut its subscription's connection).
        """
        cluster = RedisCluster()
        cluster._received(pack(b"B", "other", "", signal("n", "x")))
        cluster._received(pack(b"C", "other", "key", b""))
        cluster._received(b"garbage")

    def test_survivesFailedResync(self) -> None:
        """
        A heartbeat that finds the node lost writes the counts again; if
        that fails, the heartbeat still succeeds (a failure would stop its
        C{LoopingCall} for good) and the next one writes them again.
        """
        cluster = RedisCluster()
        cluster._local.counts.up("k")
        cluster._local.counts.up("k")
        calls: list[list[str]] = []
        answers: list[Deferred[Any]] = [
            succeed([1, 0]),  # heartbeat: the node was lost
            fail(txredisapi.ConnectionError("Lost connection")),  # resync
            succeed([0, 0]),  # the next heartbeat: a resync
        ]

        def scripted(script: str, args: list[str]) -> Deferred[Any]:
            calls.append(args[3:])
            return answers.pop(0)

        cluster._eval = scripted  # type: ignore[method-assign]
        self.assertIsNone(self.successResultOf(cluster._beat()))
        self.assertTrue(cluster._dirty)
        self.assertIsNone(self.successResultOf(cluster._beat()))
        self.assertFalse(cluster._dirty)
        self.assertEqual(calls, [[], ["k", "2"], ["k", "2"]])
        self.assertTrue(cluster._reachable)
