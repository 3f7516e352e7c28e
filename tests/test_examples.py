"""
The examples run and do what their docstrings say, over loopback.
"""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from examples import quickstart
from examples.shared_port import SharedPortService
from examples.sqlite_sessions import SQLiteSessionManager
from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    LoopbackServer,
    connectRaw,
    h,
    ident,
    listeningPort,
    portNumber,
    rawHTTP,
)
from tests.test_twistd import ROOT, TWISTD, startServer
from webwire import wire
from webwire.client import ClientOptions, WebWireClient
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
