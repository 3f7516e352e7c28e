"""
L{webwire.gateway.HTTPGateway} against a real C{twisted.web} backend on
loopback, driven by a real L{WebWireClient}; and C{examples/gateway.py}.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort, ITCPTransport
from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    globalLogPublisher,
)
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from examples import gateway as example
from tests.helpers import LoopbackServer, portNumber
from tests.test_client import RecordingHooks, closedPort, failsWith
from webwire import wire
from webwire.client import ClientOptions, WebWireClient
from webwire.errors import InternalError, RequestError
from webwire.gateway import (
    FAILED,
    UNAVAILABLE,
    BackendError,
    HTTPGateway,
    makeGateway,
    segmentURL,
)

Handler = Callable[[Request, bytes], bytes | object]

MAX_REPLY = wire.DEFAULT_MESSAGE_BUFFER_SIZE - 9
"""The largest reply payload with the default message buffer size."""


class Recorded:
    """One request the backend received."""

    def __init__(self, request: Request, body: bytes) -> None:
        self.path = request.path.decode("ascii")
        self.method = request.method
        self.headers = {
            name.decode("latin-1").lower(): values[0].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.body = body


def echo(request: Request, body: bytes) -> bytes:
    """Answer with the body, in the request's content type."""
    contentType = request.getHeader(b"Content-Type")
    if contentType is not None:
        request.setHeader(b"Content-Type", contentType)
    return body


class Backend(Resource):
    """
    Records every request and answers with the handler registered for its
    path (C{echo} by default).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.handlers: dict[str, Handler] = {}
        self._waiters: list[tuple[int, Deferred[Recorded]]] = []

    def render_POST(self, request: Request) -> Any:
        body = request.content.read() if request.content is not None else b""
        record = Recorded(request, body)
        self.requests.append(record)
        ready = [d for n, d in self._waiters if len(self.requests) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.requests) < n]
        for d in ready:
            d.callback(self.requests[-1])
        return self.handlers.get(record.path, echo)(request, body)

    def received(self, count: int) -> Deferred[Recorded]:
        """Fire with the latest request once C{count} have arrived."""
        d: Deferred[Recorded] = Deferred()
        if len(self.requests) >= count:
            d.callback(self.requests[-1])
        else:
            self._waiters.append((count, d))
        return d


class TrackingFactory(WrappingFactory):
    """Knows the open connections, and when the last one closed."""

    def __init__(self, wrapped: Site) -> None:
        super().__init__(wrapped)
        self._idle: list[Deferred[None]] = []

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiters, self._idle = self._idle, []
            for d in waiters:
                d.callback(None)

    def whenIdle(self) -> Deferred[None]:
        """Fire once no connection is open."""
        d: Deferred[None] = Deferred()
        if self.protocols:
            self._idle.append(d)
        else:
            d.callback(None)
        return d


def listenHTTP(testCase: TestCase, resource: Resource) -> int:
    """
    Serve C{resource} on 127.0.0.1, a free port; at cleanup stop listening
    and wait for every connection to close. Return the port number.
    """
    factory = TrackingFactory(Site(resource))
    port: IListeningPort = reactor.listenTCP(
        0,
        factory,  # type: ignore[arg-type]  # a WrappingFactory is a ServerFactory
        interface="127.0.0.1",
    )

    async def stop() -> None:
        await maybeDeferred(port.stopListening)
        for p in list(factory.protocols):
            cast(ITCPTransport, p.transport).abortConnection()
        await factory.whenIdle()

    testCase.addCleanup(stop)
    return portNumber(port)


class GatewayTestCase(TestCase):
    """Backend, gateway, WebWire server and client, all on loopback."""

    timeout = 20

    def setUp(self) -> None:
        self.backend = Backend()
        self.backendPort = listenHTTP(self, self.backend)

    def serve(
        self, path: str = "/api/", backendPort: int | None = None, **kwargs: Any
    ) -> tuple[HTTPGateway, WebWireClient, RecordingHooks]:
        port = self.backendPort if backendPort is None else backendPort
        gateway = HTTPGateway(f"http://127.0.0.1:{port}{path}", **kwargs)
        self.addCleanup(gateway.close)
        server = LoopbackServer(self, gateway)
        self.server = server
        hooks = RecordingHooks()
        client = WebWireClient(
            f"ws://127.0.0.1:{server.portNumber}/", hooks, ClientOptions()
        )
        self.addCleanup(client.close)
        return gateway, client, hooks


class RequestTests(GatewayTestCase):
    """Requests become POSTs; 2xx responses become replies."""

    async def test_encodings(self) -> None:
        """
        Binary, UTF-8 and UTF-16 payloads are posted with their content type
        and the echoed response comes back in the same encoding.
        """
        _, client, _ = self.serve()
        cases = [
            (b"\x00\xff", wire.Encoding.BINARY, "application/octet-stream"),
            ("héllo".encode(), wire.Encoding.UTF8, "text/plain; charset=utf-8"),
            (
                "𝄞 odd".encode("utf-16-le"),
                wire.Encoding.UTF16,
                "text/plain; charset=utf-16le",
            ),
        ]
        for payload, encoding, contentType in cases:
            reply = await client.request("echo", wire.Payload(payload, encoding))
            self.assertEqual((reply.payload, reply.encoding), (payload, encoding))
            record = self.backend.requests[-1]
            self.assertEqual((record.method, record.path), (b"POST", "/api/echo"))
            self.assertEqual(record.headers["content-type"], contentType)
            self.assertEqual(record.body, payload)
            self.assertNotIn("webwire-session", record.headers)
            self.assertNotIn("webwire-session-info", record.headers)
            self.assertRegex(record.headers["webwire-peer"], r"^127\.0\.0\.1:\d+$")

    async def test_responseContentTypes(self) -> None:
        """
        The reply encoding follows the response's content type: C{utf-16}
        with a byte order mark is converted to UTF-16LE, big-endian too;
        text without a known charset and non-text types are binary; an empty
        2xx response is an empty binary reply.
        """
        _, client, _ = self.serve()
        text = "ünïcode"
        answers: dict[str, tuple[bytes, bytes]] = {
            "/api/u16bom": (
                b"text/plain; charset=UTF-16",
                b"\xff\xfe" + text.encode("utf-16-le"),
            ),
            "/api/u16be": (b"text/html;charset=utf-16be", text.encode("utf-16-be")),
            "/api/latin": (b"text/plain; charset=iso-8859-1", b"\xe9"),
            "/api/json": (b"application/json; charset=utf-8", b"{}"),
            "/api/quoted": (b'text/plain; charset="utf-8"', text.encode()),
        }
        for path, (contentType, body) in answers.items():
            self.backend.handlers[path] = answer(200, body, contentType)
        self.backend.handlers["/api/empty"] = answer(204, b"")
        reply = await client.request("u16bom", "x")
        self.assertEqual((reply.text(), reply.encoding), (text, wire.Encoding.UTF16))
        reply = await client.request("u16be", "x")
        self.assertEqual((reply.text(), reply.encoding), (text, wire.Encoding.UTF16))
        reply = await client.request("latin", "x")
        self.assertEqual(
            (reply.payload, reply.encoding), (b"\xe9", wire.Encoding.BINARY)
        )
        reply = await client.request("json", "x")
        self.assertEqual(reply.encoding, wire.Encoding.BINARY)
        reply = await client.request("quoted", "x")
        self.assertEqual((reply.text(), reply.encoding), (text, wire.Encoding.UTF8))
        reply = await client.request("empty", "x")
        self.assertEqual((reply.payload, reply.encoding), (b"", wire.Encoding.BINARY))

    async def test_urls(self) -> None:
        """
        The name is one percent-encoded path segment under the backend path,
        with or without its final slash; an empty name, C{.} and C{..} are
        refused with BAD_REQUEST and never posted.
        """
        _, client, _ = self.serve(path="/api")
        await client.request("auth", "x")
        await client.request("a/b c?%", "x")
        self.assertEqual(
            [r.path for r in self.backend.requests],
            ["/api/auth", "/api/a%2Fb%20c%3F%25"],
        )
        for name in ["", ".", ".."]:
            error = await failsWith(client.request(name, "x"), RequestError)
            self.assertEqual(error.code, "BAD_REQUEST")
        self.assertEqual(len(self.backend.requests), 2)

    def test_segmentURL(self) -> None:
        """segmentURL joins a base ending in / and an encoded segment."""
        self.assertEqual(segmentURL("http://h/api/", "auth"), "http://h/api/auth")
        self.assertEqual(segmentURL("http://h/", "~a-b_c.d"), "http://h/~a-b_c.d")


class SessionTests(GatewayTestCase):
    """Session headers both ways."""

    async def test_createSendClose(self) -> None:
        """
        WebWire-Create-Session creates the session before the reply; the
        next request carries its key and info; WebWire-Close-Session closes
        it, and later requests carry no session headers.
        """
        _, client, hooks = self.serve()
        self.backend.handlers["/api/login"] = answer(
            200, b"hi", headers={b"WebWire-Create-Session": b'{"user": "ada"}'}
        )
        self.backend.handlers["/api/logout"] = answer(
            200, b"", headers={b"WebWire-Close-Session": b"1"}
        )
        self.assertEqual((await client.request("login", "ada")).payload, b"hi")
        self.assertEqual(hooks.kinds()[-1], "sessionCreated")
        session = client.session
        assert session is not None
        self.assertEqual(session.info, {"user": "ada"})
        await client.request("whoami")
        headers = self.backend.requests[-1].headers
        self.assertEqual(headers["webwire-session"], session.key)
        self.assertEqual(json.loads(headers["webwire-session-info"]), {"user": "ada"})
        self.assertEqual(headers["webwire-session-info"], '{"user":"ada"}')
        closed = hooks.next("sessionClosed")
        await client.request("logout")
        await closed
        self.assertIsNone(client.session)
        await client.request("whoami")
        self.assertNotIn("webwire-session", self.backend.requests[-1].headers)

    async def test_badCreateHeader(self) -> None:
        """A WebWire-Create-Session that is not a JSON object: internal error."""
        _, client, _ = self.serve()
        self.backend.handlers["/api/login"] = answer(
            200, b"", headers={b"WebWire-Create-Session": b"[1]"}
        )
        await failsWith(client.request("login", "x"), InternalError)
        self.assertEqual(len(self.flushLoggedErrors(BackendError)), 1)
        self.assertIsNone(client.session)


class ErrorTests(GatewayTestCase):
    """Responses other than 2xx, and backends that fail."""

    async def test_requestError(self) -> None:
        """A 4xx with a JSON {code, message} becomes that error reply."""
        _, client, _ = self.serve()
        self.backend.handlers["/api/deny"] = answer(
            403, b'{"code": "FORBIDDEN", "message": "not you"}', b"application/json"
        )
        self.backend.handlers["/api/bare"] = answer(404, b'{"code": "NOPE"}')
        error = await failsWith(client.request("deny", "x"), RequestError)
        self.assertEqual((error.code, error.message), ("FORBIDDEN", "not you"))
        error = await failsWith(client.request("bare", "x"), RequestError)
        self.assertEqual((error.code, error.message), ("NOPE", ""))

    async def test_internalErrors(self) -> None:
        """
        A 4xx without a valid JSON error, a 3xx (not followed) and a UTF-16
        body of odd length become internal errors; the backend's text never
        reaches the client, the reason is logged.
        """
        _, client, _ = self.serve()
        secret = b'{"code": "SECRET", "message": "stack trace"}'
        self.backend.handlers["/api/html"] = answer(400, b"<h1>bad</h1>")
        self.backend.handlers["/api/nocode"] = answer(400, b'{"message": "x"}')
        self.backend.handlers["/api/moved"] = answer(
            302, b"", headers={b"Location": b"/api/echo"}
        )
        self.backend.handlers["/api/odd"] = answer(
            200, b"abc", b"text/plain; charset=utf-16le"
        )
        self.backend.handlers["/api/nocode"] = answer(400, secret[:-1])
        names = ["html", "nocode", "moved", "odd"]
        for name in names:
            error = await failsWith(client.request(name, "x"), InternalError)
            self.assertNotIn("SECRET", str(error))
        self.assertEqual(len(self.flushLoggedErrors(BackendError)), len(names))
        self.assertEqual(len(self.backend.requests), len(names))

    def logged(self) -> list[LogEvent]:
        """The log events from now on (a list that grows)."""
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    async def test_backendDown(self) -> None:
        """
        An unreachable backend (a closed port) means the error
        BACKEND_UNAVAILABLE, on every connection, and one warning naming
        the backend, with no traceback.
        """
        events = self.logged()
        gateway, client, _ = self.serve(backendPort=closedPort())
        other = WebWireClient(
            f"ws://127.0.0.1:{self.server.portNumber}/",
            RecordingHooks(),
            ClientOptions(),
        )
        self.addCleanup(other.close)
        for c in [client, client, other]:
            error = await failsWith(c.request("echo", "x"), RequestError)
            self.assertEqual((error.code, error.message), UNAVAILABLE)
        texts = [formatEvent(e) for e in events]
        warnings = [t for t in texts if "is failing" in t]
        self.assertEqual(len(warnings), 1, texts)
        self.assertIn(
            f"the HTTP backend {gateway.backend} is failing (POST", warnings[0]
        )
        self.assertEqual([e for e in events if "log_failure" in e], [])

    async def test_backendFails(self) -> None:
        """
        A backend answering 500 means the error BACKEND_ERROR, without its
        text; one warning for as long as it fails, and one line once it
        answers again.
        """
        events = self.logged()
        _, client, _ = self.serve()
        secret = b'{"code": "SECRET", "message": "stack trace"}'
        self.backend.handlers["/api/crash"] = answer(500, secret)
        for _ in range(3):
            error = await failsWith(client.request("crash", "x"), RequestError)
            self.assertEqual((error.code, error.message), FAILED)
        self.assertEqual((await client.request("echo", "ok")).payload, b"ok")
        texts = [formatEvent(e) for e in events]
        self.assertEqual(len([t for t in texts if "is failing" in t]), 1, texts)
        self.assertIn("answered 500", [t for t in texts if "is failing" in t][0])
        self.assertEqual(len([t for t in texts if "works again" in t]), 1, texts)
        self.assertNotIn("SECRET", "".join(texts))
        self.assertEqual([e for e in events if "log_failure" in e], [])

    async def test_timeout(self) -> None:
        """
        A backend that never answers is given up on after the timeout, on
        the injected clock: the error BACKEND_UNAVAILABLE, and the backend's
        connection is dropped.
        """
        clock = Clock()
        events = self.logged()
        _, client, _ = self.serve(timeout=5, clock=clock)
        self.backend.handlers["/api/slow"] = lambda request, body: NOT_DONE_YET
        reply = client.request("slow", "x")
        await self.backend.received(1)
        clock.advance(4.9)
        self.assertNoResult(reply)
        clock.advance(0.1)
        error = await failsWith(reply, RequestError)
        self.assertEqual((error.code, error.message), UNAVAILABLE)
        [warning] = [formatEvent(e) for e in events if "is failing" in formatEvent(e)]
        self.assertIn("within 5 seconds", warning)
        self.assertEqual((await client.request("echo", "ok")).payload, b"ok")

    async def test_sizeLimit(self) -> None:
        """
        A body of exactly the largest reply size passes; one byte more is
        refused (announced by Content-Length or streamed chunked), and the
        gateway keeps working.
        """
        _, client, _ = self.serve()
        self.backend.handlers["/api/max"] = answer(200, b"m" * MAX_REPLY)
        self.backend.handlers["/api/over"] = answer(200, b"o" * (MAX_REPLY + 1))
        self.backend.handlers["/api/stream"] = chunked(MAX_REPLY + 1, 1000)
        self.backend.handlers["/api/streammax"] = chunked(MAX_REPLY, 1000)
        self.assertEqual((await client.request("max", "x")).payload, b"m" * MAX_REPLY)
        streamed = await client.request("streammax", "x")
        self.assertEqual(streamed.payload, b"s" * MAX_REPLY)
        await failsWith(client.request("over", "x"), InternalError)
        await failsWith(client.request("stream", "x"), InternalError)
        errors = self.flushLoggedErrors(BackendError)
        self.assertEqual(len(errors), 2)
        self.assertIn("exceeds the limit", str(errors[0].value))
        self.assertEqual((await client.request("echo", "ok")).payload, b"ok")


class SignalTests(GatewayTestCase):
    """Signals are forwarded only when enabled."""

    async def test_forwarded(self) -> None:
        """
        With forwardSignals, a signal named N is posted to <backend>/signal/N
        with its payload and content type.
        """
        _, client, _ = self.serve(forwardSignals=True)
        await client.signal("ping", "hé")
        record = await self.backend.received(1)
        self.assertEqual(record.path, "/api/signal/ping")
        self.assertEqual(record.body, "hé".encode())
        self.assertEqual(record.headers["content-type"], "text/plain; charset=utf-8")

    async def test_notForwarded(self) -> None:
        """Without forwardSignals, signals reach nothing."""
        _, client, _ = self.serve()
        await client.signal("ping", "x")
        await client.request("echo", "x")
        self.assertEqual([r.path for r in self.backend.requests], ["/api/echo"])

    async def test_failureLogged(self) -> None:
        """A failing signal is logged as a warning, not as an error."""
        _, client, _ = self.serve(forwardSignals=True)
        self.backend.handlers["/api/signal/bad"] = answer(500, b"")
        warned: Deferred[LogEvent] = Deferred()

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            if "forwarding signal" in event.get("log_format", "") and not warned.called:
                warned.callback(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        await client.signal("bad", "x")
        event = await warned
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertIn("500", event["error"])
        self.assertEqual(self.flushLoggedErrors(), [])


class ConstructionTests(SynchronousTestCase):
    """Arguments and makeGateway."""

    def test_badArguments(self) -> None:
        """Invalid backends and numbers raise ValueError."""
        for backend in ["ftp://h/", "http:///x", "http://h/?q=1", "http://h/#f"]:
            self.assertRaises(ValueError, HTTPGateway, backend)
        self.assertRaises(ValueError, HTTPGateway, "http://h/", timeout=0)

    def test_makeGateway(self) -> None:
        """makeGateway reads WEBWIRE_BACKEND (required) and friends."""
        self.patch(os, "environ", {})
        self.assertRaises(ValueError, makeGateway)
        os.environ.update(
            WEBWIRE_BACKEND="http://127.0.0.1:8081/api",
            WEBWIRE_BACKEND_TIMEOUT="2.5",
            WEBWIRE_FORWARD_SIGNALS="1",
        )
        gateway = makeGateway()
        self.addCleanup(gateway.close)
        self.assertEqual(gateway.backend, "http://127.0.0.1:8081/api/")
        self.assertEqual((gateway.timeout, gateway.forwardSignals), (2.5, True))
        self.assertEqual(gateway.maxReplySize, MAX_REPLY)


class ExampleTests(TestCase):
    """C{examples/gateway.py}, with both ports free ones."""

    timeout = 20

    async def test_example(self) -> None:
        """
        hello greets (BAD_REQUEST without a name); login creates a session
        that whoami sees; logout closes it; signals reach the backend.
        """
        backendPort = listenHTTP(self, example.Backend())
        factory, gateway = example.makeGatewayFactory(backendPort)
        self.addCleanup(gateway.close)
        server = LoopbackServer(self, factory.application)
        hooks = RecordingHooks()
        client = WebWireClient(f"ws://127.0.0.1:{server.portNumber}/", hooks)
        self.addCleanup(client.close)
        self.assertEqual((await client.request("hello", "Ada")).text(), "Hello, Ada!")
        error = await failsWith(client.request("hello", " "), RequestError)
        self.assertEqual(error.code, "BAD_REQUEST")
        error = await failsWith(client.request("whoami", "x"), RequestError)
        self.assertEqual(error.code, "NOT_LOGGED_IN")
        await client.request("login", "Ada")
        self.assertEqual(client.session and client.session.info, {"user": "Ada"})
        self.assertEqual((await client.request("whoami", "x")).text(), "Ada")
        closed = hooks.next("sessionClosed")
        await client.request("logout", "x")
        await closed
        error = await failsWith(client.request("nope", "x"), RequestError)
        self.assertEqual(error.code, "UNKNOWN_REQUEST")
        await client.signal("wave", "hi")


def answer(
    status: int,
    body: bytes,
    contentType: bytes | None = None,
    headers: dict[bytes, bytes] | None = None,
) -> Handler:
    """A handler answering C{status} with C{body} and headers."""

    def handle(request: Request, received: bytes) -> bytes:
        request.setResponseCode(status)
        if contentType is not None:
            request.setHeader(b"Content-Type", contentType)
        for name, value in (headers or {}).items():
            request.setHeader(name, value)
        return body

    return handle


def chunked(size: int, step: int) -> Handler:
    """A handler streaming C{size} bytes without Content-Length."""

    def handle(request: Request, received: bytes) -> object:
        sent = 0
        while sent < size:
            request.write(b"s" * min(step, size - sent))
            sent += step
        request.finish()
        return NOT_DONE_YET

    return handle


class _CloseDelimited(http.server.BaseHTTPRequestHandler):
    """
    Python's own HTTP server as a backend: HTTP/1.0, and a body without a
    length, ended by closing the connection.
    """

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(b"echo: " + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RealBackendTests(GatewayTestCase):
    """A backend that is Python's C{http.server}."""

    async def test_closeDelimitedBody(self) -> None:
        """
        A body that ends when the backend closes the connection (no
        Content-Length, not chunked) is the reply, whole.
        """
        backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CloseDelimited)
        thread = threading.Thread(target=backend.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(backend.server_close)
        self.addCleanup(backend.shutdown)
        _, client, _ = self.serve(backendPort=backend.server_address[1])
        reply = await client.request("echo", "héllo")
        self.assertEqual(reply.text(), "echo: héllo")
