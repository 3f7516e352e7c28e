# -*- test-case-name: tests.test_sessionsendtoend -*-
"""
The server's side of sessions: which connections hold which session, and
the flows that create, restore and close them (protocol section 5.5).

A session is I{active} while at least one connection holds it. The session
manager persists it beyond that: a disconnect only detaches the connection,
and the session is destroyed (the manager's close hook called) only when
its last connection closes it.

The maximum number of connections per session is enforced atomically: a
restore reserves its place before the (possibly slow) manager lookup and
gives it back if the lookup fails, so two restores racing for the last
place cannot both get it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from webwire import wire
from webwire.errors import Disconnected, SessionActive
from webwire.interfaces import IConnection, ISessionKeyGenerator, ISessionManager
from webwire.sessions.keys import checkKey, shortKey
from webwire.sessions.session import Session, SessionLookupResult

__all__ = ["SessionChannel", "SessionRegistry"]

_log = Logger()


class SessionChannel(Protocol):
    """
    What the registry needs from a connection.
    """

    session: Session | None

    @property
    def isActive(self) -> bool: ...

    @property
    def connection(self) -> IConnection | None: ...

    @property
    def messageBufferSize(self) -> int: ...

    def sendUnsolicited(self, data: bytes) -> None: ...


class SessionRegistry:
    """
    The active sessions of one server, and the session flows.

    :ivar manager: The L{ISessionManager} that persists sessions.
    :ivar keyGenerator: The L{ISessionKeyGenerator} that makes keys.
    :ivar maxConnections: Connections one session may have at once; 0 for
        no limit (only restores are limited, as in the original server).
    """

    def __init__(
        self,
        manager: ISessionManager,
        keyGenerator: ISessionKeyGenerator,
        maxConnections: int,
        clock: IReactorTime,
    ) -> None:
        self.manager = manager
        self.keyGenerator = keyGenerator
        self.maxConnections = maxConnections
        self._clock = clock
        self._channels: dict[str, set[SessionChannel]] = {}
        self._reserved: dict[str, int] = {}

    # Queries --------------------------------------------------------------

    @property
    def activeCount(self) -> int:
        """How many sessions are held by at least one connection."""
        return len(self._channels)

    def channelsOf(self, key: str) -> list[SessionChannel]:
        """The connections that hold session C{key} now."""
        return list(self._channels.get(key, ()))

    # Flows ----------------------------------------------------------------

    def create(
        self, channel: SessionChannel, info: Mapping[str, Any] | None
    ) -> Deferred[Session]:
        """
        Create a session on C{channel} (see L{IConnection.createSession}).
        """
        if not channel.isActive:
            return fail(Disconnected("the connection is closed"))
        if channel.session is not None:
            return fail(SessionActive("the connection has a session already"))
        try:
            key = checkKey(self.keyGenerator.generate())
            now = self._now()
            session = Session(key, now, now, info)
            channel.sendUnsolicited(
                wire.encodeSessionCreated(session.toJSON(), channel.messageBufferSize)
            )
        except Exception as e:
            return fail(e)
        self._attach(key, channel)
        channel.session = session
        _log.info("session {key} created", key=shortKey(key))
        stored = _call(self.manager.onSessionCreated, channel.connection)
        stored.addErrback(
            lambda f: _log.failure(
                "the session manager failed to store session {key}; it stays "
                "active but cannot be restored",
                f,
                key=shortKey(key),
            )
        )
        created: Deferred[Session] = stored.addCallback(lambda _: session)
        return created

    def restore(
        self, channel: SessionChannel, identifier: bytes, key: str
    ) -> Deferred[bytes]:
        """
        Answer a client's restore-session request.

        :returns: A Deferred firing with the encoded reply: the session JSON
            as a UTF-8 reply, or session-not-found, maximum connections
            reached or internal error.
        """
        return Deferred.fromCoroutine(self._restore(channel, identifier, key))

    async def _restore(
        self, channel: SessionChannel, identifier: bytes, key: str
    ) -> bytes:
        held = channel.session is not None and channel.session.key == key
        if not held and not self._reserve(key):
            return wire.encodeSpecialReply(
                wire.MessageType.REPLY_MAX_SESSION_CONNECTIONS_REACHED, identifier
            )
        try:
            try:
                result = await _call(self.manager.onSessionLookup, key)
                if result is None:
                    return wire.encodeSpecialReply(
                        wire.MessageType.REPLY_SESSION_NOT_FOUND, identifier
                    )
                if not isinstance(result, SessionLookupResult):
                    raise TypeError(
                        f"the session manager's lookup returned {result!r}, not a "
                        "SessionLookupResult or None"
                    )
                session = Session(key, result.creation, result.lastLookup, result.info)
                reply = wire.encodeReply(
                    identifier,
                    session.toJSON(),
                    wire.Encoding.UTF8,
                    channel.messageBufferSize,
                )
            except CancelledError:
                _log.warn("restoring session {key} was cancelled", key=shortKey(key))
                return _internalError(identifier)
            except Exception:
                _log.failure("restoring session {key} failed", key=shortKey(key))
                return _internalError(identifier)
        finally:
            if not held:
                self._release(key)
        # From here on nothing waits, so the reservation just given back
        # cannot be taken by anyone else before the attachment.
        if channel.isActive and not held:
            if channel.session is not None:
                # Restoring another session on a connection that has one:
                # the old one is let go of first, not destroyed.
                self._detach(channel.session.key, channel)
            self._attach(key, channel)
            channel.session = session
            _log.info("session {key} restored", key=shortKey(key))
        return reply

    def clientClose(
        self, channel: SessionChannel, identifier: bytes
    ) -> Deferred[bytes]:
        """
        Answer a client's close-session request: detach the session from the
        connection (destroying it if this was its last connection), then an
        empty binary reply. The client gets no session-closed notification.
        """
        done = self._close(channel)
        return done.addCallback(
            lambda _: wire.encodeReply(identifier, b"", wire.Encoding.BINARY)
        )

    def closeOn(self, channel: SessionChannel) -> Deferred[None]:
        """
        Close the session of one connection on the server's initiative (see
        L{IConnection.closeSession}): the connection is told.
        """
        if channel.session is None:
            return succeed(None)
        try:
            channel.sendUnsolicited(wire.encodeSessionClosed())
        except Disconnected:
            pass
        return self._close(channel)

    def closeSession(self, key: str) -> Deferred[None]:
        """
        Close session C{key} on every connection that holds it; each is
        told, and the manager's close hook runs once.
        """
        closing = [self.closeOn(channel) for channel in self.channelsOf(key)]
        return gatherResults(closing).addCallback(lambda _: None)

    def detach(self, channel: SessionChannel) -> None:
        """
        The connection is gone: let go of its session without destroying it.
        """
        if channel.session is not None:
            self._detach(channel.session.key, channel)

    # Bookkeeping ----------------------------------------------------------

    def _close(self, channel: SessionChannel) -> Deferred[None]:
        session = channel.session
        if session is None:
            return succeed(None)
        channel.session = None
        if not self._detach(session.key, channel):
            return succeed(None)
        _log.info("session {key} closed", key=shortKey(session.key))
        closed = _call(self.manager.onSessionClosed, session.key)
        closed.addErrback(
            lambda f: _log.failure(
                "the session manager failed to forget session {key}",
                f,
                key=shortKey(session.key),
            )
        )
        return closed.addCallback(lambda _: None)

    def _reserve(self, key: str) -> bool:
        taken = len(self._channels.get(key, ())) + self._reserved.get(key, 0)
        if self.maxConnections and taken >= self.maxConnections:
            return False
        self._reserved[key] = self._reserved.get(key, 0) + 1
        return True

    def _release(self, key: str) -> None:
        left = self._reserved[key] - 1
        if left:
            self._reserved[key] = left
        else:
            del self._reserved[key]

    def _attach(self, key: str, channel: SessionChannel) -> None:
        self._channels.setdefault(key, set()).add(channel)

    def _detach(self, key: str, channel: SessionChannel) -> bool:
        """
        Take the connection off session C{key}'s list; C{True} if it was the
        last one there.
        """
        channels = self._channels.get(key)
        if channels is None or channel not in channels:
            return False
        channels.discard(channel)
        if channels:
            return False
        del self._channels[key]
        return True

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)


def _call(hook: Callable[..., object], *args: object) -> Deferred[Any]:
    """Call a session manager hook: a value, Deferred or coroutine."""
    return maybeDeferred(hook, *args)


def _internalError(identifier: bytes) -> bytes:
    return wire.encodeSpecialReply(wire.MessageType.REPLY_INTERNAL_ERROR, identifier)
