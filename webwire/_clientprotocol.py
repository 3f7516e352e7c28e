# -*- test-case-name: tests.test_client -*-
"""
The client's side of one WebSocket connection: checks the server's
AcceptConf, keeps the connection alive with heartbeats, and hands every
other message to its L{WebWireClient}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.exception import Disconnected as _SocketClosed
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from webwire import wire
from webwire._constants import HEARTBEAT as _HEARTBEAT
from webwire._constants import TIMER_SLACK as _EPSILON
from webwire.errors import (
    BufferSizeMismatch,
    Disconnected,
    IncompatibleProtocolVersion,
    SubProtocolMismatch,
    UnexpectedFirstMessage,
)

if TYPE_CHECKING:
    from webwire.client import ClientOptions

__all__ = ["ClientProtocol", "ClientProtocolFactory"]

"""Timers treat what is due within a millisecond as due (float sums drift)."""


def _subProtocolName(name: bytes | None) -> str:
    """A sub-protocol as a user reads it: quoted text, or C{none}."""
    if not name:
        return "none"
    return '"' + name.decode("latin-1") + '"'


def checkAcceptConf(data: bytes, options: ClientOptions) -> wire.AcceptConf:
    """
    Check the server's first message as the Go client does (a to e).

    :raises webwire.errors.HandshakeError: If the client cannot talk to
        this server.
    """
    try:
        message = wire.parse(data)
    except wire.ProtocolViolation as e:
        raise UnexpectedFirstMessage(
            f"the server's first message is invalid: {e}"
        ) from None
    if not isinstance(message, wire.AcceptConf):
        raise UnexpectedFirstMessage(
            f"unexpected first message {type(message).__name__} "
            "(expected an accept-conf message)"
        )
    if message.majorVersion != wire.ACCEPT_CONF_VERSION[0]:
        raise IncompatibleProtocolVersion(
            f"the server speaks WebWire {message.majorVersion}."
            f"{message.minorVersion}; this client speaks "
            f"{wire.ACCEPT_CONF_VERSION[0]}.x"
        )
    wanted = options.subProtocol.encode() if options.subProtocol else None
    if (message.subProtocol or None) != wanted:
        raise SubProtocolMismatch(
            "sub-protocol mismatch: the server speaks "
            f"{_subProtocolName(message.subProtocol)}, this client "
            f"{_subProtocolName(wanted)}"
        )
    if message.messageBufferSize != options.messageBufferSize:
        raise BufferSizeMismatch(
            "mismatching message buffer size (server: "
            f"{message.messageBufferSize}; client: {options.messageBufferSize})"
        )
    if message.readTimeout < 1:
        raise UnexpectedFirstMessage("the server advertises a read timeout of 0")
    return message


class ClientProtocol(WebSocketClientProtocol):
    """
    One connection of a L{WebWireClient}.

    C{accepted} fires with the server's L{wire.AcceptConf} once it passed
    the checks, or fails with why the connection is useless; either way the
    client owns what happens next.
    """

    _log = Logger()
    factory: ClientProtocolFactory

    def __init__(self) -> None:
        super().__init__()
        self.accepted: Deferred[wire.AcceptConf] = Deferred(self._cancelAccept)
        self.acceptConf: wire.AcceptConf | None = None
        self._heartbeat: IDelayedCall | None = None
        self._lastSent = 0.0
        self._interval = 0.0
        self._lostBecause: BaseException | None = None

    @property
    def _clock(self) -> IReactorTime:
        return self.factory.clock

    def _cancelAccept(self, d: Deferred[wire.AcceptConf]) -> None:
        # The dial timed out or was cancelled: let go of the socket.
        self.dropConnection(abort=True)

    def send(self, data: bytes) -> None:
        """
        Send one WebWire message and restart the heartbeat interval.

        :raises Disconnected: If the connection is not open.
        """
        try:
            self.sendMessage(data, isBinary=True)
        except _SocketClosed as e:
            raise Disconnected("the connection is closed") from e
        self._lastSent = self._clock.seconds()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self._log.warn("dropping a text message from the server")
            return
        if self.acceptConf is None:
            self._accept(payload)
            return
        if not payload:
            return  # some servers send empty messages; nothing to do
        try:
            message = wire.parse(payload)
        except wire.ProtocolViolation as e:
            self._log.warn("dropping a malformed message from the server: {e}", e=e)
            return
        self.factory.client._received(message)

    def _accept(self, data: bytes) -> None:
        try:
            conf = checkAcceptConf(data, self.factory.client.options)
        except Exception as e:
            self.dropConnection(abort=True)
            if not self.accepted.called:
                self.accepted.errback(e)
            return
        self.acceptConf = conf
        # Like the Go client: a heartbeat after 3/4 of the read timeout of
        # silence, the interval restarted by anything sent.
        readTimeout = conf.readTimeout / 1000
        self._interval = readTimeout - readTimeout / 4
        self._lastSent = self._clock.seconds()
        self._heartbeat = self._clock.callLater(self._interval, self._beat)
        if not self.accepted.called:
            self.accepted.callback(conf)

    def _beat(self) -> None:
        self._heartbeat = None
        if self.state != WebSocketProtocol.STATE_OPEN:
            return
        due = self._lastSent + self._interval - self._clock.seconds()
        if due < _EPSILON:
            self.send(_HEARTBEAT)
            due = self._interval
        self._heartbeat = self._clock.callLater(due, self._beat)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Autobahn's close reason only knows OpenSSL's errors; a refused host
        # name (service_identity) would read "peer dropped the connection".
        self._lostBecause = reason.value
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.cancel()
        self._heartbeat = None
        why = f"WebSocket closed (code {code}): {reason or 'no reason'}"
        failure = Failure(ConnectionDone(why) if wasClean else ConnectionLost(why))
        if not self.accepted.called:
            cause = self._lostBecause
            if cause is not None and not isinstance(
                cause, (ConnectionDone, ConnectionLost)
            ):
                why = f"{why}; because: {cause}"
            self.accepted.errback(Disconnected(why))
            return
        self.factory.client._connectionLost(self, failure)


class ClientProtocolFactory(WebSocketClientFactory):
    """
    Makes the L{ClientProtocol} of one connection attempt.
    """

    protocol = ClientProtocol  # type: ignore[assignment]

    def __init__(self, url: str, client: Any, clock: IReactorTime) -> None:
        super().__init__(url, useragent="webwire-python")
        self.client = client
        self.clock = clock
        size = client.options.messageBufferSize
        self.setProtocolOptions(
            maxMessagePayloadSize=size,
            maxFramePayloadSize=size,
            # The client's dial timeout bounds the handshake; no Autobahn timers.
            openHandshakeTimeout=0,
            closeHandshakeTimeout=0,
            perMessageCompressionOffers=[],
        )
