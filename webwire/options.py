# -*- test-case-name: tests.test_options -*-
"""
The server's settings, checked once, in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from webwire import wire

__all__ = ["ServerOptions"]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """
    How a WebWire server treats its connections.

    The defaults are those of the original Go server where the protocol
    fixes them (read timeout, message buffer size, no sub-protocol), because
    clients check them when they connect.

    :ivar readTimeout: Seconds of client silence after which the server drops
        the connection; advertised to clients, which send heartbeats after
        0.75 of it. Time that a connection spends waiting for its own
        handlers (at the concurrency limit, or closing) does not count; time
        it cannot be written to because the client does not read does: such
        a client is dropped after the read timeout too.
    :ivar messageBufferSize: The largest message in bytes, in both
        directions (minimum 32). Clients compare it with their own setting.
    :ivar subProtocol: The WebWire sub-protocol name advertised in
        AcceptConf (not the WebSocket sub-protocol header), or C{None}.
    :ivar concurrency: How many handlers (requests and signals) of one
        connection may run at once: 1 runs them strictly one after another
        with replies in request order; C{None} means no limit. At the limit
        the server stops reading from that connection until a handler
        finishes, so nothing is dropped.

        The default is 64: clients match replies by identifier, so running
        requests concurrently is what they expect (a slow request must not
        hold up the others), while a bound keeps one client from piling up
        unlimited work on the server.
    :ivar maxSendBuffer: Bytes the server may queue for a client that does
        not read, on top of the transport's own 64 KiB. While the transport
        is congested the server stops reading requests from that client;
        when signals push the queue past this bound the connection is
        aborted and a warning logged.
    :ivar shutdownTimeout: Seconds a graceful shutdown waits for running
        handlers before cancelling them (each cancelled request is answered
        with an internal-error reply); C{None} waits for ever.
    :ivar openHandshakeTimeout: Seconds a client has, from the TCP accept,
        to complete the WebSocket opening handshake (in a
        L{webwire.web.WebWireSite}: to send each HTTP request in full);
        slower clients are disconnected, however they dribble their bytes.
    :ivar closeTimeout: Seconds a close may take once the server has sent
        its Close frame (or refused a connection): the queued output is
        flushed and the server reads (and discards) until the client closes
        its end; after this long the connection is aborted, whether the
        client reads or not.
    :ivar maxConnections: Connections served at once, counted from the TCP
        accept (connections still in the opening handshake count); more
        are refused at once with HTTP 503. 0 means no limit.
    :ivar sessions: Whether the server manages sessions. Without, session
        requests are answered "sessions disabled" and creating one fails.
    :ivar maxSessionConnections: Connections one session may have at once
        (checked when a client restores it); 0 means no limit.
    :ivar allowedOrigins: Browser origins allowed to connect besides the
        server's own (same-origin requests, and requests without an Origin
        header such as those of non-browser clients, are always allowed).
        Entries are origins like C{"https://app.example.com"}, may use
        C{*} as a wildcard (C{"https://*.example.com"}), and C{"*"} allows
        every origin. Others are refused with HTTP 403: sessions
        authenticate connections, so a foreign page must not open one with
        the user's cookies (cross-site WebSocket hijacking).
    :ivar compression: Accept permessage-deflate when a client offers it.
        Off by default, as in the original server; inflated messages are
        bounded by C{messageBufferSize} like any other.
    :ivar paths: The request paths upgrades are accepted on, e.g.
        C{("/ws",)}; others get HTTP 404. Empty (the default) accepts any
        path, as the original server does.
    """

    readTimeout: float = wire.DEFAULT_READ_TIMEOUT_MS / 1000
    messageBufferSize: int = wire.DEFAULT_MESSAGE_BUFFER_SIZE
    subProtocol: str | None = None
    concurrency: int | None = 64
    maxSendBuffer: int = 1024 * 1024
    shutdownTimeout: float | None = 30.0
    openHandshakeTimeout: float = 5.0
    closeTimeout: float = 5.0
    maxConnections: int = 0
    sessions: bool = True
    maxSessionConnections: int = 0
    allowedOrigins: tuple[str, ...] = ()
    compression: bool = False
    paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "readTimeout",
            "shutdownTimeout",
            "openHandshakeTimeout",
            "closeTimeout",
        ):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value}")
        readTimeoutMs = round(self.readTimeout * 1000)
        if not 1 <= readTimeoutMs <= 0xFFFFFFFF:
            raise ValueError(
                f"readTimeout must be from 0.001 to {0xFFFFFFFF / 1000} seconds, "
                f"not {self.readTimeout}"
            )
        if not wire.MIN_MESSAGE_BUFFER_SIZE <= self.messageBufferSize <= 0xFFFFFFFF:
            raise ValueError(
                f"messageBufferSize must be at least {wire.MIN_MESSAGE_BUFFER_SIZE} "
                f"bytes, not {self.messageBufferSize}"
            )
        if self.subProtocol is not None and len(self.subProtocol.encode()) > (
            self.messageBufferSize - 11
        ):
            raise ValueError("subProtocol does not fit in the message buffer size")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(
                f"concurrency must be at least 1 (or None for no limit), "
                f"not {self.concurrency}"
            )
        if self.maxSendBuffer < 0:
            raise ValueError(
                f"maxSendBuffer must not be negative: {self.maxSendBuffer}"
            )
        if self.shutdownTimeout is not None and self.shutdownTimeout < 0:
            raise ValueError(
                f"shutdownTimeout must not be negative: {self.shutdownTimeout}"
            )
        if self.openHandshakeTimeout <= 0:
            raise ValueError(
                f"openHandshakeTimeout must be positive: {self.openHandshakeTimeout}"
            )
        if self.closeTimeout <= 0:
            raise ValueError(f"closeTimeout must be positive: {self.closeTimeout}")
        if self.maxSessionConnections < 0:
            raise ValueError(
                "maxSessionConnections must not be negative: "
                f"{self.maxSessionConnections}"
            )
        for path in self.paths:
            if not path.startswith("/"):
                raise ValueError(f"a path must start with '/': {path!r}")
        if self.maxConnections < 0:
            raise ValueError(
                f"maxConnections must not be negative: {self.maxConnections}"
            )

    def acceptConf(self) -> bytes:
        """
        Encode the AcceptConf message these options advertise.
        """
        return wire.encodeAcceptConf(
            round(self.readTimeout * 1000),
            self.messageBufferSize,
            self.subProtocol.encode() if self.subProtocol else None,
        )
