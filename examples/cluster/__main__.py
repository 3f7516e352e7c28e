"""
The command line of the cluster example (see L{examples.cluster}):

    python -m examples.cluster [--ports 8080,8081] [--redis-port PORT]
    python -m examples.cluster node --port PORT --redis-url URL

The first runs Redis and the nodes; the second is one node, as the first
starts it.
"""

from __future__ import annotations

import argparse
import sys
from importlib.util import find_spec
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from examples.cluster import runner


def _ports(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not port numbers: {text!r}") from None
    if not all(0 < port < 65536 for port in ports) or len(set(ports)) < len(ports):
        raise argparse.ArgumentTypeError(f"not distinct port numbers: {text!r}")
    return ports


def main(reactor: Any, *argv: str) -> Deferred[None]:
    """Run Redis and the nodes, or (with C{node}) one node."""
    if argv[:1] == ("node",):
        parser = argparse.ArgumentParser(prog="python -m examples.cluster node")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--redis-url", required=True)
        nodeArguments = parser.parse_args(argv[1:])
        from examples.cluster import node  # here: it needs txredisapi

        return Deferred.fromCoroutine(
            node.serve(reactor, nodeArguments.port, nodeArguments.redis_url)
        )
    parser = argparse.ArgumentParser(
        prog="python -m examples.cluster",
        description="Run Redis and WebWire chat servers that share it.",
    )
    parser.add_argument(
        "--ports",
        type=_ports,
        default=[8080, 8081],
        help="the nodes' ports, comma-separated (default: 8080,8081)",
    )
    parser.add_argument(
        "--redis-port", type=int, default=0, help="Redis's port (default: a free one)"
    )
    arguments = parser.parse_args(argv)
    redisServer = runner.findRedisServer()
    if redisServer is None:
        sys.stderr.write(
            "redis-server was not found on PATH nor at "
            f"{runner.REDIS_SERVER}: install Redis (e.g. apt install "
            "redis-server) and try again.\n"
        )
        raise SystemExit(1)
    if find_spec("txredisapi") is None:
        sys.stderr.write("the nodes need txredisapi: pip install '.[redis]'\n")
        raise SystemExit(1)
    return Deferred.fromCoroutine(
        runner.run(reactor, redisServer, arguments.redis_port, arguments.ports)
    )


if __name__ == "__main__":
    react(main, sys.argv[1:])
