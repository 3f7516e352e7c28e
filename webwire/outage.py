# -*- test-case-name: tests.test_outage -*-
"""
Outages of what a server depends on (Redis, an HTTP backend), logged once
each: one warning when it becomes unreachable, naming it, and one line when
it is back, however many requests fail in between.

While a dependency is known to be down, the operations that need it fail at
once with L{Unavailable} instead of each waiting for its timeout; the
failure was logged when the outage began, so whoever catches L{Unavailable}
need not log it again (and must not, for each request: the log would grow
with the traffic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["Availability", "Unavailable", "withoutPassword"]


class Unavailable(ConnectionError):
    """
    A dependency is known to be unreachable: the operation was not tried.
    The outage was logged once when it began.
    """


def withoutPassword(url: str) -> str:
    """
    C{url} with its password (if any) replaced by C{***}, for logs:
    C{redis://:secret@host:6379/0} is C{redis://:***@host:6379/0}.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Availability:
    """
    Whether a dependency is reachable, as last seen by its users (the
    members: the connection pools of a URL, say). It is down from the
    moment a member reports a failure to reach it until that member reaches
    it again; a warning is logged when the first member finds it down and
    an info line when the last is back, with how long it was down.

    :param name: How the dependency is named in the log and in
        L{Unavailable}, e.g. C{"Redis at redis://127.0.0.1:6379/0"}.
    :param consequence: What an outage means, for the warning, e.g.
        C{"session operations fail at once until it is back"}.
    :param clock: For the length of an outage; default: the global reactor.
    :param problem: What an outage is called in the log and in
        L{Unavailable} (C{"{name} is {problem} ({reason})"}).
    """

    _log = Logger()

    def __init__(
        self,
        name: str,
        consequence: str,
        clock: IReactorTime | None = None,
        problem: str = "unreachable",
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.name = name
        self.consequence = consequence
        self.problem = problem
        self._clock: IReactorTime = clock
        self._down: dict[object, str] = {}
        self._since = 0.0
        self._waiting: list[Deferred[None]] = []

    def isDown(self, member: object = None) -> bool:
        """
        Whether C{member} (by default: any member) last failed to reach the
        dependency.
        """
        return bool(self._down) if member is None else member in self._down

    def failed(self, reason: str, member: object = None) -> None:
        """
        C{member} could not reach the dependency, for C{reason} (one line);
        the first such report of an outage logs a warning.
        """
        first = not self._down
        self._down.setdefault(member, reason)
        if first:
            self._since = self._clock.seconds()
            self._log.warn(
                "{name} is {problem} ({reason}): {consequence}",
                name=self.name,
                problem=self.problem,
                reason=reason,
                consequence=self.consequence,
            )

    def succeeded(self, member: object = None) -> None:
        """
        C{member} reached the dependency; once no member is down, the
        outage is over (logged once) and L{whenUp} fires.
        """
        if self._down.pop(member, None) is None or self._down:
            return
        self._log.info(
            "{name} works again, after {seconds:.1f} s",
            name=self.name,
            seconds=self._clock.seconds() - self._since,
        )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def forget(self, member: object) -> None:
        """
        C{member} is gone (a pool was closed): its state no longer counts,
        and nothing is logged.
        """
        self._down.pop(member, None)
        if not self._down:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def check(self, member: object = None) -> None:
        """
        :raises Unavailable: If C{member} is known to be down.
        """
        reason = self._down.get(member)
        if reason is not None:
            raise Unavailable(f"{self.name} is {self.problem} ({reason})")

    def whenUp(self) -> Deferred[None]:
        """A Deferred that fires once no member is down (at once if none)."""
        d: Deferred[None] = Deferred()
        if not self._down:
            d.callback(None)
        else:
            self._waiting.append(d)
        return d
