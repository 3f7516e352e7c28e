"""
L{RedisSessionManager}, against a real redis-server: the session manager
contract, Redis's own expiry, outages, and sessions shared by two servers.
"""

from __future__ import annotations

from typing import Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers import (
    LoopbackServer,
    connectRaw,
    h,
    ident,
    listeningPort,
    portNumber,
)
from tests.redisserver import RedisServer, freePort, startRedis
from tests.test_sessions import (
    INFO,
    KEY,
    NAMESPACE,
    OTHER_KEY,
    START,
    SessionManagerContract,
    connectionWith,
    crossingKeys,
)
from tests.test_sessionsendtoend import assertRestores, loggedIn
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.interfaces import ISessionManager
from webwire.outage import Unavailable
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.sessions.redis import CorruptRedisSessionError, RedisSessionManager
from webwire.sessions.session import Session
from webwire.tap import Options, makeService

PREFIX = "test:session:"


async def adminConnection(testCase: TestCase, server: RedisServer) -> Any:
    """
    A plain Redis connection to C{server}, to look behind a manager's back;
    closed in C{testCase}'s cleanup.
    """
    connection = await txredisapi.Connection(
        "127.0.0.1", server.port, reconnect=False, convertNumbers=False
    )
    testCase.addCleanup(connection.disconnect)
    return connection


class RedisSessionManagerTests(SessionManagerContract, TestCase):
    """
    L{RedisSessionManager} fulfils the contract, except the expiry tests
    driven by a fake clock: Redis expires sessions on its own clock, so
    those check the time to live instead.
    """

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.clock = Clock()
        self.clock.advance(START)
        self.redis = await startRedis(self)
        self.admin = await adminConnection(self, self.redis)

    def makeManager(
        self,
        maxIdle: float | None = None,
        clock: Any = None,
        timeout: float = 5.0,
        url: str | None = None,
    ) -> RedisSessionManager:
        manager = RedisSessionManager(
            self.redis.url if url is None else url,
            prefix=PREFIX,
            maxIdle=maxIdle,
            clock=self.clock if clock is None else clock,
            timeout=timeout,
        )
        manager.startService()
        self.addCleanup(manager.stopService)
        return manager

    async def storedKeysAsync(self) -> set[str]:
        names: list[str] = await self.admin.keys(PREFIX + "*")
        return {name.removeprefix(PREFIX) for name in names}

    def storedKeys(self, manager: ISessionManager) -> Deferred[set[str]]:
        return Deferred.fromCoroutine(self.storedKeysAsync())

    def namespacedPair(self) -> tuple[RedisSessionManager, RedisSessionManager]:
        # The worst case: one prefix starts with the other.
        inner = RedisSessionManager(
            self.redis.url, prefix=PREFIX + NAMESPACE + ":", clock=self.clock
        )
        inner.startService()
        self.addCleanup(inner.stopService)
        return self.makeManager(), inner

    def test_prefixMustEndOutsideTheAlphabet(self) -> None:
        """
        A prefix that could run on into a key (ending with a key character,
        or empty) is refused: it would not be a namespace.
        """
        for prefix in ["", "webwire:session", "app-", "x_", "ns9"]:
            with self.assertRaises(ValueError):
                RedisSessionManager(self.redis.url, prefix=prefix, clock=self.clock)

    async def ttl(self, key: str = KEY) -> int:
        result: int = await self.admin.ttl(PREFIX + key)
        return int(result)

    # The expiry contract, on Redis's clock.

    async def test_expiry(self) -> None:
        """
        With C{maxIdle}, a created session's key lives C{maxIdle} seconds.
        """
        manager = self.makeManager(maxIdle=100)
        await self.create(manager)
        self.assertTrue(99 <= await self.ttl() <= 100)

    async def test_idleSinceLastLookup(self) -> None:
        """
        A lookup restarts the key's time to live; C{maxIdle} is rounded up.
        """
        manager = self.makeManager(maxIdle=99.5)
        await self.create(manager)
        await self.admin.expire(PREFIX + KEY, 10)
        self.assertLessEqual(await self.ttl(), 10)
        self.assertIsNotNone(await self.lookup(manager, KEY))
        self.assertTrue(99 <= await self.ttl() <= 100)

    async def test_noExpiryByDefault(self) -> None:
        """
        Without C{maxIdle}, keys have no time to live, even after a lookup.
        """
        manager = self.makeManager()
        await self.create(manager)
        self.assertEqual(await self.ttl(), -1)
        await self.lookup(manager, KEY)
        self.assertEqual(await self.ttl(), -1)

    async def test_sweep(self) -> None:
        """
        Redis does the sweeping: a key whose time ran out (a non-positive
        EXPIRE removes it at once) is not found; the manager schedules
        nothing.
        """
        manager = self.makeManager(maxIdle=100)
        await self.create(manager, KEY)
        await self.create(manager, OTHER_KEY)
        await self.admin.expire(PREFIX + KEY, 0)
        self.assertIsNone(await self.lookup(manager, KEY))
        self.assertIsNotNone(await self.lookup(manager, OTHER_KEY))
        self.assertEqual(await self.storedKeysAsync(), {OTHER_KEY})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_sweepLogsCountNotKeys(self) -> None:
        """
        No sweep to log; the error of a corrupt session names only a prefix
        of its key.
        """
        manager = self.makeManager()
        await self.admin.hset(PREFIX + KEY, "c", "yesterday")
        await self.admin.hset(PREFIX + KEY, "l", "today")
        failure = await self.assertFailure(
            manager.onSessionLookup(KEY), CorruptRedisSessionError
        )
        self.assertNotIn(KEY, str(failure))

    # Redis specifics.

    async def test_storedFields(self) -> None:
        """
        A session is a hash with the file format's fields: Go-style times
        and compact JSON info with sorted members, or null.
        """
        manager = self.makeManager()
        await self.create(manager, KEY, {"b": 1, "a": [True, None]})
        await self.create(manager, OTHER_KEY, {})
        stored = await self.admin.hgetall(PREFIX + KEY)
        self.assertEqual(
            stored,
            {
                "c": "2019-01-15T12:29:22Z",
                "l": "2019-01-15T12:29:22Z",
                "i": '{"a":[true,null],"b":1}',
            },
        )
        self.assertEqual((await self.admin.hgetall(PREFIX + OTHER_KEY))["i"], "null")

    async def test_lookupRoundTripsInfo(self) -> None:
        """
        The info comes back as it was stored, and the lookup records the
        new last lookup time in Redis.
        """
        manager = self.makeManager()
        await self.create(manager)
        self.clock.advance(1.5)
        result = await self.lookup(manager, KEY)
        assert result is not None
        self.assertEqual(result.info, INFO)
        self.assertEqual(
            await self.admin.hget(PREFIX + KEY, "l"), "2019-01-15T12:29:23.5Z"
        )

    async def test_lookupMissing(self) -> None:
        """
        Looking up a key that Redis does not hold gives C{None}.
        """
        self.assertIsNone(await self.makeManager().onSessionLookup(KEY))

    async def test_createInvalid(self) -> None:
        """
        A session without a connection or with a non-printable key is not
        stored.
        """
        manager = self.makeManager()
        await self.assertFailure(
            manager.onSessionCreated(connectionWith(None)), ValueError
        )
        session = Session("a\x00b", self.now(), self.now())
        await self.assertFailure(
            manager.onSessionCreated(connectionWith(session)), ValueError
        )
        self.assertEqual(await self.storedKeysAsync(), set())

    def test_rejectsURLs(self) -> None:
        """
        Only C{redis://} URLs with a numeric database are accepted;
        C{rediss://} is refused.
        """
        for url in [
            "rediss://127.0.0.1:6379/0",
            "http://127.0.0.1/",
            "redis:///0",
            "redis://127.0.0.1/x",
        ]:
            self.assertRaises(ValueError, RedisSessionManager, url)
        self.assertRaises(ValueError, RedisSessionManager, maxIdle=0)

    async def test_closedPortFails(self) -> None:
        """
        A manager pointed at a port where nothing listens fails its lookups
        (after its timeout) instead of reporting "not found".
        """
        manager = self.makeManager(
            clock=reactor, timeout=0.5, url=f"redis://127.0.0.1:{freePort()}/0"
        )
        failure = await self.assertFailure(
            manager.onSessionLookup(KEY), TimeoutError, txredisapi.ConnectionError
        )
        self.assertIsNotNone(failure)

    async def test_outageAndRecovery(self) -> None:
        """
        While redis-server is down, lookups fail (at once, with
        L{Unavailable}, once the pool found it down); once it is back on the
        same port, the same manager works again (the pool reconnects).
        """
        manager = self.makeManager(clock=reactor, timeout=0.5)
        await self.create(manager)
        await self.redis.stop()
        await self.assertFailure(
            manager.onSessionLookup(KEY),
            TimeoutError,
            txredisapi.ConnectionError,
            Unavailable,
        )
        self.assertTrue(manager.availability.isDown())
        await self.assertFailure(manager.onSessionLookup(KEY), Unavailable)
        await self.redis.start()  # empty: persistence is off
        await manager.availability.whenUp()
        self.assertIsNone(await manager.onSessionLookup(KEY))
        await self.create(manager)
        self.assertIsNotNone(await self.lookup(manager, KEY))


class RedisSessionsEndToEndTests(TestCase):
    """
    Two servers sharing one Redis: a session created on one is restored on
    the other.
    """

    timeout = 60

    async def test_restoreOnOtherServer(self) -> None:
        """
        A client logs in on the first server; another client restores the
        session on the second, which has its own manager.
        """
        redis = await startRedis(self)
        managers = [RedisSessionManager(redis.url) for _ in range(2)]
        for manager in managers:
            manager.startService()
            self.addCleanup(manager.stopService)
        first, second = (
            LoopbackServer(self, ConformanceApplication(), sessionManager=manager)
            for manager in managers
        )
        session, _ = await loggedIn(await first.connectAccepted(), "ada")
        client = await second.connectAccepted()
        await assertRestores(self, client, session, {"user": "ada"})


class RedisOutageEndToEndTests(TestCase):
    """
    A server whose Redis stops and comes back: one warning naming Redis for
    the outage, an internal-error reply at once to each restore while it is
    down, one line when it is back, and sessions work again.
    """

    timeout = 60

    async def test_outageLoggedOnceFailsFast(self) -> None:
        """
        The operation timeouts run on a clock that never advances: a restore
        that waited for Redis instead of failing at once would never be
        answered.
        """
        redis = await startRedis(self)
        events: list[dict[str, Any]] = []
        warned: Deferred[None] = Deferred()

        @implementer(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            events.append(event)
            if "is unreachable" in formatEvent(event) and not warned.called:
                warned.callback(None)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        manager = RedisSessionManager(redis.url, clock=Clock())
        manager.startService()
        self.addCleanup(manager.stopService)
        server = LoopbackServer(self, ConformanceApplication(), sessionManager=manager)
        session, _ = await loggedIn(await server.connectAccepted(), "ada")

        await redis.stop()
        await warned
        self.assertTrue(manager.availability.isDown())
        for n in range(3):
            client = await server.connectAccepted()
            restore = wire.encodeRestoreSession(ident(n + 1), session.key)
            self.assertEqual(
                await client.roundTrip(restore),
                wire.encodeSpecialReply(
                    wire.MessageType.REPLY_INTERNAL_ERROR, ident(n + 1)
                ),
            )
        texts = [formatEvent(e) for e in events]
        down = [t for t in texts if "is unreachable" in t]
        self.assertEqual(len(down), 1, texts)
        self.assertIn(f"Redis at {redis.url} is unreachable", down[0])
        self.assertEqual(
            [e for e in events if e.get("log_failure") is not None], [], texts
        )

        await redis.start()  # on the same port, empty
        await manager.availability.whenUp()
        back = [formatEvent(e) for e in events if "works again" in formatEvent(e)]
        self.assertEqual(len(back), 1, back)
        self.assertIn(f"Redis at {redis.url}", back[0])
        session, _ = await loggedIn(await server.connectAccepted(), "bob")
        await assertRestores(
            self, await server.connectAccepted(), session, {"user": "bob"}
        )


class RedisNamespacesEndToEndTests(TestCase):
    """
    C{twistd webwire --sessions redis}: the conformance application and the
    chat demo share one Redis, and neither can restore the other's sessions.
    """

    timeout = 60

    async def test_noRestoreAcrossApplications(self) -> None:
        """
        A client signed in to the chat demo; a client of the conformance
        application sends its key, alone or spelled as a path into the chat
        demo's namespace: "session not found" each time. The chat demo
        still restores it.
        """
        redis = await startRedis(self)
        config = Options()
        config.parseOptions(
            [
                "--listen=tcp:0:interface=127.0.0.1",
                "--sessions=redis",
                f"--redis-url={redis.url}",
            ]
        )
        service = makeService(config)
        assert isinstance(service, WebWireService)
        service.startService()
        port = portNumber(await listeningPort(service))
        self.addCleanup(service.stopService)
        chat = await connectRaw(port, "/chat")
        await chat.receivedCount(1)
        session, _ = await loggedIn(chat, "mallory")
        client = await connectRaw(port, "/")
        await client.receivedCount(1)
        for n, key in enumerate(crossingKeys(session.key), 1):
            if len(key) > 255 or not key.isprintable() or not key.isascii():
                continue
            restore = wire.encodeRestoreSession(ident(n), key)
            self.assertEqual(await client.roundTrip(restore), h("03") + ident(n))
        other = await connectRaw(port, "/chat")
        await other.receivedCount(1)
        await assertRestores(self, other, session, {"user": "mallory"})


class RedisLifecycleTests(TestCase):
    """
    The Redis session manager is a service: an application that embeds
    L{WebWireService} gets its pool connected when the service starts and
    disconnected when it stops, without a call of its own.
    """

    timeout = 60

    async def clientsOtherThanAdmin(self, admin: Any) -> int:
        listing: str | bytes = await admin.execute_command("CLIENT", "LIST")
        if isinstance(listing, bytes):
            listing = listing.decode("utf-8")
        return len(listing.strip().splitlines()) - 1

    async def test_embeddedServiceDisconnectsThePool(self) -> None:
        """
        A manager given to a factory served by a started L{WebWireService}
        stores a session in Redis; once the service stopped, Redis has no
        connection of the manager left and the manager is not running.
        """
        redis = await startRedis(self)
        admin = await adminConnection(self, redis)
        manager = RedisSessionManager(redis.url, prefix=PREFIX)
        self.assertFalse(manager.running)
        self.assertEqual(await self.clientsOtherThanAdmin(admin), 0)
        factory = WebWireServerFactory(ConformanceApplication(), sessionManager=manager)
        service = WebWireService(factory, ["tcp:0:interface=127.0.0.1"])
        service.startService()
        stopped = False

        async def stop() -> None:
            if not stopped:
                await service.stopService()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        self.assertTrue(manager.running)
        client = await connectRaw(portNumber(await listeningPort(service)))
        await client.receivedCount(1)
        session, _ = await loggedIn(client, "ada")
        self.assertEqual(await admin.exists(PREFIX + session.key), 1)
        self.assertGreater(await self.clientsOtherThanAdmin(admin), 0)

        await service.stopService()
        stopped = True
        self.assertFalse(manager.running)
        left = await self.clientsOtherThanAdmin(admin)
        for _ in range(100):  # Redis notices each close on its next turn
            if left == 0:
                break
            left = await self.clientsOtherThanAdmin(admin)
        self.assertEqual(left, 0)
