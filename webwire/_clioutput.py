# -*- test-case-name: tests.test_cli -*-
"""
The output of the C{webwire} command: exit codes, how payloads and sessions
are shown (text or JSON lines), and the one line each expected failure
gives on stderr.
"""

from __future__ import annotations

import base64
import json
import os
from typing import IO, Any, Final

from twisted.internet.defer import Deferred

from webwire import wire
from webwire.errors import (
    Disconnected,
    HandshakeError,
    InternalError,
    InvalidMessage,
    MaxSessionConnections,
    RequestError,
    RequestTimeout,
    ServerShutdown,
    SessionActive,
    SessionNotFound,
    SessionsDisabled,
)
from webwire.sessions.session import Session, formatTime

__all__ = [
    "EXIT_CONNECTION",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "formatPayload",
    "payloadFields",
    "sessionFields",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONNECTION: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_INTERRUPTED: Final = 130


_FAILURE_REPLIES: Final[dict[type[Exception], str]] = {
    InternalError: "internal error",
    ServerShutdown: "server shutting down",
    SessionNotFound: "session not found",
    MaxSessionConnections: "max session connections reached",
    SessionsDisabled: "sessions disabled",
    SessionActive: "session active",
}


class _Failed(Exception):
    """
    An expected failure: one line for stderr and an exit code.
    """

    def __init__(self, exitCode: int, message: str) -> None:
        super().__init__(exitCode, message)
        self.exitCode = exitCode
        self.message = message


# Output ---------------------------------------------------------------------


def formatPayload(data: bytes, encoding: wire.Encoding) -> str:
    """
    A payload as the text output shows it.

    :param data: The payload bytes.
    :param encoding: Their encoding.
    :returns: Text decoded (undecodable bytes backslash-escaped); binary as
        C{binary: 68 69}, or C{binary: (empty)}.
    """
    if encoding is wire.Encoding.BINARY:
        return "binary: " + (data.hex(" ") or "(empty)")
    return wire.decodeText(data, encoding, "backslashreplace")


def payloadFields(data: bytes, encoding: wire.Encoding) -> dict[str, str]:
    """
    A payload as the JSON output shows it.

    :param data: The payload bytes.
    :param encoding: Their encoding.
    :returns: C{encoding} (C{binary}, C{utf8}, C{utf16}) and C{payload}:
        text decoded (U+FFFD for undecodable bytes), binary in base64.
    """
    if encoding is wire.Encoding.BINARY:
        text = base64.b64encode(data).decode("ascii")
    else:
        text = wire.decodeText(data, encoding, "replace")
    return {"encoding": encoding.value, "payload": text}


def sessionFields(session: Session) -> dict[str, Any]:
    """
    A session as the output shows it.

    :returns: C{key}, C{creation} and C{lastLookup} (RFC 3339), C{info}.
    """
    return {
        "key": session.key,
        "creation": formatTime(session.creation),
        "lastLookup": formatTime(session.lastLookup),
        "info": dict(session.info),
    }


class _Output:
    """
    Writes results to stdout (text or one JSON object a line) and errors to
    stderr, flushing every line so that C{listen} works in pipes.
    """

    def __init__(self, asJSON: bool, stdout: IO[str], stderr: IO[str]) -> None:
        self.asJSON = asJSON
        self.stdout = stdout
        self.stderr = stderr
        self.broken: Deferred[None] = Deferred()

    def emit(self, kind: str, text: str, **fields: Any) -> None:
        """
        One result: C{text} in text mode, else C{{"type": kind, **fields}}.
        """
        line = json.dumps({"type": kind, **fields}) if self.asJSON else text
        try:
            self.stdout.write(line + "\n")
            self.stdout.flush()
        except BrokenPipeError:
            # The reader went away (e.g. `| head -1`): stop writing; the
            # interpreter must not fail flushing stdout at exit either.
            self.stdout = open(os.devnull, "w")
            if not self.broken.called:
                self.broken.callback(None)

    def error(self, message: str) -> None:
        """One line on stderr."""
        self.stderr.write(f"webwire: {message}\n")
        self.stderr.flush()


# The commands ---------------------------------------------------------------


def _explain(error: BaseException) -> _Failed:
    """The exit code and message for an exception a client call failed with."""
    if isinstance(error, _Failed):
        return error
    if isinstance(error, RequestError):
        return _Failed(EXIT_FAILURE, str(error))
    for kind, label in _FAILURE_REPLIES.items():
        if isinstance(error, kind):
            return _Failed(EXIT_FAILURE, f"{label}: {error}")
    if isinstance(error, RequestTimeout):
        return _Failed(EXIT_TIMEOUT, f"no reply in time: {error}")
    if isinstance(error, HandshakeError):
        return _Failed(EXIT_CONNECTION, f"handshake failed: {error}")
    if isinstance(error, Disconnected):
        return _Failed(EXIT_CONNECTION, f"connection failed: {error}")
    if isinstance(error, InvalidMessage):
        return _Failed(EXIT_USAGE, f"invalid message: {error}")
    raise error
