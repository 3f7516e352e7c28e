"""
What a cluster needs from the server it serves, and from the connections
it delivers to: typed here so that a cluster knows neither the server's
nor the connection's class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from webwire.interfaces import IConnection
    from webwire.metrics import IServerObserver
    from webwire.options import ServerOptions
    from webwire.sessions.registry import SessionRegistry

__all__ = ["ClusterHost", "SignalReceiver"]


class ClusterHost(Protocol):
    """
    The server a cluster serves (L{webwire.server.WebWireServerFactory}).
    """

    @property
    def options(self) -> ServerOptions:
        """The server's settings (the message buffer size, above all)."""

    @property
    def observer(self) -> IServerObserver:
        """What the server reports to (metrics): cluster failures too."""

    @property
    def sessions(self) -> SessionRegistry | None:
        """The server's sessions, or C{None} if it has none."""

    @property
    def connections(self) -> list[IConnection]:
        """The server's open connections."""

    def sessionConnections(self, key: str) -> list[IConnection]:
        """The server's connections that hold session C{key}."""


@runtime_checkable
class SignalReceiver(Protocol):
    """
    A connection a cluster can deliver to: one of a WebWire server's
    (L{webwire.connection.Connection}), which takes a signal encoded once
    for many connections.
    """

    @property
    def isActive(self) -> bool:
        """C{True} until the connection starts closing."""

    def sendEncoded(self, data: bytes) -> None:
        """
        Send an encoded signal now.

        :raises webwire.errors.Disconnected: If the connection is closed.
        """
