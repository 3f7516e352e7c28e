# -*- test-case-name: tests.test_wire -*-
"""
The messages, as immutable values; each encodes itself with the
function of L{webwire.wire._encode} for its type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from webwire.wire._base import (
    ACCEPT_CONF_VERSION,
    DEFAULT_MESSAGE_BUFFER_SIZE,
    DEFAULT_READ_TIMEOUT_MS,
    Encoding,
    MessageType,
    decodeText,
)
from webwire.wire._encode import (
    _HEARTBEAT,
    _SESSION_CLOSED,
    encodeAcceptConf,
    encodeCloseSession,
    encodeErrorReply,
    encodeReply,
    encodeRequest,
    encodeRestoreSession,
    encodeSessionCreated,
    encodeSignal,
    encodeSpecialReply,
)


class _Message:
    """
    What every message does: encode itself, refusing what a sender must not
    send (L{InvalidMessage}, L{MessageTooLarge} over C{maxSize} bytes, for
    the messages that can exceed it).
    """

    __slots__ = ()

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message."""
        raise NotImplementedError()


class _PayloadMessage(_Message):
    """A message with a payload: requests, signals and replies."""

    __slots__ = ()

    payload: bytes
    encoding: Encoding

    def text(self, errors: str = "strict") -> str:
        """Decode the payload as text (see L{decodeText})."""
        return decodeText(self.payload, self.encoding, errors)


@dataclass(frozen=True, slots=True)
class AcceptConf(_Message):
    """
    The server's first message: protocol version and connection parameters.

    :ivar readTimeout: Milliseconds of client silence after which the server
        drops the connection.
    :ivar messageBufferSize: The largest message, in bytes, either side may
        send.
    :ivar subProtocol: The WebWire sub-protocol name, or C{None}.
    """

    readTimeout: int = DEFAULT_READ_TIMEOUT_MS
    messageBufferSize: int = DEFAULT_MESSAGE_BUFFER_SIZE
    subProtocol: bytes | None = None
    majorVersion: int = ACCEPT_CONF_VERSION[0]
    minorVersion: int = ACCEPT_CONF_VERSION[1]

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeAcceptConf})."""
        return encodeAcceptConf(
            self.readTimeout,
            self.messageBufferSize,
            self.subProtocol,
            self.majorVersion,
            self.minorVersion,
        )


@dataclass(frozen=True, slots=True)
class Heartbeat(_Message):
    """A client's keep-alive message. It carries nothing."""

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message."""
        return _HEARTBEAT


@dataclass(frozen=True, slots=True)
class Request(_PayloadMessage):
    """
    A client request; the server answers it with exactly one reply.

    :ivar identifier: 8 opaque bytes chosen by the client, echoed in the reply.
    :ivar name: The request name (possibly empty).
    :ivar payload: The payload bytes (possibly empty), without padding.
    :ivar encoding: How C{payload} is to be read.
    """

    identifier: bytes
    name: str
    payload: bytes
    encoding: Encoding

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeRequest})."""
        return encodeRequest(
            self.identifier, self.name, self.payload, self.encoding, maxSize
        )


@dataclass(frozen=True, slots=True)
class Signal(_PayloadMessage):
    """
    A one-way message, in either direction.

    :ivar name: The signal name (possibly empty).
    :ivar payload: The payload bytes (possibly empty), without padding.
    :ivar encoding: How C{payload} is to be read.
    """

    name: str
    payload: bytes
    encoding: Encoding

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeSignal})."""
        return encodeSignal(self.name, self.payload, self.encoding, maxSize)


@dataclass(frozen=True, slots=True)
class Reply(_PayloadMessage):
    """
    A successful reply to a request.

    :ivar identifier: The identifier of the request answered.
    :ivar payload: The payload bytes (possibly empty), without padding.
    :ivar encoding: How C{payload} is to be read.
    """

    identifier: bytes
    payload: bytes
    encoding: Encoding

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeReply})."""
        return encodeReply(self.identifier, self.payload, self.encoding, maxSize)


@dataclass(frozen=True, slots=True)
class ErrorReply(_Message):
    """
    A reply saying that a request failed in a way the application defines.

    :ivar identifier: The identifier of the request answered.
    :ivar code: The error code (1-255 characters).
    :ivar message: A human-readable message (possibly empty).
    """

    identifier: bytes
    code: str
    message: str

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeErrorReply})."""
        return encodeErrorReply(self.identifier, self.code, self.message, maxSize)


@dataclass(frozen=True, slots=True)
class SpecialReply(_Message):
    """
    A header-only reply: shutdown, internal error, session not found,
    maximum session connections reached, or sessions disabled.

    :ivar type: Which of these it is.
    :ivar identifier: The identifier of the request answered.
    """

    type: MessageType
    identifier: bytes

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeSpecialReply})."""
        return encodeSpecialReply(self.type, self.identifier)


@dataclass(frozen=True, slots=True)
class SessionCreated(_Message):
    """
    The server's notification that the connection now has a session.

    :ivar session: The session as UTF-8 JSON (C{{"k","c","l"[,"i"]}}).
    """

    session: bytes

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeSessionCreated})."""
        return encodeSessionCreated(self.session, maxSize)


@dataclass(frozen=True, slots=True)
class SessionClosed(_Message):
    """The server's notification that the connection's session was closed."""

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message."""
        return _SESSION_CLOSED


@dataclass(frozen=True, slots=True)
class RestoreSession(_Message):
    """
    A client's request to attach an existing session to this connection.

    :ivar identifier: The request identifier.
    :ivar key: The session key.
    """

    identifier: bytes
    key: str

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeRestoreSession})."""
        return encodeRestoreSession(self.identifier, self.key, maxSize)


@dataclass(frozen=True, slots=True)
class CloseSession(_Message):
    """
    A client's request to close the session of this connection.

    :ivar identifier: The request identifier.
    """

    identifier: bytes

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeCloseSession})."""
        return encodeCloseSession(self.identifier)


def _setter(cls: type, field: str) -> Any:
    """The setter of C{field}'s slot on C{cls}, which freezing leaves alone."""
    return vars(cls)[field].__set__


_new: Final = object.__new__
_setRequestIdentifier: Final = _setter(Request, "identifier")
_setRequestName: Final = _setter(Request, "name")
_setRequestPayload: Final = _setter(Request, "payload")
_setRequestEncoding: Final = _setter(Request, "encoding")


def _newRequest(
    identifier: bytes, name: str, payload: bytes, encoding: Encoding
) -> Request:
    """
    C{Request(identifier, name, payload, encoding)}, built without the
    frozen dataclass's C{__init__} (one C{object.__setattr__} call per
    field): the parser builds one per request it reads.
    """
    request: Request = _new(Request)
    _setRequestIdentifier(request, identifier)
    _setRequestName(request, name)
    _setRequestPayload(request, payload)
    _setRequestEncoding(request, encoding)
    return request


Message = (
    AcceptConf
    | Heartbeat
    | Request
    | Signal
    | Reply
    | ErrorReply
    | SpecialReply
    | SessionCreated
    | SessionClosed
    | RestoreSession
    | CloseSession
)
"""Any WebWire message."""
