"""
The smallest WebWire server, and a client for it, in one file.

Run the server (from the repository root, after ``pip install .``):

    python -m examples.echo server

and, in another terminal, the client:

    python -m examples.echo client ws://localhost:8080/ "hello, echo"

The server answers every request with its payload, in the request's
encoding; the client sends one request named ``echo`` and prints the reply.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver

from webwire import (
    Application,
    IConnection,
    Payload,
    Request,
    ServerOptions,
    WebWireServerFactory,
    WebWireService,
)
from webwire.client import ClientOptions, WebWireClient
from webwire.errors import Disconnected, RequestError, RequestTimeout

USAGE = "usage: python -m examples.echo server | client [URL] [TEXT]"


class Echo(Application):
    """Answers every request with its own payload and encoding."""

    def onRequest(self, connection: IConnection, request: Request) -> Payload:
        return Payload(request.payload, request.encoding)


def makeService(listen: str = "tcp:8080") -> WebWireService:
    """
    The echo server as a service listening on C{listen}; start it, or attach
    it to an application. Sessions are off: an echo server needs none.
    """
    factory = WebWireServerFactory(Echo(), ServerOptions(sessions=False))
    return WebWireService(factory, [listen])


async def echo(url: str, text: str, reactor: Any = None) -> str:
    """
    Send one C{echo} request with C{text} to the server at C{url}.

    :returns: The reply's text.
    :raises webwire.errors.ConnectionFailed: If there is no server there.
    """
    client = WebWireClient(
        url, options=ClientOptions(autoconnect=False), reactor=reactor
    )
    try:
        reply = await client.request("echo", text, timeout=10)
    finally:
        await client.close()
    return reply.text()


async def serve(reactor: Any) -> None:
    """Serve on tcp:8080 until interrupted."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = makeService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    await Deferred()


async def request(reactor: Any, url: str, text: str) -> None:
    """Send one request and print the reply (or what went wrong)."""
    try:
        sys.stdout.write(await echo(url, text, reactor) + "\n")
    except (Disconnected, RequestError, RequestTimeout, ValueError) as e:
        sys.stderr.write(f"echo: {e}\n")
        raise SystemExit(1) from None


def main(reactor: Any, *argv: str) -> Deferred[None]:
    """Run the part of the example C{argv} names."""
    if argv[:1] == ("server",) and len(argv) == 1:
        return Deferred.fromCoroutine(serve(reactor))
    if argv[:1] == ("client",) and len(argv) <= 3:
        url = argv[1] if len(argv) > 1 else "ws://localhost:8080/"
        text = argv[2] if len(argv) > 2 else "hello, echo"
        return Deferred.fromCoroutine(request(reactor, url, text))
    sys.stderr.write(USAGE + "\n")
    raise SystemExit(2)


if __name__ == "__main__":
    react(main, sys.argv[1:])
