# -*- test-case-name: tests.test_sessions -*-
"""
A session manager that keeps sessions in memory: fast, and forgotten when
the process ends. Use it for tests, or for servers whose clients need not
restore a session after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attr
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from webwire.interfaces import IConnection, ISessionManager
from webwire.sessions._expiry import ExpiringManager
from webwire.sessions.keys import isSafeKey, shortKey
from webwire.sessions.session import SessionLookupResult

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["MemorySessionManager"]


@attr.s(auto_attribs=True)
class _Entry:
    creation: datetime
    lastLookup: datetime
    info: Mapping[str, Any]


@implementer(ISessionManager)
class MemorySessionManager(ExpiringManager):
    """
    Keeps sessions in a dictionary, key -> (creation, last lookup, info).

    Keys are checked with L{isSafeKey} before anything else, as by every
    manager: any other key is unknown on lookup, ignored on close, and
    refused (C{ValueError}) on creation.

    It is also a Twisted service: add it to your application (or start it)
    to have expired sessions removed periodically when C{maxIdle} is set.
    Without it, an expired session is still refused (and forgotten) when
    looked up.

    Closing is idempotent: closing an unknown (or already closed, or
    expired) session does nothing and is not an error, so that a session
    closed twice, e.g. by two servers sharing a store or after it expired,
    does not log spurious errors.

    :param maxIdle: Seconds a session may stay unused (since its creation
        or last lookup) before it expires; C{None} (the default): never.
    :param sweepInterval: Seconds between two sweeps of expired sessions
        while the service runs; default: C{maxIdle}, at most an hour.
        Ignored without C{maxIdle}.
    :param clock: The clock of lookups and sweeps; default: the global
        reactor.
    :raises ValueError: If C{maxIdle} or C{sweepInterval} is not positive.
    """

    def __init__(
        self,
        maxIdle: float | None = None,
        sweepInterval: float | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(maxIdle, sweepInterval, clock)
        self._sessions: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """
        How many sessions are stored, expired or not.
        """
        return len(self._sessions)

    def onSessionCreated(self, connection: IConnection) -> None:
        """
        Store the session of C{connection}.

        :raises ValueError: If the connection has no session, or its key is
            not valid (L{isSafeKey}).
        """
        session = connection.session
        if session is None:
            raise ValueError("the connection has no session to store")
        if not isSafeKey(session.key):
            raise ValueError(
                f"cannot store session {shortKey(str(session.key))}: its key is "
                "not 1 to 240 characters of [A-Za-z0-9_-]"
            )
        self._sessions[session.key] = _Entry(
            session.creation, session.lastLookup, deepcopy(dict(session.info))
        )

    def onSessionLookup(self, key: str) -> SessionLookupResult | None:
        """
        Find the session C{key} and record that it was looked up now.

        :returns: The session's creation time, previous lookup time and info
            (a copy); or C{None} if it is unknown, expired (it is then
            forgotten) or the key is not valid.
        """
        if not isSafeKey(key):
            return None
        entry = self._sessions.get(key)
        if entry is None:
            return None
        now = self._now()
        if self._isExpired(entry.lastLookup, now):
            del self._sessions[key]
            self._log.debug("session {key} expired", key=shortKey(key))
            return None
        result = SessionLookupResult(entry.creation, entry.lastLookup, entry.info)
        entry.lastLookup = now
        return result

    def onSessionClosed(self, key: str) -> None:
        """
        Forget the session C{key}; an unknown key is not an error.
        """
        self._sessions.pop(key, None)

    def _sweepExpired(self, now: datetime) -> Deferred[int]:
        expired = [
            key
            for key, entry in self._sessions.items()
            if self._isExpired(entry.lastLookup, now)
        ]
        for key in expired:
            del self._sessions[key]
        return succeed(len(expired))
