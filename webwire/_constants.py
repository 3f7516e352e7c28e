"""
What the server's and the client's protocols share.
"""

from __future__ import annotations

from typing import Final

from webwire import wire

HEARTBEAT: Final = wire.encodeHeartbeat()
"""A heartbeat message, encoded once."""

CLOSE_NORMAL: Final = 1000
"""WebSocket close code: done (a client's close, a session's end)."""
CLOSE_GOING_AWAY: Final = 1001
"""WebSocket close code: the server shuts down."""
CLOSE_PROTOCOL_ERROR: Final = 1002
"""WebSocket close code: a WebWire protocol violation."""
CLOSE_UNSUPPORTED_DATA: Final = 1003
"""WebSocket close code: a text message (WebWire is binary)."""
CLOSE_MESSAGE_TOO_BIG: Final = 1009
"""WebSocket close code: a message over the buffer size."""
CLOSE_INTERNAL_ERROR: Final = 1011
"""WebSocket close code: the server failed (a connect hook raised)."""

TIMER_SLACK: Final = 0.001
"""
Seconds a timer may fire early and still count as due (the reactor's
clock and a timer's arithmetic are not exact).
"""
