# -*- test-case-name: tests.test_sessionsendtoend -*-
"""
The server's side of sessions: which connections hold which session, and
the flows that create, restore and close them (protocol section 5.5).

A session is I{active} while at least one connection holds it. The session
manager persists it beyond that: a disconnect only detaches the connection,
and the session is destroyed (the manager's close hook called) only when
its last connection closes it.

Connections are counted by the server's L{ICluster}: on this process
alone, or on every process sharing a Redis. A session is destroyed when
its last connection I{anywhere} closes it, and the maximum number of
connections per session is enforced atomically: a restore takes its place
before the (possibly slow) manager lookup and gives it back if the lookup
fails, so two restores racing for the last place cannot both get it.
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
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from webwire._hooks import callHook
from webwire.errors import (
    Disconnected,
    InternalError,
    MaxSessionConnections,
    SessionActive,
    SessionNotFound,
)
from webwire.interfaces import (
    IConnection,
    IServerCluster,
    ISessionKeyGenerator,
    ISessionManager,
)
from webwire.logonce import RepeatedEvents, eventsOf
from webwire.metrics import NULL_OBSERVER, IServerObserver
from webwire.sessions.keys import checkKey, isSafeKey, shortKey
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

    def sendSessionCreated(self, session: Session) -> None:
        """
        Tell the client that C{session} was created for it.

        :raises Exception: If it cannot be told (closed, or the session
            document does not fit a message); the session is not created.
        """

    def sendSessionClosed(self) -> None:
        """
        Tell the client that its session was closed.

        :raises Disconnected: If the connection is closed.
        """


class SessionRegistry:
    """
    The active sessions of one server, and the session flows.

    :ivar manager: The L{ISessionManager} that persists sessions.
    :ivar keyGenerator: The L{ISessionKeyGenerator} that makes keys.
    :ivar maxConnections: Connections one session may have at once; 0 for
        no limit (only restores are limited, as in the original server).
    :ivar cluster: The L{IServerCluster} that counts each session's connections.
    :ivar observer: The L{IServerObserver} told of sessions and failures.
    """

    def __init__(
        self,
        manager: ISessionManager,
        keyGenerator: ISessionKeyGenerator,
        maxConnections: int,
        clock: IReactorTime,
        cluster: IServerCluster,
        observer: IServerObserver = NULL_OBSERVER,
    ) -> None:
        self.manager = manager
        self.keyGenerator = keyGenerator
        self.maxConnections = maxConnections
        self.cluster = cluster
        self.observer = observer
        self._clock = clock
        self._channels: dict[str, set[SessionChannel]] = {}

    # Queries --------------------------------------------------------------

    @property
    def activeCount(self) -> int:
        """How many sessions are held by at least one connection here."""
        return len(self._channels)

    def channelsOf(self, key: str) -> list[SessionChannel]:
        """The connections of this server that hold session C{key} now."""
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
            channel.sendSessionCreated(session)
        except Exception as e:
            return fail(e)
        self._attach(key, channel)
        channel.session = session
        events = eventsOf(channel)
        self._count(self.cluster.add(key), key, events)
        events.emit(
            _log,
            "session created",
            LogLevel.info,
            "session {key} created",
            key=shortKey(key),
        )
        self.observer.sessionCreated()
        stored = callHook(self.manager.onSessionCreated, channel.connection)

        def unstored(f: Failure) -> None:
            self.observer.sessionManagerFailure("store")
            events.failure(
                _log,
                "session store failed",
                "the session manager failed to store session {key}; it stays "
                "active but cannot be restored",
                f,
                key=shortKey(key),
            )

        stored.addErrback(unstored)
        created: Deferred[Session] = stored.addCallback(lambda _: session)
        return created

    def restore(
        self,
        channel: SessionChannel,
        key: str,
        accept: Callable[[Session], object] = lambda session: None,
    ) -> Deferred[Session]:
        """
        Restore session C{key} on C{channel}, for a client's request.

        A key that is not valid (L{isSafeKey}) is not found at once, before
        the cluster or the session manager sees it.

        :param accept: Called with the session found, before the connection
            takes it (the protocol builds its reply there); if it raises, the
            restore fails as a failed lookup does.
        :returns: A Deferred firing with the L{Session} now held by the
            connection, or failing with L{SessionNotFound},
            L{MaxSessionConnections}, L{InternalError} (the cause is logged)
            or C{CancelledError} (the lookup was cancelled; logged).
        """
        restoring = Deferred.fromCoroutine(self._restore(channel, key, accept))
        return restoring.addCallbacks(self._restored, self._restoreFailed)

    def _restored(self, session: Session) -> Session:
        self.observer.sessionRestored()  # metrics
        return session

    def _restoreFailed(self, failure: Failure) -> Failure:
        """Count a failed restore by reason (metrics), and pass it on."""
        if failure.check(SessionNotFound):
            self.observer.restoreFailed("not_found")
        elif failure.check(MaxSessionConnections):
            self.observer.restoreFailed("limit")
        else:
            self.observer.restoreFailed("error")
        return failure

    async def _restore(
        self,
        channel: SessionChannel,
        key: str,
        accept: Callable[[Session], object],
    ) -> Session:
        if not isSafeKey(key):
            # Never a key of ours: neither the cluster's counts nor the
            # session manager see it.
            raise SessionNotFound(key)
        events = eventsOf(channel)
        held = channel.session is not None and channel.session.key == key
        if not held:
            try:
                counted = await self.cluster.reserve(key, self.maxConnections)
            except CancelledError:
                self._cancelled(events, key)
                raise
            except Exception:
                events.failure(
                    _log,
                    "session count failed",
                    "counting the connections of session {key} failed",
                    key=shortKey(key),
                )
                self.observer.clusterFailure("count")  # metrics
                raise InternalError("counting connections failed") from None
            if not counted:
                raise MaxSessionConnections(key)
        try:
            session = await self._lookup(key, accept, events)
        except BaseException:
            if not held:
                self._count(self.cluster.release(key), key, events)
            raise
        if held:
            return session
        if not channel.isActive:
            self._count(self.cluster.release(key), key, events)
            return session
        if channel.session is not None:
            # Restoring another session on a connection that has one: the
            # old one is let go of first, not destroyed.
            old = channel.session.key
            self._detach(old, channel)
            self._count(self.cluster.release(old), old, events)
        self._attach(key, channel)
        channel.session = session
        events.emit(
            _log,
            "session restored",
            LogLevel.info,
            "session {key} restored",
            key=shortKey(key),
        )
        return session

    async def _lookup(
        self,
        key: str,
        accept: Callable[[Session], object],
        events: RepeatedEvents,
    ) -> Session:
        """
        Ask the session manager for session C{key}, and let C{accept} see it.

        :raises SessionNotFound: If the manager does not know it.
        :raises InternalError: If the lookup or C{accept} failed (logged).
        :raises CancelledError: If the lookup was cancelled (logged).
        """
        try:
            result = await callHook(self.manager.onSessionLookup, key)
            if result is None:
                raise SessionNotFound(key)
            if not isinstance(result, SessionLookupResult):
                raise TypeError(
                    f"the session manager's lookup returned {result!r}, not a "
                    "SessionLookupResult or None"
                )
            session = Session(key, result.creation, result.lastLookup, result.info)
            accept(session)
        except (SessionNotFound, CancelledError) as e:
            if isinstance(e, CancelledError):
                self._cancelled(events, key)
            raise
        except Exception:
            events.failure(
                _log,
                "session restore failed",
                "restoring session {key} failed",
                key=shortKey(key),
            )
            self.observer.sessionManagerFailure("lookup")  # metrics
            raise InternalError("restoring the session failed") from None
        return session

    def _cancelled(self, events: RepeatedEvents, key: str) -> None:
        events.emit(
            _log,
            "session restore cancelled",
            LogLevel.warn,
            "restoring session {key} was cancelled",
            key=shortKey(key),
        )

    def clientClose(self, channel: SessionChannel) -> Deferred[None]:
        """
        A client's close-session request: detach the session from the
        connection (destroying it if this was its last connection). The
        client gets no session-closed notification, only its reply.
        """
        return self._close(channel)

    def closeOn(self, channel: SessionChannel, destroy: bool = True) -> Deferred[None]:
        """
        Close the session of one connection on the server's initiative (see
        L{IConnection.closeSession}): the connection is told. The session is
        destroyed if C{destroy} and no other connection holds it.
        """
        if channel.session is None:
            return succeed(None)
        try:
            channel.sendSessionClosed()
        except Disconnected:
            pass
        return self._close(channel, destroy)

    def closeLocally(self, key: str) -> Deferred[None]:
        """
        Close session C{key} on every connection of this server that holds
        it, telling each, without destroying it: for a close the cluster
        handles (see L{ICluster.closeSession}), which destroys it once.
        """
        closing = [
            self.closeOn(channel, destroy=False) for channel in self.channelsOf(key)
        ]
        return gatherResults(closing).addCallback(lambda _: None)

    def destroy(self, key: str, events: RepeatedEvents | None = None) -> Deferred[None]:
        """
        Call the session manager's close hook for C{key}; a failure is
        logged and passed on.

        :param events: Where to log, for a close caused by a connection:
            its L{RepeatedEvents}; by default everything is logged.
        """
        if events is None:
            events = RepeatedEvents(None)  # logs everything
        events.emit(
            _log,
            "session closed",
            LogLevel.info,
            "session {key} closed",
            key=shortKey(key),
        )
        self.observer.sessionClosed()
        closed = callHook(self.manager.onSessionClosed, key)

        def failed(f: Failure) -> Failure:
            self.observer.sessionManagerFailure("forget")
            events.failure(
                _log,
                "session forget failed",
                "the session manager failed to forget session {key}",
                f,
                key=shortKey(key),
            )
            return f

        return closed.addCallbacks(lambda _: None, failed)

    def detach(self, channel: SessionChannel) -> None:
        """
        The connection is gone: let go of its session without destroying it.
        """
        if channel.session is not None:
            key = channel.session.key
            if self._detach(key, channel):
                self._count(self.cluster.release(key), key, eventsOf(channel))

    # Bookkeeping ----------------------------------------------------------

    def _close(self, channel: SessionChannel, destroy: bool = True) -> Deferred[None]:
        """
        Take the session off C{channel}; destroy it if C{destroy} and no
        connection holds it any more, anywhere.
        """
        session = channel.session
        if session is None:
            return succeed(None)
        key = session.key
        channel.session = None
        if not self._detach(key, channel):
            return succeed(None)
        released = self.cluster.release(key)
        if not destroy:
            self._count(released, key, eventsOf(channel))
            return succeed(None)

        def uncounted(f: Failure) -> int:
            self.observer.clusterFailure("count")
            eventsOf(channel).emit(
                _log,
                "session count failed",
                LogLevel.warn,
                "counting the connections of session {key} failed ({error}); "
                "it is destroyed if this server holds it no more",
                key=shortKey(key),
                error=f.getErrorMessage(),
            )
            return len(self._channels.get(key, ()))

        def destroyIfLast(left: int) -> Deferred[None] | None:
            if left > 0:
                return None
            return self.destroy(key, eventsOf(channel)).addErrback(lambda _: None)

        return released.addErrback(uncounted).addCallback(destroyIfLast)

    def _count(self, counting: Deferred[Any], key: str, events: RepeatedEvents) -> None:
        """
        Log the failure of a count nobody waits for (a warning: the cluster
        corrects its counts when it can).
        """

        def failed(f: Failure) -> None:
            self.observer.clusterFailure("count")
            events.emit(
                _log,
                "session count failed",
                LogLevel.warn,
                "counting the connections of session {key} failed: {error}",
                key=shortKey(key),
                error=f.getErrorMessage(),
            )

        counting.addErrback(failed)

    def _attach(self, key: str, channel: SessionChannel) -> None:
        self._channels.setdefault(key, set()).add(channel)

    def _detach(self, key: str, channel: SessionChannel) -> bool:
        """
        Take the connection off session C{key}'s list; C{True} if it was
        there.
        """
        channels = self._channels.get(key)
        if channels is None or channel not in channels:
            return False
        channels.discard(channel)
        if not channels:
            del self._channels[key]
        return True

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)
