# -*- test-case-name: tests.test_cluster -*-
"""
L{LocalCluster}: the cluster of one server process, every server's default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from webwire import wire
from webwire.connection import Connection, encodeSignal
from webwire.errors import Disconnected, SessionsDisabled
from webwire.interfaces import ICluster, IConnection
from webwire.metrics import NULL_OBSERVER, IServerObserver

if TYPE_CHECKING:
    from webwire.server import WebWireServerFactory

__all__ = ["LocalCluster", "checkTopic"]

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


@implementer(ICluster)
class LocalCluster:
    """
    Reaches the connections of one server (see L{ICluster}); sessions'
    connections are counted in memory.

    Each signal is encoded once and the same bytes are sent to every
    connection it goes to. Connections closed meanwhile are skipped.

    L{webwire.cluster.redis.RedisCluster} extends it to every process sharing a
    Redis: it overrides L{_relay} (hand a message to the other processes)
    and the counting methods.
    """

    _log: ClassVar[Logger] = Logger()

    def __init__(self) -> None:
        self._server: WebWireServerFactory | None = None
        self._topics: dict[str, set[IConnection]] = {}
        self._subscriptions: dict[IConnection, set[str]] = {}
        self._counts: dict[str, int] = {}

    # Serving --------------------------------------------------------------

    @property
    def server(self) -> WebWireServerFactory:
        """
        The server served.

        :raises RuntimeError: If the cluster is not attached to one yet.
        """
        if self._server is None:
            raise RuntimeError("the cluster is not attached to a server")
        return self._server

    @property
    def _observer(self) -> IServerObserver:
        """The served server's observer (metrics), if it is served yet."""
        return self._server.observer if self._server is not None else NULL_OBSERVER

    def attach(self, server: Any) -> None:
        """Serve C{server} (see L{ICluster.attach})."""
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
        data = self._encode(name, payload, encoding)
        self._deliverToSession(key, data)
        return self._relay(b"S", key, data)

    def broadcast(
        self,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """Signal every open connection (see L{ICluster})."""
        data = self._encode(name, payload, encoding)
        self._deliverToAll(data)
        return self._relay(b"B", "", data)

    def publish(
        self,
        topic: str,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """Signal every subscriber of C{topic} (see L{ICluster})."""
        checkTopic(topic)
        data = self._encode(name, payload, encoding)
        self._deliverToTopic(topic, data)
        return self._relay(b"T", topic, data)

    def closeSession(self, key: str) -> Deferred[None]:
        """Close session C{key} everywhere (see L{ICluster.closeSession})."""
        sessions = self.server.sessions
        if sessions is None:
            return fail(SessionsDisabled("the server has no sessions"))
        return sessions.closeLocally(key).addCallback(lambda _: sessions.destroy(key))

    # Topics ---------------------------------------------------------------

    def subscribe(self, connection: IConnection, topic: str) -> None:
        """Subscribe C{connection} to C{topic} (see L{ICluster})."""
        checkTopic(topic)
        if not isinstance(connection, Connection):
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
        if maximum and self._counts.get(key, 0) >= maximum:
            return succeed(False)
        self._countUp(key)
        return succeed(True)

    def add(self, key: str) -> Deferred[None]:
        """Count a connection of C{key}."""
        self._countUp(key)
        return succeed(None)

    def release(self, key: str) -> Deferred[int]:
        """Count a connection of C{key} less; the count left."""
        return succeed(self._countDown(key))

    def _countUp(self, key: str) -> None:
        """One more connection of C{key} here."""
        self._counts[key] = self._counts.get(key, 0) + 1

    def _countDown(self, key: str) -> int:
        """One connection of C{key} less here; how many are left here."""
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
            return left
        self._counts.pop(key, None)
        return 0

    # For subclasses -------------------------------------------------------

    def _relay(self, kind: bytes, target: str, data: bytes) -> Deferred[None]:
        """
        Hand an encoded signal to the other processes: C{kind} is C{b"S"}
        (to session C{target}), C{b"T"} (to topic C{target}) or C{b"B"}
        (to all). There are none here.
        """
        return succeed(None)

    def _encode(
        self,
        name: str,
        payload: wire.PayloadLike,
        encoding: wire.Encoding | None,
    ) -> bytes:
        size = self.server.options.messageBufferSize
        return encodeSignal(name, payload, encoding, size)

    def _deliverToSession(self, key: str, data: bytes) -> None:
        self._deliver(self.server.sessionConnections(key), data)

    def _deliverToTopic(self, topic: str, data: bytes) -> None:
        self._deliver(self.subscribers(topic), data)

    def _deliverToAll(self, data: bytes) -> None:
        self._deliver(self.server.connections, data)

    def _deliver(self, connections: Iterable[IConnection], data: bytes) -> None:
        for connection in connections:
            try:
                cast(Connection, connection).sendEncoded(data)
            except Disconnected:
                pass  # closed meanwhile
