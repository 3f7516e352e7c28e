# -*- test-case-name: tests.test_logonce -*-
"""
Logging what a client can make happen again and again, without letting it
flood the log: the first occurrences of each kind of event on a connection
are logged, the rest are counted, and the counts are logged in one line when
the connection is done.

Every event that one message of a client can cause (a message type only
servers send, a reply to a client that left, a handler that fails, a signal
that cannot be forwarded) goes through the L{RepeatedEvents} of its
connection, so that a client sending a million such messages causes a
handful of log lines, not a million.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from webwire.outage import Unavailable

__all__ = ["FAILURE_LIMIT", "RepeatedEvents", "eventsOf"]

FAILURE_LIMIT = 10
"""How many tracebacks of each kind a connection logs, by default."""

_SUFFIX = " (repeats on this connection are counted, not logged)"


class RepeatedEvents:
    """
    The repetitive log events of one connection: each kind is logged the
    first C{limit} times (C{failureLimit} times for L{failure}s, whose
    tracebacks may differ and matter to whoever fixes the code), then only
    counted; L{summarise} logs the counts.

    Kinds are short fixed strings chosen by the code that logs (never
    anything a client sent), so the counts take bounded memory.

    :param peer: How the connection is named in the summary.
    :param limit: How many events of each kind are logged.
    :param failureLimit: How many failures of each kind are logged.
    """

    def __init__(
        self, peer: object, limit: int = 1, failureLimit: int = FAILURE_LIMIT
    ) -> None:
        self.peer = peer
        self.limit = limit
        self.failureLimit = failureLimit
        self._counts: dict[str, int] = {}
        self._unlogged: dict[str, tuple[int, LogLevel, Logger]] = {}

    def count(self, kind: str) -> int:
        """How many events of C{kind} occurred, logged or not."""
        return self._counts.get(kind, 0)

    def _admit(self, kind: str, level: LogLevel, log: Logger, limit: int) -> str | None:
        """
        Count one event; the suffix to log it with, or C{None} to count it
        only.
        """
        seen = self._counts.get(kind, 0) + 1
        self._counts[kind] = seen
        if seen <= limit:
            return _SUFFIX if seen == limit else ""
        unlogged, _, _ = self._unlogged.get(kind, (0, level, log))
        self._unlogged[kind] = (unlogged + 1, level, log)
        return None

    def emit(
        self, log: Logger, kind: str, level: LogLevel, format: str, /, **kwargs: Any
    ) -> None:
        """
        Log C{format} with C{kwargs} at C{level} through C{log}, unless
        events of C{kind} were logged C{limit} times on this connection
        already: then count it.
        """
        suffix = self._admit(kind, level, log, self.limit)
        if suffix is not None:
            log.emit(level, format + suffix, **kwargs)

    def failure(
        self,
        log: Logger,
        kind: str,
        format: str,
        failure: Failure | None = None,
        level: LogLevel = LogLevel.critical,
        /,
        **kwargs: Any,
    ) -> None:
        """
        Like L{emit}, for C{log.failure}: the traceback of C{failure} (by
        default the exception being handled) is logged the first
        C{failureLimit} times only.

        A L{webwire.outage.Unavailable} failure (Redis or a backend known to
        be down) is counted only: its outage was logged when it began, and
        one line per outage is enough however many requests it fails.
        """
        if (failure if failure is not None else Failure()).check(Unavailable):
            self._counts[kind] = self._counts.get(kind, 0) + 1
            return
        suffix = self._admit(kind, level, log, self.failureLimit)
        if suffix is not None:
            log.failure(format + suffix, failure, level, **kwargs)

    def summarise(self) -> None:
        """
        Log, in one line per logger, how many events of each kind were
        counted and not logged since the last summary, at the highest level
        among them but at most C{warn} (a count is no emergency, whatever
        it counts); nothing if there were none.
        """
        unlogged, self._unlogged = self._unlogged, {}
        byLogger: dict[int, tuple[Logger, LogLevel, dict[str, int]]] = {}
        for kind, (count, level, log) in sorted(unlogged.items()):
            _, highest, counts = byLogger.get(id(log), (log, level, {}))
            counts[kind] = count
            byLogger[id(log)] = (log, min(max(highest, level), LogLevel.warn), counts)
        for log, level, counts in byLogger.values():
            summary = ", ".join(f"{kind} x{n}" for kind, n in counts.items())
            log.emit(
                level,
                "{peer}: repeated events not logged: {summary}",
                peer=self.peer,
                summary=summary,
                counts=counts,
            )


def eventsOf(connection: object) -> RepeatedEvents:
    """
    The L{RepeatedEvents} of a connection: that of the server's
    connections (their C{events}); for another implementation of
    L{webwire.interfaces.IConnection}, a new one, which logs everything.
    """
    events = getattr(connection, "events", None)
    if isinstance(events, RepeatedEvents):
        return events
    return RepeatedEvents(getattr(connection, "peer", connection))
