# -*- test-case-name: tests.test_testing -*-
"""
Test a WebWire application without sockets: a server and a client
connected in memory, on a clock the test advances. For example::

    from twisted.trial.unittest import SynchronousTestCase
    from webwire.testing import connectedPair

    class EchoTests(SynchronousTestCase):
        def test_echo(self):
            pair = connectedPair(EchoApplication())
            reply = self.successResultOf(pair.request("echo", b"hi"))
            self.assertEqual(reply.payload, b"hi")

Everything runs the real server: the L{WebWireServerFactory} with its
options, session manager and application, and the real WebSocket framing
on both sides; only the sockets are replaced by an in-memory transport that
honours flow control like TCP (what a paused side's peer writes waits with
the peer). Nothing happens until the test makes it happen: L{Pair.flush}
moves bytes, L{MemoryServer.advance} moves the clock (read deadlines,
shutdown timeouts, session expiry of a manager given this clock) and then
the bytes.

A handler that returns a Deferred the test fires later answers once the
test calls L{Pair.flush} (or L{MemoryServer.advance}) after firing it.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from webwire import wire
from webwire._protocol import WebWireServerProtocol
from webwire.interfaces import IConnection, ISessionManager, IWebWireServer
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory

__all__ = [
    "Answer",
    "MemoryServer",
    "MemoryTransport",
    "Pair",
    "RecordingClient",
    "connectedPair",
]

Answer = wire.Reply | wire.ErrorReply | wire.SpecialReply
"""What answers a request: a reply, an error reply or a special reply."""


class MemoryTransport(iosim.FakeTransport):
    """
    An C{iosim.FakeTransport} that honours flow control like TCP does: while
    the receiving side is paused, what its peer wrote stays with the peer
    (as it would stay in the kernel), and is delivered once it resumes.

    :ivar producerState: C{"producing"} or C{"paused"}, as on
        C{twisted.internet.testing.StringTransport}.
    :ivar aborted: Whether C{abortConnection} was called.
    :ivar bytesWritten: How many bytes the protocol wrote, in all.
    :ivar peer: The transport on the other side, once connected.
    """

    producerState = "producing"
    aborted = False
    bytesWritten = 0
    peer: MemoryTransport | None = None

    def write(self, data: bytes) -> None:
        self.bytesWritten += len(data)
        super().write(data)

    def pauseProducing(self) -> None:
        self.producerState = "paused"

    def resumeProducing(self) -> None:
        self.producerState = "producing"

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()

    def loseWriteConnection(self) -> None:
        # iosim has no half-close; either way the peer sees the end of the
        # stream.
        self.loseConnection()

    def getOutBuffer(self) -> Any:
        if self.peer is not None and self.peer.producerState == "paused":
            return None
        return super().getOutBuffer()


class RecordingClient(WebSocketClientProtocol):
    """
    A WebSocket client that records every message and close it sees, and
    resolves the requests L{Pair.request} sent.

    :ivar received: Every binary message, as received (AcceptConf first).
    :ivar textReceived: Every text message.
    :ivar pongs: The payload of every pong.
    :ivar closes: C{(wasClean, code, reason)} of every close seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []
        self.textReceived: list[bytes] = []
        self.pongs: list[bytes] = []
        self.closes: list[tuple[bool, int | None, str | None]] = []
        self.waiting: dict[bytes, Deferred[Answer]] = {}

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.textReceived.append(payload)
            return
        self.received.append(payload)
        if self.waiting and len(self.received) > 1:
            message = wire.parse(payload)
            if isinstance(message, Answer):
                waiter = self.waiting.pop(message.identifier, None)
                if waiter is not None:
                    waiter.callback(message)

    def onPong(self, payload: bytes) -> None:
        self.pongs.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closes.append((wasClean, code, reason))

    @property
    def closeCode(self) -> int | None:
        """The close code of the first close seen, or C{None} while open."""
        return self.closes[0][1] if self.closes else None


class Pair:
    """
    One server connection and one client, connected in memory.

    :ivar server: The server's protocol (what the server's internals are
        tested through; applications see L{connection}).
    :ivar client: The L{RecordingClient}.
    :ivar serverTransport: The server's L{MemoryTransport}.
    :ivar clientTransport: The client's L{MemoryTransport}.
    :ivar pump: The C{iosim.IOPump} that moves bytes between them.
    """

    def __init__(
        self,
        factory: WebWireServerFactory,
        clock: MemoryReactorClock,
        clientFactory: WebSocketClientFactory | None = None,
        peer: IAddress | None = None,
    ) -> None:
        """
        Connect a client to C{factory} and move bytes until the WebSocket
        handshake is done (or refused).

        :param clientFactory: Makes the client; one without timers (they
            would run on the global reactor) if omitted. Its protocol is
            set to L{RecordingClient}.
        :param peer: The client's address as the server sees it (what
            L{IConnection.peer} is); C{127.0.0.1:50000} over TCP if omitted.
        """
        if peer is None:
            peer = IPv4Address("TCP", "127.0.0.1", 50000)
        if clientFactory is None:
            clientFactory = WebSocketClientFactory("ws://localhost/")
            clientFactory.setProtocolOptions(
                openHandshakeTimeout=0,
                closeHandshakeTimeout=0,
                serverConnectionDropTimeout=0,
            )
        clientFactory.protocol = RecordingClient
        # What a listening port gets: the protocol under the factory's guard.
        guarded = factory.buildProtocol(peer)
        server = guarded.wrappedProtocol
        client: object = clientFactory.buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 80)
        )
        assert isinstance(server, WebWireServerProtocol)
        assert isinstance(client, RecordingClient)
        self.server: WebWireServerProtocol = server
        self.client: RecordingClient = client
        self.serverTransport = MemoryTransport(guarded, isServer=True, peerAddress=peer)
        self.clientTransport = MemoryTransport(client, isServer=False)
        self.serverTransport.peer = self.clientTransport
        self.clientTransport.peer = self.serverTransport
        self.pump = iosim.connect(
            guarded,
            self.serverTransport,
            client,
            self.clientTransport,
            greet=False,
            clock=clock,
        )
        self._nextIdentifier = 0
        self.pump.flush()

    @property
    def connection(self) -> IConnection:
        """
        The server's L{IConnection} for this client: what the application's
        handlers get.

        :raises RuntimeError: If the handshake was refused.
        """
        if self.server.connection is None:
            raise RuntimeError("the WebSocket handshake did not complete")
        return self.server.connection

    def send(self, *messages: bytes) -> None:
        """
        Send each of C{messages} (encoded WebWire messages, see
        L{webwire.wire}) as one binary WebSocket message, then move the
        bytes.
        """
        for message in messages:
            self.client.sendMessage(message, isBinary=True)
        self.pump.flush()

    def request(
        self,
        name: str,
        payload: bytes = b"",
        encoding: wire.Encoding = wire.Encoding.BINARY,
    ) -> Deferred[Answer]:
        """
        Send a request and move the bytes.

        :param name: The request's name (printable ASCII, at most 255).
        :param payload: Its payload bytes, in C{encoding}.
        :returns: A Deferred that fires with what answers it: a
            L{wire.Reply}, L{wire.ErrorReply} or L{wire.SpecialReply}
            (for instance ReplyShutdown). It has no result until the answer
            reached the client: after a handler's Deferred fires, call
            L{flush}.
        """
        identifier = self._newIdentifier()
        answer = self._answer(identifier)
        self.send(wire.encodeRequest(identifier, name, payload, encoding))
        return answer

    def restoreSession(self, key: str) -> Deferred[Answer]:
        """
        Ask the server to restore the session C{key} on this connection (as
        a client that reconnects does), then move the bytes.

        :param key: The session's key (printable ASCII, 1-255 characters),
            for instance that of a session another L{Pair} created.
        :returns: A Deferred that fires with what answers it: a
            L{wire.Reply} carrying the session document, or an
            L{wire.SpecialReply} (session not found, too many connections,
            sessions disabled, ...).
        """
        identifier = self._newIdentifier()
        answer = self._answer(identifier)
        self.send(wire.encodeRestoreSession(identifier, key))
        return answer

    def closeSession(self) -> Deferred[Answer]:
        """
        Ask the server to close this connection's session, then move the
        bytes.

        :returns: A Deferred that fires with what answers it: an empty
            L{wire.Reply}, or an L{wire.SpecialReply}.
        """
        identifier = self._newIdentifier()
        answer = self._answer(identifier)
        self.send(wire.encodeCloseSession(identifier))
        return answer

    def _newIdentifier(self) -> bytes:
        self._nextIdentifier += 1
        return self._nextIdentifier.to_bytes(8, "little")

    def _answer(self, identifier: bytes) -> Deferred[Answer]:
        answer: Deferred[Answer] = Deferred()
        self.client.waiting[identifier] = answer
        return answer

    def signal(
        self,
        name: str,
        payload: bytes = b"",
        encoding: wire.Encoding = wire.Encoding.BINARY,
    ) -> None:
        """Send a signal to the server and move the bytes."""
        self.send(wire.encodeSignal(name, payload, encoding))

    @property
    def signals(self) -> list[wire.Signal]:
        """The signals the server sent to the client, in order."""
        return [m for m in map(wire.parse, self.replies) if isinstance(m, wire.Signal)]

    def close(self, code: int = 1000) -> None:
        """Close the client's end (a WebSocket close), then move the bytes."""
        self.client.sendClose(code)
        self.pump.flush()

    def flush(self) -> None:
        """Move bytes both ways until nothing moves."""
        self.pump.flush()

    @property
    def replies(self) -> list[bytes]:
        """Every binary message the client received after AcceptConf."""
        return self.client.received[1:]


class MemoryServer:
    """
    A L{WebWireServerFactory} on a C{MemoryReactorClock}, and the in-memory
    L{Pair}s connected to it.

    :ivar clock: The clock every server timer runs on.
    :ivar factory: The server.
    :ivar pairs: Every L{Pair} L{connect} made, oldest first.
    """

    def __init__(
        self,
        application: IWebWireServer,
        options: ServerOptions | None = None,
        *,
        sessionManager: ISessionManager | None = None,
        clock: MemoryReactorClock | None = None,
        testCase: SynchronousTestCase | None = None,
        **factoryArguments: Any,
    ) -> None:
        """
        :param application: What is served.
        :param options: The server's options; L{ServerOptions} defaults if
            omitted.
        :param sessionManager: What persists sessions; with sessions enabled
            and none given, a L{webwire.sessions.MemorySessionManager} on
            C{clock}.
        :param clock: The clock; a new one if omitted.
        :param testCase: If given, Autobahn's own timers (see txaio) also
            run on C{clock} for the duration of the test: needed only with
            a client factory of one's own that has timers.
        :param factoryArguments: Passed on to L{WebWireServerFactory}
            (C{keyGenerator}, C{cluster}, C{observer}).
        """
        self.clock = clock if clock is not None else MemoryReactorClock()
        if testCase is not None:
            # Autobahn's timers use txaio's loop, not the factory's reactor.
            testCase.patch(txaio.config, "loop", self.clock)  # type: ignore[attr-defined]
        if sessionManager is None and (options is None or options.sessions):
            from webwire.sessions.memory import MemorySessionManager

            sessionManager = MemorySessionManager(clock=self.clock)
        self.factory = WebWireServerFactory(
            application,
            options,
            sessionManager=sessionManager,
            reactor=self.clock,
            **factoryArguments,
        )
        self.pairs: list[Pair] = []

    def connect(
        self,
        clientFactory: WebSocketClientFactory | None = None,
        *,
        peer: IAddress | None = None,
    ) -> Pair:
        """
        Connect a new client in memory and complete its handshake.

        :param clientFactory: See L{Pair.__init__}.
        :param peer: The client's address as the server sees it; see
            L{Pair.__init__}. Give each client its own to tell them apart as
            a server behind no proxy would (per-address limits, logs).
        """
        pair = Pair(self.factory, self.clock, clientFactory, peer)
        self.pairs.append(pair)
        return pair

    def flush(self) -> None:
        """Move bytes on every pair."""
        for pair in self.pairs:
            pair.flush()

    def advance(self, seconds: float) -> None:
        """Advance the clock by C{seconds}, then move bytes on every pair."""
        self.clock.advance(seconds)
        self.flush()

    def shutdown(self) -> Deferred[None]:
        """
        Shut the server down gracefully (see
        L{WebWireServerFactory.shutdown}) and move the bytes.
        """
        done = self.factory.shutdown()
        self.flush()
        return done


def connectedPair(
    application: IWebWireServer,
    options: ServerOptions | None = None,
    **serverArguments: Any,
) -> Pair:
    """
    Serve C{application} in memory and connect one client to it.

    :param serverArguments: Passed on to L{MemoryServer} (C{sessionManager},
        C{clock}, C{testCase}, C{cluster}, ...).
    :returns: The connected L{Pair}; its server is C{pair.server.factory}.
    """
    return MemoryServer(application, options, **serverArguments).connect()
