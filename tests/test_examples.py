"""
The examples run and do what their docstrings say, over loopback.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from examples import quickstart
from examples.sqlite_sessions import SQLiteSessionManager
from tests.helpers import LoopbackServer, h, ident
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.interfaces import ISessionManager
from webwire.sessions import Session


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
