# -*- test-case-name: tests.test_metrics -*-
"""
What a server has received and sent: L{Traffic}, the counts every
L{webwire.server.WebWireServerFactory} keeps (its C{traffic}) whether or
not anything reads them. L{webwire.metrics.ServerMetrics} reads them when
Prometheus scrapes.

They are kept by the server rather than reported to its observer message
by message because that is what keeps them cheap: the fast path of
L{webwire._fastpath} adds up a whole read's messages in local variables
and a whole write's in one step, so counting costs a few additions per
read and per write, not a call per message.
"""

from __future__ import annotations

__all__ = ["Traffic"]


class Traffic:
    """
    Message counts of one server since it was made, on the reactor thread.
    Bytes are WebSocket payload bytes: the WebWire messages, without frame
    headers, masks or the opening handshake.

    :ivar messagesReceived: WebSocket messages received on open
        connections (binary or text, heartbeats included; those that were
        too large are not messages).
    :ivar bytesReceived: Their payload bytes.
    :ivar messagesSent: WebSocket messages sent: every WebWire message
        (AcceptConf, replies, signals, session notifications).
    :ivar bytesSent: Their payload bytes.
    :ivar signalsReceived: Client signals handed to the application.
    :ivar signalsSent: Signals sent to clients.
    """

    __slots__ = (
        "bytesReceived",
        "bytesSent",
        "messagesReceived",
        "messagesSent",
        "signalsReceived",
        "signalsSent",
    )

    def __init__(self) -> None:
        self.messagesReceived = 0
        self.bytesReceived = 0
        self.messagesSent = 0
        self.bytesSent = 0
        self.signalsReceived = 0
        self.signalsSent = 0

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"Traffic({counts})"
