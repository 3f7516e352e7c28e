"""
L{webwire.router}: dispatch by name, mounts, fallbacks, hooks, middleware;
and one Router served over loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.helpers import LoopbackServer, conn, makeClient, req, requestError, sig
from tests.test_client import RecordingHooks
from webwire import wire
from webwire.errors import RequestError
from webwire.interfaces import IConnection, IWebWireServer
from webwire.middleware import Next
from webwire.router import Router


class DispatchTests(SynchronousTestCase):
    """
    Requests and signals reach the handler registered for their name.
    """

    def test_provides(self) -> None:
        """A Router is an L{IWebWireServer}."""
        self.assertTrue(verifyObject(IWebWireServer, Router()))

    def test_request(self) -> None:
        """A request's handler gets the connection and request; its value is
        the result."""
        router = Router()
        seen: list[tuple[IConnection, wire.Request]] = []

        @router.request("auth")
        def auth(connection: IConnection, request: wire.Request) -> str:
            seen.append((connection, request))
            return "ok"

        c, r = conn(), req("auth", b"x")
        self.assertEqual(self.successResultOf(router.onRequest(c, r)), "ok")
        self.assertEqual(seen, [(c, r)])

    def test_decoratorReturnsHandler(self) -> None:
        """The decorators return the function they register."""
        router = Router()

        def f(connection: IConnection, request: wire.Request) -> None:
            pass

        self.assertIs(router.request("f")(f), f)

    def test_deferredAndCoroutine(self) -> None:
        """Handlers may return a Deferred or be coroutines."""
        router = Router()

        @router.request("d")
        def d(connection: IConnection, request: wire.Request) -> Deferred[str]:
            return succeed("deferred")

        @router.request("c")
        async def c(connection: IConnection, request: wire.Request) -> str:
            return "coroutine"

        self.assertEqual(
            self.successResultOf(router.onRequest(conn(), req("d"))), "deferred"
        )
        self.assertEqual(
            self.successResultOf(router.onRequest(conn(), req("c"))), "coroutine"
        )

    def test_handlerErrorsPassThrough(self) -> None:
        """A handler's exception is the request's failure, as raised."""
        router = Router()

        @router.request("bad")
        def bad(connection: IConnection, request: wire.Request) -> None:
            raise RequestError("NOPE", "no")

        failure = self.failureResultOf(
            router.onRequest(conn(), req("bad")), RequestError
        )
        self.assertEqual(failure.value.code, "NOPE")

    def test_unknownRequest(self) -> None:
        """An unknown request fails with C{UNKNOWN_REQUEST}."""
        failure = self.failureResultOf(
            Router().onRequest(conn(), req("what")), RequestError
        )
        self.assertEqual(
            (failure.value.code, failure.value.message),
            ("UNKNOWN_REQUEST", "unknown request: what"),
        )

    def test_signal(self) -> None:
        """A signal's handler gets the connection and signal."""
        router = Router()
        seen: list[wire.Signal] = []

        @router.signal("typing")
        def typing(connection: IConnection, signal: wire.Signal) -> None:
            seen.append(signal)

        router.onSignal(conn(), sig("typing", b"1"))
        self.assertEqual(seen, [sig("typing", b"1")])

    def test_unknownSignalIgnored(self) -> None:
        """An unknown signal is ignored and logged at debug level."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.assertIsNone(Router().onSignal(conn(), sig("what")))
        [event] = [e for e in events if e.get("name") == "what"]
        self.assertEqual(event["log_level"].name, "debug")

    def test_duplicates(self) -> None:
        """Registering anything twice raises C{ValueError}."""
        router = Router()

        def h(*args: Any) -> None:
            pass

        router.request("a")(h)
        self.assertRaises(ValueError, router.request("a"), h)
        router.signal("a")(h)
        self.assertRaises(ValueError, router.signal("a"), h)
        for register in (
            router.fallback,
            router.signalFallback,
            router.connected,
            router.disconnected,
        ):
            register(h)
            self.assertRaises(ValueError, register, h)
        router.mount("p.", Router())
        self.assertRaises(ValueError, router.mount, "p.", Router())
        self.assertRaises(ValueError, router.mount, "", Router())
        self.assertRaises(ValueError, router.mount, "q.", router)


class FallbackTests(SynchronousTestCase):
    """
    Fallbacks handle names nothing else does.
    """

    def test_requestFallback(self) -> None:
        """The request fallback answers unknown requests."""
        router = Router()

        @router.fallback
        def other(connection: IConnection, request: wire.Request) -> str:
            return f"fallback {request.name}"

        self.assertEqual(
            self.successResultOf(router.onRequest(conn(), req("x"))), "fallback x"
        )

    def test_signalFallback(self) -> None:
        """The signal fallback gets unknown signals."""
        router = Router()
        seen: list[str] = []

        @router.signalFallback
        def other(connection: IConnection, signal: wire.Signal) -> None:
            seen.append(signal.name)

        router.onSignal(conn(), sig("x"))
        self.assertEqual(seen, ["x"])


class MountTests(SynchronousTestCase):
    """
    Names starting with a mounted prefix go to the mounted router, the
    prefix removed.
    """

    def setUp(self) -> None:
        self.router = Router()
        self.chat = Router()
        self.said: list[str] = []

        @self.chat.request("say")
        def say(connection: IConnection, request: wire.Request) -> str:
            return f"chat {request.name}"

        @self.chat.signal("typing")
        def typing(connection: IConnection, signal: wire.Signal) -> None:
            self.said.append(signal.name)

        self.router.mount("chat.", self.chat)

    def test_request(self) -> None:
        """C{chat.say} reaches the mounted router's C{say}."""
        self.assertEqual(
            self.successResultOf(self.router.onRequest(conn(), req("chat.say"))),
            "chat say",
        )

    def test_signal(self) -> None:
        """C{chat.typing} reaches the mounted router's C{typing}."""
        self.router.onSignal(conn(), sig("chat.typing"))
        self.assertEqual(self.said, ["typing"])

    def test_exactNameWins(self) -> None:
        """A name registered on the outer router wins over a mount."""

        @self.router.request("chat.say")
        def direct(connection: IConnection, request: wire.Request) -> str:
            return "direct"

        self.assertEqual(
            self.successResultOf(self.router.onRequest(conn(), req("chat.say"))),
            "direct",
        )

    def test_longestPrefixWins(self) -> None:
        """Of two matching prefixes, the longer wins."""
        admin = Router()

        @admin.request("kick")
        def kick(connection: IConnection, request: wire.Request) -> str:
            return "admin kick"

        self.router.mount("chat.admin.", admin)
        self.assertEqual(
            self.successResultOf(self.router.onRequest(conn(), req("chat.admin.kick"))),
            "admin kick",
        )

    def test_unknownNamesFullName(self) -> None:
        """An unknown name under a mount names the full name."""
        inner = Router()
        self.chat.mount("room.", inner)
        failure = self.failureResultOf(
            self.router.onRequest(conn(), req("chat.room.nope")), RequestError
        )
        self.assertEqual(failure.value.message, "unknown request: chat.room.nope")

    def test_noSeparatorAdded(self) -> None:
        """The prefix is a plain string prefix: C{chat.} does not match
        C{chat}, and nothing is added to a prefix without separator."""
        failure = self.failureResultOf(
            self.router.onRequest(conn(), req("chat")), RequestError
        )
        self.assertEqual(failure.value.code, "UNKNOWN_REQUEST")
        bare = Router()

        @bare.request("x")
        def x(connection: IConnection, request: wire.Request) -> str:
            return "bare"

        self.router.mount("b", bare)
        self.assertEqual(
            self.successResultOf(self.router.onRequest(conn(), req("bx"))), "bare"
        )

    def test_middlewareOrder(self) -> None:
        """The outer router's middleware sees the full name and runs first;
        the mounted router's sees the name without prefix."""
        seen: list[str] = []

        def record(tag: str) -> Any:
            def middleware(
                connection: IConnection, request: wire.Request, next: Next
            ) -> Deferred[Any]:
                seen.append(f"{tag}:{request.name}")
                return next(connection, request)

            return middleware

        self.router.use(record("outer1"))
        self.router.use(record("outer2"))
        self.chat.use(record("inner"))
        self.successResultOf(self.router.onRequest(conn(), req("chat.say")))
        self.assertEqual(seen, ["outer1:chat.say", "outer2:chat.say", "inner:say"])

    def test_middlewareWrapsFallback(self) -> None:
        """Middleware runs for unknown requests too."""
        seen: list[str] = []

        def middleware(
            connection: IConnection, request: wire.Request, next: Next
        ) -> Deferred[Any]:
            seen.append(request.name)
            return next(connection, request)

        self.router.use(middleware)
        self.failureResultOf(self.router.onRequest(conn(), req("nope")), RequestError)
        self.assertEqual(seen, ["nope"])


class HookTests(SynchronousTestCase):
    """
    Connection hooks reach the registered hooks, and mounted routers'.
    """

    def test_noHooks(self) -> None:
        """Without hooks, connecting and disconnecting do nothing."""
        router = Router()
        self.successResultOf(router.onClientConnected(conn()))  # type: ignore[arg-type]
        router.onClientDisconnected(conn(), Failure(ConnectionDone()))

    def test_hooks(self) -> None:
        """The hooks run, this router's first, then mounted ones; the
        connected hook may return a Deferred, which is waited for."""
        outer, inner = Router(), Router()
        outer.mount("i.", inner)
        events: list[str] = []
        gate: Deferred[None] = Deferred()

        @outer.connected
        def outerConnected(connection: IConnection) -> Deferred[None]:
            events.append("outer connected")
            return gate

        @inner.connected
        def innerConnected(connection: IConnection) -> None:
            events.append("inner connected")

        @outer.disconnected
        def outerGone(connection: IConnection, reason: Failure) -> None:
            events.append("outer gone")
            raise RuntimeError("oops")

        @inner.disconnected
        def innerGone(connection: IConnection, reason: Failure) -> None:
            events.append(f"inner gone {type(reason.value).__name__}")

        c = conn()
        connected = outer.onClientConnected(c)
        assert connected is not None
        self.assertNoResult(connected)
        self.assertEqual(events, ["outer connected"])
        gate.callback(None)
        self.successResultOf(connected)
        outer.onClientDisconnected(c, Failure(ConnectionDone()))
        self.assertEqual(
            events,
            [
                "outer connected",
                "inner connected",
                "outer gone",
                "inner gone ConnectionDone",
            ],
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RouterLoopbackTests(TestCase):
    """
    A Router with a mount, a fallback and middleware, served over loopback
    and called with L{WebWireClient}.
    """

    timeout = 30

    async def test_endToEnd(self) -> None:
        """Requests reach handlers and mounts, unknown ones the error or
        fallback, signals their handler; hooks run."""
        router, chat = Router(), Router()
        events: list[str] = []

        @router.request("greet")
        def greet(connection: IConnection, request: wire.Request) -> str:
            return f"Hello, {request.text()}!"

        @chat.request("say")
        async def say(connection: IConnection, request: wire.Request) -> str:
            return f"said {request.text()}"

        @chat.signal("typing")
        def typing(connection: IConnection, signal: wire.Signal) -> None:
            connection.signal("typed", signal.payload)

        @chat.connected
        def joined(connection: IConnection) -> None:
            events.append("joined")

        def tagName(
            connection: IConnection, request: wire.Request, next: Next
        ) -> Deferred[Any]:
            return next(connection, request).addCallback(
                lambda r: f"{r} [{request.name}]"
            )

        router.mount("chat.", chat)
        chat.use(tagName)
        server = LoopbackServer(self, router)
        hooks = RecordingHooks()
        client = makeClient(self, server.portNumber, "/", hooks)
        self.assertEqual((await client.request("greet", "Ada")).text(), "Hello, Ada!")
        reply = await client.request("chat.say", "hi")
        self.assertEqual(reply.text(), "said hi [say]")
        error = await requestError(client.request("nope"))
        self.assertEqual(
            (error.code, error.message), ("UNKNOWN_REQUEST", "unknown request: nope")
        )
        nextSignal = hooks.next("signal")
        await client.signal("chat.typing", b"...")
        self.assertEqual((await nextSignal).name, "typed")
        self.assertEqual(events, ["joined"])

        @router.fallback
        def other(connection: IConnection, request: wire.Request) -> str:
            return "fallback"

        self.assertEqual((await client.request("nope")).text(), "fallback")
