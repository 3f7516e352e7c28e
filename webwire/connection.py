# -*- test-case-name: tests.test_server -*-
"""
What an application's hooks hold: one client connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import attr
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from webwire import wire
from webwire.errors import SessionsDisabled
from webwire.interfaces import ICluster, IConnection, IHandshakeRequest
from webwire.logonce import RepeatedEvents
from webwire.sessions.registry import SessionChannel, SessionRegistry
from webwire.sessions.session import Session

__all__ = ["Connection", "HandshakeRequest", "encodeSignal", "peerText"]


def peerText(peer: object) -> str:
    """
    Describe a client's address (an L{IConnection.peer}) for logs and
    headers: C{host:port}, C{[host]:port} for IPv6, C{str(peer)} for any
    other address (a UNIX socket's).
    """
    if isinstance(peer, IPv6Address):
        return f"[{peer.host}]:{peer.port}"
    if isinstance(peer, IPv4Address):
        return f"{peer.host}:{peer.port}"
    return str(peer)


def encodeSignal(
    name: str,
    payload: wire.PayloadLike,
    encoding: wire.Encoding | None,
    messageBufferSize: int,
) -> bytes:
    """
    Encode a signal as L{IConnection.signal} takes it.

    :raises webwire.errors.InvalidMessage: If the signal must not be sent.
    :raises webwire.errors.MessageTooLarge: If it exceeds
        C{messageBufferSize}.
    """
    body = wire.Payload.of(payload, encoding)
    return wire.encodeSignal(name, body.data, body.encoding, messageBufferSize)


@implementer(IHandshakeRequest)
@attr.s(frozen=True, auto_attribs=True)
class HandshakeRequest:
    """
    The HTTP request that opened a WebSocket connection (see
    L{IHandshakeRequest}).
    """

    path: str
    host: str
    headers: Mapping[str, str]
    params: Mapping[str, list[str]]
    origin: str | None
    cookies: Mapping[str, str] = attr.ib(factory=dict)
    peer: IAddress | None = None


class _Channel(SessionChannel, Protocol):
    """
    What a L{Connection} needs from the protocol that owns it (beyond what
    the session registry needs).
    """

    @property
    def messageBufferSize(self) -> int: ...

    @property
    def sessions(self) -> SessionRegistry | None: ...

    @property
    def cluster(self) -> ICluster: ...

    @property
    def events(self) -> RepeatedEvents: ...

    def sendSignal(self, data: bytes) -> None: ...

    def closeGracefully(self, code: int, reason: str) -> Deferred[None]: ...


@implementer(IConnection)
class Connection:
    """
    One client connection (see L{IConnection}).

    Created by the server for each connection; applications do not
    instantiate it.
    """

    def __init__(
        self,
        channel: _Channel,
        peer: IAddress,
        request: IHandshakeRequest,
        creation: datetime,
    ) -> None:
        self._channel = channel
        self.peer = peer
        self.request = request
        self.creation = creation

    def __repr__(self) -> str:
        return f"<Connection {self.peer}>"

    @property
    def isActive(self) -> bool:
        """C{True} until the connection starts closing."""
        return self._channel.isActive

    def signal(
        self,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> None:
        """
        Send a signal to the client at once (see L{IConnection.signal}).
        """
        size = self._channel.messageBufferSize
        self._channel.sendSignal(encodeSignal(name, payload, encoding, size))

    def sendEncoded(self, data: bytes) -> None:
        """
        Send a signal already encoded (by L{encodeSignal}) at once: how one
        encoding goes to many connections.

        :raises webwire.errors.Disconnected: If the connection is closed.
        """
        self._channel.sendSignal(data)

    @property
    def events(self) -> RepeatedEvents:
        """
        The repetitive log events of this connection: log what a client can
        make happen once per message through it (see L{webwire.logonce}).
        """
        return self._channel.events

    @property
    def cluster(self) -> ICluster:
        """The cluster of the connection's server (see L{IConnection})."""
        return self._channel.cluster

    @property
    def session(self) -> Session | None:
        """The connection's session, or C{None}."""
        return self._channel.session

    def createSession(self, info: Mapping[str, Any] | None = None) -> Deferred[Session]:
        """
        Create a session on this connection (see L{IConnection.createSession}).
        """
        sessions = self._channel.sessions
        if sessions is None:
            return fail(SessionsDisabled("the server has no sessions"))
        return sessions.create(self._channel, info)

    def closeSession(self) -> Deferred[None]:
        """
        Close this connection's session (see L{IConnection.closeSession}).
        """
        sessions = self._channel.sessions
        if sessions is None:
            return fail(SessionsDisabled("the server has no sessions"))
        return sessions.closeOn(self._channel)

    def close(self) -> Deferred[None]:
        """
        Close the connection gracefully (see L{IConnection.close}).
        """
        return self._channel.closeGracefully(1000, "")
