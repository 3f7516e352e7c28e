"""
End-to-end tests of how the server copes with bad input, silence, floods,
slow readers and shutdown, over real loopback sockets.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.helpers import (
    LoopbackServer,
    RawClientProtocol,
    WatchedClock,
    echoRequest,
    h,
    ident,
    rawHTTP,
    sleepRequest,
    webwireEvents,
)
from tests.test_endtoend import RecordingApplication
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.errors import Disconnected, InvalidMessage, MessageTooLarge
from webwire.interfaces import IConnection, RequestResult
from webwire.options import ServerOptions

INVALID_VECTORS = {
    "X01": "7F 00 00 00 00 00 00 00 00 00",
    "X02": "C8",
    "X03": "81 01 00 00 00 00 00 00 00 01 72",
    "X04": "7F 00 00 00 00 00 00 00 00 03 41",
    "X05": "21 00",
    "X06": "1F 00 00 00 00 00 00 00 00 00",
    "X07": "41 02 67 6F",
    "X08": "3F 00",
    "X09": "20 01 00 00 00 00 00 00 00",
    "X10": "00 01 00 00 00 00 00 00 00 00 41",
    "X11": "",
}


class ViolationTests(TestCase):
    """
    Malformed input closes the connection with a close code and one log
    line, without any reply.
    """

    timeout = 20

    async def assertClosedWith(
        self, client: RawClientProtocol, code: int, replies: int = 1
    ) -> None:
        wasClean, closeCode, reason = await client.closed
        self.assertEqual(closeCode, code)
        self.assertEqual(len(client.received), replies)

    async def test_invalidVectors(self) -> None:
        """
        Each invalid vector of the protocol closes its connection with 1002
        and gets no reply; the server logs one warning naming the problem
        and keeps serving other connections.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        server = LoopbackServer(self, ConformanceApplication())
        for name, vector in INVALID_VECTORS.items():
            client = await server.connectAccepted()
            before = len(webwireEvents(observer, LogLevel.warn))
            client.send(h(vector))
            await self.assertClosedWith(client, 1002)
            warnings = webwireEvents(observer, LogLevel.warn)[before:]
            self.assertEqual(len(warnings), 1, name)
            self.assertEqual(
                warnings[0]["log_format"].split(":")[0],
                "protocol violation from {peer}",
            )
        survivor = await server.connectAccepted()
        reply = await survivor.roundTrip(echoRequest(1, b"ok"))
        self.assertEqual(reply, h("BF") + ident(1) + b"ok")

    async def test_textMessage(self) -> None:
        """A text message closes the connection with 1003."""
        server = LoopbackServer(self, ConformanceApplication())
        client = await server.connectAccepted()
        client.sendMessage(b"hello", isBinary=False)
        await self.assertClosedWith(client, 1003)

    async def test_oversizedMessage(self) -> None:
        """
        A message larger than the message buffer size closes the connection
        with 1009; one of exactly the buffer size is served.
        """
        server = LoopbackServer(
            self, ConformanceApplication(), ServerOptions(messageBufferSize=64)
        )
        client = await server.connect()
        await client.message(0)
        fits = echoRequest(1, b"x" * 50)
        self.assertEqual(len(fits), 64)
        self.assertEqual(await client.roundTrip(fits), h("BF") + ident(1) + b"x" * 50)
        client.send(echoRequest(2, b"x" * 51))
        await self.assertClosedWith(client, 1009, replies=2)

    async def test_runningHandlerFinishes(self) -> None:
        """
        After a violation, handlers already running still finish and their
        replies are delivered before the connection closes; a request sent
        after the violation is not answered.
        """
        clock = WatchedClock()
        server = LoopbackServer(self, ConformanceApplication(clock))
        client = await server.connectAccepted()
        client.send(sleepRequest(1, 100))
        await clock.pending()
        client.send(h("C8"), echoRequest(2, b"late"))
        protocol = server.serverProtocols()[0]
        while protocol.isActive:
            await server.tick()
        clock.advance(0.1)
        await self.assertClosedWith(client, 1002, replies=2)
        self.assertEqual(client.received[1], h("C0") + ident(1) + b"100")


class ReadTimeoutTests(TestCase):
    """
    A client that sends nothing for the read timeout is dropped.
    """

    timeout = 20

    async def test_silentClientDropped(self) -> None:
        """
        Messages and heartbeats renew the deadline; a full read timeout of
        silence drops the connection, with one warning.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        clock = Clock()
        server = LoopbackServer(self, ConformanceApplication(), clock=clock)
        client = await server.connectAccepted()
        clock.advance(59)
        await client.roundTrip(echoRequest(1, b"a"))
        clock.advance(59)
        client.send(h("21"))
        await client.roundTrip(echoRequest(2, b"b"))
        clock.advance(59)
        self.assertIsNone(client.closeCode)
        clock.advance(1)
        wasClean, code, reason = await client.closed
        self.assertFalse(wasClean)
        self.assertEqual(code, 1006)
        warnings = webwireEvents(observer, LogLevel.warn)
        self.assertEqual(len(warnings), 1)
        self.assertIn("no message from", warnings[0]["log_format"])

    async def test_handlerTimeDoesNotCount(self) -> None:
        """
        While a sequential connection waits for its own handler, the read
        deadline does not run.
        """
        clock = Clock()
        sleepClock = WatchedClock()
        options = ServerOptions(concurrency=1)
        server = LoopbackServer(
            self, ConformanceApplication(sleepClock), options, clock
        )
        client = await server.connectAccepted()
        client.send(sleepRequest(1, 1000))
        await sleepClock.pending()
        clock.advance(120)
        self.assertIsNone(client.closeCode)
        sleepClock.advance(1)
        await client.message(1)
        self.assertEqual(client.received[1], h("C0") + ident(1) + b"1000")


class HeartbeatFloodTests(TestCase):
    """
    The JavaScript client sends a heartbeat about every millisecond; the
    server must take that indefinitely.
    """

    timeout = 30

    async def test_flood(self) -> None:
        """
        20,000 heartbeats are absorbed silently: nothing is logged, no timer
        is added, and requests are still served.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        clock = Clock()
        server = LoopbackServer(self, ConformanceApplication(), clock=clock)
        client = await server.connectAccepted()
        calls = len(clock.getDelayedCalls())
        before = len(webwireEvents(observer, LogLevel.debug))
        for _ in range(20):
            client.send(*[h("21")] * 1000)
            await client.roundTrip(echoRequest(1, b"x"))
        self.assertEqual(len(client.received), 21)
        self.assertEqual(len(clock.getDelayedCalls()), calls)
        self.assertEqual(webwireEvents(observer, LogLevel.debug)[before:], [])


class ShutdownTests(TestCase):
    """
    Graceful shutdown: refuse new work, finish running work, then close.
    """

    timeout = 20

    async def test_gracefulShutdown(self) -> None:
        """
        With a request in flight, a shutdown answers new requests with
        ReplyShutdown, drops signals, refuses new handshakes with 503,
        delivers the running request's reply, then closes with 1001.
        """
        sleepClock = WatchedClock()
        server = LoopbackServer(self, ConformanceApplication(sleepClock))
        client = await server.connectAccepted()
        client.send(sleepRequest(1, 500))
        await sleepClock.pending()
        done = server.factory.shutdown()
        self.assertNoResult(done)
        signal = wire.encodeSignal("echo-signal", b"s", wire.Encoding.BINARY)
        client.send(signal)
        self.assertEqual(
            await client.roundTrip(echoRequest(2, b"x")), h("01") + ident(2)
        )
        restore = wire.encodeRestoreSession(ident(3), "abc")
        self.assertEqual(await client.roundTrip(restore), h("01") + ident(3))
        response = await rawHTTP(server.portNumber)
        self.assertTrue(response.startswith(b"HTTP/1.1 503"), response)
        self.assertNoResult(done)
        sleepClock.advance(0.5)
        wasClean, code, reason = await client.closed
        self.assertEqual(code, 1001)
        await done
        self.assertEqual(client.received[3:], [h("C0") + ident(1) + b"500"])

    async def test_shutdownTimeout(self) -> None:
        """
        A handler that never finishes is cancelled after the shutdown
        timeout; its request is answered with an internal error.
        """
        clock = Clock()
        app = RecordingApplication()
        app.handler = lambda connection, request: (
            Deferred() if request.payload == b"hang" else request.payload
        )
        options = ServerOptions(shutdownTimeout=5)
        server = LoopbackServer(self, app, options, clock)
        client = await server.connectAccepted()
        client.send(echoRequest(1, b"hang"))
        while not app.requests:
            await server.tick()
        done = server.factory.shutdown()
        clock.advance(4.9)
        self.assertNoResult(done)
        clock.advance(0.1)
        await done
        await client.closed
        self.assertEqual(client.received[1:2], [h("02") + ident(1)])


def _buffered(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken."""
    return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)


class SlowReaderTests(TestCase):
    """
    A client that does not read cannot make the server buffer without
    bound.
    """

    timeout = 60

    async def test_requestsThrottled(self) -> None:
        """
        A client that sends requests but does not read their replies is
        throttled, not cut off: the server stops reading from it, so what it
        buffers for the client stays bounded; once the client reads again,
        every reply arrives, in order, none lost.
        """
        app = RecordingApplication()
        server = LoopbackServer(self, app, ServerOptions(concurrency=1))
        client = await server.connectAccepted()
        protocol = server.serverProtocols()[0]
        client.stopReading()
        count = 2000
        client.send(*(echoRequest(n, b"r" * 4000) for n in range(1, count + 1)))
        largestBuffer = 0
        for _ in range(300):
            await server.tick()
            largestBuffer = max(largestBuffer, _buffered(protocol.transport))
        self.assertTrue(protocol.isWriteCongested)
        self.assertLess(len(app.requests), count)
        # Twisted's 64 KiB plus the replies to one read's worth of requests.
        self.assertLess(largestBuffer, 192 * 1024)
        self.assertIsNone(client.closeCode)
        client.startReading()
        received = await client.receivedCount(count + 1)
        self.assertEqual(
            [m[1:9] for m in received[1:]], [ident(n) for n in range(1, count + 1)]
        )

    async def test_signalsToNonReaderCutOff(self) -> None:
        """
        Signals pushed to a client that does not read are bounded: past
        maxSendBuffer the connection is dropped with one warning and
        C{signal} raises L{Disconnected}; a client that reads gets the same
        stream in full.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        app = RecordingApplication()
        options = ServerOptions(maxSendBuffer=256 * 1024)
        server = LoopbackServer(self, app, options)
        reader = await server.connectAccepted()
        sleeper = await server.connectAccepted()
        sleeper.stopReading()
        toReader, toSleeper = app.connections
        chunk = b"s" * 4000
        sentToReader = 0
        for _ in range(2500):
            for _ in range(4):
                toReader.signal("data", chunk)
                sentToReader += 1
            try:
                for _ in range(4):
                    toSleeper.signal("data", chunk)
            except Disconnected:
                break
            await server.tick()
        else:
            self.fail("a client that never reads was not cut off")
        sleeper.startReading()  # to notice that it was dropped
        await sleeper.closed
        warnings = webwireEvents(observer, LogLevel.warn)
        self.assertEqual(len(warnings), 1)
        self.assertIn("does not read", warnings[0]["log_format"])
        self.assertRaises(Disconnected, toSleeper.signal, "data", chunk)
        received = await reader.receivedCount(1 + sentToReader)
        self.assertEqual(set(received[1:]), {h("3F 04") + b"data" + chunk})
        self.assertIsNone(reader.closeCode)


class ConnectionTests(TestCase):
    """
    What the application can do with a connection, and the hooks around it.
    """

    timeout = 20

    async def test_signalOrderAndEncodings(self) -> None:
        """
        Signals a handler sends leave before its reply, in the request's
        encoding; a client's C{echo-signal} is answered with C{echoed}.
        """
        server = LoopbackServer(self, ConformanceApplication())
        client = await server.connectAccepted()
        request = wire.encodeRequest(ident(1), "signal-me", b"yo", wire.Encoding.UTF8)
        client.send(request)
        received = await client.receivedCount(3)
        self.assertEqual(
            received[1:], [h("40 04 70696E67 796F"), h("C0") + ident(1) + b"yo"]
        )
        text = "hi".encode("utf-16-le")
        odd = wire.encodeRequest(ident(2), "signal-odd", text, wire.Encoding.UTF16)
        client.send(odd)
        received = await client.receivedCount(5)
        self.assertEqual(
            received[3:],
            [h("41 03 6F6464 00 6800 6900"), h("C1") + ident(2) + h("00 6800 6900")],
        )
        client.send(h("40 0B") + b"echo-signal" + b"!")
        self.assertEqual(await client.message(5), h("40 06") + b"echoed!")

    async def test_signalRefusals(self) -> None:
        """
        C{signal} raises what the codec refuses, and L{Disconnected} once
        the connection is closed.
        """
        app = RecordingApplication()
        server = LoopbackServer(self, app, ServerOptions(messageBufferSize=32))
        client = await server.connect()
        await client.message(0)
        connection = app.connections[0]
        self.assertRaises(InvalidMessage, connection.signal)
        self.assertRaises(InvalidMessage, connection.signal, "bad\nname")
        self.assertRaises(
            InvalidMessage, connection.signal, "x", b"", wire.Encoding.UTF16
        )
        self.assertRaises(MessageTooLarge, connection.signal, "x", b"y" * 30)
        connection.signal("x", b"y" * 29)
        self.assertEqual(await client.message(1), h("3F 01 78") + b"y" * 29)
        connection.signal("t", "é", wire.Encoding.UTF16)
        self.assertEqual(await client.message(2), h("41 01 74 00 E900"))
        await connection.close()
        self.assertRaises(Disconnected, connection.signal, "x", b"y")

    async def test_closeWaitsForHandlers(self) -> None:
        """
        C{close()} lets running handlers finish and send their replies,
        drops what arrives meanwhile, then closes with 1000.
        """
        sleepClock = WatchedClock()
        app = ConformanceApplication(sleepClock)
        server = LoopbackServer(self, app)
        client = await server.connectAccepted()
        client.send(sleepRequest(1, 10))
        await sleepClock.pending()
        connection = server.serverProtocols()[0].connection
        assert connection is not None
        closed = connection.close()
        self.assertFalse(connection.isActive)
        client.send(echoRequest(2, b"dropped"))
        self.assertNoResult(closed)
        sleepClock.advance(0.01)
        await closed
        wasClean, code, reason = await client.closed
        self.assertEqual(code, 1000)
        self.assertEqual(client.received[1:], [h("C0") + ident(1) + b"10"])

    async def test_handlerClosesItsConnection(self) -> None:
        """
        A handler that closes its own connection still has its reply
        delivered before the Close frame, whether it answers at once or
        later.
        """
        app = RecordingApplication()
        later: Deferred[bytes] = Deferred()

        def handler(connection: IConnection, request: wire.Request) -> RequestResult:
            connection.close()
            return later if request.payload == b"later" else b"bye"

        app.handler = handler
        server = LoopbackServer(self, app)
        now = await server.connectAccepted()
        now.send(echoRequest(1, b"now"))
        wasClean, code, reason = await now.closed
        self.assertEqual(
            (code, now.received[1:]), (1000, [h("BF") + ident(1) + b"bye"])
        )
        deferred = await server.connectAccepted()
        deferred.send(echoRequest(2, b"later"))
        while len(app.requests) < 2:
            await server.tick()
        later.callback(b"done")
        wasClean, code, reason = await deferred.closed
        self.assertEqual(
            (code, deferred.received[1:]), (1000, [h("BF") + ident(2) + b"done"])
        )

    async def test_connectHookBlocksProcessing(self) -> None:
        """
        Nothing the client sends is processed until C{onClientConnected}
        has finished; then it is, in order.
        """
        app = RecordingApplication()
        hook: Deferred[None] = Deferred()
        app.connectResult = hook
        server = LoopbackServer(self, app)
        client = await server.connectAccepted()
        client.send(echoRequest(1, b"a"), echoRequest(2, b"b"))
        for _ in range(5):
            await server.tick()
        self.assertEqual(app.requests, [])
        hook.callback(None)
        received = await client.receivedCount(3)
        self.assertEqual(
            received[1:], [h("BF") + ident(1) + b"a", h("BF") + ident(2) + b"b"]
        )

    async def test_connectHookFailure(self) -> None:
        """
        If C{onClientConnected} fails, the failure is logged and the
        connection closed with 1011.
        """
        app = RecordingApplication()
        app.connectResult = Deferred()
        server = LoopbackServer(self, app)
        hook = app.connectResult
        client = await server.connectAccepted()
        hook.errback(ValueError("no thanks"))
        wasClean, code, reason = await client.closed
        self.assertEqual(code, 1011)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    async def test_disconnectHook(self) -> None:
        """
        C{onClientDisconnected} is called once with the connection and the
        reason.
        """
        app = RecordingApplication()
        server = LoopbackServer(self, app)
        client = await server.connectAccepted()
        client.sendClose(1000)
        await client.closed
        while not app.disconnected:
            await server.tick()
        [(connection, reason)] = app.disconnected
        self.assertIs(connection, app.connections[0])
        self.assertFalse(connection.isActive)
