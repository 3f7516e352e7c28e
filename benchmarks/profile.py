"""
Where the server's CPU goes under load: C{twistd -n webwire} (pinned to one
CPU, as in L{benchmarks.roundtrip}) loaded by one L{benchmarks._rawload}
process with 16 connections x 8 requests in flight (64-byte C{echo}
requests), sampled with py-spy (C{pip install py-spy}; on Linux it needs
ptrace rights: root, or C{kernel.yama.ptrace_scope} 0).

Each sample is put in one category: log-call arguments if any of its
frames is building them, else by the innermost frame that belongs to one
of the areas below (Deferreds and the standard library count for their
caller):

  - log-call arguments: a line inside a C{log.debug(...)} (or other level)
    call (line numbers tell it apart from the rest of the function), a
    frame in C{twisted.logger}, or Autobahn's highlighting helpers
    (C{hltype} and the like, which call C{click.style});
  - Autobahn masking: C{autobahn/websocket/xormasker.py};
  - Autobahn fire/observers: C{autobahn/util.py} (C{fire}), C{txaio};
  - Autobahn send framing: C{sendMessage}, C{sendFrame}, C{sendData},
    C{beginMessage} and the like of C{autobahn/websocket/protocol.py};
  - Autobahn frame parsing: the rest of Autobahn (receiving, UTF-8
    validation, the Twisted adapter);
  - Twisted I/O: C{twisted/internet} (the reactor, TCP, writes);
  - WebWire fast path: C{webwire/_fastpath.py} (the frames it reads and
    writes instead of Autobahn, coalesced writes);
  - WebWire dispatch/codec: the rest of C{webwire/}, the conformance
    application;
  - other: the rest (Deferreds, the standard library).

Run from the repository root::

    python -m benchmarks.profile                 # 10 s of samples
    python -m benchmarks.profile --seconds 20 --nonblocking
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from functools import cache

from benchmarks._common import report
from benchmarks.roundtrip import LISTEN, TWISTD

CATEGORIES = (
    "Autobahn frame parsing",
    "Autobahn masking",
    "Autobahn fire/observers",
    "Autobahn send framing",
    "log-call arguments",
    "Twisted I/O",
    "WebWire fast path",
    "WebWire dispatch/codec",
    "other",
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_SENDING = {
    "sendMessage",
    "sendFrame",
    "sendData",
    "beginMessage",
    "beginMessageFrame",
    "sendMessageFrameData",
    "endMessage",
    "sendPreparedMessage",
    "_trigger",
    "_send",
}
_HIGHLIGHTERS = {"hl", "hlid", "hltype", "hluserid", "hlval", "hlflag", "_qn"}
_LEVELS = {"debug", "info", "warn", "error", "critical", "failure", "trace"}


@cache
def logCallLines(path: str) -> frozenset[int]:
    """The lines of C{path} that are part of a C{log.<level>(...)} call."""
    try:
        with open(path) as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    lines: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LEVELS
            and "log" in ast.unparse(node.func.value).lower()
        ):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return frozenset(lines)


def _parse(frame: str) -> tuple[str, str, int] | None:
    match = _FRAME.match(frame)
    if match is None:
        return None
    function = match["function"].rsplit(".", 1)[-1]
    return function, match["file"], int(match["line"])


def _isLogging(function: str, path: str, line: int) -> bool:
    if "twisted/logger" in path or "click/" in path:
        return True
    if path.endswith("autobahn/util.py") and function in _HIGHLIGHTERS:
        return True
    return line in logCallLines(path)


def _area(function: str, path: str) -> str | None:
    if "autobahn/" in path:
        if "xormasker" in path:
            return "Autobahn masking"
        if path.endswith("autobahn/util.py") or function == "fire":
            return "Autobahn fire/observers"
        if function in _SENDING:
            return "Autobahn send framing"
        return "Autobahn frame parsing"
    if "txaio/" in path:
        return "Autobahn fire/observers"
    if "twisted/internet" in path and not path.endswith("defer.py"):
        return "Twisted I/O"
    if path.endswith("webwire/_fastpath.py"):
        return "WebWire fast path"
    if "webwire/" in path:
        return "WebWire dispatch/codec"
    return None  # Deferreds, the standard library: counted for their caller


def categorize(stack: list[str]) -> str:
    """
    The category of a sample: log-call arguments if any frame is building
    them; else the area of the innermost frame that has one.
    """
    frames = [parsed for frame in stack if (parsed := _parse(frame)) is not None]
    if any(_isLogging(*frame) for frame in frames):
        return "log-call arguments"
    for function, path, _ in reversed(frames):
        area = _area(function, path)
        if area is not None:
            return area
    return "other"


def breakdown(collapsed: str) -> dict[str, float]:
    """Shares of the samples per category, from py-spy's raw output."""
    counts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        counts[categorize(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {category: counts[category] / total for category in CATEGORIES}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--nonblocking", action="store_true", help="sample without pausing the server"
    )
    parser.add_argument("--raw", metavar="PATH", help="keep py-spy's samples")
    opts = parser.parse_args(argv)
    pyspy = shutil.which("py-spy") or shutil.which(
        "py-spy", path=os.path.dirname(sys.executable)
    )
    if pyspy is None:
        parser.error("py-spy not found: pip install py-spy")
    cpus = sorted(os.sched_getaffinity(0))
    serverCpus, loadCpus = (cpus[-1:], cpus[:-1]) if len(cpus) > 1 else ([], [])
    argv = [sys.executable, *TWISTD, "webwire", "--listen", LISTEN]
    server = subprocess.Popen(
        [*argv, "--sessions", "memory"], stdout=subprocess.PIPE, text=True
    )
    load = None
    try:
        if serverCpus:
            os.sched_setaffinity(server.pid, serverCpus)
        assert server.stdout is not None
        for line in server.stdout:
            if match := re.search(r"starting on (\d+)", line):
                port = int(match.group(1))
                break
        else:
            raise SystemExit("the server did not start")
        drain = threading.Thread(target=server.stdout.read, daemon=True)
        drain.start()
        config = {
            "port": port,
            "server": "webwire",
            "connections": 16,
            "inflight": 8,
            "cpus": loadCpus,
        }
        load = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._rawload", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert load.stdin is not None and load.stdout is not None
        if load.stdout.readline().strip() != "ready":
            raise SystemExit("the load generator failed")
        load.stdin.write("start\n")
        load.stdin.flush()
        with tempfile.TemporaryDirectory() as directory:
            raw = opts.raw or os.path.join(directory, "samples.txt")
            command = [
                pyspy,
                "record",
                "--pid",
                str(server.pid),
                "--format",
                "raw",
                "--output",
                raw,
                "--duration",
                str(int(opts.seconds)),
                "--rate",
                "200",
            ]
            if opts.nonblocking:
                command.append("--nonblocking")
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            with open(raw) as f:
                shares = breakdown(f.read())
        load.stdin.write("stop\n")
        load.stdin.flush()
        load.wait(30)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        server.terminate()
        server.wait(30)
    mode = "non-blocking" if opts.nonblocking else "blocking"
    report(f"server CPU by category (py-spy, {mode}, 16x8 64 B, {opts.seconds:g} s):")
    for category, share in shares.items():
        report(f"  {category:<26} {share:6.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
