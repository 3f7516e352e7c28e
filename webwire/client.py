# -*- test-case-name: tests.test_client -*-
"""
L{WebWireClient}: talk to any WebWire 2.0 server from Twisted.

It behaves like the original Go client: connections are made when first
needed (autoconnect) and made again in the background when lost, requests
are matched to replies by identifier, the session the server gives the
client is kept and restored automatically on every new connection, and a
heartbeat goes out after 3/4 of the server's read timeout of silence.

Beyond the Go client: reconnection backs off exponentially with jitter and
a cap (L{ClientOptions.retryPolicy}), and requests waiting for a reply when
the connection is lost fail at once with L{Disconnected} instead of running
into their timeout (PROTOCOL.md, Q18): the server cannot answer them on
another connection, so waiting would only delay the error.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import urlsplit

from twisted.application.internet import backoffPolicy
from twisted.internet import ssl
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from webwire import wire
from webwire._clientprotocol import ClientProtocol, ClientProtocolFactory
from webwire._constants import CLOSE_NORMAL
from webwire._reactor import IWebWireReactor, defaultReactor
from webwire.errors import (
    ConnectionFailed,
    Disconnected,
    HandshakeError,
    InternalError,
    MaxSessionConnections,
    RequestError,
    RequestTimeout,
    ServerShutdown,
    SessionActive,
    SessionNotFound,
    SessionsDisabled,
)
from webwire.interfaces import IWebWireClientHooks
from webwire.sessions.session import Session

__all__ = ["ClientHooks", "ClientOptions", "ClientStatus", "WebWireClient"]

_log = Logger()


class ClientStatus(enum.StrEnum):
    """
    Where a L{WebWireClient} stands (L{WebWireClient.status}); each equals
    its lower-case name as a string.
    """

    DISABLED = "disabled"
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


DISABLED: Final = ClientStatus.DISABLED
DISCONNECTED: Final = ClientStatus.DISCONNECTED
CONNECTING: Final = ClientStatus.CONNECTING
CONNECTED: Final = ClientStatus.CONNECTED


@dataclass(frozen=True)
class ClientOptions:
    """
    How a L{WebWireClient} behaves.

    :ivar dialTimeout: Seconds one connection attempt may take: TCP, TLS,
        the WebSocket handshake and the server's AcceptConf.
    :ivar requestTimeout: Seconds a call waits when not given a timeout of
        its own; covers connecting (if needed), sending and the reply.
    :ivar autoconnect: Connect when first needed and reconnect in the
        background when the connection is lost. Without, nothing reconnects
        by itself: a call made while disconnected dials once and fails with
        L{ConnectionFailed} if that fails.
    :ivar retryPolicy: Seconds to wait before the reconnection attempt
        number N (0 is the first retry); by default exponential (0.5 s,
        doubling, at most 30 s) plus up to 1 s of random jitter.
    :ivar messageBufferSize: Must equal the server's; 8192 for stock servers.
    :ivar subProtocol: The WebWire sub-protocol the server must advertise
        (or C{None} for none).
    :ivar caCertificates: For C{wss://}: a PEM file of the certificate
        authorities to trust instead of the system's.
    """

    dialTimeout: float = 5.0
    requestTimeout: float = 60.0
    autoconnect: bool = True
    retryPolicy: Callable[[int], float] = field(
        default_factory=lambda: backoffPolicy(
            initialDelay=0.5, maxDelay=30.0, factor=2.0
        )
    )
    messageBufferSize: int = wire.DEFAULT_MESSAGE_BUFFER_SIZE
    subProtocol: str | None = None
    caCertificates: str | None = None


@implementer(IWebWireClientHooks)
class ClientHooks:
    """
    Client hooks that do nothing: subclass and override what you need.
    """

    def onConnected(self, client: WebWireClient) -> None:
        """Connected (and the session, if any, restored or given up)."""

    def onDisconnected(self, client: WebWireClient, reason: Failure) -> None:
        """The connection was lost or closed."""

    def onSignal(self, client: WebWireClient, signal: wire.Signal) -> None:
        """The server sent a signal."""

    def onSessionCreated(self, client: WebWireClient, session: Session) -> None:
        """The client has a session now (created or restored)."""

    def onSessionClosed(self, client: WebWireClient) -> None:
        """The server closed the client's session."""

    def onSessionLost(
        self, client: WebWireClient, session: Session, reason: Failure
    ) -> None:
        """
        The server answered that it does not know the session any more (on
        a reconnection): the client forgot it. A failed restore for any
        other reason keeps the session and does not call this.
        """


_REPLY_ERRORS: Final[dict[int, tuple[type[Exception], str]]] = {
    wire.MessageType.REPLY_SHUTDOWN: (ServerShutdown, "the server is shutting down"),
    wire.MessageType.REPLY_INTERNAL_ERROR: (
        InternalError,
        "the server failed to handle the request",
    ),
    wire.MessageType.REPLY_SESSION_NOT_FOUND: (
        SessionNotFound,
        "the server does not know the session",
    ),
    wire.MessageType.REPLY_MAX_SESSION_CONNECTIONS_REACHED: (
        MaxSessionConnections,
        "the session has as many connections as the server allows",
    ),
    wire.MessageType.REPLY_SESSIONS_DISABLED: (
        SessionsDisabled,
        "the server has no sessions",
    ),
}
_URL: Final = re.compile(r"wss?://", re.IGNORECASE)


def _checkURL(url: str) -> None:
    """
    :raises ValueError: If C{url} is not a ws or wss URL with a host name and
        a port from 1 to 65535 (if given), saying which.
    """
    if not _URL.match(url):
        raise ValueError(f"not a ws:// or wss:// URL: {url}")
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError(f"invalid URL {url}: no host name")
    if any(c.isspace() for c in parts.netloc):
        raise ValueError(f"invalid URL {url}: a space in the host name")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"invalid URL {url}: the port must be from 1 to 65535")


class WebWireClient:
    """
    A client of one WebWire server.

    Every call returns a Deferred (await it in coroutines). Nothing happens
    until the first call: then the client connects (with autoconnect) and
    stays connected until L{close}.

    :ivar url: The server's URL.
    :ivar options: The L{ClientOptions} in force.
    :ivar hooks: The L{IWebWireClientHooks} told about events.
    """

    _log = Logger()

    def __init__(
        self,
        url: str,
        hooks: IWebWireClientHooks | None = None,
        options: ClientOptions | None = None,
        *,
        reactor: IWebWireReactor | None = None,
        clock: IReactorTime | None = None,
        endpoint: IStreamClientEndpoint | None = None,
    ) -> None:
        """
        :param url: C{ws://host[:port][/path]} or C{wss://...}.
        :param hooks: What to tell about signals, sessions and the
            connection; a do-nothing L{ClientHooks} if omitted.
        :param options: Client settings; L{ClientOptions} defaults if
            omitted.
        :param reactor: The reactor to connect with; the global one if
            omitted.
        :param clock: What timeouts, heartbeats and reconnection delays are
            scheduled with; C{reactor} if omitted.
        :param endpoint: Connect through this endpoint instead of the one the
            URL names (the URL still gives the Host header and path).
        :raises ValueError: If C{url} is not a ws or wss URL with a host
            name (and a valid port, if given).
        """
        _checkURL(url)
        reactor = defaultReactor(reactor)
        self.url = url
        self.hooks: IWebWireClientHooks = hooks if hooks is not None else ClientHooks()
        self.options = options if options is not None else ClientOptions()
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._endpoint = endpoint if endpoint is not None else self._makeEndpoint()
        self._status: ClientStatus = DISCONNECTED
        self._protocol: ClientProtocol | None = None
        self._nextIdentifier = 1
        self._pending: dict[bytes, Deferred[wire.Message]] = {}
        self._waiters: list[Deferred[ClientProtocol]] = []
        self._connecting: Deferred[None] | None = None
        self._closing: list[Deferred[None]] = []
        self.session: Session | None = None

    # Public API -----------------------------------------------------------

    @property
    def status(self) -> ClientStatus:
        """C{"disconnected"}, C{"connecting"}, C{"connected"} or, after
        L{close}, C{"disabled"} (a L{ClientStatus}, equal to those strings)."""
        return self._status

    @property
    def isConnected(self) -> bool:
        """Whether the client is connected now."""
        return self._status is CONNECTED

    @property
    def pendingRequests(self) -> int:
        """
        How many requests (and session calls) are sent and await their
        reply now; a cancelled or timed-out one no longer counts.
        """
        return len(self._pending)

    def connect(self, timeout: float | None = None) -> Deferred[None]:
        """
        Connect now, if not connected.

        :param timeout: Seconds to keep trying; L{ClientOptions.requestTimeout}
            if omitted.
        :returns: A Deferred that fires once connected. With autoconnect
            it keeps trying (backing off) until C{timeout}, then fails with
            L{RequestTimeout}; without, it tries once and fails with
            L{ConnectionFailed}. A L{HandshakeError} ends the attempts at
            once.
        """
        return self._withTimeout(self._ensureConnected(), timeout).addCallback(
            lambda _: None
        )

    def request(
        self,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
        timeout: float | None = None,
    ) -> Deferred[wire.Reply]:
        """
        Send a request and wait for its reply.

        :param name: 0-255 printable ASCII characters.
        :param payload: C{bytes} (binary), C{str} (UTF-8 unless C{encoding}
            says otherwise), a L{wire.Payload}, or C{None}.
        :param encoding: Override the encoding implied by C{payload}.
        :param timeout: Seconds for everything (connecting, sending, the
            reply); L{ClientOptions.requestTimeout} if omitted.
        :returns: A Deferred firing with the L{wire.Reply}, or failing with
            L{RequestError} (the server's error reply: C{code},
            C{message}), L{InternalError}, L{ServerShutdown},
            L{RequestTimeout}, L{Disconnected}, a L{HandshakeError},
            L{wire.InvalidMessage} (nothing sent: no name and no payload,
            bad name, odd UTF-16), or C{CancelledError} if cancelled (a late
            reply is then dropped).
        """
        body = wire.Payload.of(payload, encoding)
        identifier = self._newIdentifier()
        try:
            data = wire.encodeRequest(
                identifier,
                name,
                body.data,
                body.encoding,
                self.options.messageBufferSize,
            )
        except wire.InvalidMessage as e:
            return _failed(e)
        return self._withTimeout(self._call(identifier, data), timeout)

    def signal(
        self,
        name: str = "",
        payload: wire.PayloadLike = None,
        encoding: wire.Encoding | None = None,
        timeout: float | None = None,
    ) -> Deferred[None]:
        """
        Send a signal (connecting first if needed).

        :returns: A Deferred firing with C{None} once it was sent (not
            processed: signals are not acknowledged), or failing as
            L{request} does when it could not be sent.
        """
        body = wire.Payload.of(payload, encoding)
        try:
            data = wire.encodeSignal(
                name, body.data, body.encoding, self.options.messageBufferSize
            )
        except wire.InvalidMessage as e:
            return _failed(e)

        async def send() -> None:
            protocol = await self._ensureConnected()
            protocol.send(data)

        return self._withTimeout(Deferred.fromCoroutine(send()), timeout)

    def restoreSession(
        self, key: str, timeout: float | None = None
    ) -> Deferred[Session]:
        """
        Restore the session C{key} (e.g. kept from an earlier run).

        :returns: A Deferred firing with the L{Session}, or failing with
            L{SessionActive} if the client has one, L{SessionNotFound},
            L{MaxSessionConnections}, L{SessionsDisabled}, or as
            L{request} fails.
        """
        if self.session is not None:
            return _failed(SessionActive("the client has a session already"))
        try:
            data = wire.encodeRestoreSession(self._newIdentifier(), key)
        except wire.InvalidMessage as e:
            return _failed(e)

        async def restore() -> Session:
            reply = await self._call(data[1:9], data)
            session = _sessionFrom(reply)
            self._setSession(session)
            return session

        return self._withTimeout(Deferred.fromCoroutine(restore()), timeout)

    def closeSession(self, timeout: float | None = None) -> Deferred[None]:
        """
        Close the client's session. Connected, the server is asked to and
        the session is kept if that fails; not connected, it is only
        forgotten here. Without a session, nothing happens.

        :returns: A Deferred firing with C{None}, or failing as L{request}.
        """
        if self.session is None:
            return succeed(None)
        if self._status is not CONNECTED:
            self.session = None
            return succeed(None)
        identifier = self._newIdentifier()

        async def close() -> None:
            await self._call(identifier, wire.encodeCloseSession(identifier))
            self.session = None

        return self._withTimeout(Deferred.fromCoroutine(close()), timeout)

    def close(self) -> Deferred[None]:
        """
        Disconnect and stop reconnecting; calls waiting for a connection or a
        reply fail with L{Disconnected}. The next call connects again.

        The client sends a Close frame; a server that does not close the
        connection within L{ClientOptions.dialTimeout} is cut off.

        :returns: A Deferred that fires once the connection is closed.
        """
        self._status = DISABLED
        if self._connecting is not None:
            self._connecting.cancel()
        self._failWaiters(Disconnected("the client was closed"))
        protocol = self._protocol
        if protocol is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._closing.append(done)
        protocol.sendClose(CLOSE_NORMAL)
        cutOff = self._clock.callLater(
            self.options.dialTimeout, protocol.dropConnection, True
        )

        def closed(result: None) -> None:
            if cutOff.active():
                cutOff.cancel()

        return done.addCallback(closed)

    # Connecting -----------------------------------------------------------

    def _makeEndpoint(self) -> IStreamClientEndpoint:
        parts = urlsplit(self.url)
        secure = parts.scheme.lower() == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        endpoint: IStreamClientEndpoint = HostnameEndpoint(self._reactor, host, port)
        if secure:
            endpoint = wrapClientTLS(self._tlsOptions(host), endpoint)
        return endpoint

    def _tlsOptions(self, host: str) -> Any:
        trustRoot = None
        if self.options.caCertificates is not None:
            with open(self.options.caCertificates, "rb") as f:
                pem = f.read()
            blocks = re.findall(
                rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S
            )
            if not blocks:
                raise ValueError(f"no certificate in {self.options.caCertificates}")
            trustRoot = ssl.trustRootFromCertificates(
                [ssl.Certificate.loadPEM(block) for block in blocks]
            )
        # Verifies the certificate chain and the host name (service_identity);
        # TLS 1.2 at least.
        return ssl.optionsForClientTLS(
            host,
            trustRoot=trustRoot,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
        )

    def _ensureConnected(self) -> Deferred[ClientProtocol]:
        """
        The connected protocol, connecting first if allowed and needed.
        """
        if self._status is CONNECTED and self._protocol is not None:
            return succeed(self._protocol)
        if self._status is DISABLED:
            self._status = DISCONNECTED  # a new call after close() reconnects
        waiter: Deferred[ClientProtocol] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        if self._connecting is None:
            self._connecting = Deferred.fromCoroutine(self._connectLoop())
        return waiter

    async def _connectLoop(self) -> None:
        attempt = 0
        try:
            while True:
                self._status = CONNECTING
                try:
                    protocol = await self._dial()
                except HandshakeError as e:
                    self._log.error("cannot talk to {url}: {e}", url=self.url, e=e)
                    self._status = DISCONNECTED
                    self._failWaiters(e)
                    return
                except CancelledError:
                    raise
                except Exception as e:
                    self._log.info("connecting to {url} failed: {e}", url=self.url, e=e)
                    if not self.options.autoconnect:
                        self._status = DISCONNECTED
                        self._failWaiters(ConnectionFailed(f"cannot connect: {e}"))
                        return
                    delay = self.options.retryPolicy(attempt)
                    attempt += 1
                    await deferLater(self._clock, delay, lambda: None)
                    continue
                if await self._connected(protocol):
                    return
                # Lost while restoring the session: the session is kept, and
                # the next connection tries again.
                if self._status is DISABLED:
                    return
                if not self.options.autoconnect:
                    self._status = DISCONNECTED
                    self._failWaiters(
                        Disconnected("the connection was lost while restoring")
                    )
                    return
                self._status = CONNECTING
                delay = self.options.retryPolicy(attempt)
                attempt += 1
                await deferLater(self._clock, delay, lambda: None)
        except CancelledError:
            pass  # close() stopped us
        finally:
            self._connecting = None

    async def _dial(self) -> ClientProtocol:
        async def steps() -> ClientProtocol:
            factory = ClientProtocolFactory(self.url, self, self._clock)
            protocol = cast(ClientProtocol, await self._endpoint.connect(factory))
            await protocol.accepted
            return protocol

        def timedOut(result: Any, seconds: float) -> Any:
            # Whatever the step cut short says (a cancelled name lookup
            # reports a failed lookup), the reason is the timeout.
            raise Disconnected(f"no connection within {seconds} seconds")

        attempt = Deferred.fromCoroutine(steps())
        attempt.addTimeout(
            self.options.dialTimeout, self._clock, onTimeoutCancel=timedOut
        )
        return await attempt

    async def _connected(self, protocol: ClientProtocol) -> bool:
        """
        Restore the session, if any, on the new connection, then hand the
        connection to the calls that wait for one.

        The session is forgotten (C{onSessionLost}) only if the server
        answers that it does not know it. Any other failure keeps it, to be
        restored on the next connection: a lost connection (the loop tries
        again), a restore that gets no reply in time (the connection is
        dropped, and the loop tries again), or another answer (shutdown,
        internal error, too many connections, sessions disabled: this
        connection is used without it).

        :returns: Whether the connection is still there.
        """
        self._protocol = protocol
        self._status = CONNECTED
        self._log.info("connected to {url}", url=self.url)
        session = self.session
        if session is not None:
            identifier = self._newIdentifier()
            data = wire.encodeRestoreSession(identifier, session.key)
            restore = self._call(identifier, data)
            restore.addTimeout(self.options.requestTimeout, self._clock)
            try:
                self._setSession(_sessionFrom(await restore))
            except CancelledError:
                raise  # close() while restoring
            except SessionNotFound:
                failure = Failure()
                self._log.warn("the server does not know the session any more")
                if self.session is session:
                    self.session = None
                _hook(self.hooks.onSessionLost, self, session, failure)
            except Exception:
                failure = Failure()
                self._log.warn(
                    "the session could not be restored now ({reason}); it is "
                    "kept, and restored on the next connection",
                    reason=failure.getErrorMessage(),
                )
                if failure.check(DeferredTimeout) and self._protocol is protocol:
                    protocol.dropConnection(abort=True)
        if self._protocol is not protocol:
            return False  # lost again meanwhile
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(protocol)
        _hook(self.hooks.onConnected, self)
        return True

    def _failWaiters(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(error)

    # Called by the protocol -----------------------------------------------

    def _received(self, message: wire.Message) -> None:
        kind = type(message)
        if kind is wire.Signal:
            assert isinstance(message, wire.Signal)
            _hook(self.hooks.onSignal, self, message)
        elif kind is wire.SessionCreated:
            assert isinstance(message, wire.SessionCreated)
            try:
                self._setSession(Session.fromJSON(message.session))
            except ValueError as e:
                self._log.warn("ignoring an invalid session from the server: {e}", e=e)
        elif kind is wire.SessionClosed:
            self.session = None
            _hook(self.hooks.onSessionClosed, self)
        elif isinstance(message, (wire.Reply, wire.ErrorReply, wire.SpecialReply)):
            pending = self._pending.pop(message.identifier, None)
            if pending is not None:
                pending.callback(message)
        else:
            self._log.warn(
                "dropping a {kind} from the server: only clients send it",
                kind=kind.__name__,
            )

    def _connectionLost(self, protocol: ClientProtocol, reason: Failure) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(
                Disconnected(f"the connection was lost: {reason.getErrorMessage()}")
            )
        closers, self._closing = self._closing, []
        for closer in closers:
            closer.callback(None)
        wanted = self._status is not DISABLED
        if wanted:
            self._status = DISCONNECTED
        self._log.info("disconnected from {url}", url=self.url)
        _hook(self.hooks.onDisconnected, self, reason)
        if wanted and self.options.autoconnect and self._connecting is None:
            self._connecting = Deferred.fromCoroutine(self._connectLoop())

    # Requests -------------------------------------------------------------

    def _newIdentifier(self) -> bytes:
        identifier = self._nextIdentifier.to_bytes(8, "little")
        self._nextIdentifier = (self._nextIdentifier + 1) % (1 << 64) or 1
        return identifier

    def _call(self, identifier: bytes, data: bytes) -> Deferred[Any]:
        """Send a message that needs a reply; fire with the reply."""

        async def call() -> Any:
            protocol = await self._ensureConnected()
            reply: Deferred[wire.Message] = Deferred(lambda _: self._forget(identifier))
            self._pending[identifier] = reply
            try:
                protocol.send(data)
            except Disconnected:
                self._pending.pop(identifier, None)
                raise
            return _result(await reply)

        return Deferred.fromCoroutine(call())

    def _forget(self, identifier: bytes) -> None:
        """A call was cancelled: a late reply is to be dropped."""
        self._pending.pop(identifier, None)

    def _withTimeout(self, d: Deferred[Any], timeout: float | None) -> Deferred[Any]:
        """Fail C{d} with L{RequestTimeout} (and cancel it) after C{timeout}."""

        def timedOut(result: Any, seconds: float) -> Any:
            if isinstance(result, Failure):
                result.trap(CancelledError)
                raise RequestTimeout(f"nothing within {seconds} seconds")
            return result

        seconds = self.options.requestTimeout if timeout is None else timeout
        return d.addTimeout(seconds, self._clock, onTimeoutCancel=timedOut)

    def _setSession(self, session: Session) -> None:
        self.session = session
        _hook(self.hooks.onSessionCreated, self, session)


def _result(message: wire.Message) -> Any:
    """A reply, or the exception it stands for."""
    if isinstance(message, wire.Reply):
        return message
    if isinstance(message, wire.ErrorReply):
        raise RequestError(message.code, message.message)
    assert isinstance(message, wire.SpecialReply)
    error, text = _REPLY_ERRORS[message.type]
    raise error(text)


def _sessionFrom(reply: wire.Reply) -> Session:
    # The Go client reads the reply's bytes whatever its type; so do we.
    return Session.fromJSON(reply.payload)


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


def _hook(hook: Callable[..., object], *args: object) -> None:
    """Call an application hook; its failure is logged, never raised."""
    try:
        hook(*args)
    except Exception:
        _log.failure("client hook {hook} failed", hook=getattr(hook, "__name__", hook))
