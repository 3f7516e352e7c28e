"""
L{webwire.outage}: one warning per outage, one line when it is over, and
passwords kept out of the log.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from webwire.outage import Availability, Unavailable, withoutPassword


class WithoutPasswordTests(SynchronousTestCase):
    def test_password(self) -> None:
        """A password becomes C{***}; the rest stays."""
        self.assertEqual(
            withoutPassword("redis://:s3cret@10.0.0.1:6380/2"),
            "redis://:***@10.0.0.1:6380/2",
        )
        self.assertEqual(
            withoutPassword("redis://user:s3cret@host/0"), "redis://user:***@host/0"
        )

    def test_noPassword(self) -> None:
        """A URL without a password is unchanged."""
        self.assertEqual(
            withoutPassword("redis://127.0.0.1:1/0"), "redis://127.0.0.1:1/0"
        )


class AvailabilityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.clock = Clock()
        self.availability = Availability(
            "Redis at redis://h:1/0", "it fails", self.clock
        )

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def test_oneWarningPerOutage(self) -> None:
        """
        However many failures, and from however many members, an outage is
        one warning and one line when the last member is back.
        """
        a, b = object(), object()
        for _ in range(3):
            self.availability.failed("refused", a)
            self.availability.failed("refused", b)
        self.assertEqual(
            self.texts(),
            ["Redis at redis://h:1/0 is unreachable (refused): it fails"],
        )
        self.clock.advance(2.5)
        up = self.availability.whenUp()
        self.availability.succeeded(a)
        self.assertNoResult(up)
        self.availability.succeeded(b)
        self.successResultOf(up)
        self.assertEqual(
            self.texts()[1:],
            ["Redis at redis://h:1/0 works again, after 2.5 s"],
        )
        self.availability.succeeded(a)
        self.assertEqual(len(self.events), 2)

    def test_checkPerMember(self) -> None:
        """Only a member that is down fails its checks."""
        a, b = object(), object()
        self.availability.failed("refused", a)
        error = self.assertRaises(Unavailable, self.availability.check, a)
        self.assertEqual(str(error), "Redis at redis://h:1/0 is unreachable (refused)")
        self.availability.check(b)
        self.assertTrue(self.availability.isDown())
        self.assertFalse(self.availability.isDown(b))

    def test_forget(self) -> None:
        """A member that is gone no longer counts, and nothing is logged."""
        a = object()
        self.availability.failed("refused", a)
        self.availability.forget(a)
        self.assertFalse(self.availability.isDown())
        self.successResultOf(self.availability.whenUp())
        self.assertEqual(len(self.events), 1)
