# -*- test-case-name: tests.test_server -*-
"""
The exceptions WebWire users raise and catch.
"""

from __future__ import annotations

from webwire.wire import InvalidMessage, MessageTooLarge, ProtocolViolation

__all__ = [
    "BufferSizeMismatch",
    "ConnectionFailed",
    "Disconnected",
    "HandshakeError",
    "IncompatibleProtocolVersion",
    "InternalError",
    "MaxSessionConnections",
    "RequestTimeout",
    "ServerShutdown",
    "SessionActive",
    "SessionNotFound",
    "SessionsDisabled",
    "SubProtocolMismatch",
    "UnexpectedFirstMessage",
    "UpgradeRefused",
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
    The connection is closed (or closing), so nothing can be sent on it; for
    a client also: it could not connect, or lost the connection while a
    request waited for its reply.
    """


class SessionsDisabled(Exception):
    """
    The server was configured without sessions.
    """


class SessionActive(Exception):
    """
    The connection has a session already; close it before creating another.
    """


class SessionNotFound(Exception):
    """
    The server does not know the session a client asked to restore (or it
    expired).
    """


class MaxSessionConnections(Exception):
    """
    The session already has as many connections as the server allows.
    """


class InternalError(Exception):
    """
    The server failed to handle a request; it logged why, the client only
    knows that it failed.
    """


class ServerShutdown(Exception):
    """
    The server is shutting down and did not handle the request.
    """


class RequestTimeout(TimeoutError):
    """
    No reply arrived in time (the connection was made in time or not).
    A late reply is dropped.
    """


class HandshakeError(Exception):
    """
    The server's first message showed that the client cannot talk to it:
    the client does not retry, and fails every waiting call with this.
    """


class UnexpectedFirstMessage(HandshakeError):
    """The server's first message was not an AcceptConf."""


class IncompatibleProtocolVersion(HandshakeError):
    """The server speaks another major version of the protocol."""


class SubProtocolMismatch(HandshakeError):
    """The server's sub-protocol name is not the client's."""


class BufferSizeMismatch(HandshakeError):
    """The server's message buffer size is not the client's."""


class UpgradeRefused(Exception):
    """
    Raise from C{beforeUpgrade} to refuse a WebSocket upgrade.

    :ivar status: The HTTP status to answer with, e.g. 401 or 403.
    :ivar reason: The reason phrase sent with it (keep it free of secrets).
    """

    def __init__(self, status: int = 403, reason: str = "Forbidden") -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class ConnectionFailed(Disconnected):
    """
    A client could not connect: refused, no answer within the dial timeout,
    TLS verification failed, or the WebSocket handshake was refused. The
    message says which.
    """
