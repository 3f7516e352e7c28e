# -*- test-case-name: tests.test_router -*-
"""
Dispatch requests and signals by name::

    router = Router()

    @router.request("greet")
    def greet(connection: IConnection, request: Request) -> str:
        return f"Hello, {request.text()}!"

    @router.signal("typing")
    def typing(connection: IConnection, signal: Signal) -> None:
        ...

Handlers are called as C{handler(connection, message)} and may return a
value, a Deferred or a coroutine, as L{IWebWireServer} hooks do.

A name is looked up in this order:

  1. a handler registered for exactly that name;
  2. a mounted router whose prefix the name starts with (the longest such
     prefix wins): see L{Router.mount};
  3. the fallback (L{Router.fallback}, L{Router.signalFallback}). Without
     one, an unknown request is answered with C{UNKNOWN_REQUEST} (its
     message names the request as the client sent it) and an unknown
     signal is ignored (logged at debug level).

Request middleware (L{webwire.middleware}) added with L{Router.use} wraps
all of this router's requests, those handed to mounted routers and the
fallback included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from webwire import wire
from webwire.application import Application
from webwire.errors import RequestError
from webwire.interfaces import IConnection
from webwire.logonce import eventsOf
from webwire.middleware import Handler, Middleware, compose

__all__ = ["Router", "SignalHandler"]

SignalHandler: TypeAlias = Callable[[IConnection, wire.Signal], object]
"""A signal handler: C{handler(connection, signal)}; may return a Deferred
or a coroutine."""

_ConnectedHook: TypeAlias = Callable[[IConnection], object]
_DisconnectedHook: TypeAlias = Callable[[IConnection, Failure], object]

_H = TypeVar("_H", bound=Handler)
_S = TypeVar("_S", bound=SignalHandler)
_C = TypeVar("_C", bound=_ConnectedHook)
_D = TypeVar("_D", bound=_DisconnectedHook)
_T = TypeVar("_T")


class Router(Application):
    """
    An L{IWebWireServer} that dispatches requests and signals by name to
    registered handlers (see the module docstring).

    Every registration raises C{ValueError} if what it registers is
    registered already: a name, a prefix, a fallback or a hook.
    """

    _log = Logger()

    def __init__(self) -> None:
        self._requests: dict[str, Handler] = {}
        self._signals: dict[str, SignalHandler] = {}
        self._mounts: dict[str, Router] = {}
        self._middleware: list[Middleware] = []
        self._fallback: Handler | None = None
        self._signalFallback: SignalHandler | None = None
        self._connected: _ConnectedHook | None = None
        self._disconnected: _DisconnectedHook | None = None

    def __repr__(self) -> str:
        return (
            f"<Router requests={sorted(self._requests)} "
            f"signals={sorted(self._signals)} mounts={sorted(self._mounts)}>"
        )

    # Registration -----------------------------------------------------------

    def request(self, name: str) -> Callable[[_H], _H]:
        """
        A decorator registering a request handler for C{name}.

        :raises ValueError: If C{name} has a handler already.
        """
        return self._registrar(self._requests, "request", name)

    def signal(self, name: str) -> Callable[[_S], _S]:
        """
        A decorator registering a signal handler for C{name}.

        :raises ValueError: If C{name} has a handler already.
        """
        return self._registrar(self._signals, "signal", name)

    @staticmethod
    def _registrar(table: dict[str, Any], kind: str, name: str) -> Callable[[_T], _T]:
        def register(handler: _T) -> _T:
            if name in table:
                raise ValueError(f"{kind} {name!r} is registered already")
            table[name] = handler
            return handler

        return register

    def fallback(self, handler: _H) -> _H:
        """
        A decorator registering the handler of requests no name or mount
        matches (instead of the C{UNKNOWN_REQUEST} error).

        :raises ValueError: If there is a request fallback already.
        """
        if self._fallback is not None:
            raise ValueError("the request fallback is registered already")
        self._fallback = handler
        return handler

    def signalFallback(self, handler: _S) -> _S:
        """
        A decorator registering the handler of signals no name or mount
        matches (instead of ignoring them).

        :raises ValueError: If there is a signal fallback already.
        """
        if self._signalFallback is not None:
            raise ValueError("the signal fallback is registered already")
        self._signalFallback = handler
        return handler

    def connected(self, hook: _C) -> _C:
        """
        A decorator registering C{hook(connection)}, called when a client
        connected (see L{IWebWireServer.onClientConnected}; it may return a
        Deferred or coroutine, and nothing the client sends is handled until
        it is done).

        :raises ValueError: If there is one already.
        """
        if self._connected is not None:
            raise ValueError("the connected hook is registered already")
        self._connected = hook
        return hook

    def disconnected(self, hook: _D) -> _D:
        """
        A decorator registering C{hook(connection, reason)}, called when a
        client went away (see L{IWebWireServer.onClientDisconnected}).

        :raises ValueError: If there is one already.
        """
        if self._disconnected is not None:
            raise ValueError("the disconnected hook is registered already")
        self._disconnected = hook
        return hook

    def mount(self, prefix: str, router: Router) -> None:
        """
        Hand requests and signals whose name starts with C{prefix} to
        C{router}, with the prefix removed: after C{mount("chat.", chat)},
        C{chat.say} goes to C{chat}'s C{say}.

        The rule is a plain, case-sensitive string prefix: nothing is added
        (C{mount("chat", r)} would send C{chatsay} as C{say} and C{chat.say}
        as C{.say}, so end the prefix with your separator). Names registered
        on this router win over mounts; among mounts, the longest matching
        prefix wins. A name equal to the prefix reaches C{router} as the
        empty name. Whatever C{router} does not know is answered by its own
        fallback (C{UNKNOWN_REQUEST}, naming the full name, by default).

        C{router}'s connection hooks are called after this router's, in the
        order of mounting; its middleware wraps its requests, inside this
        router's middleware (which sees the full name).

        :raises ValueError: If C{prefix} is empty or mounted already, or
            C{router} is this router.
        """
        if not prefix:
            raise ValueError("the prefix must not be empty")
        if prefix in self._mounts:
            raise ValueError(f"prefix {prefix!r} is mounted already")
        if router is self:
            raise ValueError("a router cannot be mounted on itself")
        self._mounts[prefix] = router

    def use(self, middleware: Middleware) -> None:
        """
        Run this router's requests through C{middleware} (see
        L{webwire.middleware}). The first middleware added is the outermost.
        """
        self._middleware.append(middleware)

    # Lookup -----------------------------------------------------------------

    def knowsRequest(self, name: str) -> bool:
        """
        Whether a handler is registered for request C{name}, here or in a
        mounted router (the fallback does not count): what
        L{webwire.metrics.ServerMetrics} takes as a label as it is.
        """
        if name in self._requests:
            return True
        mounted = self._mountFor(name)
        return mounted is not None and mounted[1].knowsRequest(name[len(mounted[0]) :])

    def _mountFor(self, name: str) -> tuple[str, Router] | None:
        matches = [p for p in self._mounts if name.startswith(p)]
        if not matches:
            return None
        prefix = max(matches, key=len)
        return prefix, self._mounts[prefix]

    # IWebWireServer ---------------------------------------------------------

    def onClientConnected(self, connection: IConnection) -> Deferred[None] | None:
        """Call the connected hook, then those of mounted routers, in turn."""

        async def run() -> None:
            if self._connected is not None:
                await maybeDeferred(self._connected, connection)
            for router in list(self._mounts.values()):
                await maybeDeferred(router.onClientConnected, connection)

        return Deferred.fromCoroutine(run())

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        """
        Call the disconnected hook and those of mounted routers; a failure of
        one is logged and does not keep the others from running.
        """
        hooks: list[Callable[..., object]] = []
        if self._disconnected is not None:
            hooks.append(self._disconnected)
        hooks.extend(r.onClientDisconnected for r in self._mounts.values())
        for hook in hooks:
            maybeDeferred(hook, connection, reason).addErrback(
                lambda f: self._log.failure(
                    "disconnected hook failed for {peer}", f, peer=connection.peer
                )
            )

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> Any:
        """Dispatch C{signal} by name (see the module docstring)."""
        return self._dispatchSignal(connection, signal, "")

    def _dispatchSignal(
        self, connection: IConnection, signal: wire.Signal, outer: str
    ) -> Any:
        # outer: the prefixes removed by the routers this one is mounted on.
        handler = self._signals.get(signal.name)
        if handler is not None:
            return handler(connection, signal)
        mounted = self._mountFor(signal.name)
        if mounted is not None:
            prefix, router = mounted
            inner = dataclasses.replace(signal, name=signal.name[len(prefix) :])
            return router._dispatchSignal(connection, inner, outer + prefix)
        if self._signalFallback is not None:
            return self._signalFallback(connection, signal)
        eventsOf(connection).emit(
            self._log,
            "unknown signal",
            LogLevel.debug,
            "ignored unknown signal {name!r} from {peer}",
            name=outer + signal.name,
            peer=connection.peer,
        )
        return None

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> Deferred[Any]:
        """
        Dispatch C{request} by name through this router's middleware (see
        the module docstring).

        :returns: A Deferred firing with the handler's result, or failing as
            it (or a middleware) failed; L{RequestError} C{UNKNOWN_REQUEST}
            for an unknown name without fallback.
        """
        return self._handle(connection, request, "")

    def _handle(
        self, connection: IConnection, request: wire.Request, outer: str
    ) -> Deferred[Any]:
        # outer: the prefixes removed by the routers this one is mounted on.
        def dispatch(connection: IConnection, request: wire.Request) -> Any:
            return self._dispatchRequest(connection, request, outer)

        return compose(self._middleware, dispatch)(connection, request)

    def _dispatchRequest(
        self, connection: IConnection, request: wire.Request, outer: str
    ) -> Any:
        handler = self._requests.get(request.name)
        if handler is not None:
            return handler(connection, request)
        mounted = self._mountFor(request.name)
        if mounted is not None:
            prefix, router = mounted
            inner = dataclasses.replace(request, name=request.name[len(prefix) :])
            return router._handle(connection, inner, outer + prefix)
        if self._fallback is not None:
            return self._fallback(connection, request)
        raise RequestError("UNKNOWN_REQUEST", f"unknown request: {outer}{request.name}")
