# -*- test-case-name: tests.test_cluster -*-
"""
L{LocalCluster}: the cluster of one server process, every server's default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from webwire import wire
from webwire.cluster._host import ClusterHost, SignalReceiver
from webwire.connection import encodeSignal
from webwire.errors import Disconnected, SessionsDisabled
from webwire.interfaces import IConnection, IServerCluster
from webwire.metrics import NULL_OBSERVER, IServerObserver

__all__ = ["LocalCluster", "SessionCounts", "checkTopic"]

MAX_TOPIC_LENGTH = 255
"""The longest topic, in bytes of UTF-8."""


def checkTopic(topic: str) -> str:
    """
    C{topic}, if it is a valid topic name: 1 to 255 bytes of UTF-8.

    :raises ValueError: If it is not.
    """
    if not isinstance(topic, str):
        raise TypeError(f"a topic is a str, not {type(topic).__name__}")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"topic {topic!r} is not valid Unicode") from None
    if not 0 < size <= MAX_TOPIC_LENGTH:
        raise ValueError(
            f"a topic has 1 to {MAX_TOPIC_LENGTH} bytes of UTF-8, not {size}"
        )
    return topic


class SessionCounts:
    """
    How many connections of each session key this process holds.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def get(self, key: str) -> int:
        """The connections of C{key} counted."""
        return self._counts.get(key, 0)

    def up(self, key: str) -> None:
        """One more connection of C{key}."""
        self._counts[key] = self._counts.get(key, 0) + 1

    def down(self, key: str) -> int:
        """One connection of C{key} less; how many are left."""
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
            return left
        self._counts.pop(key, None)
        return 0

    def items(self) -> list[tuple[str, int]]:
        """Every key counted, with its count."""
        return list(self._counts.items())


@implementer(IServerCluster)
class LocalCluster:
    """
    Reaches the connections of one server (see L{ICluster}); sessions'
    connections are counted in memory.

    Each signal is encoded once and the same bytes are sent to every
    connection it goes to. Connections closed meanwhile are skipped.

    L{webwire.cluster.redis.RedisCluster} holds one to reach the
    connections of its own process, and tells the other processes itself:
    the encoding, local delivery and counts are public here for it.

    :ivar counts: The L{SessionCounts} of this process.
    """

    _log: ClassVar[Logger] = Logger()

    def __init__(self) -> None:
        self._server: ClusterHost | None = None
        self._topics: dict[str, set[IConnection]] = {}
        self._subscriptions: dict[IConnection, set[str]] = {}
        self.counts = SessionCounts()

    # Serving --------------------------------------------------------------

    @property
    def isAttached(self) -> bool:
        """Whether the cluster serves a server yet."""
        return self._server is not None

    @property
    def server(self) -> ClusterHost:
        """
        The server served.

        :raises RuntimeError: If the cluster is not attached to one yet.
        """
        if self._server is None:
            raise RuntimeError("the cluster is not attached to a server")
        return self._server

    @property
    def observer(self) -> IServerObserver:
        """
        The served server's observer (metrics), or one that does nothing
        while the cluster is not attached.
        """
        return self._server.observer if self._server is not None else NULL_OBSERVER

    def attach(self, server: ClusterHost) -> None:
        """Serve C{server} (see L{IServerCluster.attach})."""
        if self._server is not None and self._server is not server:
            raise RuntimeError(f"{self!r} serves another server already")
        self._server = server

    def connectionClosed(self, connection: IConnection) -> None:
        """Forget the subscriptions of C{connection}."""
        for topic in self._subscriptions.pop(connection, ()):
            self._leave(connection, topic)

    # Delivery -------------------------------------------------------------

    def signalSession(
        self,
        key: str,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """Signal every connection of session C{key} (see L{ICluster})."""
        self.deliverToSession(key, self.encode(name, payload, encoding))
        return succeed(None)

    def broadcast(
        self,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """Signal every open connection (see L{ICluster})."""
        self.deliverToAll(self.encode(name, payload, encoding))
        return succeed(None)

    def publish(
        self,
        topic: str,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """Signal every subscriber of C{topic} (see L{ICluster})."""
        checkTopic(topic)
        self.deliverToTopic(topic, self.encode(name, payload, encoding))
        return succeed(None)

    def closeSession(self, key: str) -> Deferred[None]:
        """Close session C{key} everywhere (see L{ICluster.closeSession})."""
        sessions = self.server.sessions
        if sessions is None:
            return fail(SessionsDisabled("the server has no sessions"))
        return sessions.closeLocally(key).addCallback(lambda _: sessions.destroy(key))

    def encode(
        self,
        name: str,
        payload: wire.PayloadLike,
        encoding: wire.Encoding | None,
    ) -> bytes:
        """
        A signal encoded for the server's connections (as
        L{IConnection.signal} takes it).

        :raises webwire.errors.InvalidMessage: If it must not be sent.
        :raises webwire.errors.MessageTooLarge: If it exceeds the server's
            message buffer size.
        """
        size = self.server.options.messageBufferSize
        return encodeSignal(name, payload, encoding, size)

    def deliverToSession(self, key: str, data: bytes) -> None:
        """Send encoded signal C{data} to this server's connections of C{key}."""
        self._deliver(self.server.sessionConnections(key), data)

    def deliverToTopic(self, topic: str, data: bytes) -> None:
        """Send encoded signal C{data} to the subscribers of C{topic} here."""
        self._deliver(self.subscribers(topic), data)

    def deliverToAll(self, data: bytes) -> None:
        """Send encoded signal C{data} to every open connection here."""
        self._deliver(self.server.connections, data)

    def _deliver(self, connections: Iterable[IConnection], data: bytes) -> None:
        for connection in connections:
            try:
                cast(SignalReceiver, connection).sendEncoded(data)
            except Disconnected:
                pass  # closed meanwhile

    # Topics ---------------------------------------------------------------

    def subscribe(self, connection: IConnection, topic: str) -> None:
        """Subscribe C{connection} to C{topic} (see L{ICluster})."""
        checkTopic(topic)
        if not isinstance(connection, SignalReceiver):
            raise TypeError(f"{connection!r} is not a connection of a WebWire server")
        if not connection.isActive:
            raise Disconnected(f"connection to {connection.peer} is closed")
        self._topics.setdefault(topic, set()).add(connection)
        self._subscriptions.setdefault(connection, set()).add(topic)

    def unsubscribe(self, connection: IConnection, topic: str) -> None:
        """End the subscription of C{connection} to C{topic}, if any."""
        topics = self._subscriptions.get(connection)
        if topics is None or topic not in topics:
            return
        topics.discard(topic)
        if not topics:
            del self._subscriptions[connection]
        self._leave(connection, topic)

    def topicsOf(self, connection: IConnection) -> frozenset[str]:
        """The topics C{connection} is subscribed to."""
        return frozenset(self._subscriptions.get(connection, ()))

    def subscribers(self, topic: str) -> list[IConnection]:
        """The connections of this server subscribed to C{topic}."""
        return list(self._topics.get(topic, ()))

    def _leave(self, connection: IConnection, topic: str) -> None:
        members = self._topics.get(topic)
        if members is None:
            return
        members.discard(connection)
        if not members:
            del self._topics[topic]

    # Counting -------------------------------------------------------------

    def reserve(self, key: str, maximum: int) -> Deferred[bool]:
        """Count a connection of C{key} unless it has C{maximum} already."""
        if maximum and self.counts.get(key) >= maximum:
            return succeed(False)
        self.counts.up(key)
        return succeed(True)

    def add(self, key: str) -> Deferred[None]:
        """Count a connection of C{key}."""
        self.counts.up(key)
        return succeed(None)

    def release(self, key: str) -> Deferred[int]:
        """Count a connection of C{key} less; the count left."""
        return succeed(self.counts.down(key))
