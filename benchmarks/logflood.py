"""
How much a hostile client makes the server log: bytes, lines, tracebacks
and critical events per 10,000 messages of each kind, as ``twistd`` writes
them (every level, debug included, in twistd's text format).

    python -m benchmarks.logflood                 # from the repository root
    python -m benchmarks.logflood --messages 2000

The server (the conformance application with sessions in memory, as
``twistd webwire`` serves it) runs in this process on a free loopback port;
each scenario sends its messages over real sockets, waits until every reply
came back (or every handler finished), and reports what was logged
meanwhile. It exits with status 1 if a scenario logs more tracebacks or
critical events than a connection may (L{webwire.logonce.FAILURE_LIMIT}
each), that is if what a client sends can make the log grow with the
number of its messages.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater, react
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEventAsClassicLogText,
    globalLogBeginner,
    globalLogPublisher,
)

from benchmarks._common import report
from webwire import wire
from webwire.conformance import ConformanceApplication
from webwire.logonce import FAILURE_LIMIT
from webwire.server import WebWireServerFactory
from webwire.sessions.memory import MemorySessionManager

PER_CONNECTION = 64
"""Messages each connection of the departed-client scenario sends."""


class _Client(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.replies: dict[bytes, Deferred[bytes]] = {}

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        waiter = self.replies.pop(payload[1:9], None)
        if waiter is not None and payload[0] >= wire.MessageType.REPLY_BINARY - 64:
            waiter.callback(payload)

    def expect(self, identifier: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.replies[identifier] = d
        return d


class _Meter:
    def __init__(self) -> None:
        self.lines = self.bytes = self.tracebacks = self.critical = 0

    def __call__(self, event: LogEvent) -> None:
        text = formatEventAsClassicLogText(event) or ""
        self.lines += text.count("\n")
        self.bytes += len(text.encode("utf-8"))
        if "log_failure" in event:
            self.tracebacks += 1
        if event.get("log_level") is LogLevel.critical:
            self.critical += 1


async def _connect(port: int) -> _Client:
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/")
    factory.protocol = _Client
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = cast(_Client, await endpoint.connect(factory))
    await client.opened
    return client


def _ident(n: int) -> bytes:
    return (n + 1).to_bytes(8, "little")


_SERVER_ONLY: list[Callable[[int], bytes]] = [
    lambda n: wire.encodeReply(_ident(n), b"x", wire.Encoding.BINARY),
    lambda n: wire.encodeErrorReply(_ident(n), "E", "e"),
    lambda n: wire.encodeSpecialReply(wire.MessageType.REPLY_SHUTDOWN, _ident(n)),
    lambda n: wire.encodeSpecialReply(
        wire.MessageType.REPLY_SESSION_NOT_FOUND, _ident(n)
    ),
    lambda n: wire.encodeSessionClosed(),
    lambda n: wire.encodeAcceptConf(60000, 8192),
]


async def _requests(port: int, count: int, make: Callable[[int], bytes]) -> int:
    """
    Send C{count} messages on one connection, then wait for a last echo.

    :returns: How many connections it used: one.
    """
    client = await _connect(port)
    for n in range(count):
        client.sendMessage(make(n), isBinary=True)
    last = _ident(count + 1)
    answered = client.expect(last)
    client.sendMessage(
        wire.encodeRequest(last, "echo", b"", wire.Encoding.BINARY), isBinary=True
    )
    await answered
    client.sendClose(1000)
    return 1


async def _departed(port: int, count: int, factory: WebWireServerFactory) -> int:
    """
    Requests whose client leaves before the reply: 63 per connection, then
    an echo whose reply shows that all were read; then the client aborts.

    :returns: How many connections it used.
    """
    connections = 0
    for start in range(0, count, PER_CONNECTION - 1):
        client = await _connect(port)
        connections += 1
        for n in range(start, min(count, start + PER_CONNECTION - 1)):
            client.sendMessage(
                wire.encodeRequest(_ident(n), "sleep", b"20", wire.Encoding.UTF8),
                isBinary=True,
            )
        last = _ident(count + 1)
        read = client.expect(last)
        client.sendMessage(
            wire.encodeRequest(last, "echo", b"", wire.Encoding.BINARY), isBinary=True
        )
        await read
        assert client.transport is not None
        client.transport.abortConnection()  # type: ignore[attr-defined]
    while factory.servedProtocols or factory.runningHandlers:
        await deferLater(reactor, 0.01, lambda: None)
    return connections


SCENARIOS: dict[str, Callable[[int, int, WebWireServerFactory], Awaitable[int]]] = {
    "server-only message types": lambda port, count, _: _requests(
        port, count, lambda n: _SERVER_ONLY[n % len(_SERVER_ONLY)](n)
    ),
    "signal-me, empty UTF-16": lambda port, count, _: _requests(
        port,
        count,
        lambda n: wire.encodeRequest(_ident(n), "signal-me", b"", wire.Encoding.UTF16),
    ),
    "internal": lambda port, count, _: _requests(
        port,
        count,
        lambda n: wire.encodeRequest(_ident(n), "internal", b"", wire.Encoding.BINARY),
    ),
    "restore, invalid keys": lambda port, count, _: _requests(
        port, count, lambda n: wire.encodeRestoreSession(_ident(n), f"chat:{n}")
    ),
    "replies to departed clients": _departed,
}


async def main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    meter = _Meter()
    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)
    factory = WebWireServerFactory(
        ConformanceApplication(), sessionManager=MemorySessionManager()
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    globalLogPublisher.addObserver(cast(ILogObserver, meter))
    failed = False
    report(
        f"{'scenario':<30}{'messages':>10}{'lines':>8}{'bytes':>10}"
        f"{'tracebacks':>12}{'critical':>10}"
    )
    for name, scenario in SCENARIOS.items():
        before = vars(meter).copy()
        connections = await scenario(port, args.messages, factory)
        while factory.servedProtocols:
            await deferLater(reactor, 0.01, lambda: None)
        after = vars(meter)
        lines, size, tracebacks, critical = (
            after[k] - before[k] for k in ("lines", "bytes", "tracebacks", "critical")
        )
        report(
            f"{name:<30}{args.messages:>10}{lines:>8}{size:>10}"
            f"{tracebacks:>12}{critical:>10}"
        )
        bound = connections * FAILURE_LIMIT
        if tracebacks > bound or critical > bound:
            failed = True
    if failed:
        report("a client made the server log without bound", sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    react(main, [sys.argv[1:]])
