"""
L{webwire.middleware}: composition, L{wrap}, the built-in middleware and
L{realPeer}; end to end over loopback, and C{examples/routed.py}.
"""

from __future__ import annotations

import gc
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from examples import routed
from tests.helpers import LoopbackServer, conn, makeClient, req, requestError
from webwire import wire
from webwire.application import Application
from webwire.client import WebWireClient
from webwire.connection import HandshakeRequest
from webwire.errors import InternalError, RequestError
from webwire.interfaces import (
    IConnection,
    IHandshakeRequest,
    IUpgradeGuard,
    IWebWireServer,
)
from webwire.middleware import (
    Next,
    _Bucket,
    accessLog,
    compose,
    mapErrors,
    rateLimit,
    realPeer,
    timeout,
    trustedProxies,
    wrap,
)
from webwire.router import Router
from webwire.testing import MemoryServer


def ok(connection: IConnection, request: wire.Request) -> str:
    return "ok"


def raising(error: BaseException) -> Any:
    def handler(connection: IConnection, request: wire.Request) -> None:
        raise error

    return handler


class ComposeTests(SynchronousTestCase):
    """
    Middleware layers run outermost first and may change the outcome.
    """

    def test_order(self) -> None:
        """The first middleware is the outermost."""
        seen: list[str] = []

        def layer(tag: str) -> Any:
            async def middleware(
                connection: IConnection, request: wire.Request, next: Next
            ) -> Any:
                seen.append(f"{tag} in")
                result = await next(connection, request)
                seen.append(f"{tag} out")
                return f"{tag}({result})"

            return middleware

        chain = compose([layer("a"), layer("b")], ok)
        self.assertEqual(self.successResultOf(chain(conn(), req("x"))), "a(b(ok))")
        self.assertEqual(seen, ["a in", "b in", "b out", "a out"])

    def test_shortCircuit(self) -> None:
        """A middleware that does not call C{next} answers by itself."""

        def deny(connection: IConnection, request: wire.Request, next: Next) -> Any:
            raise RequestError("DENIED")

        chain = compose([deny], raising(AssertionError("reached")))
        self.failureResultOf(chain(conn(), req("x")), RequestError)


class Greeter(Application):
    def onRequest(self, connection: IConnection, request: wire.Request) -> str:
        return "hello"


@implementer(IUpgradeGuard)
class GuardedGreeter(Greeter):
    def __init__(self) -> None:
        self.upgrades: list[IHandshakeRequest] = []

    def beforeUpgrade(self, request: IHandshakeRequest) -> None:
        self.upgrades.append(request)


class WrapTests(SynchronousTestCase):
    """
    L{wrap} runs any application's requests through middleware.
    """

    def test_wrap(self) -> None:
        """Requests go through the middleware; the result is an
        L{IWebWireServer} without L{IUpgradeGuard} for a plain app."""

        def shout(connection: IConnection, request: wire.Request, next: Next) -> Any:
            return next(connection, request).addCallback(str.upper)

        wrapped = wrap(Greeter(), shout)
        self.assertTrue(verifyObject(IWebWireServer, wrapped))
        self.assertFalse(IUpgradeGuard.providedBy(wrapped))
        result = wrapped.onRequest(conn(), req("x"))
        assert isinstance(result, Deferred)
        self.assertEqual(self.successResultOf(result), "HELLO")

    def test_guardPassedOn(self) -> None:
        """An L{IUpgradeGuard} application stays one, and the other hooks
        are passed on."""
        app = GuardedGreeter()
        wrapped = wrap(app)
        self.assertTrue(IUpgradeGuard.providedBy(wrapped))
        request = HandshakeRequest("/", "h", {}, {}, None)
        wrapped.beforeUpgrade(request)  # type: ignore[attr-defined]
        self.assertEqual(app.upgrades, [request])
        self.assertIsNone(
            wrapped.onSignal(conn(), wire.Signal("s", b"", wire.Encoding.BINARY))
        )

    def test_notAnApplication(self) -> None:
        """Wrapping something else raises C{TypeError}."""
        self.assertRaises(TypeError, wrap, object())


class MapErrorsTests(SynchronousTestCase):
    """
    L{mapErrors} turns chosen exceptions into error replies.
    """

    def setUp(self) -> None:
        self.middleware = mapErrors(
            {ValueError: "BAD_REQUEST", KeyError: ("NOT_FOUND", "no such thing")}
        )

    def outcome(self, error: BaseException) -> BaseException:
        chain = compose([self.middleware], raising(error))
        failure = self.failureResultOf(chain(conn(), req("x")))
        value: BaseException = failure.value
        return value

    def test_codeAndText(self) -> None:
        """A type mapped to (code, text) gives exactly that."""
        error = self.outcome(KeyError("secret"))
        assert isinstance(error, RequestError)
        self.assertEqual((error.code, error.message), ("NOT_FOUND", "no such thing"))

    def test_codeOnly(self) -> None:
        """A type mapped to a code uses the exception's text; subclasses
        match."""
        error = self.outcome(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"))
        assert isinstance(error, RequestError)
        self.assertEqual(error.code, "BAD_REQUEST")
        self.assertIn("bad", error.message)

    def test_unmapped(self) -> None:
        """Other exceptions, L{RequestError} and cancellation pass through."""
        self.assertIsInstance(self.outcome(RuntimeError()), RuntimeError)
        self.assertEqual(self.outcome(RequestError("MINE")).code, "MINE")  # type: ignore[attr-defined]
        self.assertIsInstance(self.outcome(CancelledError()), CancelledError)

    def test_badCode(self) -> None:
        """Invalid codes are refused at once."""
        self.assertRaises(ValueError, mapErrors, {ValueError: ""})
        self.assertRaises(ValueError, mapErrors, {ValueError: ("é", "x")})

    def test_success(self) -> None:
        """Results pass through unchanged."""
        chain = compose([self.middleware], ok)
        self.assertEqual(self.successResultOf(chain(conn(), req("x"))), "ok")


def buckets() -> int:
    """How many rate-limit buckets exist."""
    return sum(isinstance(o, _Bucket) for o in gc.get_objects())


class RateLimitTests(SynchronousTestCase):
    """
    L{rateLimit}: a token bucket per connection or session.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def calls(self, middleware: Any, connection: IConnection, n: int) -> list[str]:
        chain = compose([middleware], ok)
        results = []
        for _ in range(n):
            d = chain(connection, req("x"))
            if d.called:
                failures: list[Any] = []
                d.addErrback(failures.append)
                results.append(failures[0].value.code if failures else "ok")
        return results

    def test_burstThenLimited(self) -> None:
        """A burst of C{burst} passes; the next one is C{RATE_LIMITED}; the
        bucket refills at C{rate}."""
        limit = rateLimit(rate=1, burst=3, clock=self.clock)
        c = conn()
        self.assertEqual(self.calls(limit, c, 4), ["ok", "ok", "ok", "RATE_LIMITED"])
        self.clock.advance(1)
        self.assertEqual(self.calls(limit, c, 2), ["ok", "RATE_LIMITED"])
        self.clock.advance(100)
        self.assertEqual(self.calls(limit, c, 4), ["ok", "ok", "ok", "RATE_LIMITED"])

    def test_perConnection(self) -> None:
        """Each connection has its own bucket."""
        limit = rateLimit(rate=1, burst=1, clock=self.clock)
        self.assertEqual(self.calls(limit, conn(), 1), ["ok"])
        self.assertEqual(self.calls(limit, conn(), 1), ["ok"])

    def test_perSession(self) -> None:
        """Connections of one session share a bucket; those without a
        session get their own."""
        limit = rateLimit(rate=1, burst=2, per="session", clock=self.clock)
        server = MemoryServer(Application())
        a, b = server.connect(), server.connect()
        session = self.successResultOf(a.connection.createSession())
        restored = self.successResultOf(b.restoreSession(session.key))
        self.assertIsInstance(restored, wire.Reply)
        self.assertEqual(b.connection.session, session)
        self.assertEqual(self.calls(limit, a.connection, 1), ["ok"])
        self.assertEqual(self.calls(limit, b.connection, 2), ["ok", "RATE_LIMITED"])
        self.assertEqual(self.calls(limit, conn(), 2), ["ok", "ok"])

    def test_forgetsGoneConnections(self) -> None:
        """Nothing is kept for connections that are gone."""
        limit = rateLimit(rate=1, burst=1, per="session", clock=self.clock)
        server = MemoryServer(Application())
        gc.collect()
        before = buckets()
        pair = server.connect()
        self.successResultOf(pair.connection.createSession())
        self.calls(limit, pair.connection, 1)
        self.assertEqual(buckets(), before + 1)
        pair.close()
        server.pairs.remove(pair)
        del pair
        gc.collect()
        self.assertEqual(buckets(), before)

    def test_badArguments(self) -> None:
        """Bad arguments are refused at once."""
        self.assertRaises(ValueError, rateLimit, 0, 1, clock=self.clock)
        self.assertRaises(ValueError, rateLimit, 1, 0, clock=self.clock)
        self.assertRaises(ValueError, rateLimit, 1, 1, "ip", self.clock)


class TimeoutTests(SynchronousTestCase):
    """
    L{timeout} answers slow requests with C{TIMEOUT} and cancels them.
    """

    def test_timeout(self) -> None:
        """A handler not done in time: C{TIMEOUT}, its Deferred cancelled."""
        clock = Clock()
        cancelled: list[Deferred[str]] = []
        pending: Deferred[str] = Deferred(cancelled.append)
        chain = compose([timeout(2, clock)], lambda c, r: pending)
        d = chain(conn(), req("x"))
        clock.advance(1.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertEqual(self.failureResultOf(d, RequestError).value.code, "TIMEOUT")
        self.assertEqual(cancelled, [pending])

    def test_inTime(self) -> None:
        """A handler done in time gives its result; no timer is left."""
        clock = Clock()
        pending: Deferred[str] = Deferred()
        d = compose([timeout(2, clock)], lambda c, r: pending)(conn(), req("x"))
        pending.callback("done")
        self.assertEqual(self.successResultOf(d), "done")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_badSeconds(self) -> None:
        """A non-positive limit is refused."""
        self.assertRaises(ValueError, timeout, 0, Clock())


class AccessLogTests(SynchronousTestCase):
    """
    L{accessLog} logs one line per request, without payloads.
    """

    def test_outcomes(self) -> None:
        """ok, the error code, or internal; peer, name and duration."""
        clock = Clock()
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        log = accessLog(Logger(namespace="test.access"), clock)
        pending: Deferred[str] = Deferred()
        c = conn(IPv4Address("TCP", "192.0.2.7", 99))
        d = compose([log], lambda c, r: pending)(c, req("slow", b"SECRET"))
        clock.advance(0.25)
        pending.callback("fine")
        self.successResultOf(d)
        self.failureResultOf(
            compose([log], raising(RequestError("NOPE")))(c, req("e")), RequestError
        )
        self.failureResultOf(
            compose([log], raising(RuntimeError()))(c, req("i")), RuntimeError
        )
        events = [e for e in observer if e["log_namespace"] == "test.access"]
        self.assertEqual(
            [(e["peer"], e["name"], e["outcome"]) for e in events],
            [
                ("192.0.2.7:99", "slow", "ok"),
                ("192.0.2.7:99", "e", "NOPE"),
                ("192.0.2.7:99", "i", "internal"),
            ],
        )
        self.assertEqual(events[0]["durationMs"], 250.0)
        self.assertEqual(events[0]["log_level"].name, "info")
        from twisted.logger import formatEvent

        self.assertEqual(formatEvent(events[0]), "192.0.2.7:99 'slow' ok 250.0 ms")
        self.assertNotIn("SECRET", repr(events))

    def test_peers(self) -> None:
        """
        An IPv6 peer is logged as C{[host]:port}, a UNIX socket's as the
        address's text.
        """
        clock = Clock()
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        log = accessLog(Logger(namespace="test.access"), clock)
        for peer in [IPv6Address("TCP", "2001:db8::7", 99), UNIXAddress(b"/s")]:
            self.successResultOf(compose([log], ok)(conn(peer), req("x")))
        events = [e for e in observer if e["log_namespace"] == "test.access"]
        self.assertEqual(
            [e["peer"] for e in events], ["[2001:db8::7]:99", str(UNIXAddress(b"/s"))]
        )


def handshake(peer: Any, **headers: str) -> HandshakeRequest:
    return HandshakeRequest("/", "h", headers, {}, None, peer=peer)


def tcp(host: str) -> IPv4Address:
    return IPv4Address("TCP", host, 1234)


class RealPeerTests(SynchronousTestCase):
    """
    L{realPeer} believes forwarding headers only from trusted proxies.
    """

    trusted = ["10.0.0.1", "127.0.0.1", "192.168.0.0/16"]

    def test_untrustedPeer(self) -> None:
        """Headers from an untrusted peer are ignored."""
        request = handshake(tcp("203.0.113.5"), **{"x-forwarded-for": "1.1.1.1"})
        self.assertEqual(realPeer(request, self.trusted), "203.0.113.5")

    def test_xForwardedFor(self) -> None:
        """The rightmost untrusted hop of X-Forwarded-For is the client."""
        request = handshake(
            tcp("10.0.0.1"),
            **{"x-forwarded-for": "6.6.6.6, 198.51.100.2, 192.168.1.1"},
        )
        self.assertEqual(realPeer(request, self.trusted), "198.51.100.2")

    def test_forwarded(self) -> None:
        """RFC 7239 C{for=} values, quoted, bracketed and with ports, win
        over X-Forwarded-For."""
        request = handshake(
            tcp("127.0.0.1"),
            forwarded='for=6.6.6.6, for="[2001:db8::17]:4711";proto=https',
            **{"x-forwarded-for": "1.1.1.1"},
        )
        self.assertEqual(realPeer(request, self.trusted), "2001:db8::17")
        request = handshake(tcp("127.0.0.1"), forwarded="For=198.51.100.9:80")
        self.assertEqual(realPeer(request, self.trusted), "198.51.100.9")

    def test_allTrustedOrNoHeader(self) -> None:
        """Without headers the trusted peer itself; all hops trusted: the
        leftmost."""
        self.assertEqual(realPeer(handshake(tcp("10.0.0.1")), self.trusted), "10.0.0.1")
        request = handshake(tcp("10.0.0.1"), **{"x-forwarded-for": "192.168.3.3"})
        self.assertEqual(realPeer(request, self.trusted), "192.168.3.3")

    def test_unknownHop(self) -> None:
        """An untrusted hop that is no address gives the trusted hop next
        to it."""
        request = handshake(tcp("10.0.0.1"), forwarded="for=unknown")
        self.assertEqual(realPeer(request, self.trusted), "10.0.0.1")

    def test_unixPeer(self) -> None:
        """A peer without host is returned as text."""
        peer = UNIXAddress(b"/tmp/sock")
        self.assertEqual(realPeer(handshake(peer), self.trusted), str(peer))

    def test_trustedProxies(self) -> None:
        """L{trustedProxies} parses once; bad entries raise C{ValueError}."""
        find = trustedProxies(["10.0.0.1"])
        request = handshake(tcp("10.0.0.1"), **{"x-forwarded-for": "1.2.3.4"})
        self.assertEqual(find(request), "1.2.3.4")
        self.assertRaises(ValueError, trustedProxies, ["not an address"])


class MiddlewareLoopbackTests(TestCase):
    """
    A Router with middleware over loopback, called with L{WebWireClient}.
    """

    timeout = 30

    def client(self, server: LoopbackServer) -> WebWireClient:
        client = makeClient(self, server.portNumber, "/")
        return client

    async def test_middleware(self) -> None:
        """Rate limit, timeout (cancelling the handler), error mapping and
        the access log, end to end."""
        clock = Clock()
        cancelled: list[str] = []
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        router = Router()
        router.use(accessLog(clock=clock))
        router.use(rateLimit(rate=0.01, burst=3, clock=clock))
        router.use(timeout(5, clock))
        router.use(mapErrors({KeyError: "NOT_FOUND"}))
        started: Deferred[None] = Deferred()

        @router.request("slow")
        def slow(connection: IConnection, request: wire.Request) -> Deferred[str]:
            started.callback(None)
            return Deferred(lambda d: cancelled.append("slow"))

        @router.request("lookup")
        def lookup(connection: IConnection, request: wire.Request) -> str:
            return {"a": "A"}[request.text()]

        server = LoopbackServer(self, router)
        client = self.client(server)
        self.assertEqual((await client.request("lookup", "a")).text(), "A")
        error = await requestError(client.request("lookup", "b"))
        self.assertEqual((error.code, error.message), ("NOT_FOUND", "'b'"))
        reply = client.request("slow")
        await started
        await server.tick()  # the handler returned; its timeout is set
        clock.advance(5)
        error = await requestError(reply)
        self.assertEqual(error.code, "TIMEOUT")
        self.assertEqual(cancelled, ["slow"])
        # The burst of 3 is spent: the 4th request is refused.
        error = await requestError(client.request("lookup", "a"))
        self.assertEqual(error.code, "RATE_LIMITED")
        outcomes = [
            (e["name"], e["outcome"])
            for e in observer
            if e["log_namespace"] == "webwire.access"
        ]
        self.assertEqual(
            outcomes,
            [
                ("lookup", "ok"),
                ("lookup", "NOT_FOUND"),
                ("slow", "TIMEOUT"),
                ("lookup", "RATE_LIMITED"),
            ],
        )

    async def test_wrap(self) -> None:
        """L{wrap} applies middleware to a plain application; an exception
        it does not map stays an internal error."""

        class Failing(Application):
            def onRequest(self, connection: IConnection, request: wire.Request) -> str:
                raise {"v": ValueError("bad value"), "r": RuntimeError()}[request.name]

        server = LoopbackServer(self, wrap(Failing(), mapErrors({ValueError: "BAD"})))
        client = self.client(server)
        error = await requestError(client.request("v"))
        self.assertEqual((error.code, error.message), ("BAD", "bad value"))
        await self.assertFailure(client.request("r"), InternalError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RoutedExampleTests(TestCase):
    """
    C{examples/routed.py} does what its docstring says.
    """

    timeout = 30

    async def test_routed(self) -> None:
        """greet, kv.set/kv.get with their errors, ping/pong, and the rate
        limit."""
        clock = Clock()
        server = LoopbackServer(self, routed.makeApplication(clock))
        from tests.test_client import RecordingHooks

        hooks = RecordingHooks()
        client = makeClient(self, server.portNumber, "/", hooks)
        self.assertEqual((await client.request("greet", "Ada")).text(), "Hello, Ada!")
        await client.request("kv.set", "colour=blue")
        self.assertEqual((await client.request("kv.get", "colour")).text(), "blue")
        error = await requestError(client.request("kv.get", "x"))
        self.assertEqual(error.code, "NOT_FOUND")
        error = await requestError(client.request("kv.set", "x"))
        self.assertEqual(error.code, "BAD_REQUEST")
        error = await requestError(client.request("other"))
        self.assertEqual(error.code, "UNKNOWN_REQUEST")
        pong = hooks.next("signal")
        await client.signal("ping", b"1")
        self.assertEqual((await pong).name, "pong")

        # 6 of the burst of 10 are spent; 4 more pass, then RATE_LIMITED.
        def code(failure: Failure) -> str:
            failure.trap(RequestError)
            return str(failure.value.code)  # type: ignore[union-attr]

        results: list[object] = await gatherResults(
            [client.request("greet", "x").addErrback(code) for _ in range(5)]
        )
        self.assertEqual(results[-1], "RATE_LIMITED")
        self.assertTrue(all(not isinstance(r, str) for r in results[:-1]))
