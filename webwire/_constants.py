"""
What the server's and the client's protocols share.
"""

from __future__ import annotations

from typing import Final

from webwire import wire

HEARTBEAT: Final = wire.encodeHeartbeat()
"""A heartbeat message, encoded once."""

TIMER_SLACK: Final = 0.001
"""
Seconds a timer may fire early and still count as due (the reactor's
clock and a timer's arithmetic are not exact).
"""
