# -*- test-case-name: tests.test_conformance -*-
"""
The conformance application: a WebWire application whose behaviour is
defined exactly, so that any WebWire client can be checked against it.

It is what C{twistd webwire} serves when no C{--app} is given, and what the
end-to-end tests drive. Requests (names and payloads as sent):

  - C{""}, C{echo}, C{oddecho}: reply with the request's payload in the
    request's encoding;
  - C{echo-binary}: the same bytes as a binary reply;
  - C{error}: error reply C{TEST_ERROR} / C{test error};
  - C{internal}: the handler raises L{DeliberateInternalError}, so the client
    gets an internal-error reply (and the server logs the traceback);
  - C{login}: payload = a user name as text (UTF-16 is converted to UTF-8).
    A connection that has a session gets error C{SESSION_ACTIVE}, an empty
    name C{BAD_REQUEST}; otherwise a session is created with info
    C{{"user": name}} (the session-created notification goes out first) and
    the reply is its key, UTF-8. Without sessions: C{SESSIONS_UNAVAILABLE};
  - C{whoami}: UTF-8 reply with the connection's session key, or empty;
  - C{worker}: UTF-8 reply C{"<number> <pid>"}: the number of the worker
    process that serves the connection (C{twistd webwire --workers N}: 1 to
    N, from the environment variable C{WEBWIRE_WORKER}; 0 in a server that
    runs no workers) and its process id;
  - C{logout}: closes the connection's session if there is one, then an
    empty binary reply;
  - C{sleep}: payload = decimal milliseconds 0..30000 as text; waits that
    long without blocking anything, then echoes; anything else is error
    C{BAD_REQUEST};
  - C{signal-me} / C{signal-odd}: first send signal C{ping} / C{odd} with the
    request's payload and encoding, then echo; a payload no signal can carry
    (empty UTF-16) is error C{BAD_REQUEST};
  - anything else: error C{UNKNOWN_REQUEST} / C{unknown request: <name>}.

Signals: C{echo-signal} is answered with signal C{echoed} carrying the same
payload and encoding; other signals are ignored.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from webwire import wire
from webwire._reactor import defaultReactor
from webwire.application import Application
from webwire.errors import RequestError, SessionsDisabled
from webwire.interfaces import IConnection, RequestResult

__all__ = ["ConformanceApplication", "DeliberateInternalError", "makeApplication"]

MAX_SLEEP_MS = 30_000


class DeliberateInternalError(Exception):
    """
    Raised by the C{internal} request to exercise internal-error replies.
    """


def _echo(request: wire.Request) -> wire.Payload:
    return wire.Payload(request.payload, request.encoding)


def _signalBack(connection: IConnection, name: str, request: wire.Request) -> None:
    """
    Send signal C{name} with the request's payload and encoding; a payload
    no signal can carry (an empty UTF-16 one) is the client's mistake:
    error C{BAD_REQUEST}, not an internal error.
    """
    try:
        connection.signal(name, _echo(request))
    except wire.InvalidMessage as e:
        raise RequestError("BAD_REQUEST", f"cannot signal that payload: {e}") from None


class ConformanceApplication(Application):
    """
    The conformance application (see the module docstring).
    """

    def __init__(self, reactor: IReactorTime | None = None) -> None:
        """
        :param reactor: What C{sleep} waits with; the global reactor if
            omitted.
        """
        self._reactor: IReactorTime = (
            reactor if reactor is not None else defaultReactor()
        )

    REQUEST_NAMES = frozenset(
        {"", "echo", "oddecho", "echo-binary", "error", "internal", "login"}
        | {"whoami", "logout", "sleep", "signal-me", "signal-odd"}
    )
    """The requests it answers."""

    def knowsRequest(self, name: str) -> bool:
        """Whether it answers request C{name} (see L{webwire.metrics})."""
        return name in self.REQUEST_NAMES

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> RequestResult:
        name = request.name
        if name in ("", "echo", "oddecho"):
            return _echo(request)
        if name == "echo-binary":
            return request.payload
        if name == "error":
            raise RequestError("TEST_ERROR", "test error")
        if name == "internal":
            raise DeliberateInternalError("deliberate internal error")
        if name == "login":
            return self._login(connection, request)
        if name == "whoami":
            return connection.session.key if connection.session is not None else ""
        if name == "worker":
            return f"{os.environ.get('WEBWIRE_WORKER', '0')} {os.getpid()}"
        if name == "logout":
            return self._logout(connection)
        if name == "sleep":
            return self._sleep(request)
        if name == "signal-me":
            _signalBack(connection, "ping", request)
            return _echo(request)
        if name == "signal-odd":
            _signalBack(connection, "odd", request)
            return _echo(request)
        return super().onRequest(connection, request)

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> None:
        if signal.name == "echo-signal":
            connection.signal("echoed", wire.Payload(signal.payload, signal.encoding))

    async def _login(self, connection: IConnection, request: wire.Request) -> str:
        if connection.session is not None:
            raise RequestError("SESSION_ACTIVE", "session already active")
        try:
            user = request.text()
        except UnicodeDecodeError:
            raise RequestError("BAD_REQUEST", "the user name must be text") from None
        if not user:
            raise RequestError("BAD_REQUEST", "empty user name")
        try:
            session = await connection.createSession({"user": user})
        except SessionsDisabled:
            raise RequestError(
                "SESSIONS_UNAVAILABLE", "sessions are not available"
            ) from None
        return session.key

    async def _logout(self, connection: IConnection) -> bytes:
        if connection.session is not None:
            await connection.closeSession()
        return b""

    def _sleep(self, request: wire.Request) -> Deferred[wire.Payload]:
        try:
            text = request.text()
        except UnicodeDecodeError:
            raise RequestError("BAD_REQUEST", "sleep needs a number") from None
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_SLEEP_MS:
            raise RequestError(
                "BAD_REQUEST",
                f"sleep needs whole milliseconds from 0 to {MAX_SLEEP_MS}",
            )
        return deferLater(self._reactor, int(text) / 1000, _echo, request)


def makeApplication() -> ConformanceApplication:
    """
    Build the conformance application on the global reactor: the default
    C{--app} of C{twistd webwire}.
    """
    return ConformanceApplication()
