# -*- test-case-name: tests.test_demo -*-
"""
The chat demo: L{ChatApplication}, the server of the chat page, and
L{makeDemoRoot}, the site C{twistd webwire} serves by default (the
conformance application on any path, the chat page at C{/} and the chat
application at C{/chat}).

The chat contract (every JSON document is compact UTF-8; names and text are
Unicode, counted in code points):

  - request C{login}, payload the user name as text (UTF-8, UTF-16 or
    binary holding UTF-8). Surrounding white space is removed; the name must
    then have 1 to 32 characters and no control characters, otherwise error
    C{BAD_REQUEST}. A connection that has a session gets C{SESSION_ACTIVE}.
    Otherwise a session with info C{{"user": name}} is created (the client
    is told first), signal C{presence} goes out if the names online changed,
    and the reply is the session key, UTF-8. Without sessions on the
    server: C{SESSIONS_UNAVAILABLE};
  - request C{say}, payload the text (1 to 1000 characters, not only white
    space; otherwise C{BAD_REQUEST}); without a signed-in session
    C{NOT_SIGNED_IN}. Signal C{message} with
    C{{"user": name, "text": text, "time": "2026-01-02T03:04:05.6Z"}} (RFC
    3339, UTC) goes to every open connection, the sender's included, on
    every process of the server's cluster; then an empty binary reply, or
    error C{DELIVERY_FAILED} if the other processes could not be reached
    (this process's connections got it);
  - request C{who}: reply a JSON array of the distinct names signed in on
    open connections, sorted; signal C{presence} goes out first if the
    names online changed (e.g. the caller's session was restored);
  - request C{logout}: closes the connection's session on every
    connection that holds it, on every process of the cluster (each client
    gets the session-closed notification: every tab signs out), signal
    C{presence} if the names online changed, then an empty binary reply
    (error C{SIGN_OUT_INCOMPLETE} if other processes or the session store
    could not be reached); without a session only the reply;
  - anything else: C{UNKNOWN_REQUEST};
  - signal C{presence} (to every open connection): a JSON array of the names
    online, sorted, whenever that set changes: after a login, a C{who}
    from a restored session, a logout, or a disconnect that took a user's
    last connection away.

Who is online is what this process sees: in a cluster
(L{webwire.cluster.redis.RedisCluster}), messages cross processes but
C{presence} and C{who} list the users connected to this process.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.static import File

from webwire import wire
from webwire._reactor import defaultReactor
from webwire.application import Application
from webwire.errors import (
    Disconnected,
    MessageTooLarge,
    RequestError,
    SessionActive,
    SessionsDisabled,
)
from webwire.interfaces import IConnection, RequestResult
from webwire.logonce import eventsOf
from webwire.resource import WebWireResource
from webwire.server import WebWireServerFactory
from webwire.sessions.session import formatTime
from webwire.web import STATIC, WebWireRoot

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_TEXT_LENGTH",
    "ChatApplication",
    "makeDemoRoot",
]

MAX_NAME_LENGTH = 32
"""The longest user name, in characters (code points)."""

MAX_TEXT_LENGTH = 1000
"""The longest message, in characters (code points)."""


def _toJSON(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(request: wire.Request, what: str) -> str:
    try:
        return request.text()
    except UnicodeDecodeError:
        raise RequestError("BAD_REQUEST", f"the {what} must be text") from None


def _checkName(name: str) -> str:
    name = name.strip()
    if not name:
        raise RequestError("BAD_REQUEST", "empty user name")
    if len(name) > MAX_NAME_LENGTH:
        raise RequestError(
            "BAD_REQUEST", f"user names have at most {MAX_NAME_LENGTH} characters"
        )
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise RequestError("BAD_REQUEST", "user names must not hold control characters")
    return name


def _userOf(connection: IConnection) -> str | None:
    """The user name of the connection's session, if it has one."""
    session = connection.session
    if session is None:
        return None
    user = session.info.get("user")
    return user if isinstance(user, str) and user else None


class ChatApplication(Application):
    """
    The server of the chat page (see the module docstring for the contract).

    Sessions carry the user name (info C{{"user": name}}); who is online is
    worked out from the sessions of the open connections, and signal
    C{presence} is sent whenever that set of names differs from the one
    last announced.

    A session a client restores on a new connection is B{not} announced to
    the application: the server has no hook for restores. So the page calls
    C{who} after every (re)connection; a C{who} from a connection whose
    restored session brings a name online sends C{presence} to everyone.

    :ivar connections: The open connections (C{set[IConnection]}), tracked
        in L{onClientConnected} / L{onClientDisconnected}.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorTime | None = None) -> None:
        """
        :param reactor: The clock messages are timestamped with; the global
            reactor if omitted.
        """
        self._clock: IReactorTime = reactor if reactor is not None else defaultReactor()
        self.connections: set[IConnection] = set()
        self._announced: list[str] = []

    # Hooks ----------------------------------------------------------------

    def onClientConnected(self, connection: IConnection) -> None:
        """Count the connection as open."""
        self.connections.add(connection)

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        """Forget the connection; announce if its user is gone now."""
        self.connections.discard(connection)
        self._updatePresence()

    REQUEST_NAMES = frozenset({"login", "say", "who", "logout"})
    """The requests it answers."""

    def knowsRequest(self, name: str) -> bool:
        """Whether it answers request C{name} (see L{webwire.metrics})."""
        return name in self.REQUEST_NAMES

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> RequestResult:
        """
        Answer C{login}, C{say}, C{who} and C{logout}.

        :raises RequestError: C{UNKNOWN_REQUEST} for anything else, and the
            errors of each request.
        """
        name = request.name
        if name == "login":
            return self._login(connection, request)
        if name == "say":
            return self._say(connection, request)
        if name == "who":
            return self._who()
        if name == "logout":
            return self._logout(connection)
        return super().onRequest(connection, request)

    # Queries --------------------------------------------------------------

    def online(self) -> list[str]:
        """The distinct names signed in on open connections, sorted."""
        names = {_userOf(c) for c in self.connections}
        return sorted(name for name in names if name is not None)

    # Requests -------------------------------------------------------------

    async def _login(self, connection: IConnection, request: wire.Request) -> str:
        if connection.session is not None:
            raise RequestError("SESSION_ACTIVE", "already signed in")
        user = _checkName(_text(request, "user name"))
        try:
            session = await connection.createSession({"user": user})
        except SessionActive:
            raise RequestError("SESSION_ACTIVE", "already signed in") from None
        except SessionsDisabled:
            raise RequestError(
                "SESSIONS_UNAVAILABLE", "sessions are not available"
            ) from None
        eventsOf(connection).emit(
            self._log, "signed in", LogLevel.info, "{user} signed in", user=user
        )
        self._updatePresence()
        return session.key

    def _say(self, connection: IConnection, request: wire.Request) -> Deferred[bytes]:
        user = _userOf(connection)
        if user is None:
            raise RequestError("NOT_SIGNED_IN", "sign in first")
        text = _text(request, "message")
        if not text.strip():
            raise RequestError("BAD_REQUEST", "empty message")
        if len(text) > MAX_TEXT_LENGTH:
            raise RequestError(
                "BAD_REQUEST", f"messages have at most {MAX_TEXT_LENGTH} characters"
            )
        now = datetime.fromtimestamp(self._clock.seconds(), UTC)
        document = _toJSON({"user": user, "text": text, "time": formatTime(now)})
        try:
            sent: Deferred[None] = connection.cluster.broadcast("message", document)
        except MessageTooLarge:
            raise RequestError(
                "BAD_REQUEST", "the message is too large for this server"
            ) from None

        def undelivered(f: Failure) -> bytes:
            eventsOf(connection).failure(
                self._log,
                "message undelivered",
                "a message did not reach the other processes",
                f,
                LogLevel.error,
            )
            raise RequestError(
                "DELIVERY_FAILED", "the message reached this server's users only"
            )

        return sent.addCallbacks(lambda _: b"", undelivered)

    def _who(self) -> str:
        self._updatePresence()
        return _toJSON(self.online())

    async def _logout(self, connection: IConnection) -> bytes:
        user = _userOf(connection)
        session = connection.session
        if session is None:
            return b""
        try:
            await connection.cluster.closeSession(session.key)
        except CancelledError:
            raise  # the request was cancelled: not a failure to report
        except Exception:
            # Logged where it failed; this process's connections are out.
            raise RequestError(
                "SIGN_OUT_INCOMPLETE",
                "signed out here, but other servers or the session store "
                "could not be reached",
            ) from None
        finally:
            self._updatePresence()
        eventsOf(connection).emit(
            self._log, "signed out", LogLevel.info, "{user} signed out", user=user
        )
        return b""

    # Broadcasting ---------------------------------------------------------

    def _updatePresence(self) -> None:
        """Send C{presence} to everyone if the names online changed."""
        names = self.online()
        if names == self._announced:
            return
        self._announced = names
        try:
            self._broadcast("presence", _toJSON(names))
        except MessageTooLarge:
            self._log.warn(
                "{count} names online do not fit in one presence signal",
                count=len(names),
            )

    def _broadcast(self, name: str, document: str) -> None:
        """
        Send a UTF-8 signal to every open connection.

        :raises MessageTooLarge: If it does not fit the message buffer (then
            nobody got it: the buffer size is the same for all).
        """
        for connection in list(self.connections):
            try:
                connection.signal(name, document)
            except Disconnected:
                pass  # closed meanwhile; its disconnect hook follows


def makeDemoRoot(
    factory: WebWireServerFactory, chatFactory: WebWireServerFactory
) -> WebWireRoot:
    """
    The site root C{twistd webwire} serves by default.

    :param factory: Answers WebSocket upgrades on any path but C{/chat}
        (the conformance application).
    :param chatFactory: Answers upgrades on C{/chat} (a L{ChatApplication}).
    :returns: A L{WebWireRoot} that also serves the chat page at C{/},
        its script at C{/chat.js} and the browser client at C{/webwire.js}.
    """
    root = WebWireRoot(factory)
    root.putChild(b"", File(STATIC.child("chat.html").path, defaultType="text/html"))
    root.putChild(
        b"chat.js", File(STATIC.child("chat.js").path, defaultType="text/javascript")
    )
    root.putChild(b"chat", WebWireResource(chatFactory))
    return root
