"""
What the suite skipped for want of a tool, said in one line near the end of
trial's output.

Trial prints the reasons of skipped tests grouped, in the order it first
met them, just before its summary; this module sorts last, so that without
Chromium or redis-server its skip reason, one line naming what was skipped
and how to enable it, comes last among them (with C{-j}, test modules
are handed to the workers in the same order). Its test passes where every
tool is there.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.browser import CHROMIUM, skipReason
from tests.redisserver import REDIS_SERVER


def missing() -> list[str]:
    """The kinds of tests this machine skips, each with how to enable them."""
    kinds = []
    browser = skipReason()
    if browser is not None:
        kinds.append(
            f"the browser tests ({browser}; or set WEBWIRE_CHROMIUM to another "
            f"than {CHROMIUM})"
        )
    if not os.access(REDIS_SERVER, os.X_OK):
        kinds.append(
            "the Redis tests (no redis-server on PATH: apt-get install redis-server)"
        )
    return kinds


class SkippedTests(SynchronousTestCase):
    def test_skippedForWantOfTools(self) -> None:
        """
        Every tool the suite drives is here; if one is missing, this test is
        skipped with one line naming what the suite skipped and how to
        enable it, or fails with that line where the tests must run
        (C{WEBWIRE_REQUIRE_BROWSER} or C{WEBWIRE_REQUIRE_REDIS} set, as CI
        does).
        """
        kinds = missing()
        message = (
            "SKIPPED for want of tools: "
            + "; ".join(kinds)
            + " (WEBWIRE_REQUIRE_BROWSER=1 and WEBWIRE_REQUIRE_REDIS=1 make "
            "them fail instead)"
        )
        required = ("WEBWIRE_REQUIRE_BROWSER", "WEBWIRE_REQUIRE_REDIS")
        if kinds and not any(os.environ.get(name) for name in required):
            raise SkipTest(message)
        self.assertEqual(kinds, [], message)
