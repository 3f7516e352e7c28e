"""
Sessions end to end, over real loopback sockets: created, announced,
restored on other connections, closed by the client or the server, limited,
persisted across a restart, expired.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers import (
    LoopbackServer,
    RawClientProtocol,
    connectRaw,
    h,
    ident,
    listeningPort,
    portNumber,
)
from tests.test_endtoend import RecordingApplication
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.errors import SessionActive, SessionsDisabled
from webwire.interfaces import IConnection, ISessionKeyGenerator, ISessionManager
from webwire.options import ServerOptions
from webwire.service import WebWireService
from webwire.sessions import Session, SessionLookupResult
from webwire.sessions.file import STALE_TEMPORARY_AGE, FileSessionManager
from webwire.sessions.memory import MemorySessionManager
from webwire.tap import Options, makeService


def login(n: int, user: str, encoding: wire.Encoding = wire.Encoding.UTF8) -> bytes:
    payload = user.encode("utf-16-le" if encoding is wire.Encoding.UTF16 else "utf-8")
    return wire.encodeRequest(ident(n), "login", payload, encoding)


def named(n: int, name: str) -> bytes:
    return wire.encodeRequest(ident(n), name, b"", wire.Encoding.UTF8)


async def loggedIn(
    client: RawClientProtocol, user: str = "ada", n: int = 1
) -> tuple[Session, bytes]:
    """Log in; return the announced session and the reply."""
    index = len(client.received)
    client.send(login(n, user))
    notification, reply = (await client.receivedCount(index + 2))[index:]
    parsed = wire.parse(notification)
    assert isinstance(parsed, wire.SessionCreated), parsed
    return Session.fromJSON(parsed.session), reply


async def assertRestores(
    testCase: TestCase,
    client: RawClientProtocol,
    session: Session,
    info: dict[str, Any],
) -> None:
    """
    C{client} restores C{session} (request 1): the reply is the session as
    UTF-8 JSON, with its key, C{info} and creation time.
    """
    restore = wire.encodeRestoreSession(ident(1), session.key)
    restored = wire.parse(await client.roundTrip(restore))
    assert isinstance(restored, wire.Reply), restored
    testCase.assertEqual(restored.encoding, wire.Encoding.UTF8)
    document = json.loads(restored.payload)
    testCase.assertEqual(document["k"], session.key)
    testCase.assertEqual(document["i"], info)
    testCase.assertEqual(Session.fromJSON(restored.payload).creation, session.creation)


class SessionFlowTests(TestCase):
    """
    The life of a session across connections, with the default file
    manager on its real thread pool.
    """

    timeout = 30

    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.manager = FileSessionManager(self.directory)
        self.server = LoopbackServer(
            self,
            ConformanceApplication(),
            ServerOptions(maxSessionConnections=2),
            sessionManager=self.manager,
        )

    async def test_lifecycle(self) -> None:
        """
        login announces the session before its reply; a second connection
        restores it; a third is refused (max 2); a client close detaches
        only that connection; a server close by key notifies every holder
        and destroys it; restoring it afterwards fails.
        """
        first = await self.server.connectAccepted()
        session, reply = await loggedIn(first, "ada")
        self.assertEqual(reply, h("C0") + ident(1) + session.key.encode())
        self.assertEqual(len(session.key), 64)
        self.assertEqual(session.info, {"user": "ada"})
        self.assertTrue(self.directory.child(session.key + ".wwrsess").exists())

        second = await self.server.connectAccepted()
        await assertRestores(self, second, session, {"user": "ada"})
        whoami = await second.roundTrip(named(2, "whoami"))
        self.assertEqual(whoami, h("C0") + ident(2) + session.key.encode())
        self.assertEqual(self.server.factory.activeSessionCount, 1)
        self.assertEqual(len(self.server.factory.sessionConnections(session.key)), 2)

        third = await self.server.connectAccepted()
        refused = await third.roundTrip(
            wire.encodeRestoreSession(ident(1), session.key)
        )
        self.assertEqual(refused, h("04") + ident(1))

        closed = await second.roundTrip(wire.encodeCloseSession(ident(3)))
        self.assertEqual(closed, h("BF") + ident(3))
        self.assertEqual(len(self.server.factory.sessionConnections(session.key)), 1)
        self.assertTrue(self.directory.child(session.key + ".wwrsess").exists())
        self.assertEqual(await second.roundTrip(named(4, "whoami")), h("C0") + ident(4))

        again = await third.roundTrip(wire.encodeRestoreSession(ident(2), session.key))
        self.assertEqual(wire.parse(again).identifier, ident(2))  # type: ignore[union-attr]
        self.assertEqual(again[0], wire.MessageType.REPLY_UTF8)

        await self.server.factory.closeSession(session.key)
        self.assertEqual(await first.message(3), h("16"))
        self.assertEqual(await third.message(3), h("16"))
        self.assertEqual(self.server.factory.activeSessionCount, 0)
        self.assertFalse(self.directory.child(session.key + ".wwrsess").exists())

        fourth = await self.server.connectAccepted()
        gone = await fourth.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        self.assertEqual(gone, h("03") + ident(1))

    async def test_disconnectKeepsSession(self) -> None:
        """
        A connection that goes away leaves its session restorable; the
        session is destroyed only when its last holder closes it.
        """
        first = await self.server.connectAccepted()
        session, _ = await loggedIn(first)
        first.sendClose(1000)
        await first.closed
        while self.server.factory.activeSessionCount:
            await self.server.tick()
        second = await self.server.connectAccepted()
        restore = wire.encodeRestoreSession(ident(1), session.key)
        self.assertEqual(
            (await second.roundTrip(restore))[0], wire.MessageType.REPLY_UTF8
        )
        second.send(named(2, "logout"))
        received = await second.receivedCount(4)
        self.assertEqual(received[2:], [h("16"), h("BF") + ident(2)])
        self.assertFalse(self.directory.child(session.key + ".wwrsess").exists())

    async def test_loginRules(self) -> None:
        """
        A UTF-16 user name is stored as text; a second login on the same
        connection answers SESSION_ACTIVE; an empty name BAD_REQUEST.
        """
        client = await self.server.connectAccepted()
        client.send(login(1, "Zoë", wire.Encoding.UTF16))
        notification = await client.message(1)
        self.assertEqual(Session.fromJSON(notification[1:]).info, {"user": "Zoë"})
        await client.message(2)
        active = wire.parse(await client.roundTrip(login(2, "bob")))
        self.assertEqual(
            active,
            wire.ErrorReply(ident(2), "SESSION_ACTIVE", "session already active"),
        )
        other = await self.server.connectAccepted()
        empty = wire.parse(await other.roundTrip(login(1, "")))
        self.assertEqual(empty.code, "BAD_REQUEST")  # type: ignore[union-attr]

    async def test_badKeys(self) -> None:
        """
        Keys that are not the generator's (path tricks, NUL, very long) are
        simply not found, and nothing outside the directory is touched.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        outside.child("victim.wwrsess").setContent(
            b'{"c":"2019-01-15T12:29:22Z","l":"2019-01-15T12:29:22Z","i":null}'
        )
        client = await self.server.connectAccepted()
        keys = [
            "../" + outside.basename() + "/victim",
            outside.child("victim").path,
            "a\x00b",
            "k" * 4000,
            "..",
        ]
        for n, key in enumerate(keys, 1):
            request = (
                bytes((wire.MessageType.REQUEST_RESTORE_SESSION,))
                + ident(n)
                + key.encode("latin-1")
            )
            self.assertEqual(await client.roundTrip(request), h("03") + ident(n), key)
        self.assertEqual(outside.child("victim.wwrsess").getContent()[:5], b'{"c":')
        self.assertEqual(outside.listdir(), ["victim.wwrsess"])

    async def test_restartSurvival(self) -> None:
        """
        A session created before the server stops is restored by a new
        server on the same directory.
        """
        client = await self.server.connectAccepted()
        session, _ = await loggedIn(client, "grace")
        await self.server.stop()
        server = LoopbackServer(
            self,
            ConformanceApplication(),
            sessionManager=FileSessionManager(self.directory),
        )
        client = await server.connectAccepted()
        reply = wire.parse(
            await client.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        )
        assert isinstance(reply, wire.Reply)
        restored = Session.fromJSON(reply.payload)
        self.assertEqual(
            (restored.key, restored.info), (session.key, {"user": "grace"})
        )
        self.assertEqual(restored.creation, session.creation)


class SessionRulesTests(TestCase):
    """
    Limits, replacements and failures, with an in-memory manager.
    """

    timeout = 20

    async def test_disabled(self) -> None:
        """
        Without sessions, session requests answer SessionsDisabled, login
        SESSIONS_UNAVAILABLE, and the API raises SessionsDisabled.
        """
        app = RecordingApplication()
        server = LoopbackServer(self, app, ServerOptions(sessions=False))
        client = await server.connectAccepted()
        self.assertEqual(
            await client.roundTrip(wire.encodeRestoreSession(ident(1), "k")),
            h("05") + ident(1),
        )
        self.assertEqual(
            await client.roundTrip(wire.encodeCloseSession(ident(2))),
            h("05") + ident(2),
        )
        connection = app.connections[0]
        self.failureResultOf(connection.createSession(), SessionsDisabled)
        self.failureResultOf(connection.closeSession(), SessionsDisabled)
        self.failureResultOf(server.factory.closeSession("k"), SessionsDisabled)
        conformance = LoopbackServer(
            self, ConformanceApplication(), ServerOptions(sessions=False)
        )
        other = await conformance.connectAccepted()
        reply = wire.parse(await other.roundTrip(login(1, "ada")))
        self.assertEqual(reply.code, "SESSIONS_UNAVAILABLE")  # type: ignore[union-attr]

    async def test_connectionApi(self) -> None:
        """
        createSession fails for a connection that has one; closeSession
        without one does nothing; the session's info is a copy.
        """
        app = RecordingApplication()
        server = LoopbackServer(self, app, sessionManager=MemorySessionManager())
        client = await server.connectAccepted()
        connection = app.connections[0]
        info = {"roles": ["admin"]}
        session = await connection.createSession(info)
        info["roles"].append("changed")
        self.assertEqual(connection.session, session)
        self.assertEqual(session.info, {"roles": ["admin"]})
        self.assertEqual(
            wire.parse(await client.message(1)), wire.SessionCreated(session.toJSON())
        )
        self.failureResultOf(connection.createSession(), SessionActive)
        await connection.closeSession()
        self.assertEqual(await client.message(2), h("16"))
        self.assertIsNone(connection.session)
        await connection.closeSession()
        self.assertEqual(len(client.received), 3)

    async def test_restoreReplacesSession(self) -> None:
        """
        Restoring another session on a connection that has one lets go of
        the old one (without destroying it) first.
        """
        app = RecordingApplication()
        server = LoopbackServer(self, app, sessionManager=MemorySessionManager())
        await server.connectAccepted()
        b = await server.connectAccepted()
        sessionA = await app.connections[0].createSession({"n": 1})
        sessionB = await app.connections[1].createSession({"n": 2})
        await b.message(1)  # its session-created notification
        reply = await b.roundTrip(wire.encodeRestoreSession(ident(1), sessionA.key))
        self.assertEqual(reply[0], wire.MessageType.REPLY_UTF8)
        self.assertEqual(app.connections[1].session.key, sessionA.key)
        self.assertEqual(server.factory.sessionConnections(sessionB.key), [])
        self.assertEqual(len(server.factory.sessionConnections(sessionA.key)), 2)
        c = await server.connectAccepted()
        back = await c.roundTrip(wire.encodeRestoreSession(ident(1), sessionB.key))
        self.assertEqual(back[0], wire.MessageType.REPLY_UTF8)

    async def test_maxConnectionsAtomic(self) -> None:
        """
        Two restores racing for the last place of a session while the
        manager's lookup is slow: one is refused at once, the other
        succeeds when the lookup completes.
        """
        manager = SlowManager()
        app = RecordingApplication()
        server = LoopbackServer(
            self, app, ServerOptions(maxSessionConnections=1), sessionManager=manager
        )
        a = await server.connectAccepted()
        b = await server.connectAccepted()
        a.send(wire.encodeRestoreSession(ident(1), "key"))
        while not manager.lookups:
            await server.tick()
        refused = await b.roundTrip(wire.encodeRestoreSession(ident(1), "key"))
        self.assertEqual(refused, h("04") + ident(1))
        manager.lookups[0].callback(manager.result)
        self.assertEqual((await a.message(1))[0], wire.MessageType.REPLY_UTF8)

    async def test_managerFailures(self) -> None:
        """
        A failing lookup answers internal error (never "not found"); a
        failing store is logged and the session stays active.
        """
        manager = SlowManager(fail=True)
        app = RecordingApplication()
        server = LoopbackServer(self, app, sessionManager=manager)
        client = await server.connectAccepted()
        client.send(wire.encodeRestoreSession(ident(1), "key"))
        self.assertEqual(await client.message(1), h("02") + ident(1))
        session = await app.connections[0].createSession()
        self.assertEqual(app.connections[0].session, session)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)

    async def test_badGeneratedKey(self) -> None:
        """
        A key generator that makes an empty key makes createSession fail
        with ValueError; nothing is sent and no session is attached.
        """
        app = RecordingApplication()
        server = LoopbackServer(
            self, app, sessionManager=MemorySessionManager(), keyGenerator=FixedKeys("")
        )
        client = await server.connectAccepted()
        self.failureResultOf(app.connections[0].createSession(), ValueError)
        self.assertIsNone(app.connections[0].session)
        self.assertEqual(await client.roundTrip(named(1, "x")), h("BF") + ident(1))

    async def test_generatedKeyOutsideTheAlphabet(self) -> None:
        """
        A generated key with a character outside the default generator's
        alphabet (it could not be restored) makes createSession fail with
        ValueError.
        """
        app = RecordingApplication()
        server = LoopbackServer(
            self,
            app,
            sessionManager=MemorySessionManager(),
            keyGenerator=FixedKeys("chat:abc"),
        )
        await server.connectAccepted()
        self.failureResultOf(app.connections[0].createSession(), ValueError)
        self.assertIsNone(app.connections[0].session)

    async def test_invalidKeyReachesNothing(self) -> None:
        """
        A restore of a key no generator of ours makes is answered "not
        found" at once: neither the cluster's count nor the session manager
        sees it, even if the manager would find it.
        """
        manager = LookupRecorder()
        server = LoopbackServer(
            self,
            RecordingApplication(),
            sessionManager=manager,
            options=ServerOptions(maxSessionConnections=1),
        )
        client = await server.connectAccepted()
        for n, key in enumerate(["chat:" + "A" * 64, "a b", "../x", "~"], 1):
            restore = wire.encodeRestoreSession(ident(n), key)
            self.assertEqual(await client.roundTrip(restore), h("03") + ident(n))
        self.assertEqual(manager.lookups, [])
        assert server.factory.sessions is not None
        self.assertEqual(server.factory.sessions.activeCount, 0)

    async def test_closeByKeyHookOnce(self) -> None:
        """
        Closing a session by key on three connections notifies each of them
        and calls the manager's close hook exactly once.
        """
        manager = CountingManager()
        app = RecordingApplication()
        server = LoopbackServer(self, app, sessionManager=manager)
        clients = [await server.connectAccepted() for _ in range(3)]
        session = await app.connections[0].createSession()
        await clients[0].message(1)
        for client in clients[1:]:
            restore = wire.encodeRestoreSession(ident(1), session.key)
            self.assertEqual((await client.roundTrip(restore))[0], 192)
        await server.factory.closeSession(session.key)
        for client in clients:
            self.assertEqual(await client.message(2), h("16"))
        self.assertEqual(manager.closed, [session.key])
        self.assertEqual(server.factory.activeSessionCount, 0)

    async def test_expiry(self) -> None:
        """
        A session not looked up for longer than the maximum idle age is not
        found any more.
        """
        clock = Clock()
        clock.advance(1_700_000_000)
        manager = MemorySessionManager(maxIdle=100, clock=clock)
        app = RecordingApplication()
        options = ServerOptions(readTimeout=3600)
        server = LoopbackServer(self, app, options, clock, sessionManager=manager)
        client = await server.connect()
        await client.message(0)
        session = await app.connections[0].createSession()
        await client.message(1)
        clock.advance(99)
        ok = await client.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        self.assertEqual(ok[0], wire.MessageType.REPLY_UTF8)
        clock.advance(101)
        other = await server.connect()
        await other.message(0)
        gone = await other.roundTrip(wire.encodeRestoreSession(ident(1), session.key))
        self.assertEqual(gone, h("03") + ident(1))


class CountingManager(MemorySessionManager):
    """A memory manager that records which sessions it was told to forget."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[str] = []

    def onSessionClosed(self, key: str) -> None:
        self.closed.append(key)
        super().onSessionClosed(key)


@implementer(ISessionManager)
class LookupRecorder:
    """A manager that finds every key it is asked about, and records it."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def onSessionCreated(self, connection: IConnection) -> None:
        pass

    def onSessionLookup(self, key: str) -> SessionLookupResult:
        self.lookups.append(key)
        now = datetime.now(UTC)
        return SessionLookupResult(now, now, {"user": "mallory"})

    def onSessionClosed(self, key: str) -> None:
        pass


@implementer(ISessionKeyGenerator)
class FixedKeys:
    def __init__(self, key: str) -> None:
        self.key = key

    def generate(self) -> str:
        return self.key


@implementer(ISessionManager)
class SlowManager:
    """A manager whose lookups the test answers; it may fail everything."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.lookups: list[Deferred[Any]] = []
        now = datetime.now(UTC)
        self.result = SessionLookupResult(now, now, {})

    def onSessionCreated(self, connection: IConnection) -> None:
        if self.fail:
            raise OSError("disk full")

    def onSessionLookup(self, key: str) -> Deferred[Any]:
        if self.fail:
            raise OSError("disk on fire")
        d: Deferred[Any] = Deferred()
        self.lookups.append(d)
        return d

    def onSessionClosed(self, key: str) -> None:
        pass


class CrashLeftoversTests(TestCase):
    """
    C{twistd webwire} with file sessions cleans up what a crash left in its
    session directory.
    """

    async def test_staleTemporariesRemovedAtStart(self) -> None:
        """
        The temporary file of a write a crash cut short is gone once the
        server has started; one just written (by another server sharing the
        directory) stays; sessions are served as usual meanwhile.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        stale = directory.child(".wwrsess-0123456789abcdef.tmp")
        fresh = directory.child(".wwrsess-fedcba9876543210.tmp")
        for path in (stale, fresh):
            path.setContent(b'{"c":"2019-')
        old = time.time() - STALE_TEMPORARY_AGE - 60
        os.utime(stale.path, (old, old))
        config = Options()
        config.parseOptions(
            [
                "--listen=tcp:0:interface=127.0.0.1",
                f"--session-directory={directory.path}",
            ]
        )
        cleaned: Deferred[str] = Deferred()

        def observe(event: LogEvent) -> None:
            text = formatEvent(event)
            if "stale temporary" in text and not cleaned.called:
                cleaned.callback(text)

        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service = makeService(config)
        assert isinstance(service, WebWireService)
        service.startService()
        self.addCleanup(service.stopService)
        port = portNumber(await listeningPort(service))
        client = await connectRaw(port)
        await client.receivedCount(1)
        session, _ = await loggedIn(client, "ada")
        self.assertIn("removed 1 stale temporary file(s)", await cleaned)
        self.assertFalse(stale.exists())
        self.assertTrue(fresh.exists())
        other = await connectRaw(port)
        await other.receivedCount(1)
        await assertRestores(self, other, session, {"user": "ada"})
