# -*- test-case-name: tests.test_middleware -*-
"""
Composable request middleware, and the client's real address behind proxies.

A middleware is a callable C{middleware(connection, request, next)}. It may
look at or replace the request, call C{next(connection, request)} to run the
next layer (the next middleware, and finally the handler), and return what
the request's reply should be: a value, a Deferred or a coroutine, exactly
as a request handler does. C{next} always returns a C{Deferred}, so its
outcome can be awaited or given callbacks; a middleware that does not call
it answers the request itself (it may raise L{RequestError}).

Apply middleware to a L{webwire.router.Router} with C{router.use(...)} or to
any L{IWebWireServer} with L{wrap}; the first middleware given is the
outermost layer. Middleware applies to requests only; connection hooks and
signals pass through untouched.

Built-ins: L{mapErrors}, L{rateLimit}, L{timeout}, L{accessLog}. For the
handshake, L{realPeer} and L{trustedProxies} find the client's address from
C{X-Forwarded-For} or C{Forwarded} headers set by trusted proxies.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from webwire import wire
from webwire._reactor import defaultReactor
from webwire.connection import peerText
from webwire.errors import RequestError
from webwire.interfaces import (
    IConnection,
    IHandshakeRequest,
    IUpgradeGuard,
    IWebWireServer,
    RequestResult,
)

__all__ = [
    "Handler",
    "Middleware",
    "Next",
    "accessLog",
    "compose",
    "mapErrors",
    "rateLimit",
    "realPeer",
    "timeout",
    "trustedProxies",
    "wrap",
]

Handler: TypeAlias = Callable[[IConnection, wire.Request], RequestResult]
"""A request handler: C{handler(connection, request) -> result}."""

Next: TypeAlias = Callable[[IConnection, wire.Request], "Deferred[Any]"]
"""What a middleware calls to run the next layer; it returns a Deferred."""

Middleware: TypeAlias = Callable[[IConnection, wire.Request, Next], RequestResult]
"""A request middleware: C{middleware(connection, request, next) -> result}."""

_IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _defaultClock() -> IReactorTime:
    return defaultReactor()


def _layer(middleware: Middleware, inner: Next) -> Next:
    def call(connection: IConnection, request: wire.Request) -> Deferred[Any]:
        return maybeDeferred(middleware, connection, request, inner)

    return call


def compose(middleware: Sequence[Middleware], handler: Handler) -> Next:
    """
    Stack C{middleware} around C{handler}.

    :param middleware: The layers, outermost first.
    :param handler: The innermost layer.
    :returns: A callable C{(connection, request)} that runs every layer and
        returns a Deferred firing with the handler's (possibly transformed)
        result, or failing as it (or a middleware) failed.
    """

    def innermost(connection: IConnection, request: wire.Request) -> Deferred[Any]:
        return maybeDeferred(handler, connection, request)

    chain: Next = innermost
    for each in reversed(middleware):
        chain = _layer(each, chain)
    return chain


@implementer(IWebWireServer)
class _Wrapped:
    """An application whose requests run through middleware."""

    def __init__(
        self, application: IWebWireServer, middleware: Sequence[Middleware]
    ) -> None:
        self.application = application
        self._chain = compose(middleware, application.onRequest)

    def onClientConnected(self, connection: IConnection) -> Deferred[None] | None:
        """Passed on to the wrapped application."""
        return self.application.onClientConnected(connection)

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        """Passed on to the wrapped application."""
        self.application.onClientDisconnected(connection, reason)

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> Any:
        """Passed on to the wrapped application."""
        return self.application.onSignal(connection, signal)

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> Deferred[Any]:
        """Run the middleware, then the wrapped application's C{onRequest}."""
        return self._chain(connection, request)


@implementer(IUpgradeGuard)
class _GuardedWrapped(_Wrapped):
    """A L{_Wrapped} application whose wrapped one is an L{IUpgradeGuard}."""

    def beforeUpgrade(self, request: IHandshakeRequest) -> Any:
        """Passed on to the wrapped application."""
        return self.application.beforeUpgrade(request)  # type: ignore[attr-defined]


def wrap(application: IWebWireServer, *middleware: Middleware) -> IWebWireServer:
    """
    Run every request to C{application} through C{middleware}.

    Connection hooks, signals and (if C{application} provides
    L{IUpgradeGuard}) C{beforeUpgrade} are passed on unchanged.

    :param application: Any L{IWebWireServer}.
    :param middleware: The layers, outermost first.
    :returns: A new L{IWebWireServer}; its C{application} attribute is the
        wrapped one.
    :raises TypeError: If C{application} is not an L{IWebWireServer}.
    """
    if not IWebWireServer.providedBy(application):
        raise TypeError(f"{application!r} does not provide IWebWireServer")
    if IUpgradeGuard.providedBy(application):
        return _GuardedWrapped(application, middleware)
    return _Wrapped(application, middleware)


# mapErrors -------------------------------------------------------------------


def _checkCode(code: str) -> str:
    if not 1 <= len(code) <= 255 or not wire.isPrintableASCII(code):
        raise ValueError(f"invalid error code {code!r}: 1-255 printable ASCII")
    return code


def mapErrors(
    errors: Mapping[type[BaseException], str | tuple[str, str]],
) -> Middleware:
    """
    Turn exceptions of chosen types into error replies.

    For example C{mapErrors({ValueError: "BAD_REQUEST", KeyError:
    ("NOT_FOUND", "no such thing")})}. The first matching entry (in the
    mapping's order, subclasses included) wins. L{RequestError} and
    C{CancelledError} are never mapped; unmapped exceptions stay internal
    errors.

    B{The reply's message reaches the client}: it is the text given with
    the code, or else C{str(exception)}. Give a text for exceptions whose
    message may hold anything secret.

    :param errors: Exception type to code, or to (code, message).
    :raises ValueError: If a code is not 1-255 printable ASCII characters.
    """
    table: list[tuple[type[BaseException], str, str | None]] = []
    for kind, target in errors.items():
        if isinstance(target, tuple):
            code, text = target
            table.append((kind, _checkCode(code), text))
        else:
            table.append((kind, _checkCode(target), None))

    def translate(failure: Failure) -> Failure:
        error = failure.value
        if isinstance(error, (RequestError, CancelledError)):
            return failure
        for kind, code, text in table:
            if isinstance(error, kind):
                return Failure(RequestError(code, str(error) if text is None else text))
        return failure

    def mapErrorsMiddleware(
        connection: IConnection, request: wire.Request, next: Next
    ) -> Deferred[Any]:
        return next(connection, request).addErrback(translate)

    return mapErrorsMiddleware


# rateLimit -------------------------------------------------------------------


class _Bucket:
    """A token bucket; weakly referable, so that unused ones disappear."""

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now


def rateLimit(
    rate: float,
    burst: int,
    per: Literal["connection", "session"] = "connection",
    clock: IReactorTime | None = None,
) -> Middleware:
    """
    Limit how many requests a client may make: a token bucket that holds up
    to C{burst} tokens and gains C{rate} tokens per second; each request
    takes one. A request finding no token is answered with the error
    C{RATE_LIMITED} (never silently dropped) and does not reach the handler.

    With C{per="session"}, all connections of one session share a bucket;
    connections without a session get one each, as with
    C{per="connection"}. Buckets are forgotten with the last connection
    using them (they are weakly keyed by connection), so a session that
    reconnects after all its connections closed starts with a full bucket.

    :param rate: Tokens per second, > 0.
    :param burst: Bucket size, >= 1.
    :param per: C{"connection"} or C{"session"}.
    :param clock: What time is read from; the global reactor if omitted.
    :raises ValueError: For a bad C{rate}, C{burst} or C{per}.
    """
    if not rate > 0:
        raise ValueError(f"rate must be > 0, not {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, not {burst!r}")
    if per not in ("connection", "session"):
        raise ValueError(f"per must be 'connection' or 'session', not {per!r}")
    theClock = clock if clock is not None else _defaultClock()
    # Each connection holds its bucket; a session's bucket is shared by its
    # connections and found by key while any of them holds it.
    byConnection: weakref.WeakKeyDictionary[IConnection, _Bucket] = (
        weakref.WeakKeyDictionary()
    )
    bySession: weakref.WeakValueDictionary[str, _Bucket] = weakref.WeakValueDictionary()
    # For a session bucket: which session key the connection's bucket is for.
    keys: weakref.WeakKeyDictionary[IConnection, str | None] = (
        weakref.WeakKeyDictionary()
    )

    def bucketFor(connection: IConnection, now: float) -> _Bucket:
        key: str | None = None
        if per == "session" and connection.session is not None:
            key = connection.session.key
        bucket = byConnection.get(connection)
        if bucket is not None and keys.get(connection) == key:
            return bucket
        bucket = bySession.get(key) if key is not None else None
        if bucket is None:
            bucket = _Bucket(float(burst), now)
            if key is not None:
                bySession[key] = bucket
        byConnection[connection] = bucket
        keys[connection] = key
        return bucket

    def rateLimitMiddleware(
        connection: IConnection, request: wire.Request, next: Next
    ) -> Deferred[Any]:
        now = theClock.seconds()
        bucket = bucketFor(connection, now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / rate
            raise RequestError(
                "RATE_LIMITED", f"too many requests; retry in {wait:.1f} s"
            )
        bucket.tokens -= 1
        return next(connection, request)

    return rateLimitMiddleware


# timeout ---------------------------------------------------------------------


def timeout(seconds: float, clock: IReactorTime | None = None) -> Middleware:
    """
    Answer a request with the error C{TIMEOUT} if the inner layers are not
    done within C{seconds}; their Deferred is then cancelled (so a handler
    returning a cancellable Deferred, or a coroutine awaiting one, stops).

    :param seconds: The time limit, > 0.
    :param clock: What the timer is scheduled on; the global reactor if
        omitted.
    :raises ValueError: If C{seconds} is not positive.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, not {seconds!r}")
    theClock = clock if clock is not None else _defaultClock()

    def timedOut(result: object, limit: float) -> object:
        raise RequestError("TIMEOUT", f"not done within {limit:g} s")

    def timeoutMiddleware(
        connection: IConnection, request: wire.Request, next: Next
    ) -> Deferred[Any]:
        return next(connection, request).addTimeout(
            seconds, theClock, onTimeoutCancel=timedOut
        )

    return timeoutMiddleware


# accessLog -------------------------------------------------------------------

_accessLog = Logger(namespace="webwire.access")


def accessLog(
    logger: Logger | None = None, clock: IReactorTime | None = None
) -> Middleware:
    """
    Log one info event per request, once it is answered:
    C{"{peer} {name!r} {outcome} {durationMs:.1f} ms"}.

    The event has the fields C{peer} (C{"host:port"}), C{name} (the request
    name), C{outcome} (C{"ok"}, the L{RequestError} code, or C{"internal"}
    for any other failure, cancellation included) and C{durationMs}
    (float). Payloads are never logged. The outcome is not changed.

    :param logger: Where to log; a C{Logger} in namespace
        C{webwire.access} if omitted.
    :param clock: What durations are measured with; the global reactor if
        omitted.
    """
    log = logger if logger is not None else _accessLog
    theClock = clock if clock is not None else _defaultClock()

    def accessLogMiddleware(
        connection: IConnection, request: wire.Request, next: Next
    ) -> Deferred[Any]:
        started = theClock.seconds()

        def record(outcome: str) -> None:
            log.info(
                "{peer} {name!r} {outcome} {durationMs:.1f} ms",
                peer=peerText(connection.peer),
                name=request.name,
                outcome=outcome,
                durationMs=(theClock.seconds() - started) * 1000,
            )

        def succeeded(result: object) -> object:
            record("ok")
            return result

        def failed(failure: Failure) -> Failure:
            error = failure.value
            record(error.code if isinstance(error, RequestError) else "internal")
            return failure

        return next(connection, request).addCallbacks(succeeded, failed)

    return accessLogMiddleware


# Handshake: the client's address behind proxies ------------------------------


def _parseNetwork(text: str) -> _IPNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


def _parseAddress(text: str) -> _IPAddress | None:
    """
    Read an address as proxies write it: C{1.2.3.4}, C{1.2.3.4:80},
    C{"[::1]:80"}, C{::1}. C{None} if it is none (C{unknown}, C{_hidden}).
    """
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _forwardedFor(value: str) -> list[str]:
    """The C{for=} values of a C{Forwarded} header, in order."""
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, text = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(text.strip())
    return hops


def _hops(headers: Mapping[str, str]) -> list[str]:
    forwarded = headers.get("forwarded")
    if forwarded:
        return _forwardedFor(forwarded)
    return [h for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]


def _trusts(networks: Sequence[_IPNetwork], address: _IPAddress) -> bool:
    return any(address in network for network in networks)


def realPeer(request: IHandshakeRequest, trusted: Iterable[str]) -> str:
    """
    The client's IP address, as seen through trusted reverse proxies.

    If the direct peer (C{request.peer.host}) is not in C{trusted}, the
    headers are ignored (anyone can send them) and the direct peer is the
    answer. Otherwise the hops are read from the RFC 7239 C{Forwarded}
    header (its C{for=} parameters; ports, quotes and brackets removed) or,
    without one, from C{X-Forwarded-For}; the direct peer is appended, and
    the answer is the rightmost hop that is not trusted: each trusted proxy
    appends the address it saw, so that one was written by a proxy we
    trust. If every hop is trusted, the leftmost one is the answer. If the
    rightmost untrusted hop is not an IP address (C{unknown}, an obfuscated
    C{_name}, garbage), the trusted hop to its right is the answer.

    :param request: The handshake request (e.g. in C{beforeUpgrade}, or
        C{connection.request}).
    :param trusted: The proxies' addresses or networks, e.g.
        C{["10.0.0.1", "127.0.0.1", "192.168.0.0/16"]}.
    :returns: An IP address as text (IPv4-mapped IPv6 addresses as IPv4);
        C{str(request.peer)} if the peer has no host (e.g. a UNIX socket).
    :raises ValueError: If an entry of C{trusted} is not an address or
        network.
    """
    return trustedProxies(trusted)(request)


def trustedProxies(trusted: Iterable[str]) -> Callable[[IHandshakeRequest], str]:
    """
    L{realPeer} with the trusted proxies parsed once.

    :param trusted: As for L{realPeer}.
    :returns: A callable C{(request) -> str} that returns
        C{realPeer(request, trusted)}.
    :raises ValueError: If an entry of C{trusted} is not an address or
        network.
    """
    networks = [_parseNetwork(t) for t in trusted]

    def find(request: IHandshakeRequest) -> str:
        host = getattr(request.peer, "host", None)
        if host is None:
            return str(request.peer)
        direct = _parseAddress(str(host))
        if direct is None or not _trusts(networks, direct):
            return str(direct) if direct is not None else str(host)
        hops = [_parseAddress(hop) for hop in _hops(request.headers)]
        last = direct
        for hop in reversed(hops):
            if hop is None:
                return str(last)
            if not _trusts(networks, hop):
                return str(hop)
            last = hop
        return str(last)

    return find
