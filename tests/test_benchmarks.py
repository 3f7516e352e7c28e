"""
The benchmarks run end to end: C{python -m benchmarks.roundtrip --quick}
(a real server process, a real bare echo server, real load generator
processes) and a short C{python -m benchmarks.metricscost}. What they
report is checked for shape and consistency, never for speed.
"""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import redirect_stderr
from typing import Any

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

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


class MetricsCostBenchmarkTests(TestCase):
    """
    C{python -m benchmarks.metricscost} measures each server process with
    its metrics off and on, and reports the cost from what it measured.
    """

    timeout = 120

    async def test_short(self) -> None:
        """
        One process, one window each way, at the load asked for: both
        lines and the cost.
        """
        env = dict(os.environ, PYTHONPATH=ROOT.path)
        arguments = ["--instances", "1", "--rounds", "1", "--seconds", "0.5"]
        arguments += ["--inflight", "2"]
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "benchmarks.metricscost", *arguments, "--warmup", "0.2"],
            env=env,
            path=ROOT.path,
            reactor=reactor,
        )
        text = (out + err).decode("utf-8", "replace")
        if code == 1 and "no CPU time was measured" in text:
            # CPU time is read in clock ticks (10 ms): a short window on a
            # loaded machine may see none.
            raise SkipTest("no server CPU time was seen in a 0.5 s window")
        self.assertEqual(code, 0, text)
        self.assertIn("saturation, 16x2 64 B,", text)
        self.assertIn("(metrics off)", text)
        self.assertIn("(metrics on)", text)
        figures = [
            float(line.split(" us CPU/req")[0].rsplit(None, 1)[1])
            for line in text.splitlines()
            if "us CPU/req" in line
        ]
        self.assertEqual(len(figures), 2)
        self.assertIn("metrics cost ", text)

    def test_badArguments(self) -> None:
        """Counts below 1 are refused before anything starts."""
        from benchmarks.metricscost import parseArguments

        for option in ("--inflight", "--instances", "--rounds"):
            with redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                parseArguments([option, "0"])
        self.assertEqual(parseArguments([]).inflight, 8)

    def test_summarise(self) -> None:
        """
        The cost is the median over every pair of windows of on over off;
        each process's is the median of its pairs; the figures each way
        are medians of every window.
        """
        from benchmarks.metricscost import summarise

        summary = summarise(
            [
                [(10.0, 10.5), (12.0, 12.0), (10.0, 11.0)],
                [(8.0, 8.0), (9.0, 9.9)],
            ]
        )
        for cost, expected in zip(summary["costs"], [0.05, 0.05], strict=True):
            self.assertAlmostEqual(cost, expected)
        # The pairs' costs, in order: 0, 0, 0.05, 0.1, 0.1.
        self.assertAlmostEqual(summary["cost"], 0.05)
        self.assertAlmostEqual(summary["low"], 0.0)
        self.assertAlmostEqual(summary["high"], 0.1)
        self.assertEqual(summary["off"], 10.0)
        self.assertEqual(summary["on"], 10.5)

    def test_summariseOnePair(self) -> None:
        """One pair is its own median and quartiles."""
        from benchmarks.metricscost import summarise

        summary = summarise([[(8.0, 8.2)]])
        for key in ("cost", "low", "high"):
            self.assertAlmostEqual(summary[key], 0.025)

    def test_summariseNothing(self) -> None:
        """Without a figure each way, there is no cost to tell."""
        from benchmarks._common import BenchmarkError
        from benchmarks.metricscost import summarise

        cases: list[list[list[tuple[float, float]]]] = [
            [],
            [[]],
            [[(1.0, 1.1)], []],
            [[(0.0, 1.0)]],
        ]
        for pairs in cases:
            self.assertRaises(BenchmarkError, summarise, pairs)


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
