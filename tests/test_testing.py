"""
Tests for L{webwire.testing}, the in-memory server-and-client pair that
application authors test with.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.trial import reporter, runner
from twisted.trial.unittest import SynchronousTestCase

from webwire import wire
from webwire.application import Application
from webwire.errors import RequestError
from webwire.interfaces import IConnection
from webwire.options import ServerOptions
from webwire.sessions.memory import MemorySessionManager
from webwire.testing import Answer, MemoryServer, connectedPair


class Sample(Application):
    """Echoes, fails, signals back, creates sessions, or waits."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[bytes]] = []
        self.connected: list[IConnection] = []

    def onClientConnected(self, connection: IConnection) -> None:
        self.connected.append(connection)

    def onRequest(self, connection: IConnection, request: wire.Request) -> Any:
        if request.name == "fail":
            raise RequestError("NOPE", "no")
        if request.name == "signal":
            connection.signal("back", request.payload)
            return b""
        if request.name == "session":
            return connection.createSession().addCallback(lambda s: s.key)
        if request.name == "wait":
            self.waiting.append(Deferred())
            return self.waiting[-1]
        return request.payload


class PairTests(SynchronousTestCase):
    def reply(self, answer: Deferred[Answer]) -> wire.Reply:
        """The L{wire.Reply} C{answer} fired with."""
        reply = self.successResultOf(answer)
        assert isinstance(reply, wire.Reply), reply
        return reply

    def test_request(self) -> None:
        """L{Pair.request} fires with the reply, identified as sent."""
        pair = connectedPair(Sample())
        first = self.successResultOf(pair.request("echo", b"a"))
        second = self.successResultOf(pair.request("echo", b"b"))
        self.assertEqual(
            first, wire.Reply(first.identifier, b"a", wire.Encoding.BINARY)
        )
        assert isinstance(second, wire.Reply)
        self.assertEqual(second.payload, b"b")
        self.assertNotEqual(first.identifier, second.identifier)

    def test_errorReply(self) -> None:
        """A L{RequestError} arrives as an L{wire.ErrorReply}."""
        pair = connectedPair(Sample())
        reply = self.successResultOf(pair.request("fail"))
        assert isinstance(reply, wire.ErrorReply), reply
        self.assertEqual((reply.code, reply.message), ("NOPE", "no"))

    def test_connection(self) -> None:
        """L{Pair.connection} is what the application's hooks got."""
        application = Sample()
        pair = connectedPair(application)
        self.assertEqual(application.connected, [pair.connection])

    def test_signals(self) -> None:
        """What the server signals shows in L{Pair.signals}."""
        pair = connectedPair(Sample())
        self.successResultOf(pair.request("signal", b"x"))
        self.assertEqual(
            pair.signals, [wire.Signal("back", b"x", wire.Encoding.BINARY)]
        )

    def test_waitsForFlush(self) -> None:
        """A reply from a later Deferred arrives after L{Pair.flush}."""
        application = Sample()
        pair = connectedPair(application)
        reply = pair.request("wait")
        application.waiting[0].callback(b"late")
        self.assertNoResult(reply)
        pair.flush()
        self.assertEqual(self.reply(reply).payload, b"late")

    def test_sessions(self) -> None:
        """
        Sessions are on by default, kept by a memory manager on the clock.
        """
        pair = connectedPair(Sample())
        key = self.reply(pair.request("session")).payload
        session = pair.connection.session
        assert session is not None
        self.assertEqual(session.key.encode(), key)
        manager = pair.server.factory.sessionManager
        self.assertIsInstance(manager, MemorySessionManager)

    def test_restoreAndCloseSession(self) -> None:
        """
        L{Pair.restoreSession} puts a second connection in the session a
        first one created; L{Pair.closeSession} closes it; an unknown key
        is answered with session-not-found.
        """
        server = MemoryServer(Sample())
        first, second = server.connect(), server.connect()
        key = self.reply(first.request("session")).payload.decode()
        restored = self.reply(second.restoreSession(key))
        self.assertEqual(json.loads(restored.payload)["k"], key)
        session = second.connection.session
        assert session is not None
        self.assertEqual(session.key, key)
        self.assertEqual(self.reply(second.closeSession()).payload, b"")
        self.assertIsNone(second.connection.session)
        missing = self.successResultOf(second.restoreSession("no-such-key"))
        assert isinstance(missing, wire.SpecialReply), missing
        self.assertEqual(missing.type, wire.MessageType.REPLY_SESSION_NOT_FOUND)

    def test_peer(self) -> None:
        """
        Each client may have its own address; by default it is
        127.0.0.1:50000.
        """
        server = MemoryServer(Sample())
        default = server.connect()
        other = server.connect(peer=IPv4Address("TCP", "192.0.2.7", 99))
        self.assertEqual(
            default.connection.peer, IPv4Address("TCP", "127.0.0.1", 50000)
        )
        self.assertEqual(other.connection.peer, IPv4Address("TCP", "192.0.2.7", 99))

    def test_clockDrivesDeadline(self) -> None:
        """L{MemoryServer.advance} moves the server's timers."""
        server = MemoryServer(Sample(), ServerOptions(readTimeout=10))
        pair = server.connect()
        server.advance(9)
        self.assertFalse(pair.serverTransport.aborted)
        server.advance(2)
        self.assertTrue(pair.serverTransport.aborted)

    def test_shutdown(self) -> None:
        """
        L{MemoryServer.shutdown} answers new requests with ReplyShutdown
        while a handler runs, then closes with 1001.
        """
        application = Sample()
        server = MemoryServer(application)
        pair = server.connect()
        running = pair.request("wait")
        done = server.shutdown()
        refused = self.successResultOf(pair.request("echo"))
        assert isinstance(refused, wire.SpecialReply), refused
        self.assertEqual(refused.type, wire.MessageType.REPLY_SHUTDOWN)
        application.waiting[0].callback(b"ok")
        server.flush()
        self.assertEqual(self.reply(running).payload, b"ok")
        self.assertEqual(pair.client.closeCode, 1001)
        self.successResultOf(done)


class ExampleTests(SynchronousTestCase):
    def test_exampleTestsPass(self) -> None:
        """The example tests in C{examples/test_echo.py} run and pass."""
        suite = runner.TestLoader().loadByName("examples.test_echo", recurse=True)
        result = reporter.TestResult()
        suite.run(result)
        self.assertEqual((result.errors, result.failures), ([], []))
        self.assertEqual(result.testsRun, 3)
