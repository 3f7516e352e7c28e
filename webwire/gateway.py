# -*- test-case-name: tests.test_gateway -*-
"""
A WebWire application that forwards every request to an HTTP backend.

L{HTTPGateway} turns each WebWire request named C{N} into an HTTP
C{POST <backend>/N} and the HTTP response into the reply, so that the
application logic can live in any HTTP server (Django, Flask, Go, ...).

The contract with the backend
=============================

Request (gateway to backend):

  - C{POST <backend>/<name>}: the name is one path segment, percent-encoded
    (every character but C{A-Z a-z 0-9 - . _ ~}, so C{a/b} becomes
    C{a%2Fb}). A request without a name, or named C{.} or C{..}, is
    answered with the error C{BAD_REQUEST} and not forwarded.
  - Body: the request payload, as it is.
  - C{Content-Type}: C{application/octet-stream} (binary),
    C{text/plain; charset=utf-8} or C{text/plain; charset=utf-16le}.
  - C{WebWire-Session}: the session key, and C{WebWire-Session-Info}: the
    session info as compact JSON (ASCII only); both absent without session.
  - C{WebWire-Peer}: the client's address, C{host:port}.

Response (backend to gateway):

  - 2xx: the body is the reply. C{text/*} with C{charset=utf-8} makes a
    UTF-8 reply; with C{charset=utf-16le} (or C{utf-16}, C{utf-16be}:
    converted) a UTF-16 reply; anything else a binary one.
  - 2xx with C{WebWire-Close-Session: 1}: the connection's session is
    closed before the reply is sent. With C{WebWire-Create-Session: <JSON
    object>} (C{{}} for no info) a session is created with that info, after
    a close if both are given. Ignored on other statuses.
  - 4xx with a JSON body C{{"code": "...", "message": "..."}}: an error reply
    with that code and message (the message may be left out).
  - A backend that cannot be reached or does not answer within the
    timeout: the error C{BACKEND_UNAVAILABLE}; a 5xx: the error
    C{BACKEND_ERROR}. One warning (L{webwire.outage.Availability}) says
    why when the backend starts failing, however many requests fail, and
    one line when it answers again.
  - Anything else, including a 4xx without such a body or a body larger
    than the largest reply: an internal-error reply, and the reason is
    logged. Nothing of the backend's answer reaches the client.

Signals are forwarded only with C{forwardSignals=True}: C{POST
<backend>/signal/<name>}, with the same headers; fire and forget (failures
are logged). Signals without a name are dropped.

Redirects are not followed and cookies are neither stored nor sent: the
backend's connection pool is shared by every client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Final
from urllib.parse import quote, urlsplit

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.application.service import IService, Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IAgent, IResponse
from zope.interface import implementer

from webwire import wire
from webwire._reactor import IWebWireReactor, defaultReactor
from webwire.application import Application
from webwire.connection import peerText
from webwire.errors import RequestError
from webwire.interfaces import IConnection
from webwire.logonce import eventsOf
from webwire.outage import Availability

__all__ = [
    "BACKEND_ENVIRONMENT_VARIABLE",
    "BackendError",
    "FAILED",
    "HTTPGateway",
    "UNAVAILABLE",
    "makeGateway",
    "peerText",
    "segmentURL",
]

BACKEND_ENVIRONMENT_VARIABLE: Final = "WEBWIRE_BACKEND"
"""The environment variable L{makeGateway} reads the backend URL from."""

SESSION_HEADER: Final = "WebWire-Session"
SESSION_INFO_HEADER: Final = "WebWire-Session-Info"
PEER_HEADER: Final = "WebWire-Peer"
CREATE_SESSION_HEADER: Final = b"WebWire-Create-Session"
CLOSE_SESSION_HEADER: Final = b"WebWire-Close-Session"

_CONTENT_TYPES: Final = {
    wire.Encoding.BINARY: "application/octet-stream",
    wire.Encoding.UTF8: "text/plain; charset=utf-8",
    wire.Encoding.UTF16: "text/plain; charset=utf-16le",
}
_REPLY_HEADER_SIZE: Final = 9
"""Bytes a binary or UTF-8 reply adds to its payload (UTF-16: one more)."""


class BackendError(Exception):
    """
    The backend failed, could not be reached, or answered outside the
    contract. Raised from the request handler, it becomes an internal-error
    reply; its text is logged, never sent to the client.
    """


class _BackendUnavailable(BackendError):
    """The backend could not be reached, or did not answer in time."""


class _BackendFailed(BackendError):
    """The backend answered with a 5xx."""


UNAVAILABLE: Final = (
    "BACKEND_UNAVAILABLE",
    "the application's backend cannot be reached",
)
"""The error reply (code, message) while the backend cannot be reached."""

FAILED: Final = ("BACKEND_ERROR", "the application's backend failed")
"""The error reply (code, message) to a request the backend answered 5xx."""


class _ResponseTooLarge(BackendError):
    """The backend's response body exceeds the limit."""


class _BoundedBody(Protocol):
    """
    Collects a response body of at most C{limit} bytes; past that it stops
    reading, drops the connection and fails.
    """

    def __init__(self, limit: int, announced: int | None, done: Deferred[bytes]):
        self._limit = limit
        self._announced = announced
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def connectionMade(self) -> None:
        if self._announced is not None and self._announced > self._limit:
            self._refuse(self._announced)

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._parts.clear()
            self._refuse(self._size)
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        # PotentialDataLoss: the body had neither a length nor chunks, and
        # ended with the connection (HTTP/1.0, Python's http.server): that
        # is how such a body ends, so it is complete.
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)

    def abort(self) -> None:
        """Drop the connection to the backend (the body is not wanted)."""
        transport: Any = self.transport
        if transport is None:
            return
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.stopProducing()

    def _refuse(self, size: int) -> None:
        self.abort()
        if not self._done.called:
            self._done.errback(
                _ResponseTooLarge(
                    f"response body of at least {size} bytes exceeds the limit "
                    f"of {self._limit} bytes"
                )
            )


def _readBody(response: IResponse, limit: int) -> Deferred[bytes]:
    """
    Read C{response}'s body, at most C{limit} bytes.

    :returns: A Deferred firing with the body, or failing with
        L{BackendError} if it is larger (the connection is then dropped, so
        no more is read), or with the reason the connection was lost.
        Cancelling it drops the connection.
    """
    protocol: _BoundedBody

    def cancel(d: Deferred[bytes]) -> None:
        protocol.abort()

    done: Deferred[bytes] = Deferred(cancel)
    length = response.length if isinstance(response.length, int) else None
    protocol = _BoundedBody(limit, length, done)
    response.deliverBody(protocol)
    return done


def segmentURL(base: str, name: str) -> str:
    """
    The URL of C{name} under C{base}: C{base} (ending in C{/}) followed by
    C{name} percent-encoded as one path segment.

    :raises RequestError: C{BAD_REQUEST} for an empty name, C{.} or C{..}.
    """
    if name in ("", ".", ".."):
        raise RequestError("BAD_REQUEST", f"invalid request name {name!r}")
    return base + quote(name, safe="")


def _contentEncoding(contentType: str) -> tuple[wire.Encoding, str | None]:
    """
    The reply encoding for a response's C{Content-Type}, and the codec to
    convert the body from (C{None}: take it as it is).
    """
    mediaType, _, parameters = contentType.partition(";")
    if not mediaType.strip().lower().startswith("text/"):
        return wire.Encoding.BINARY, None
    charset = ""
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset in ("utf-8", "utf8"):
        return wire.Encoding.UTF8, None
    if charset in ("utf-16le", "utf-16-le"):
        return wire.Encoding.UTF16, None
    if charset in ("utf-16", "utf-16be", "utf-16-be"):
        return wire.Encoding.UTF16, charset
    return wire.Encoding.BINARY, None


def _toUtf16le(body: bytes, charset: str) -> bytes:
    """
    Convert a UTF-16 body to UTF-16LE without byte order mark. Plain
    C{utf-16} without a byte order mark is taken as little-endian, as
    WebWire peers write it.
    """
    if charset == "utf-16":
        if body.startswith(b"\xfe\xff"):
            return body[2:].decode("utf-16-be").encode("utf-16-le")
        return body[2:] if body.startswith(b"\xff\xfe") else body
    return body.decode("utf-16-be").encode("utf-16-le")


def _header(response: IResponse, name: bytes) -> str | None:
    """The first value of header C{name} of C{response}, or C{None}."""
    values: list[bytes] | None = response.headers.getRawHeaders(name)
    if not values:
        return None
    return values[0].decode("latin-1")


def _isCancellation(error: BaseException) -> bool:
    """Whether C{error} is, or only wraps, a cancellation."""
    if isinstance(error, CancelledError):
        return True
    reasons: list[object] = getattr(error, "reasons", None) or []
    return bool(reasons) and all(
        isinstance(r, Failure) and r.check(CancelledError) for r in reasons
    )


@implementer(IService)
class HTTPGateway(Application, Service):
    """
    Forwards requests (and, optionally, signals) to an HTTP backend; see the
    module docstring for the contract.

    It is a service, for the pooled connections it holds: stopping it
    (L{stopService}, or L{close}) closes them. L{webwire.service.WebWireService}
    stops it after the server's drain when it is the server's application.
    """

    _log = Logger()

    def __init__(
        self,
        backend: str,
        *,
        timeout: float = 10.0,
        forwardSignals: bool = False,
        messageBufferSize: int = wire.DEFAULT_MESSAGE_BUFFER_SIZE,
        agent: IAgent | None = None,
        reactor: IWebWireReactor | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        :param backend: The backend's base URL, C{http://} or C{https://},
            without query or fragment, e.g. C{http://127.0.0.1:8081/api/}
            (a missing final C{/} is added: C{/api} means C{/api/}).
        :param timeout: Seconds for the whole exchange with the backend
            (connecting, sending, and reading the whole response).
        :param forwardSignals: Whether to POST client signals to
            C{<backend>/signal/<name>}.
        :param messageBufferSize: The server's message buffer size
            (L{webwire.options.ServerOptions.messageBufferSize}): response
            bodies that would not fit in a reply are refused.
        :param agent: The agent to send with; by default an C{Agent} with a
            persistent C{HTTPConnectionPool}, owned (and closed) by the
            gateway. An injected agent is not closed by L{close}.
        :param reactor: The reactor to connect with; the global one if
            C{None}.
        :param clock: What times the backend out; C{reactor} if C{None}.
        :raises ValueError: If C{backend} or a number is not acceptable.
        """
        parts = urlsplit(backend)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"backend must be an http(s) URL, not {backend!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"backend URL {backend!r} must have no query or fragment")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if messageBufferSize < wire.MIN_MESSAGE_BUFFER_SIZE:
            raise ValueError(f"messageBufferSize {messageBufferSize} is too small")
        reactor = defaultReactor(reactor)
        self.backend = backend if backend.endswith("/") else backend + "/"
        self.timeout = timeout
        self.forwardSignals = forwardSignals
        self.maxReplySize = messageBufferSize - _REPLY_HEADER_SIZE
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._pool: HTTPConnectionPool | None = None
        if agent is None:
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            agent = Agent(reactor, pool=self._pool)
        # Cookies of one user must never reach another's requests.
        jar = IndexableCookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self._http = HTTPClient(agent, cookiejar=jar)
        self._inflight: set[Deferred[Any]] = set()
        self.availability = Availability(
            f"the HTTP backend {self.backend}",
            "requests are answered BACKEND_UNAVAILABLE or BACKEND_ERROR until it "
            "answers again",
            self._clock,
            problem="failing",
        )

    def __repr__(self) -> str:
        return f"<HTTPGateway {self.backend}>"

    # IWebWireServer --------------------------------------------------------

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> Deferred[wire.Payload]:
        """
        Forward C{request} to C{<backend>/<name>}.

        :returns: A Deferred firing with the reply payload, or failing with
            L{RequestError} (a 4xx JSON error; L{UNAVAILABLE} or L{FAILED}
            for a backend that cannot be reached or answers 5xx) or
            L{BackendError} (anything else; an internal-error reply).
        :raises RequestError: C{BAD_REQUEST} for a name that cannot be
            forwarded.
        """
        url = segmentURL(self.backend, request.name)
        d = Deferred.fromCoroutine(self._forward(connection, request, url))
        return self._track(d).addCallbacks(self._answered, self._notAnswered)

    def _answered(self, payload: wire.Payload) -> wire.Payload:
        self.availability.succeeded()
        return payload

    def _notAnswered(self, failure: Failure) -> Failure:
        """
        Note whether the backend works; a backend that cannot be reached or
        failed is an error reply, logged once per outage, not per request.
        """
        if failure.check(_BackendUnavailable, _BackendFailed):
            self.availability.failed(failure.getErrorMessage())
            code, message = (
                UNAVAILABLE if failure.check(_BackendUnavailable) else FAILED
            )
            raise RequestError(code, message)
        if not failure.check(CancelledError):
            self.availability.succeeded()
        return failure

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> None:
        """
        Forward C{signal} to C{<backend>/signal/<name>} if signals are
        forwarded; do not wait for the outcome (failures are logged).
        """
        if not self.forwardSignals:
            return
        if signal.name in ("", ".", ".."):
            eventsOf(connection).emit(
                self._log,
                "signal not forwardable",
                LogLevel.warn,
                "dropped a signal named {name!r} from {peer}: cannot be forwarded",
                name=signal.name,
                peer=peerText(connection.peer),
            )
            return
        url = segmentURL(self.backend + "signal/", signal.name)
        d = self._track(Deferred.fromCoroutine(self._signal(connection, signal, url)))
        d.addErrback(self._signalFailed, signal.name, connection)

    # Lifecycle -------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """
        Stop the service: L{close}. L{webwire.service.WebWireService} stops
        the application of its server (a service) after the drain.
        """
        super().stopService()
        return self.close()

    def close(self) -> Deferred[None]:
        """
        Cancel the exchanges with the backend still running and close the
        pooled connections.

        :returns: A Deferred firing once the connections are closed.
        """
        for d in list(self._inflight):
            d.cancel()
        if self._pool is None:
            return succeed(None)
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed

    # Internals -------------------------------------------------------------

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        """Time C{d} out, and keep it for L{close} until it is done."""

        def timedOut(result: object, timeout: float) -> None:
            raise _BackendUnavailable(
                f"no answer from the backend within {timeout} seconds"
            )

        d.addTimeout(self.timeout, self._clock, onTimeoutCancel=timedOut)
        self._inflight.add(d)

        def forget(result: object) -> object:
            self._inflight.discard(d)
            return result

        return d.addBoth(forget)

    def _headers(
        self, connection: IConnection, encoding: wire.Encoding
    ) -> dict[str, str]:
        headers = {
            "Content-Type": _CONTENT_TYPES[encoding],
            PEER_HEADER: peerText(connection.peer),
        }
        session = connection.session
        if session is not None:
            headers[SESSION_HEADER] = session.key
            headers[SESSION_INFO_HEADER] = json.dumps(
                dict(session.info), separators=(",", ":"), ensure_ascii=True
            )
        return headers

    async def _post(
        self, connection: IConnection, url: str, payload: bytes, kind: wire.Encoding
    ) -> IResponse:
        try:
            response: IResponse = await self._http.request(
                "POST",
                url,
                data=payload,
                headers=self._headers(connection, kind),  # type: ignore[arg-type]
                allow_redirects=False,
                unbuffered=True,
            )
        except Exception as e:
            if _isCancellation(e):
                raise CancelledError() from e
            raise _BackendUnavailable(f"POST {url} failed: {e}") from e
        return response

    async def _body(self, response: IResponse, url: str) -> bytes:
        try:
            return await _readBody(response, self.maxReplySize)
        except BackendError as e:
            raise BackendError(f"POST {url}: {e}") from e
        except Exception as e:
            if _isCancellation(e):
                raise
            raise BackendError(f"POST {url}: reading the response failed: {e}") from e

    async def _forward(
        self, connection: IConnection, request: wire.Request, url: str
    ) -> wire.Payload:
        response = await self._post(connection, url, request.payload, request.encoding)
        status = response.code
        if 200 <= status < 300:
            body = await self._body(response, url)
            payload = self._replyPayload(response, body, url)
            await self._sessionControl(connection, response, url)
            return payload
        if 400 <= status < 500:
            body = await self._body(response, url)
            raise self._requestError(body, status, url)
        await self._discard(response)
        if status >= 500:
            raise _BackendFailed(f"POST {url}: the backend answered {status}")
        raise BackendError(f"POST {url}: the backend answered {status}")

    async def _signal(
        self, connection: IConnection, signal: wire.Signal, url: str
    ) -> None:
        response = await self._post(connection, url, signal.payload, signal.encoding)
        await self._discard(response)
        if not 200 <= response.code < 300:
            raise BackendError(f"POST {url}: the backend answered {response.code}")

    async def _discard(self, response: IResponse) -> None:
        """Read and drop a body, so the connection can be reused."""
        try:
            await _readBody(response, self.maxReplySize)
        except Exception as e:
            if _isCancellation(e):
                raise

    def _replyPayload(self, response: IResponse, body: bytes, url: str) -> wire.Payload:
        encoding, codec = _contentEncoding(_header(response, b"Content-Type") or "")
        if encoding is wire.Encoding.UTF16:
            try:
                if codec is not None:
                    body = _toUtf16le(body, codec)
                if len(body) % 2:
                    raise ValueError("odd length")
            except ValueError as e:  # UnicodeDecodeError too
                raise BackendError(f"POST {url}: invalid UTF-16 body ({e})") from e
            if len(body) > self.maxReplySize - 1:
                raise BackendError(f"POST {url}: UTF-16 body too large for a reply")
        return wire.Payload(body, encoding)

    def _requestError(self, body: bytes, status: int, url: str) -> Exception:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, Mapping):
            code = document.get("code")
            message = document.get("message", "")
            if (
                isinstance(code, str)
                and 0 < len(code) < 256
                and wire.isPrintableASCII(code)
                and isinstance(message, str)
            ):
                return RequestError(code, message)
        return BackendError(
            f"POST {url}: the backend answered {status} without a JSON error "
            '{"code", "message"}'
        )

    async def _sessionControl(
        self, connection: IConnection, response: IResponse, url: str
    ) -> None:
        close = _header(response, CLOSE_SESSION_HEADER)
        create = _header(response, CREATE_SESSION_HEADER)
        if close is not None and close.strip() == "1":
            await connection.closeSession()
        if create is not None:
            try:
                info = json.loads(create) if create.strip() else {}
            except ValueError:
                info = None
            if not isinstance(info, dict):
                raise BackendError(
                    f"POST {url}: {CREATE_SESSION_HEADER.decode()} is not a JSON object"
                )
            await connection.createSession(info)

    def _signalFailed(
        self, failure: Failure, name: str, connection: IConnection
    ) -> None:
        if failure.check(CancelledError):
            return
        eventsOf(connection).emit(
            self._log,
            "signal forwarding failed",
            LogLevel.warn,
            "forwarding signal {name!r} from {peer} failed: {error}",
            name=name,
            peer=peerText(connection.peer),
            error=failure.getErrorMessage(),
        )


def makeGateway() -> HTTPGateway:
    """
    Build an L{HTTPGateway} from the environment, for
    C{twistd webwire --app webwire.gateway.makeGateway}:

      - C{WEBWIRE_BACKEND} (required): the backend's base URL;
      - C{WEBWIRE_BACKEND_TIMEOUT}: seconds, default 10;
      - C{WEBWIRE_FORWARD_SIGNALS}: C{1} to forward signals;
      - C{WEBWIRE_MESSAGE_BUFFER_SIZE}: must match C{--message-buffer-size}
        if that is not the default (8192).

    :raises ValueError: If C{WEBWIRE_BACKEND} is unset or a value is invalid.
    """
    backend = os.environ.get(BACKEND_ENVIRONMENT_VARIABLE, "").strip()
    if not backend:
        raise ValueError(
            f"set {BACKEND_ENVIRONMENT_VARIABLE} to the backend URL, "
            "e.g. http://127.0.0.1:8081/api/"
        )
    return HTTPGateway(
        backend,
        timeout=float(os.environ.get("WEBWIRE_BACKEND_TIMEOUT", "10")),
        forwardSignals=os.environ.get("WEBWIRE_FORWARD_SIGNALS", "") == "1",
        messageBufferSize=int(
            os.environ.get(
                "WEBWIRE_MESSAGE_BUFFER_SIZE", str(wire.DEFAULT_MESSAGE_BUFFER_SIZE)
            )
        ),
    )
