"""
Publish/subscribe over WebWire: clients subscribe to topics, and what one
client publishes reaches the subscribers of that topic only.

Run it (from the repository root, after ``pip install .``):

    python -m examples.pubsub

then subscribe in another terminal (it prints what is published, until
Ctrl-C) and publish from a third:

    python -m examples.pubsub subscribe news
    python -m examples.pubsub publish news '{"headline": "hello"}'

(both take the server's URL last, ws://localhost:8080/ by default).

The protocol:

  - request ``subscribe``, payload the topic name as text: 1 to 64
    printable ASCII characters (it becomes a signal name). Empty reply;
    error ``BAD_REQUEST`` for a bad name, ``TOO_MANY_TOPICS`` beyond 100
    topics per connection. Subscribing twice is harmless;
  - request ``unsubscribe``, payload the topic name: empty reply, also if
    the connection was not subscribed;
  - request ``publish``, payload UTF-8 JSON ``{"topic": NAME, "data": ANY}``:
    every subscriber of NAME (the publisher too, if subscribed) gets a
    signal named NAME whose payload is ``data`` as UTF-8 JSON. The reply is
    the number of subscribers reached, as text (``"2"``); error
    ``BAD_REQUEST`` for anything else;
  - a connection that goes away is unsubscribed from everything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from webwire import (
    Application,
    Disconnected,
    IConnection,
    MessageTooLarge,
    Request,
    RequestError,
    ServerOptions,
    Signal,
    WebWireServerFactory,
    WebWireService,
)
from webwire.client import ClientHooks, ClientOptions, WebWireClient
from webwire.errors import RequestTimeout

USAGE = """usage: python -m examples.pubsub
       python -m examples.pubsub subscribe TOPIC [URL]
       python -m examples.pubsub publish TOPIC JSON [URL]"""
MAX_TOPIC_LENGTH = 64
MAX_TOPICS = 100


def _topic(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_TOPIC_LENGTH
        or not all(" " <= c <= "~" for c in value)
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
    Topics and their subscribers (see the module docstring).

    :ivar subscribers: The connections subscribed to each topic; a topic
        without subscribers is not in it.
    :ivar topics: The topics each connection is subscribed to; a connection
        without subscriptions is not in it.
    """

    def __init__(self) -> None:
        self.subscribers: dict[str, set[IConnection]] = {}
        self.topics: dict[IConnection, set[str]] = {}

    def onRequest(self, connection: IConnection, request: Request) -> str | None:
        if request.name == "subscribe":
            self.subscribe(connection, _topic(_text(request)))
            return None
        if request.name == "unsubscribe":
            self.unsubscribe(connection, _topic(_text(request)))
            return None
        if request.name == "publish":
            try:
                document = json.loads(_text(request))
                topic, data = _topic(document["topic"]), document["data"]
            except (ValueError, TypeError, KeyError):
                raise RequestError(
                    "BAD_REQUEST", 'publish {"topic": NAME, "data": ANY}'
                ) from None
            return str(self.publish(topic, data))
        raise RequestError("UNKNOWN_REQUEST", f"unknown request: {request.name}")

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        for topic in list(self.topics.get(connection, ())):
            self.unsubscribe(connection, topic)

    def subscribe(self, connection: IConnection, topic: str) -> None:
        """
        Subscribe C{connection} to C{topic}.

        :raises RequestError: C{TOO_MANY_TOPICS} past L{MAX_TOPICS}.
        """
        topics = self.topics.setdefault(connection, set())
        if topic not in topics and len(topics) >= MAX_TOPICS:
            raise RequestError("TOO_MANY_TOPICS", f"at most {MAX_TOPICS} topics")
        topics.add(topic)
        self.subscribers.setdefault(topic, set()).add(connection)

    def unsubscribe(self, connection: IConnection, topic: str) -> None:
        """Unsubscribe C{connection} from C{topic}, if it is subscribed."""
        subscribers = self.subscribers.get(topic, set())
        subscribers.discard(connection)
        if not subscribers:
            self.subscribers.pop(topic, None)
        topics = self.topics.get(connection, set())
        topics.discard(topic)
        if not topics:
            self.topics.pop(connection, None)

    def publish(self, topic: str, data: object) -> int:
        """
        Send C{data} as signal C{topic} to the topic's subscribers.

        :returns: How many subscribers it reached.
        :raises RequestError: C{BAD_REQUEST} if C{data} cannot be sent.
        """
        try:
            payload = json.dumps(
                data, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except ValueError:
            raise RequestError("BAD_REQUEST", "data must be JSON") from None
        reached = 0
        for connection in list(self.subscribers.get(topic, ())):
            try:
                connection.signal(topic, payload)
            except Disconnected:
                continue  # going away; onClientDisconnected cleans up
            except MessageTooLarge:
                # The same limit for everyone: nobody got it.
                raise RequestError("BAD_REQUEST", "data too large") from None
            reached += 1
        return reached


def makeService(listen: str = "tcp:8080") -> WebWireService:
    """The pub/sub server as a service listening on C{listen}."""
    factory = WebWireServerFactory(PubSub(), ServerOptions(sessions=False))
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
    """Publish the JSON C{data} to C{topic}; print how many got it."""
    document = json.dumps({"topic": topic, "data": json.loads(data)})
    client = WebWireClient(
        url, options=ClientOptions(autoconnect=False), reactor=reactor
    )
    try:
        reply = await client.request("publish", document, timeout=10)
    finally:
        await client.close()
    sys.stdout.write(f"reached {reply.text()} subscribers\n")


async def _reportErrors(work: Coroutine[Any, Any, None]) -> None:
    try:
        await work
    except (ValueError, Disconnected, RequestError, RequestTimeout) as e:
        sys.stderr.write(f"pubsub: {e}\n")
        raise SystemExit(1) from None


async def serve(reactor: Any) -> None:
    """Serve on tcp:8080 until interrupted."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = makeService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    await Deferred()


def main(reactor: Any, *argv: str) -> Deferred[None]:
    """Run the part of the example C{argv} names."""
    url = "ws://localhost:8080/"
    if not argv:
        return Deferred.fromCoroutine(serve(reactor))
    if argv[0] == "subscribe" and len(argv) in (2, 3):
        url = argv[2] if len(argv) == 3 else url
        work = subscribeAndPrint(reactor, argv[1], url)
        return Deferred.fromCoroutine(_reportErrors(work))
    if argv[0] == "publish" and len(argv) in (3, 4):
        url = argv[3] if len(argv) == 4 else url
        work = publishOnce(reactor, argv[1], argv[2], url)
        return Deferred.fromCoroutine(_reportErrors(work))
    sys.stderr.write(USAGE + "\n")
    raise SystemExit(2)


if __name__ == "__main__":
    react(main, sys.argv[1:])
