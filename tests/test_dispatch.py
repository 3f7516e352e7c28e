"""
Tests for L{webwire._dispatch}: the per-connection dispatcher, driven
without any WebSocket or transport.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import ident
from webwire import wire
from webwire._dispatch import ConnectionState, Dispatcher
from webwire.application import Application
from webwire.interfaces import IConnection
from webwire.logonce import RepeatedEvents
from webwire.metrics import NULL_OBSERVER, OTHER, ServerMetrics
from webwire.sessions.session import Session
from webwire.traffic import Traffic


class RecordingLink:
    """A L{webwire._dispatch.Link} that records what the dispatcher asks."""

    peer = "tcp:client"
    messageBufferSize = 1 << 20
    connection: IConnection | None = None

    def __init__(self) -> None:
        self.session: Session | None = None
        self.reading = True
        self.sent: list[bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.readingUpdates = 0
        self.dispatcher: Dispatcher | None = None

    @property
    def isActive(self) -> bool:
        assert self.dispatcher is not None
        return self.dispatcher.isActive

    def sendSessionCreated(self, session: Session) -> None:
        self.sent.append(
            wire.encodeSessionCreated(session.toJSON(), self.messageBufferSize)
        )

    def sendSessionClosed(self) -> None:
        self.sent.append(wire.encodeSessionClosed())

    def sendReply(self, data: bytes) -> None:
        self.sent.append(data)

    def updateReading(self) -> None:
        self.readingUpdates += 1

    def finishClosing(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


class Waiting(Application):
    """Answers C{echo} at once; C{wait} with a Deferred the test fires."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[bytes]] = []
        self.signals: list[str] = []

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> None:
        self.signals.append(signal.name)

    def onRequest(self, connection: IConnection, request: wire.Request) -> Any:
        if request.name == "wait":
            waiting: Deferred[bytes] = Deferred()
            self.waiting.append(waiting)
            return waiting
        return request.payload


def request(n: int, name: str, payload: bytes = b"") -> wire.Message:
    return wire.parse(wire.encodeRequest(ident(n), name, payload, wire.Encoding.BINARY))


def reply(n: int, payload: bytes) -> bytes:
    return wire.encodeReply(ident(n), payload, wire.Encoding.BINARY)


def shutdownReply(n: int) -> bytes:
    return wire.encodeSpecialReply(wire.MessageType.REPLY_SHUTDOWN, ident(n))


class DispatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.application = Waiting()
        self.link = RecordingLink()
        self.finished = 0
        self.dispatcher = Dispatcher(
            self.link,
            self.application,
            NULL_OBSERVER,
            Traffic(),
            None,
            RepeatedEvents("tcp:client"),
            self.handlerFinished,
        )
        self.link.dispatcher = self.dispatcher

    def handlerFinished(self) -> None:
        self.finished += 1

    def open(self, limit: int | None = 2) -> Dispatcher:
        self.dispatcher.open(object(), limit)  # type: ignore[arg-type]
        return self.dispatcher

    def test_states(self) -> None:
        """
        A dispatcher is OPENING until opened, OPEN after, and CLOSED once
        its connection closed; C{closed} says whether it had been open.
        """
        self.assertIs(self.dispatcher.state, ConnectionState.OPENING)
        self.assertFalse(self.dispatcher.isActive)
        dispatcher = self.open()
        self.assertIs(dispatcher.state, ConnectionState.OPEN)
        self.assertTrue(dispatcher.isActive)
        self.assertTrue(dispatcher.closed())
        self.assertIs(dispatcher.state, ConnectionState.CLOSED)
        self.assertTrue(dispatcher.disconnected)

    def test_replyFromValue(self) -> None:
        """A handler's value is encoded and handed to the link as the reply."""
        dispatcher = self.open()
        dispatcher.received(request(1, "echo", b"x"))
        self.assertEqual(self.link.sent, [reply(1, b"x")])
        self.assertEqual(dispatcher.runningHandlers, 0)

    def test_limitQueues(self) -> None:
        """
        At the concurrency limit a message waits in the queue (and the link
        is told to re-decide reading); it starts once a slot frees.
        """
        dispatcher = self.open(limit=1)
        dispatcher.received(request(1, "wait"))
        self.assertTrue(dispatcher.atLimit())
        self.assertTrue(dispatcher.waitingOnHandlers())
        updates = self.link.readingUpdates
        dispatcher.received(request(2, "echo", b"b"))
        self.assertEqual(dispatcher.queued, 1)
        self.assertEqual(self.link.readingUpdates, updates + 1)
        self.assertEqual(self.link.sent, [])
        self.application.waiting[0].callback(b"a")
        self.assertEqual(self.link.sent, [reply(1, b"a"), reply(2, b"b")])
        self.assertEqual(dispatcher.queued, 0)
        self.assertEqual(dispatcher.runningHandlers, 0)

    def test_violationAfterWhatWasRead(self) -> None:
        """
        After a violation nothing more is handled; what was read before is
        answered, then the link is asked to close with the violation's code.
        """
        dispatcher = self.open(limit=1)
        dispatcher.received(request(1, "wait"))
        dispatcher.received(request(2, "echo", b"b"))
        dispatcher.violation(1002, "bad")
        self.assertTrue(dispatcher.ignoringInput())
        self.assertEqual(self.link.closes, [])
        self.application.waiting[0].callback(b"a")
        self.assertEqual(self.link.sent, [reply(1, b"a"), reply(2, b"b")])
        self.assertEqual(self.link.closes, [(1002, "bad")])
        self.assertIs(dispatcher.state, ConnectionState.CLOSING)

    def test_closeGracefullyWaitsForHandlers(self) -> None:
        """
        A graceful close refuses what waits with ReplyShutdown, lets the
        running handler finish, then asks for the Close frame; its
        Deferred fires once the connection closed.
        """
        dispatcher = self.open(limit=1)
        dispatcher.received(request(1, "wait"))
        dispatcher.received(request(2, "echo"))
        closed = dispatcher.closeGracefully(1000, "bye")
        self.assertEqual(self.link.sent, [shutdownReply(2)])
        self.assertEqual(self.link.closes, [])
        self.application.waiting[0].callback(b"a")
        self.assertEqual(self.link.sent, [shutdownReply(2), reply(1, b"a")])
        self.assertEqual(self.link.closes, [(1000, "bye")])
        self.assertNoResult(closed)
        dispatcher.closed()
        dispatcher.releaseCloseWaiters()
        self.assertIsNone(self.successResultOf(closed))

    def test_drain(self) -> None:
        """
        Draining answers queued and new requests with ReplyShutdown, drops
        signals, and reports each handler that finishes to the server.
        """
        dispatcher = self.open(limit=1)
        dispatcher.received(request(1, "wait"))
        dispatcher.received(request(2, "echo"))
        dispatcher.drain()
        self.assertEqual(self.link.sent, [shutdownReply(2)])
        self.assertFalse(dispatcher.waitingOnHandlers())
        dispatcher.received(request(3, "echo"))
        dispatcher.received(
            wire.parse(wire.encodeSignal("s", b"", wire.Encoding.BINARY))
        )
        self.assertEqual(self.application.signals, [])
        self.assertEqual(self.finished, 0)
        self.application.waiting[0].callback(b"a")
        self.assertEqual(self.finished, 1)
        self.assertEqual(
            self.link.sent, [shutdownReply(2), shutdownReply(3), reply(1, b"a")]
        )

    def test_cancelHandlers(self) -> None:
        """A cancelled request handler is answered with an internal error."""
        dispatcher = self.open()
        dispatcher.received(request(1, "wait"))
        dispatcher.cancelHandlers()
        self.assertEqual(
            self.link.sent,
            [wire.encodeSpecialReply(wire.MessageType.REPLY_INTERNAL_ERROR, ident(1))],
        )
        self.assertEqual(dispatcher.runningHandlers, 0)

    def test_handlerAfterDisconnect(self) -> None:
        """
        A handler that finishes after the connection closed is counted
        down, and the server is told it finished.
        """
        dispatcher = self.open()
        dispatcher.received(request(1, "wait"))
        dispatcher.closed()
        self.application.waiting[0].callback(b"late")
        self.assertEqual(self.finished, 1)
        self.assertEqual(dispatcher.runningHandlers, 0)


class ObservedDispatcherTests(SynchronousTestCase):
    """A dispatcher that reports to L{ServerMetrics}: how it counts replies."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.metrics = ServerMetrics(self.registry, clock=self.clock.seconds)
        self.link = RecordingLink()
        self.dispatcher = Dispatcher(
            self.link,
            Waiting(),
            self.metrics,
            Traffic(),
            None,
            RepeatedEvents("tcp:client"),
            lambda: None,
        )
        self.link.dispatcher = self.dispatcher
        self.dispatcher.open(object(), None)  # type: ignore[arg-type]

    def read(self, *names: str, close: bool = False) -> None:
        """One read of requests C{names}; the connection closes in it if C{close}."""
        self.dispatcher.beginRead()
        for n, name in enumerate(names):
            self.dispatcher.received(request(n, name))
        if close:
            self.dispatcher.closed()
        self.dispatcher.endRead()

    def replies(self, name: str) -> float | None:
        return self.registry.get_sample_value(
            "webwire_requests_total", {"name": name, "outcome": "reply"}
        )

    def test_closedInARead(self) -> None:
        """
        A connection that closes while a read is processed counts the
        replies of that read once, though its tally is done before.
        """
        self.read("echo")
        self.read("echo", "echo")
        self.read("echo", close=True)
        self.assertEqual(self.replies(OTHER), 4)
        self.assertEqual(self.metrics._tallies, set())

    def test_notTallyingAfterTheRead(self) -> None:
        """
        Requests answered outside a read (queued, then started when a slot
        frees) are told one by one, not counted in the tally.
        """
        self.read("echo")
        self.read("echo")
        self.dispatcher.received(request(1, "echo"))
        self.assertEqual(self.replies(OTHER), 3)
