"""
The benchmark's one command runs end to end: C{python -m benchmarks.roundtrip
--quick}, a real server process, a real bare echo server, real load
generator processes. What it reports is checked for shape and consistency,
never for speed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from benchmarks._processes import ChildProcess

ROOT = FilePath(__file__).parent().parent()
SERVERS = ("webwire", "echo")
LOADS = (
    "16x8 64 B",
    "1x1 64 B",
    "16x8 4096 B binary",
    "16x8 4096 B UTF-8",
    "16x8 4096 B UTF-16",
)


class RoundtripBenchmarkTests(TestCase):
    """
    C{python -m benchmarks.roundtrip --quick --json PATH} measures every
    configuration for both servers and reports all of it.
    """

    timeout = 300

    def checkResult(self, result: dict[str, Any], server: str) -> None:
        self.assertEqual(result["server"], server)
        self.assertGreater(result["throughput"], 0)  # replies came, all checked
        self.assertLessEqual(result["p50"], result["p99"])
        # CPU time is read in clock ticks (10 ms): a quick window on a
        # loaded machine may see none of the server's, and reports 0.
        self.assertGreaterEqual(result["serverCpuPerRequest"], 0)
        self.assertTrue(result["generatorCpu"])

    async def test_quick(self) -> None:
        """
        Every configuration appears for both servers, with the ratios
        webwire/echo computed from the figures reported next to them.
        """
        path = FilePath(self.mktemp())
        env = dict(os.environ, PYTHONPATH=ROOT.path)
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "benchmarks.roundtrip", "--quick", "--json", path.path],
            env=env,
            path=ROOT.path,
            reactor=reactor,
        )
        self.assertEqual(code, 0, (out + err).decode("utf-8", "replace"))
        text = out.decode()
        self.assertIn("ratios webwire/echo", text)
        report = json.loads(path.getContent())
        summary = report["summary"]
        self.assertEqual(sorted(summary["saturation"]), sorted(LOADS))
        for load in LOADS:
            entry = summary["saturation"][load]
            self.assertIn(load, text)
            for server in SERVERS:
                self.checkResult(entry[server], server)
            ours = entry["webwire"]["serverCpuPerRequest"]
            theirs = entry["echo"]["serverCpuPerRequest"]
            if theirs:
                self.assertAlmostEqual(
                    entry["ratio"]["serverCpuPerRequest"], ours / theirs
                )
            else:  # no ratio to a figure of 0
                self.assertIsNone(entry["ratio"]["serverCpuPerRequest"])
        same = summary["sameLoad"]
        for server in SERVERS:
            self.checkResult(same[server], server)
            self.assertEqual(same[server]["offered"], same["offered"])
        for server in SERVERS:
            check = summary["generatorCheck"][server]
            self.assertEqual(len(check["generatorCpuOne"]), 1)
            self.assertEqual(len(check["generatorCpuTwo"]), 2)
            self.assertGreater(check["serverCpuOne"], 0)
            self.assertGreaterEqual(summary["heartbeatFlood"][server]["serverCpu"], 0)
            memory = summary["idleMemory"][server]
            self.assertEqual(memory["connections"], 200)
            self.assertEqual(
                memory["perConnectionKiB"],
                (memory["rssAfterKiB"] - memory["rssBeforeKiB"]) / 200,
            )
        self.assertEqual(len(summary["startup"]["seconds"]), 1)
        self.assertGreater(summary["startup"]["best"], 0)
        self.assertEqual(report["machine"]["rounds"], 1)


class ChildProcessTests(SynchronousTestCase):
    """The benchmarks' child processes."""

    def test_killNeverStarted(self) -> None:
        """
        Killing a child that was never started (a run that failed before
        starting its load generators cleans up) does nothing, rather than
        failing the clean-up.
        """
        child = ChildProcess("load generator")
        child.kill()
        self.assertTrue(child.expectExit)
        self.assertIsNone(child.pid)
