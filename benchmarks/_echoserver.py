"""
The baseline server of C{python -m benchmarks.roundtrip}: the cheapest
Autobahn server there is, sending every message back as it came. Run as
C{python -m benchmarks._echoserver}: it listens on a free port of
127.0.0.1, says C{listening PORT}, and serves until its standard input
closes.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.stdio import StandardIO
from twisted.internet.task import react

from benchmarks._common import logWarnings
from benchmarks._processes import Control


class EchoServerProtocol(WebSocketServerProtocol):
    """Send every message back as it came."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary=isBinary)


async def serve(reactor: Any) -> None:
    factory = WebSocketServerFactory()  # no URL: Autobahn rejects ws://host:0
    factory.protocol = EchoServerProtocol
    port = reactor.listenTCP(0, factory, backlog=1024, interface="127.0.0.1")
    control = Control()
    StandardIO(control, reactor=reactor)
    control.say(f"listening {port.getHost().port}")
    while await control.nextLine() is not None:
        pass  # serves until standard input closes
    await port.stopListening()
    await control.close()


if __name__ == "__main__":
    logWarnings()
    react(serve)
