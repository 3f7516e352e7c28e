# -*- test-case-name: tests.test_gateway -*-
"""
A WebWire server whose logic lives in a plain HTTP backend.

Run both (from the repository root, after ``pip install .``):

    python -m examples.gateway

This starts a tiny HTTP backend on 127.0.0.1:8081 (its API under ``/api/``)
and the WebWire gateway to it on port 8080. From any WebWire client:

  - request ``hello`` with payload ``Ada`` gets ``Hello, Ada!`` (an empty
    name gets the error ``BAD_REQUEST``);
  - request ``login`` with payload ``Ada`` creates a session with info
    ``{"user": "Ada"}``; ``whoami`` then answers ``Ada`` (without session:
    the error ``NOT_LOGGED_IN``); ``logout`` closes the session;
  - signals are forwarded to ``/api/signal/<name>``, where the backend logs
    them.

The backend is an ordinary HTTP server: try
``curl -d Ada http://127.0.0.1:8081/api/hello``. With your own backend, run
the gateway alone: ``WEBWIRE_BACKEND=http://127.0.0.1:8081/api/ twistd -n
webwire --app webwire.gateway.makeGateway``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from webwire import ServerOptions, WebWireServerFactory
from webwire.gateway import HTTPGateway

BACKEND_PORT = 8081
GATEWAY_PORT = 8080

_log = Logger()


def _error(request: Request, status: int, code: str, message: str = "") -> bytes:
    """Answer with a WebWire error: a 4xx status and a JSON body."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps({"code": code, "message": message}).encode()


def _text(request: Request, text: str) -> bytes:
    """Answer with UTF-8 text (a UTF-8 reply)."""
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")


class Backend(Resource):
    """The HTTP API the gateway forwards to; see the module docstring."""

    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        body: bytes = request.content.read() if request.content is not None else b""
        name = body.decode("utf-8", "replace").strip()
        path = request.path.decode("ascii", "replace")
        if path.startswith("/api/signal/"):
            _log.info("signal {name}: {payload!r}", name=path[12:], payload=name)
            request.setResponseCode(204)
            return b""
        if path == "/api/hello":
            if not name:
                return _error(request, 400, "BAD_REQUEST", "whom should I greet?")
            return _text(request, f"Hello, {name}!")
        if path == "/api/login":
            if not name:
                return _error(request, 400, "BAD_REQUEST", "who are you?")
            info = json.dumps({"user": name}, separators=(",", ":"))
            request.setHeader(b"WebWire-Create-Session", info.encode("ascii"))
            return _text(request, f"welcome, {name}")
        if path == "/api/whoami":
            raw = request.getHeader(b"WebWire-Session-Info")
            if raw is None:
                return _error(request, 401, "NOT_LOGGED_IN", "log in first")
            return _text(request, str(json.loads(raw).get("user", "")))
        if path == "/api/logout":
            request.setHeader(b"WebWire-Close-Session", b"1")
            return b""
        return _error(request, 404, "UNKNOWN_REQUEST", f"unknown request: {path}")


def makeBackend() -> Site:
    """The backend as a C{twisted.web} site."""
    return Site(Backend())


def makeGatewayFactory(
    backendPort: int = BACKEND_PORT, reactor: Any = None
) -> tuple[WebWireServerFactory, HTTPGateway]:
    """
    A WebWire server factory serving the gateway to the backend on
    127.0.0.1:C{backendPort}; close the gateway when done.
    """
    gateway = HTTPGateway(
        f"http://127.0.0.1:{backendPort}/api/", forwardSignals=True, reactor=reactor
    )
    return WebWireServerFactory(gateway, ServerOptions()), gateway


async def serve(reactor: Any) -> None:
    """Run the backend and the gateway until interrupted."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    reactor.listenTCP(BACKEND_PORT, makeBackend(), interface="127.0.0.1")
    factory, gateway = makeGatewayFactory(BACKEND_PORT, reactor)
    reactor.listenTCP(GATEWAY_PORT, factory)
    reactor.addSystemEventTrigger("before", "shutdown", gateway.close)
    _log.info(
        "gateway on ws://localhost:{gateway}/ forwarding to http://127.0.0.1:"
        "{backend}/api/",
        gateway=GATEWAY_PORT,
        backend=BACKEND_PORT,
    )
    await Deferred()


def main(reactor: Any) -> Deferred[None]:
    """Entry point for C{react}."""
    return Deferred.fromCoroutine(serve(reactor))


if __name__ == "__main__":
    react(main)
