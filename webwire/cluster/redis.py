# -*- test-case-name: tests.test_cluster -*-
"""
L{RedisCluster}: the server processes that share one Redis act as one
server for signals, session closes and per-session connection limits.

Delivery
========

Every process subscribes to one Redis pub/sub channel, C{<prefix>events},
and receives every cluster message (the format is in
L{webwire.cluster._envelope}); each keeps what concerns its own
connections. A sender delivers to its own connections at once and
publishes for the others. One channel rather than one per session or topic
means membership takes effect at once, with no window while a
subscription is being set up, and no subscription traffic as connections
come and go; the cost is that each message crosses to every process,
which suits clusters of a few to some tens of processes (the design of
Phoenix PubSub and of the original Socket.IO Redis adapter).

Delivery is at most once: a process that is not subscribed at the moment
(Redis down, reconnecting) misses what is published meanwhile.

Counting connections
====================

Each process registers as a node: C{<prefix>node:<id>} exists while it
lives (its time to live is renewed every C{heartbeat} seconds and lasts
three of them), and the hash C{<prefix>node:<id>:sessions} holds how many
connections of each session key it has. The set C{<prefix>nodes} lists
the nodes. A session's count is the sum over the nodes that are alive; a
script that finds a node dead removes it and its counts. So a crashed
process's connections stop counting three heartbeats (15 seconds by
default) after its last one, and its keys disappear by themselves.

Every change of a count is one Lua script, so two processes racing for a
session's last place cannot both get it, and exactly one of them sees a
session's last connection go (and destroys the session). After Redis lost
a node's counts (a restart without persistence, or a pause longer than
three heartbeats) the node writes them again, from what it holds, at its
next heartbeat; until then the limit may be exceeded. If Redis is
unreachable, restores are answered with an internal error (the Redis
session manager cannot answer them either), and closing a session falls
back on what the process knows.

The scripts touch keys they are not given (the nodes'), so this needs a
single Redis server (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

import txredisapi  # type: ignore[import-untyped]
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import IService, Service
from twisted.internet.defer import (
    Deferred,
    FirstError,
    TimeoutError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from webwire import wire
from webwire._reactor import IWebWireReactor, defaultReactor
from webwire.cluster import _envelope
from webwire.cluster._host import ClusterHost
from webwire.cluster.local import LocalCluster, checkTopic
from webwire.errors import SessionsDisabled
from webwire.interfaces import IConnection, IServerCluster
from webwire.metrics import IServerObserver
from webwire.sessions.keys import shortKey
from webwire.sessions.redis import (
    RECONNECT_DELAY,
    RECONNECT_MAX_DELAY,
    connectionPool,
    parseURL,
)

__all__ = ["RedisCluster"]

DEFAULT_HEARTBEAT = 5.0
"""Seconds between a node's heartbeats."""

DEFAULT_TIMEOUT = 5.0
"""Seconds a Redis operation may take."""

_SIGNALS = frozenset(
    (
        wire.MessageType.SIGNAL_BINARY,
        wire.MessageType.SIGNAL_UTF8,
        wire.MessageType.SIGNAL_UTF16,
    )
)

# Every script starts by renewing the calling node (ARGV 1-3: prefix,
# node, time to live) and says whether its registration had been lost.
_PRELUDE = """\
local prefix, me, ttl = ARGV[1], ARGV[2], ARGV[3]
local alive = prefix .. 'node:' .. me
local counts = alive .. ':sessions'
local lost = 1 - redis.call('EXISTS', alive)
redis.call('SET', alive, '1', 'EX', ttl)
redis.call('SADD', prefix .. 'nodes', me)
local function total(key)
  local sum = 0
  for _, node in ipairs(redis.call('SMEMBERS', prefix .. 'nodes')) do
    local other = prefix .. 'node:' .. node
    if redis.call('EXISTS', other) == 1 then
      sum = sum + tonumber(redis.call('HGET', other .. ':sessions', key) or '0')
    else
      redis.call('SREM', prefix .. 'nodes', node)
      redis.call('DEL', other .. ':sessions')
    end
  end
  return sum
end
"""

_HEARTBEAT = (
    _PRELUDE
    + """\
redis.call('EXPIRE', counts, ttl)
return {lost, 0}
"""
)

_RESYNC = (
    _PRELUDE
    + """\
redis.call('DEL', counts)
for i = 4, #ARGV, 2 do
  redis.call('HSET', counts, ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', counts, ttl)
return {lost, 0}
"""
)

_RESERVE = (
    _PRELUDE
    + """\
local key, maximum = ARGV[4], tonumber(ARGV[5])
if maximum > 0 and total(key) >= maximum then
  return {lost, 0}
end
redis.call('HINCRBY', counts, key, 1)
redis.call('EXPIRE', counts, ttl)
return {lost, 1}
"""
)

_ADD = (
    _PRELUDE
    + """\
redis.call('HINCRBY', counts, ARGV[4], 1)
redis.call('EXPIRE', counts, ttl)
return {lost, 1}
"""
)

_RELEASE = (
    _PRELUDE
    + """\
local key = ARGV[4]
if redis.call('HINCRBY', counts, key, -1) <= 0 then
  redis.call('HDEL', counts, key)
end
return {lost, total(key)}
"""
)

_LEAVE = """\
local alive = ARGV[1] .. 'node:' .. ARGV[2]
redis.call('DEL', alive, alive .. ':sessions')
redis.call('SREM', ARGV[1] .. 'nodes', ARGV[2])
return 1
"""


class _Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """
    The pub/sub connection of one L{RedisCluster}: subscribes once ready,
    and hands every message to the cluster.
    """

    def __init__(self, cluster: RedisCluster, password: str | None) -> None:
        super().__init__(charset=None, password=password)
        self.cluster = cluster

    def connectionMade(self) -> Deferred[Any]:
        ready: Deferred[Any] = super().connectionMade()
        self.whenConnected().addCallback(lambda _: self._subscribe())
        return ready

    def _subscribe(self) -> None:
        d = self.subscribe([self.cluster.channel])
        d.addCallbacks(lambda _: self.cluster._subscribed(), self._failed)

    def _failed(self, reason: Failure) -> None:
        self.cluster._log.failure("subscribing to Redis failed", reason)
        self.cluster.observer.clusterFailure("subscribe")  # metrics
        self.transport.loseConnection()

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.cluster._received(message)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.cluster._unsubscribed()


class _SubscriberFactory(Factory):
    """
    Builds L{_Subscriber}s for a C{ClientService}, which reconnects; what
    txredisapi's protocol expects of its factory is here too.
    """

    isLazy = True

    def __init__(self, cluster: RedisCluster, password: str | None) -> None:
        self.cluster = cluster
        self.password = password

    def buildProtocol(self, addr: Any) -> _Subscriber:
        protocol = _Subscriber(self.cluster, self.password)
        protocol.factory = self
        return protocol

    def stopTrying(self) -> None:
        """Authentication failed: the service tries again later."""

    def connectionError(self, why: str) -> None:
        """Authentication failed: say so."""
        self.cluster._log.error("cluster subscription: {why}", why=why)


@implementer(IServerCluster, IService)
class RedisCluster(Service):
    """
    Reaches connections on every server process that shares a Redis (see
    the module's documentation for how), and counts each session's
    connections across them.

    It holds a L{LocalCluster} for the connections of its own process
    (delivery, topics, this process's counts) and adds what crosses
    processes: publishing to the others, and counts kept in Redis.

    It is a service: started, it registers the process and subscribes;
    stopped, it unregisters and disconnects. L{webwire.service.WebWireService}
    starts and stops the cluster of its server (after the server's drain);
    a server run otherwise must start it, e.g. with
    C{cluster.setServiceParent(application)}.

    Each server (L{webwire.server.WebWireServerFactory}) has its own
    cluster; two applications that share a Redis need different prefixes.

    :ivar nodeId: This process's name in Redis (random unless given).
    :ivar channel: The pub/sub channel (bytes).
    :param url: C{redis://[:password@]host[:port][/db]} (the database holds
        the counts; pub/sub channels are shared by every database of a
        Redis server, so the prefix must tell clusters apart).
    :param prefix: Starts every Redis key and channel name of the cluster.
    :param heartbeat: Seconds between renewals of the registration, which
        lasts three of them.
    :param timeout: Seconds each Redis operation may take.
    :param reactor: Connects and schedules; the global reactor if omitted.
    :param nodeId: This process's name; random if omitted.
    :raises ValueError: If C{url} is not a C{redis://} URL, or C{heartbeat}
        or C{timeout} is not positive.
    """

    _log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "webwire:cluster:",
        heartbeat: float = DEFAULT_HEARTBEAT,
        timeout: float = DEFAULT_TIMEOUT,
        reactor: IWebWireReactor | None = None,
        nodeId: str | None = None,
    ) -> None:
        self._local = LocalCluster()
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be positive, not {heartbeat!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self._host, self._port, _, self._password = parseURL(url)
        self._url = url
        self._reactor = defaultReactor(reactor)
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.nodeId = nodeId if nodeId is not None else secrets.token_hex(8)
        self.channel = (prefix + "events").encode("utf-8")
        self._ttl = str(max(1, round(3 * heartbeat)))
        self._pool: Any = None
        self._subscriber: ClientService | None = None
        self._beating: LoopingCall | None = None
        self._isSubscribed = False
        self._subscribedWaiters: list[Deferred[None]] = []
        self._dirty = False
        self._syncs = 0
        self._reachable = True
        self._pending: set[Deferred[Any]] = set()

    def __repr__(self) -> str:
        return f"<RedisCluster node {self.nodeId} on {self._host}:{self._port}>"

    # Service --------------------------------------------------------------

    def startService(self) -> None:
        """Register the process, subscribe, and start the heartbeat."""
        Service.startService(self)
        # One connection: each process's commands reach Redis in order.
        self._pool = connectionPool(self._url, 1, self.timeout, self._reactor)
        endpoint = TCP4ClientEndpoint(
            self._reactor, self._host, self._port, timeout=self.timeout
        )
        self._subscriber = ClientService(
            endpoint,
            _SubscriberFactory(self, self._password),
            retryPolicy=backoffPolicy(
                initialDelay=RECONNECT_DELAY, maxDelay=RECONNECT_MAX_DELAY
            ),
            clock=self._reactor,
        )
        self._subscriber.startService()
        self._beating = LoopingCall(self._beat)
        self._beating.clock = self._reactor
        self._beating.start(self.heartbeat, now=True)
        self._log.info(
            "cluster node {node} started on {host}:{port}",
            node=self.nodeId,
            host=self._host,
            port=self._port,
        )

    def stopService(self) -> Deferred[None]:
        """
        Unregister the process (its connections stop counting at once) and
        disconnect.
        """
        if not self.running:
            return succeed(None)
        Service.stopService(self)
        if self._beating is not None and self._beating.running:
            self._beating.stop()
        left = self._eval(_LEAVE, [self.prefix, self.nodeId])
        left.addErrback(
            lambda f: self._log.warn(
                "could not unregister cluster node {node}: {error}",
                node=self.nodeId,
                error=self._describe(f),
            )
        )

        def disconnect(_: object) -> Deferred[Any]:
            for pending in list(self._pending):
                pending.cancel()
            waiting = []
            if self._subscriber is not None:
                waiting.append(self._subscriber.stopService())
            waiting.append(self._pool.disconnect())
            return gatherResults(waiting, consumeErrors=True)

        return left.addCallback(disconnect).addBoth(lambda _: None)

    # Serving (see IServerCluster) ------------------------------------------

    @property
    def server(self) -> ClusterHost:
        """
        The server served.

        :raises RuntimeError: If the cluster is not attached to one yet.
        """
        return self._local.server

    @property
    def observer(self) -> IServerObserver:
        """The served server's observer (metrics); see L{LocalCluster}."""
        return self._local.observer

    def attach(self, server: ClusterHost) -> None:
        """Serve C{server} (see L{IServerCluster.attach})."""
        self._local.attach(server)

    def connectionClosed(self, connection: IConnection) -> None:
        """Forget the subscriptions of C{connection}."""
        self._local.connectionClosed(connection)

    # Topics (this process's subscriptions) --------------------------------

    def subscribe(self, connection: IConnection, topic: str) -> None:
        """Subscribe C{connection} to C{topic} (see L{ICluster})."""
        self._local.subscribe(connection, topic)

    def unsubscribe(self, connection: IConnection, topic: str) -> None:
        """End the subscription of C{connection} to C{topic}, if any."""
        self._local.unsubscribe(connection, topic)

    def topicsOf(self, connection: IConnection) -> frozenset[str]:
        """The topics C{connection} is subscribed to."""
        return self._local.topicsOf(connection)

    def subscribers(self, topic: str) -> list[IConnection]:
        """The connections of this process subscribed to C{topic}."""
        return self._local.subscribers(topic)

    # Subscription ---------------------------------------------------------

    @property
    def isSubscribed(self) -> bool:
        """Whether messages of the other processes reach this one now."""
        return self._isSubscribed

    def whenSubscribed(self) -> Deferred[None]:
        """
        A Deferred that fires once messages of the other processes reach
        this one: now if they do, else when the subscription is (back) in
        place.
        """
        if self._isSubscribed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._subscribedWaiters.append(waiter)
        return waiter

    def _subscribed(self) -> None:
        self._isSubscribed = True
        self._log.info(
            "cluster node {node} subscribed to {channel}",
            node=self.nodeId,
            channel=self.channel.decode("utf-8"),
        )
        waiters, self._subscribedWaiters = self._subscribedWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _unsubscribed(self) -> None:
        if self._isSubscribed and self.running:
            self._log.warn(
                "cluster node {node} lost its Redis subscription: messages "
                "from other processes are missed until it is back",
                node=self.nodeId,
            )
        self._isSubscribed = False

    def _received(self, message: bytes) -> None:
        """
        Deliver a message from another process to this one's connections.
        Nothing raised here may reach the subscription's connection.
        """
        if not self._local.isAttached:
            return  # not serving yet: nobody to deliver to
        try:
            self._dispatch(message)
        except Exception:
            self._log.failure("delivering a cluster message failed")
            self.observer.clusterFailure("deliver")  # metrics

    def _dispatch(self, message: bytes) -> None:
        try:
            envelope = _envelope.unpack(message)
        except ValueError as e:
            self._log.warn("dropped a malformed cluster message: {error}", error=e)
            return
        if envelope.node == self.nodeId:
            return  # delivered here when it was sent
        if envelope.kind == b"C":
            sessions = self.server.sessions
            if sessions is not None:
                sessions.closeLocally(envelope.target)
            return
        data = envelope.data
        if not data or data[0] not in _SIGNALS:
            self._log.warn(
                "dropped a cluster message from node {node}: not a signal",
                node=envelope.node,
            )
            return
        if len(data) > self.server.options.messageBufferSize:
            self._log.warn(
                "dropped a signal from node {node}: {size} bytes exceed the "
                "message buffer size",
                node=envelope.node,
                size=len(data),
            )
            return
        if envelope.kind == b"S":
            self._local.deliverToSession(envelope.target, data)
        elif envelope.kind == b"T":
            self._local.deliverToTopic(envelope.target, data)
        else:
            self._local.deliverToAll(data)

    # Delivery -------------------------------------------------------------

    def signalSession(
        self,
        key: str,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """
        Signal every connection of session C{key}: this process's at once,
        the others' through Redis (see L{ICluster}).
        """
        data = self._local.encode(name, payload, encoding)
        self._local.deliverToSession(key, data)
        return self._relay(b"S", key, data)

    def broadcast(
        self,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """Signal every open connection of every process (see L{ICluster})."""
        data = self._local.encode(name, payload, encoding)
        self._local.deliverToAll(data)
        return self._relay(b"B", "", data)

    def publish(
        self,
        topic: str,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
    ) -> Deferred[None]:
        """Signal every subscriber of C{topic}, on every process."""
        checkTopic(topic)
        data = self._local.encode(name, payload, encoding)
        self._local.deliverToTopic(topic, data)
        return self._relay(b"T", topic, data)

    def _relay(self, kind: bytes, target: str, data: bytes) -> Deferred[None]:
        """
        Hand an encoded signal (or a session close) to the other processes:
        C{kind} is C{b"S"} (to session C{target}), C{b"T"} (to topic
        C{target}), C{b"B"} (to all) or C{b"C"} (close session C{target}).
        """
        if self._pool is None:
            return fail(RuntimeError(f"{self!r} is not started"))
        message = _envelope.pack(kind, self.nodeId, target, data)
        published: Deferred[Any] = self._pool.publish(self.channel, message)
        return self._bounded(published).addCallbacks(lambda _: None, self._unpublished)

    def _unpublished(self, failure: Failure) -> Failure:
        self.observer.clusterFailure("publish")  # metrics
        return failure

    def closeSession(self, key: str) -> Deferred[None]:
        """
        Close session C{key} on every process, and destroy it once, here
        (see L{ICluster.closeSession}).
        """
        if self.server.sessions is None:
            return fail(SessionsDisabled("the server has no sessions"))
        closed = self._local.closeSession(key)
        told = self._relay(b"C", key, b"")

        def untold(f: Failure) -> Failure:
            self._log.failure(
                "could not tell the other processes to close session {key}",
                f,
                key=shortKey(key),
            )
            return f

        told.addErrback(untold)
        both = gatherResults([closed, told], consumeErrors=True)
        return both.addCallbacks(lambda _: None, _firstFailure)

    # Counting -------------------------------------------------------------

    def reserve(self, key: str, maximum: int) -> Deferred[bool]:
        """Count a connection of C{key} unless the cluster has C{maximum}."""
        self._local.counts.up(key)
        syncs = self._syncs

        def counted(result: list[Any]) -> bool:
            if int(result[1]):
                return True
            self._local.counts.down(key)
            if self._syncs != syncs:
                self._dirty = True  # a resync counted it meanwhile
            return False

        def failed(f: Failure) -> Failure:
            self._local.counts.down(key)
            return f

        reserved = self._count(_RESERVE, key, str(maximum))
        return reserved.addCallbacks(counted, failed)

    def add(self, key: str) -> Deferred[None]:
        """Count a connection of C{key}."""
        self._local.counts.up(key)
        return self._count(_ADD, key).addCallback(lambda _: None)

    def release(self, key: str) -> Deferred[int]:
        """Count a connection of C{key} less; the cluster's count left."""
        self._local.counts.down(key)
        return self._count(_RELEASE, key).addCallback(lambda result: int(result[1]))

    def _count(self, script: str, *args: str) -> Deferred[list[Any]]:
        """
        Run a counting script; if Redis says the node had been lost, or the
        script fails, the counts are written again at the next heartbeat.
        """

        def ran(result: list[Any]) -> list[Any]:
            if int(result[0]):
                self._dirty = True
            return result

        def failed(f: Failure) -> Failure:
            self._dirty = True
            return f

        counted = self._eval(script, [self.prefix, self.nodeId, self._ttl, *args])
        return counted.addCallbacks(ran, failed)

    def _beat(self) -> Deferred[None]:
        """
        Renew the registration; write the counts again if needed. Never
        fails (the heartbeat must go on): failures are logged once per
        outage, and the counts are written again once Redis answers.
        """
        resyncing = self._dirty
        if resyncing:
            beat = self._resync()
        else:
            beat = self._eval(_HEARTBEAT, [self.prefix, self.nodeId, self._ttl])

        def renewed(result: list[Any]) -> Deferred[list[Any]] | None:
            if not self._reachable:
                self._reachable = True
                self._log.info("cluster node {node}: Redis is back", node=self.nodeId)
            if int(result[0]) and not resyncing:
                # Lost (Redis restarted, or this process stalled): the
                # counts there are gone or stale.
                return self._resync()
            return None

        def failed(f: Failure) -> None:
            self._dirty = True
            if not self.running:
                return  # stopped meanwhile: the connection was closed
            self.observer.clusterFailure("heartbeat")  # metrics
            if self._reachable:
                self._reachable = False
                self._log.warn(
                    "cluster node {node} cannot reach Redis: {error}",
                    node=self.nodeId,
                    error=self._describe(f),
                )

        return beat.addCallback(renewed).addCallbacks(lambda _: None, failed)

    def _resync(self) -> Deferred[list[Any]]:
        """Write this node's counts to Redis, replacing what is there."""
        self._dirty = False
        self._syncs += 1
        pairs = [str(part) for item in self._local.counts.items() for part in item]
        synced = self._eval(_RESYNC, [self.prefix, self.nodeId, self._ttl, *pairs])

        def failed(f: Failure) -> Failure:
            self._dirty = True
            return f

        return synced.addErrback(failed)

    # Redis ----------------------------------------------------------------

    def _eval(self, script: str, args: list[str]) -> Deferred[Any]:
        """
        Run C{script} with C{args} (and no keys). Always C{EVAL}, never
        C{EVALSHA}: a script cache miss would resend it out of order.
        """
        if self._pool is None:
            return fail(RuntimeError(f"{self!r} is not started"))
        ran: Deferred[Any] = self._pool.execute_command("EVAL", script, 0, *args)
        return self._bounded(ran)

    def _describe(self, f: Failure) -> str:
        """What went wrong with a Redis operation, in words."""
        if f.check(TimeoutError):
            return f"no answer within {self.timeout} seconds"
        return f.getErrorMessage()

    def _bounded(self, d: Deferred[Any]) -> Deferred[Any]:
        """
        C{d}, failing after C{timeout} seconds, and cancelled if the
        cluster stops first (an operation can wait for a connection that
        will never come).
        """
        clock: IReactorTime = self._reactor
        self._pending.add(d)

        def done(result: object) -> object:
            self._pending.discard(d)
            return result

        return d.addTimeout(self.timeout, clock).addBoth(done)


def _firstFailure(f: Failure) -> Failure:
    """The failure of the first Deferred of a list that failed."""
    error = f.value
    assert isinstance(error, FirstError)
    failure: Failure = error.subFailure
    return failure
