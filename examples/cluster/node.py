# -*- test-case-name: tests.test_examples.ClusterExampleTests -*-
"""
One node of the cluster: the chat of L{examples.chatroom} (its page and its
application) with its sessions and its cluster in Redis.

This is the part to copy into a server of your own: L{serve} gives
C{examples.chatroom.makeService} Redis sessions and a Redis cluster, and
runs it until SIGTERM or Ctrl-C, then drains.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from examples.chatroom import SESSION_MAX_IDLE, makeService
from examples.cluster import NODE_READY
from webwire.cluster.redis import RedisCluster
from webwire.sessions.redis import RedisSessionManager

SESSION_PREFIX = "webwire:chat:session:"
CLUSTER_PREFIX = "webwire:chat:cluster:"
"""The prefixes of C{twistd webwire --sessions redis --cluster}'s chat."""

_log = Logger()


async def serve(reactor: Any, port: int, redisURL: str) -> None:
    """
    Serve the chat on 127.0.0.1:C{port}, with sessions and cluster in the
    Redis at C{redisURL}, until the reactor stops; log a line starting with
    L{NODE_READY} once the node serves and is subscribed to the other nodes'
    messages.

    :raises SystemExit: With status 1 if C{port} cannot be listened on.
    """
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    sessions = RedisSessionManager(
        redisURL, prefix=SESSION_PREFIX, maxIdle=SESSION_MAX_IDLE, clock=reactor
    )
    cluster = RedisCluster(redisURL, prefix=CLUSTER_PREFIX, reactor=reactor)
    service = makeService(
        f"tcp:{port}:interface=127.0.0.1", sessions, reactor=reactor, cluster=cluster
    )

    async def stop() -> None:
        # Drain (running requests finish, connections close with 1001),
        # stop listening, leave the cluster and close the sessions' Redis
        # connections: the service stops all of them.
        await service.stopService()

    try:
        service.startService()
    except CannotListenError as e:
        _log.error("cannot listen on port {port}: {error}", port=port, error=e)
        await stop()
        raise SystemExit(1) from None
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromCoroutine(stop())
    )
    await cluster.whenSubscribed()
    _log.info(
        NODE_READY + " on http://localhost:{port}/ (cluster node {node})",
        port=port,
        node=cluster.nodeId,
    )
    await Deferred()  # serve until the reactor stops
