"""
Publish/subscribe over WebWire: clients subscribe to topics, and what one
client publishes reaches the subscribers of that topic only, on this
server or on every server of a cluster.

Run it (from the repository root, after ``pip install .``):

    python -m examples.pubsub

then subscribe in another terminal (it prints what is published, until
Ctrl-C) and publish from a third:

    python -m examples.pubsub subscribe news
    python -m examples.pubsub publish news '{"headline": "hello"}'

(both take the server's URL last, ws://localhost:8080/ by default;
``publish`` prints ``published to news`` once the server has passed it on).

The application keeps no tables of its own: topics are those of the
server's cluster (C{connection.cluster}, see
L{webwire.interfaces.ICluster}), which ends a connection's subscriptions
when it closes. So the same code runs as one server (the default
L{webwire.cluster.LocalCluster}) or as several sharing a Redis
(L{webwire.cluster.redis.RedisCluster}; ``pip install '.[redis]'``). Give
each server its own port and the same Redis:

    python -m examples.pubsub --listen tcp:8080 --redis-url redis://127.0.0.1:6379/0
    python -m examples.pubsub --listen tcp:8081 --redis-url redis://127.0.0.1:6379/0

and a subscriber of either gets what is published on either:

    python -m examples.pubsub subscribe news ws://localhost:8080/
    python -m examples.pubsub publish news '"hello"' ws://localhost:8081/

Delivery across servers is at most once: a server cut off from Redis
misses what the others publish meanwhile.

The protocol:

  - request ``subscribe``, payload the topic name as text: 1 to 64
    printable ASCII characters (it becomes a signal name). Empty reply;
    error ``BAD_REQUEST`` for a bad name, ``TOO_MANY_TOPICS`` beyond 100
    topics per connection. Subscribing twice is harmless;
  - request ``unsubscribe``, payload the topic name: empty reply, also if
    the connection was not subscribed;
  - request ``publish``, payload UTF-8 JSON ``{"topic": NAME, "data": ANY}``:
    every subscriber of NAME on every server (the publisher too, if
    subscribed) gets a signal named NAME whose payload is ``data`` as UTF-8
    JSON. The reply is empty, sent once the signal is handed to every
    server: this server's subscribers have it then, the others' get it as
    soon as their server hears of it. It does not say how many subscribers
    the signal reached: in a cluster that count is unknowable (no server
    knows the others' subscribers, and they are told after the reply).
    Error ``DELIVERY_FAILED`` if the other servers could not be reached
    (this server's subscribers got the signal), ``BAD_REQUEST`` for
    anything else, ``data`` too large for a signal included;
  - a connection that goes away is unsubscribed from everything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from webwire import (
    Application,
    Disconnected,
    IConnection,
    InvalidMessage,
    Request,
    RequestError,
    ServerOptions,
    Signal,
    WebWireServerFactory,
    WebWireService,
    wire,
)
from webwire.client import ClientHooks, ClientOptions, WebWireClient
from webwire.errors import RequestTimeout
from webwire.interfaces import ICluster, IServerCluster

USAGE = """usage: python -m examples.pubsub [--listen ENDPOINT] [--redis-url URL]
       python -m examples.pubsub subscribe TOPIC [URL]
       python -m examples.pubsub publish TOPIC JSON [URL]"""
MAX_TOPIC_LENGTH = 64
MAX_TOPICS = 100
CLUSTER_PREFIX = "webwire:cluster:pubsub:"
"""Starts the Redis keys and channel of the pub/sub servers' cluster."""


def _topic(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_TOPIC_LENGTH
        or not wire.isPrintableASCII(value)
    ):
        raise RequestError(
            "BAD_REQUEST",
            f"a topic is 1 to {MAX_TOPIC_LENGTH} printable ASCII characters",
        )
    return value


def _text(request: Request) -> str:
    try:
        return request.text()
    except UnicodeDecodeError:
        raise RequestError("BAD_REQUEST", "the payload must be text") from None


class PubSub(Application):
    """
    Subscriptions and publications (see the module docstring), kept by the
    server's cluster.
    """

    _log = Logger()

    def onRequest(
        self, connection: IConnection, request: Request
    ) -> Deferred[None] | None:
        if request.name == "subscribe":
            self.subscribe(connection, _topic(_text(request)))
            return None
        if request.name == "unsubscribe":
            connection.cluster.unsubscribe(connection, _topic(_text(request)))
            return None
        if request.name == "publish":
            try:
                document = json.loads(_text(request))
                topic, data = _topic(document["topic"]), document["data"]
            except (ValueError, TypeError, KeyError):
                raise RequestError(
                    "BAD_REQUEST", 'publish {"topic": NAME, "data": ANY}'
                ) from None
            return self.publish(connection.cluster, topic, data)
        raise RequestError("UNKNOWN_REQUEST", f"unknown request: {request.name}")

    def subscribe(self, connection: IConnection, topic: str) -> None:
        """
        Subscribe C{connection} to C{topic}.

        :raises RequestError: C{TOO_MANY_TOPICS} past L{MAX_TOPICS}.
        """
        cluster = connection.cluster
        topics = cluster.topicsOf(connection)
        if topic not in topics and len(topics) >= MAX_TOPICS:
            raise RequestError("TOO_MANY_TOPICS", f"at most {MAX_TOPICS} topics")
        try:
            cluster.subscribe(connection, topic)
        except Disconnected:
            pass  # closing: nobody will read the reply

    def publish(self, cluster: ICluster, topic: str, data: object) -> Deferred[None]:
        """
        Send C{data} as signal C{topic} to the topic's subscribers on every
        server of C{cluster}.

        :returns: A Deferred that fires once the signal is handed to every
            server, or fails with L{RequestError} C{DELIVERY_FAILED} if
            the other servers could not be reached (this one's subscribers
            got it).
        :raises RequestError: C{BAD_REQUEST} if C{data} cannot be sent.
        """
        try:
            payload = json.dumps(
                data, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            sent = cluster.publish(topic, topic, payload)
        except InvalidMessage:  # MessageTooLarge, for valid topics
            # The same limit for everyone: nobody got it.
            raise RequestError("BAD_REQUEST", "data too large") from None
        except ValueError:
            raise RequestError("BAD_REQUEST", "data must be JSON") from None

        def undelivered(f: Failure) -> None:
            self._log.warn(
                "a publication to {topic} did not reach the other servers: {error!r}",
                topic=topic,
                error=f.value,
            )
            raise RequestError(
                "DELIVERY_FAILED", "published to this server's subscribers only"
            )

        return sent.addErrback(undelivered)


def makeCluster(redisURL: str, reactor: Any = None) -> IServerCluster:
    """
    A cluster of the pub/sub servers that share the Redis at C{redisURL}
    (their keys and channel start with L{CLUSTER_PREFIX}); a service,
    started and stopped by the L{WebWireService} of L{makeService}.

    :raises ImportError: If txredisapi is not installed.
    :raises ValueError: If C{redisURL} is not a C{redis://} URL.
    """
    from webwire.cluster.redis import RedisCluster

    return RedisCluster(redisURL, prefix=CLUSTER_PREFIX, reactor=reactor)


def makeService(
    listen: str = "tcp:8080", cluster: IServerCluster | None = None
) -> WebWireService:
    """
    The pub/sub server as a service listening on C{listen}, alone or, with
    a C{cluster} (see L{makeCluster}), one of several.
    """
    factory = WebWireServerFactory(
        PubSub(), ServerOptions(sessions=False), cluster=cluster
    )
    return WebWireService(factory, [listen])


class _Subscriber(ClientHooks):
    """Prints what is published; subscribes again after every reconnection
    (subscriptions belong to a connection)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def onConnected(self, client: WebWireClient) -> None:
        subscribed = client.request("subscribe", self.topic)
        subscribed.addCallbacks(
            lambda _: sys.stdout.write(f"subscribed to {self.topic}\n"),
            lambda f: sys.stderr.write(f"subscribe failed: {f.getErrorMessage()}\n"),
        )

    def onSignal(self, client: WebWireClient, signal: Signal) -> None:
        sys.stdout.write(f"{signal.name}: {signal.text('replace')}\n")


async def subscribeAndPrint(reactor: Any, topic: str, url: str) -> None:
    """Subscribe to C{topic} and print what is published, until stopped."""
    client = WebWireClient(url, _Subscriber(topic), reactor=reactor)
    await client.connect()
    await Deferred()


async def publishOnce(reactor: Any, topic: str, data: str, url: str) -> None:
    """
    Publish the JSON C{data} to C{topic}; say so once every server has it
    (how many subscribers got it is not known: see the module docstring).
    """
    document = json.dumps({"topic": topic, "data": json.loads(data)})
    client = WebWireClient(
        url, options=ClientOptions(autoconnect=False), reactor=reactor
    )
    try:
        await client.request("publish", document, timeout=10)
    finally:
        await client.close()
    sys.stdout.write(f"published to {topic}\n")


async def _reportErrors(work: Coroutine[Any, Any, None]) -> None:
    try:
        await work
    except (ValueError, Disconnected, RequestError, RequestTimeout) as e:
        sys.stderr.write(f"pubsub: {e}\n")
        raise SystemExit(1) from None


async def serve(
    reactor: Any, listen: str = "tcp:8080", cluster: IServerCluster | None = None
) -> None:
    """Serve on C{listen}, in C{cluster} if given, until interrupted."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = makeService(listen, cluster)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    await Deferred()


def _serverOptions(argv: Sequence[str]) -> dict[str, str] | None:
    """C{--listen} and C{--redis-url} with their values, or C{None}."""
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    if len(argv) % 2 or len(options) < len(argv) // 2:
        return None
    return options if set(options) <= {"--listen", "--redis-url"} else None


def main(reactor: Any, *argv: str) -> Deferred[None]:
    """Run the part of the example C{argv} names."""
    url = "ws://localhost:8080/"
    if argv[:1] == ("subscribe",) and len(argv) in (2, 3):
        url = argv[2] if len(argv) == 3 else url
        work = subscribeAndPrint(reactor, argv[1], url)
        return Deferred.fromCoroutine(_reportErrors(work))
    if argv[:1] == ("publish",) and len(argv) in (3, 4):
        url = argv[3] if len(argv) == 4 else url
        work = publishOnce(reactor, argv[1], argv[2], url)
        return Deferred.fromCoroutine(_reportErrors(work))
    options = _serverOptions(argv)
    if options is not None:
        cluster = None
        if "--redis-url" in options:
            try:
                cluster = makeCluster(options["--redis-url"], reactor)
            except ImportError:
                sys.stderr.write("pubsub: needs txredisapi: pip install '.[redis]'\n")
                raise SystemExit(2) from None
            except ValueError as e:
                sys.stderr.write(f"pubsub: --redis-url: {e}\n")
                raise SystemExit(2) from None
        listen = options.get("--listen", "tcp:8080")
        return Deferred.fromCoroutine(serve(reactor, listen, cluster))
    sys.stderr.write(USAGE + "\n")
    raise SystemExit(2)


if __name__ == "__main__":
    react(main, sys.argv[1:])
