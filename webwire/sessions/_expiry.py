# -*- test-case-name: tests.test_sessions -*-
"""
What the built-in session managers share: the clock, the idle limit, and
the periodic sweep of expired sessions, run as a Twisted service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from webwire._reactor import defaultReactor

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__: list[str] = []

MAX_SWEEP_INTERVAL = 3600.0
"""The longest default sweep interval, in seconds (one hour)."""


class ExpiringManager(Service):
    """
    Base of the built-in session managers: a service that, when an idle
    limit is set, removes expired sessions every C{sweepInterval} seconds
    while it runs.

    Subclasses implement L{_sweepExpired}.

    :ivar maxIdle: Seconds a session may stay unused (since its creation or
        its last lookup) before it expires; C{None}: never.
    :ivar sweepInterval: Seconds between two sweeps, or C{None} without
        C{maxIdle}.
    """

    _log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        maxIdle: float | None,
        sweepInterval: float | None,
        clock: IReactorTime | None,
    ) -> None:
        if maxIdle is not None and not maxIdle > 0:
            raise ValueError(f"maxIdle must be positive or None, not {maxIdle!r}")
        if sweepInterval is not None and not sweepInterval > 0:
            raise ValueError(
                f"sweepInterval must be positive or None, not {sweepInterval!r}"
            )
        self.maxIdle = maxIdle
        if maxIdle is None:
            self.sweepInterval = None
        elif sweepInterval is None:
            self.sweepInterval = min(maxIdle, MAX_SWEEP_INTERVAL)
        else:
            self.sweepInterval = sweepInterval
        self._clock = clock
        self._loop: LoopingCall | None = None
        self._loopDone: Deferred[LoopingCall] | None = None

    @property
    def clock(self) -> IReactorTime:
        """
        The clock that times lookups and sweeps: the one given to the
        constructor, else the global reactor (imported on first use, so that
        creating a manager installs no reactor).
        """
        if self._clock is None:
            self._clock = defaultReactor()
        return self._clock

    def _now(self) -> datetime:
        """
        Now, as an aware UTC datetime.
        """
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def _isExpired(self, lastLookup: datetime, now: datetime) -> bool:
        """
        Whether a session last looked up (or created) at C{lastLookup} has
        expired at C{now}: more than C{maxIdle} seconds passed.
        """
        if self.maxIdle is None:
            return False
        return (now - lastLookup).total_seconds() > self.maxIdle

    def _sweepExpired(self, now: datetime) -> Deferred[int]:
        """
        Remove the sessions expired at C{now}.

        :returns: A Deferred firing with how many were removed.
        """
        raise NotImplementedError()

    def sweep(self) -> Deferred[int]:
        """
        Remove every expired session now (the service does so every
        C{sweepInterval} seconds while it runs). Without C{maxIdle}, nothing
        expires.

        :returns: A Deferred that fires with how many sessions were removed,
            or fails if the store could not be scanned.
        """
        if self.maxIdle is None:
            return succeed(0)
        d = maybeDeferred(self._sweepExpired, self._now())

        def logged(count: int) -> int:
            if count:
                self._log.info("swept {count} expired session(s)", count=count)
            else:
                self._log.debug("no expired session to sweep")
            return count

        return d.addCallback(logged)

    def _sweepAndLog(self) -> Deferred[None]:
        """
        One sweep of the loop: a failure is logged, so the loop goes on.
        """

        def failed(failure: Failure) -> None:
            self._log.failure("sweeping expired sessions failed", failure)

        return self.sweep().addCallbacks(lambda _: None, failed)

    def startService(self) -> None:
        """
        Start the service: with C{maxIdle} set, sweep expired sessions every
        C{sweepInterval} seconds (the first sweep one interval from now).
        """
        super().startService()
        if self.sweepInterval is None or self._loop is not None:
            return
        self._loop = LoopingCall(self._sweepAndLog)
        self._loop.clock = self.clock
        self._loopDone = self._loop.start(self.sweepInterval, now=False)

    def stopService(self) -> Deferred[None] | None:
        """
        Stop the service and its sweeps.

        :returns: C{None} without sweeps; else a Deferred that fires once a
            sweep in progress, if any, is finished.
        """
        super().stopService()
        loop, done = self._loop, self._loopDone
        self._loop = self._loopDone = None
        if loop is None or done is None:
            return None
        loop.stop()
        return done.addCallback(lambda _: None)
