"""
One server process of the cluster benchmark (C{python -m benchmarks.cluster
serve}): the conformance application with sessions and the cluster in Redis,
on its own socket bound to the port it shares with the other server
processes (C{SO_REUSEPORT}), until the benchmark closes its standard input.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from twisted.internet.stdio import StandardIO

from benchmarks._common import within
from benchmarks._processes import START_TIMEOUT, Control
from webwire.cluster.redis import RedisCluster
from webwire.conformance import ConformanceApplication
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory
from webwire.sessions.redis import RedisSessionManager


class CountingFactory(WebWireServerFactory):
    """A WebWire server factory that notes the peer port of every connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peerPorts: list[int] = []

    def buildProtocol(self, addr: Any) -> Any:
        self.peerPorts.append(addr.port)
        return super().buildProtocol(addr)


async def serve(reactor: Any, opts: argparse.Namespace) -> None:
    """
    Serve the conformance application on C{opts.port}, shared with the other
    server processes, until standard input closes; then print the peer ports
    of the connections accepted.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", opts.port))
    sock.listen(socket.SOMAXCONN)
    sock.setblocking(False)
    url, prefix = opts.redis_url, opts.prefix
    sessionManager = RedisSessionManager(url, prefix=prefix + "session:")
    cluster = RedisCluster(url, prefix=prefix + "cluster:")
    factory = CountingFactory(
        ConformanceApplication(),
        ServerOptions(),
        sessionManager=sessionManager,
        cluster=cluster,
    )
    port = reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
    sock.close()  # the port has its own copy of the descriptor
    control = Control()
    StandardIO(control, reactor=reactor)
    sessionManager.startService()
    cluster.startService()
    await within(reactor, cluster.whenSubscribed(), START_TIMEOUT, "subscription")
    control.say(f"ready pid {os.getpid()} node {cluster.nodeId}")

    while await control.nextLine() is not None:
        pass  # runs until the benchmark closes standard input
    await port.stopListening()
    await cluster.stopService()  # unregisters this node from Redis
    await sessionManager.stopService()
    control.say("served " + ",".join(map(str, factory.peerPorts)))
    await control.close()
