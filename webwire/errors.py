# -*- test-case-name: tests.test_server -*-
"""
The exceptions WebWire users raise and catch.
"""

from __future__ import annotations

from webwire.wire import InvalidMessage, MessageTooLarge, ProtocolViolation

__all__ = [
    "Disconnected",
    "SessionActive",
    "SessionsDisabled",
    "InvalidMessage",
    "MessageTooLarge",
    "ProtocolViolation",
    "RequestError",
]


class RequestError(Exception):
    """
    Raise from a request handler to answer the request with an error reply.

    The code and message reach the client as they are, so they must not hold
    anything secret. The code must be 1 to 255 printable ASCII characters
    (0x20-0x7E); a handler raising an invalid code is answered with an
    internal-error reply instead, and the mistake is logged.

    :ivar code: The error code, e.g. C{"NOT_FOUND"}.
    :ivar message: A human-readable explanation; may be empty.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class Disconnected(Exception):
    """
    The connection is closed (or closing), so nothing can be sent on it.
    """


class SessionsDisabled(Exception):
    """
    The server was configured without sessions.
    """


class SessionActive(Exception):
    """
    The connection has a session already; close it before creating another.
    """
