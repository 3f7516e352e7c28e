# -*- test-case-name: tests.test_wire -*-
"""
The WebWire 2.0 binary codec: bytes in, messages out, and back.

This module is pure: it imports nothing from Twisted, Autobahn or
zope.interface, does no I/O and reads no clock, so the server, the client and
any tool can share it.

Parsing follows the validity rules of the protocol byte for byte and raises
exactly one exception type, L{ProtocolViolation}, for anything malformed.
Parsers accept any byte values in names, codes and keys (as the reference
implementations do); names, codes and keys are decoded as Latin-1, so every
byte maps to exactly one character and nothing received is ever rejected or
altered for its character set.

Encoders refuse what a sender must not send, with L{InvalidMessage} (or its
subclass L{MessageTooLarge} when a message would exceed the peer's message
buffer size): names over 255 bytes or outside printable ASCII, odd UTF-16
payloads, UTF-16 signals without payload, invalid error codes, requests and
signals with neither name nor payload.

Each parse copies the payload out of the received message once (a single
slice); headers are read by index and C{struct.unpack_from}, never by slicing
the whole message.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ACCEPT_CONF_VERSION",
    "DEFAULT_MESSAGE_BUFFER_SIZE",
    "DEFAULT_READ_TIMEOUT_MS",
    "MIN_MESSAGE_BUFFER_SIZE",
    "AcceptConf",
    "CloseSession",
    "Encoding",
    "ErrorReply",
    "Heartbeat",
    "InvalidMessage",
    "Message",
    "MessageTooLarge",
    "MessageType",
    "Payload",
    "PayloadLike",
    "ProtocolViolation",
    "Reply",
    "Request",
    "RestoreSession",
    "SessionClosed",
    "SessionCreated",
    "Signal",
    "SpecialReply",
    "decodeText",
    "encodeAcceptConf",
    "encodeCloseSession",
    "encodeErrorReply",
    "encodeHeartbeat",
    "encodeReply",
    "encodeRequest",
    "encodeRestoreSession",
    "encodeSessionClosed",
    "encodeSessionCreated",
    "encodeSignal",
    "encodeSpecialReply",
    "isPrintableASCII",
    "parse",
]


DEFAULT_READ_TIMEOUT_MS: Final = 60_000
"""The read timeout a server advertises unless configured otherwise."""

DEFAULT_MESSAGE_BUFFER_SIZE: Final = 8192
"""The message buffer size both sides use unless configured otherwise."""

MIN_MESSAGE_BUFFER_SIZE: Final = 32
"""The smallest message buffer size a server may be configured with."""

ACCEPT_CONF_VERSION: Final = (2, 0)
"""The protocol version (major, minor) this codec speaks."""

IDENTIFIER_LENGTH: Final = 8
_MAX_NAME_LENGTH: Final = 255
_UINT32_MAX: Final = 0xFFFFFFFF


class ProtocolViolation(ValueError):
    """
    A received message does not follow the WebWire wire format.

    The message says what is wrong. A server closes the connection of a peer
    that sends one; a client drops the message.
    """


class InvalidMessage(ValueError):
    """
    A message that a sender must not send was about to be encoded.

    Nothing was encoded; the message says what is wrong.
    """


class MessageTooLarge(InvalidMessage):
    """
    An encoded message would be larger than the peer's message buffer size.
    """


class MessageType(enum.IntEnum):
    """
    The type byte that starts every WebWire message.
    """

    REPLY_ERROR = 0
    REPLY_SHUTDOWN = 1
    REPLY_INTERNAL_ERROR = 2
    REPLY_SESSION_NOT_FOUND = 3
    REPLY_MAX_SESSION_CONNECTIONS_REACHED = 4
    REPLY_SESSIONS_DISABLED = 5
    NOTIFY_SESSION_CREATED = 21
    NOTIFY_SESSION_CLOSED = 22
    ACCEPT_CONF = 23
    REQUEST_CLOSE_SESSION = 31
    REQUEST_RESTORE_SESSION = 32
    HEARTBEAT = 33
    SIGNAL_BINARY = 63
    SIGNAL_UTF8 = 64
    SIGNAL_UTF16 = 65
    REQUEST_BINARY = 127
    REQUEST_UTF8 = 128
    REQUEST_UTF16 = 129
    REPLY_BINARY = 191
    REPLY_UTF8 = 192
    REPLY_UTF16 = 193


_SPECIAL_REPLY_TYPES: Final = frozenset(
    {
        MessageType.REPLY_SHUTDOWN,
        MessageType.REPLY_INTERNAL_ERROR,
        MessageType.REPLY_SESSION_NOT_FOUND,
        MessageType.REPLY_MAX_SESSION_CONNECTIONS_REACHED,
        MessageType.REPLY_SESSIONS_DISABLED,
    }
)


class Encoding(enum.Enum):
    """
    How a payload is to be read. The message type carries it on the wire.

    UTF-16 means UTF-16LE without a byte order mark, as every WebWire peer
    writes it.
    """

    BINARY = "binary"
    UTF8 = "utf8"
    UTF16 = "utf16"


_TEXT_CODECS: Final = {
    Encoding.BINARY: "utf-8",
    Encoding.UTF8: "utf-8",
    Encoding.UTF16: "utf-16-le",
}


def decodeText(data: bytes, encoding: Encoding, errors: str = "strict") -> str:
    """
    Decode a payload as text.

    Binary payloads are read as UTF-8, UTF-16 payloads as UTF-16LE (surrogate
    pairs are decoded properly).

    :param data: The payload bytes.
    :param encoding: The payload's encoding.
    :param errors: As for L{bytes.decode}.
    :raises UnicodeDecodeError: If the payload is not valid text and
        C{errors} is C{"strict"}.
    """
    return data.decode(_TEXT_CODECS[encoding], errors)


@dataclass(frozen=True, slots=True)
class Payload:
    """
    Payload bytes together with their encoding.

    Return one from a request handler, or pass one to a signal, to choose
    the encoding explicitly (plain C{bytes} mean binary, plain C{str} UTF-8).

    :ivar data: The payload bytes, exactly as they go on the wire.
    :ivar encoding: How C{data} is to be read.
    """

    data: bytes = b""
    encoding: Encoding = Encoding.BINARY

    @classmethod
    def fromText(cls, text: str, encoding: Encoding = Encoding.UTF8) -> Payload:
        """
        Encode text as a payload.

        :param text: The text.
        :param encoding: L{Encoding.UTF8} (default), L{Encoding.UTF16} or
            L{Encoding.BINARY} (the UTF-8 bytes, sent as binary).
        """
        return cls(_encodeText(text, _TEXT_CODECS[encoding]), encoding)

    @classmethod
    def coerce(cls, value: PayloadLike) -> Payload:
        """
        Turn what an application hands over into a L{Payload}.

        C{None} is an empty binary payload, C{bytes}-like objects are binary,
        C{str} is UTF-8 and a L{Payload} is taken as it is.

        :raises TypeError: For any other type.
        :raises InvalidMessage: For text that cannot be encoded (lone
            surrogates).
        """
        if isinstance(value, Payload):
            return value
        if value is None:
            return _EMPTY_PAYLOAD
        if isinstance(value, str):
            return cls(_encodeText(value, "utf-8"), Encoding.UTF8)
        if isinstance(value, bytes):
            return cls(value, Encoding.BINARY)
        if isinstance(value, (bytearray, memoryview)):
            return cls(bytes(value), Encoding.BINARY)
        raise TypeError(
            f"a payload must be bytes, str, Payload or None, not {type(value).__name__}"
        )

    @classmethod
    def of(cls, value: PayloadLike, encoding: Encoding | None = None) -> Payload:
        """
        The payload of a signal as L{webwire.interfaces.IConnection.signal}
        takes it: text in C{encoding} if it is text and C{encoding} is
        given, else L{coerce}d, with C{encoding} (if given) replacing the
        encoding it would have.

        :raises TypeError: For a value of another type.
        :raises InvalidMessage: For text that cannot be encoded.
        """
        if encoding is not None and isinstance(value, str):
            return cls.fromText(value, encoding)
        body = cls.coerce(value)
        return body if encoding is None else cls(body.data, encoding)

    def text(self, errors: str = "strict") -> str:
        """
        Decode the payload as text (see L{decodeText}).
        """
        return decodeText(self.data, self.encoding, errors)


_EMPTY_PAYLOAD: Final = Payload()


def isPrintableASCII(text: str) -> bool:
    """
    Whether C{text} is only printable ASCII (0x20-0x7E), as names, error
    codes and session keys on the wire must be (their lengths aside).
    """
    return text.isascii() and text.isprintable()


def _encodeText(text: str, codec: str) -> bytes:
    try:
        return text.encode(codec)
    except UnicodeEncodeError as e:
        raise InvalidMessage(f"text cannot be encoded as {codec}: {e.reason}") from e


PayloadLike = Payload | bytes | bytearray | memoryview | str | None
"""What applications may pass wherever a payload is expected."""


# Messages -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptConf:
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
class Heartbeat:
    """A client's keep-alive message. It carries nothing."""

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message."""
        return _HEARTBEAT


@dataclass(frozen=True, slots=True)
class Request:
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

    def text(self, errors: str = "strict") -> str:
        """Decode the payload as text (see L{decodeText})."""
        return decodeText(self.payload, self.encoding, errors)

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeRequest})."""
        return encodeRequest(
            self.identifier, self.name, self.payload, self.encoding, maxSize
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """
    A one-way message, in either direction.

    :ivar name: The signal name (possibly empty).
    :ivar payload: The payload bytes (possibly empty), without padding.
    :ivar encoding: How C{payload} is to be read.
    """

    name: str
    payload: bytes
    encoding: Encoding

    def text(self, errors: str = "strict") -> str:
        """Decode the payload as text (see L{decodeText})."""
        return decodeText(self.payload, self.encoding, errors)

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeSignal})."""
        return encodeSignal(self.name, self.payload, self.encoding, maxSize)


@dataclass(frozen=True, slots=True)
class Reply:
    """
    A successful reply to a request.

    :ivar identifier: The identifier of the request answered.
    :ivar payload: The payload bytes (possibly empty), without padding.
    :ivar encoding: How C{payload} is to be read.
    """

    identifier: bytes
    payload: bytes
    encoding: Encoding

    def text(self, errors: str = "strict") -> str:
        """Decode the payload as text (see L{decodeText})."""
        return decodeText(self.payload, self.encoding, errors)

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeReply})."""
        return encodeReply(self.identifier, self.payload, self.encoding, maxSize)


@dataclass(frozen=True, slots=True)
class ErrorReply:
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
class SpecialReply:
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
class SessionCreated:
    """
    The server's notification that the connection now has a session.

    :ivar session: The session as UTF-8 JSON (C{{"k","c","l"[,"i"]}}).
    """

    session: bytes

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeSessionCreated})."""
        return encodeSessionCreated(self.session, maxSize)


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The server's notification that the connection's session was closed."""

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message."""
        return _SESSION_CLOSED


@dataclass(frozen=True, slots=True)
class RestoreSession:
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
class CloseSession:
    """
    A client's request to close the session of this connection.

    :ivar identifier: The request identifier.
    """

    identifier: bytes

    def encode(self, maxSize: int | None = None) -> bytes:
        """Encode this message (see L{encodeCloseSession})."""
        return encodeCloseSession(self.identifier)


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


# Parsing ------------------------------------------------------------------

_HEARTBEAT_MESSAGE: Final = Heartbeat()
_SESSION_CLOSED_MESSAGE: Final = SessionClosed()
_ACCEPT_CONF_NUMBERS: Final = struct.Struct("<II")


def _parseErrorReply(data: bytes) -> Message:
    size = len(data)
    if size < 11:
        raise ProtocolViolation(f"error reply too short ({size} bytes, minimum 11)")
    n = data[9]
    if n == 0:
        raise ProtocolViolation("error reply with an empty error code")
    if size < 10 + n:
        raise ProtocolViolation(
            f"error reply too short for its error code ({n} bytes announced, "
            f"{size - 10} present)"
        )
    return ErrorReply(
        data[1:9],
        data[10 : 10 + n].decode("latin-1"),
        data[10 + n :].decode("utf-8", "replace"),
    )


def _specialReplyParser(kind: MessageType) -> Callable[[bytes], Message]:
    def parseSpecialReply(data: bytes) -> Message:
        if len(data) < 9:
            raise ProtocolViolation(
                f"{kind.name.lower()} reply too short ({len(data)} bytes, minimum 9)"
            )
        return SpecialReply(kind, data[1:9])

    return parseSpecialReply


def _parseSessionCreated(data: bytes) -> Message:
    if len(data) < 2:
        raise ProtocolViolation("session-created notification without session")
    return SessionCreated(data[1:])


def _parseSessionClosed(data: bytes) -> Message:
    if len(data) != 1:
        raise ProtocolViolation(
            f"session-closed notification must be 1 byte, not {len(data)}"
        )
    return _SESSION_CLOSED_MESSAGE


def _parseAcceptConf(data: bytes) -> Message:
    if len(data) < 11:
        raise ProtocolViolation(
            f"accept-conf too short ({len(data)} bytes, minimum 11)"
        )
    readTimeout, bufferSize = _ACCEPT_CONF_NUMBERS.unpack_from(data, 3)
    return AcceptConf(
        readTimeout,
        bufferSize,
        data[11:] if len(data) > 11 else None,
        data[1],
        data[2],
    )


def _parseCloseSession(data: bytes) -> Message:
    if len(data) != 9:
        raise ProtocolViolation(
            f"close-session request must be 9 bytes, not {len(data)}"
        )
    return CloseSession(data[1:9])


def _parseRestoreSession(data: bytes) -> Message:
    if len(data) < 10:
        raise ProtocolViolation("restore-session request without session key")
    return RestoreSession(data[1:9], data[9:].decode("latin-1"))


def _parseHeartbeat(data: bytes) -> Message:
    if len(data) != 1:
        raise ProtocolViolation(f"heartbeat must be 1 byte, not {len(data)}")
    return _HEARTBEAT_MESSAGE


def _signalParser(encoding: Encoding) -> Callable[[bytes], Message]:
    def parseSignal(data: bytes) -> Message:
        size = len(data)
        if size < 3:
            raise ProtocolViolation(
                f"signal too short ({size} bytes): it needs a name or a payload"
            )
        end = 2 + data[1]
        if size < end:
            raise ProtocolViolation(
                f"signal too short for its name ({data[1]} bytes announced, "
                f"{size - 2} present)"
            )
        return Signal(data[2:end].decode("latin-1"), data[end:], encoding)

    return parseSignal


def _parseSignalUtf16(data: bytes) -> Message:
    size = len(data)
    if size % 2:
        raise ProtocolViolation(f"UTF-16 signal unaligned (odd length {size})")
    n = data[1] if size > 1 else 0
    start = 2 + n + (n & 1)
    if size < 4 or size < start + 2:
        raise ProtocolViolation(
            f"UTF-16 signal too short ({size} bytes): it needs a payload of at "
            f"least 2 bytes after its {n}-byte name"
        )
    return Signal(data[2 : 2 + n].decode("latin-1"), data[start:], Encoding.UTF16)


def _requestParser(encoding: Encoding) -> Callable[[bytes], Message]:
    def parseRequest(data: bytes) -> Message:
        size = len(data)
        if size < 11:
            raise ProtocolViolation(
                f"request too short ({size} bytes): it needs a name or a payload"
            )
        end = 10 + data[9]
        if size < end:
            raise ProtocolViolation(
                f"request too short for its name ({data[9]} bytes announced, "
                f"{size - 10} present)"
            )
        return Request(data[1:9], data[10:end].decode("latin-1"), data[end:], encoding)

    return parseRequest


def _parseRequestUtf16(data: bytes) -> Message:
    size = len(data)
    if size < 11:
        raise ProtocolViolation(
            f"request too short ({size} bytes): it needs a name or a payload"
        )
    if size % 2:
        raise ProtocolViolation(f"UTF-16 request unaligned (odd length {size})")
    n = data[9]
    start = 10 + n + (n & 1)
    if size < start:
        raise ProtocolViolation(
            f"UTF-16 request too short for its name ({n} bytes announced, "
            f"{size - 10} present)"
        )
    return Request(
        data[1:9], data[10 : 10 + n].decode("latin-1"), data[start:], Encoding.UTF16
    )


def _replyParser(encoding: Encoding) -> Callable[[bytes], Message]:
    def parseReply(data: bytes) -> Message:
        if len(data) < 9:
            raise ProtocolViolation(f"reply too short ({len(data)} bytes, minimum 9)")
        return Reply(data[1:9], data[9:], encoding)

    return parseReply


def _parseReplyUtf16(data: bytes) -> Message:
    size = len(data)
    if size < 10:
        raise ProtocolViolation(f"UTF-16 reply too short ({size} bytes, minimum 10)")
    if size % 2:
        raise ProtocolViolation(f"UTF-16 reply unaligned (odd length {size})")
    return Reply(data[1:9], data[10:], Encoding.UTF16)


_PARSERS: Final[dict[int, Callable[[bytes], Message]]] = {
    MessageType.REPLY_ERROR: _parseErrorReply,
    **{kind: _specialReplyParser(kind) for kind in _SPECIAL_REPLY_TYPES},
    MessageType.NOTIFY_SESSION_CREATED: _parseSessionCreated,
    MessageType.NOTIFY_SESSION_CLOSED: _parseSessionClosed,
    MessageType.ACCEPT_CONF: _parseAcceptConf,
    MessageType.REQUEST_CLOSE_SESSION: _parseCloseSession,
    MessageType.REQUEST_RESTORE_SESSION: _parseRestoreSession,
    MessageType.HEARTBEAT: _parseHeartbeat,
    MessageType.SIGNAL_BINARY: _signalParser(Encoding.BINARY),
    MessageType.SIGNAL_UTF8: _signalParser(Encoding.UTF8),
    MessageType.SIGNAL_UTF16: _parseSignalUtf16,
    MessageType.REQUEST_BINARY: _requestParser(Encoding.BINARY),
    MessageType.REQUEST_UTF8: _requestParser(Encoding.UTF8),
    MessageType.REQUEST_UTF16: _parseRequestUtf16,
    MessageType.REPLY_BINARY: _replyParser(Encoding.BINARY),
    MessageType.REPLY_UTF8: _replyParser(Encoding.UTF8),
    MessageType.REPLY_UTF16: _parseReplyUtf16,
}


def parse(data: bytes) -> Message:
    """
    Parse one complete WebWire message.

    :param data: The payload of one binary WebSocket message.
    :returns: The message, one of the types of L{Message}.
    :raises ProtocolViolation: If C{data} is not a valid WebWire message;
        its text says what is wrong.
    """
    if not data:
        raise ProtocolViolation("empty message: no message type")
    parser = _PARSERS.get(data[0])
    if parser is None:
        raise ProtocolViolation(f"invalid message type {data[0]}")
    return parser(data)


# Encoding -----------------------------------------------------------------

_HEARTBEAT: Final = bytes((MessageType.HEARTBEAT,))
_SESSION_CLOSED: Final = bytes((MessageType.NOTIFY_SESSION_CLOSED,))
_LENGTH_BYTES: Final = [bytes((n,)) for n in range(256)]
_PADDING: Final = b"\x00"

_REQUEST_TYPES: Final = {
    Encoding.BINARY: bytes((MessageType.REQUEST_BINARY,)),
    Encoding.UTF8: bytes((MessageType.REQUEST_UTF8,)),
    Encoding.UTF16: bytes((MessageType.REQUEST_UTF16,)),
}
_SIGNAL_TYPES: Final = {
    Encoding.BINARY: bytes((MessageType.SIGNAL_BINARY,)),
    Encoding.UTF8: bytes((MessageType.SIGNAL_UTF8,)),
    Encoding.UTF16: bytes((MessageType.SIGNAL_UTF16,)),
}
_REPLY_TYPES: Final = {
    Encoding.BINARY: bytes((MessageType.REPLY_BINARY,)),
    Encoding.UTF8: bytes((MessageType.REPLY_UTF8,)),
    Encoding.UTF16: bytes((MessageType.REPLY_UTF16,)),
}


def _checkIdentifier(identifier: bytes) -> None:
    if len(identifier) != IDENTIFIER_LENGTH or not isinstance(identifier, bytes):
        raise InvalidMessage(
            f"a request identifier must be {IDENTIFIER_LENGTH} bytes, "
            f"not {identifier!r}"
        )


def _asciiField(value: str, what: str, minimum: int) -> bytes:
    """
    Encode a name, error code or session key: printable ASCII
    (0x20-0x7E), C{minimum} to 255 characters.
    """
    if not isinstance(value, str):
        raise InvalidMessage(f"{what} must be str, not {type(value).__name__}")
    if not isPrintableASCII(value):
        raise InvalidMessage(
            f"{what} {value!r} has characters outside printable ASCII (0x20-0x7E)"
        )
    if not minimum <= len(value) <= _MAX_NAME_LENGTH:
        raise InvalidMessage(
            f"{what} must be {minimum} to {_MAX_NAME_LENGTH} characters long, "
            f"not {len(value)}"
        )
    return value.encode("ascii")


def _checkSize(size: int, maxSize: int | None, what: str) -> None:
    if maxSize is not None and size > maxSize:
        raise MessageTooLarge(
            f"{what} of {size} bytes exceeds the message buffer size of {maxSize} bytes"
        )


def _checkUtf16(payload: bytes, what: str) -> None:
    if len(payload) % 2:
        raise InvalidMessage(
            f"{what} has a UTF-16 payload of odd length {len(payload)}"
        )


def encodeRequest(
    identifier: bytes,
    name: str,
    payload: bytes,
    encoding: Encoding,
    maxSize: int | None = None,
) -> bytes:
    """
    Encode a request (types 127, 128, 129).

    :param identifier: 8 bytes, unique among the sender's pending requests.
    :param name: 0-255 printable ASCII characters.
    :param payload: The payload bytes; for UTF-16 of even length.
    :param encoding: The payload's encoding.
    :param maxSize: The peer's message buffer size, or C{None} for no check.
    :raises InvalidMessage: If the request must not be sent.
    """
    _checkIdentifier(identifier)
    nameBytes = _asciiField(name, "request name", 0)
    if not nameBytes and not payload:
        raise InvalidMessage("a request needs a name, a payload or both")
    padding = b""
    if encoding is Encoding.UTF16:
        _checkUtf16(payload, "request")
        if len(nameBytes) % 2:
            padding = _PADDING
    _checkSize(10 + len(nameBytes) + len(padding) + len(payload), maxSize, "request")
    return b"".join(
        (
            _REQUEST_TYPES[encoding],
            identifier,
            _LENGTH_BYTES[len(nameBytes)],
            nameBytes,
            padding,
            payload,
        )
    )


def encodeSignal(
    name: str, payload: bytes, encoding: Encoding, maxSize: int | None = None
) -> bytes:
    """
    Encode a signal (types 63, 64, 65).

    :param name: 0-255 printable ASCII characters.
    :param payload: The payload bytes; for UTF-16 at least 2 and even.
    :param encoding: The payload's encoding.
    :param maxSize: The peer's message buffer size, or C{None} for no check.
    :raises InvalidMessage: If the signal must not be sent.
    """
    nameBytes = _asciiField(name, "signal name", 0)
    padding = b""
    if encoding is Encoding.UTF16:
        _checkUtf16(payload, "signal")
        if not payload:
            raise InvalidMessage("a UTF-16 signal needs a payload")
        if len(nameBytes) % 2:
            padding = _PADDING
    elif not nameBytes and not payload:
        raise InvalidMessage("a signal needs a name, a payload or both")
    _checkSize(2 + len(nameBytes) + len(padding) + len(payload), maxSize, "signal")
    return b"".join(
        (
            _SIGNAL_TYPES[encoding],
            _LENGTH_BYTES[len(nameBytes)],
            nameBytes,
            padding,
            payload,
        )
    )


def encodeReply(
    identifier: bytes,
    payload: bytes,
    encoding: Encoding,
    maxSize: int | None = None,
) -> bytes:
    """
    Encode a successful reply (types 191, 192, 193).

    :param identifier: The identifier of the request answered.
    :param payload: The payload bytes (possibly empty); for UTF-16 even.
    :param encoding: The payload's encoding.
    :param maxSize: The peer's message buffer size, or C{None} for no check.
    :raises InvalidMessage: If the reply must not be sent.
    """
    _checkIdentifier(identifier)
    if encoding is Encoding.UTF16:
        _checkUtf16(payload, "reply")
        _checkSize(10 + len(payload), maxSize, "reply")
        return b"".join((_REPLY_TYPES[encoding], identifier, _PADDING, payload))
    _checkSize(9 + len(payload), maxSize, "reply")
    return b"".join((_REPLY_TYPES[encoding], identifier, payload))


def encodeErrorReply(
    identifier: bytes, code: str, message: str, maxSize: int | None = None
) -> bytes:
    """
    Encode an error reply (type 0).

    :param identifier: The identifier of the request answered.
    :param code: 1-255 printable ASCII characters.
    :param message: Any text; sent as UTF-8.
    :param maxSize: The peer's message buffer size, or C{None} for no check.
    :raises InvalidMessage: If the code is invalid or the reply too large.
    """
    _checkIdentifier(identifier)
    codeBytes = _asciiField(code, "error code", 1)
    messageBytes = _encodeText(message, "utf-8")
    _checkSize(10 + len(codeBytes) + len(messageBytes), maxSize, "error reply")
    return b"".join(
        (
            b"\x00",
            identifier,
            _LENGTH_BYTES[len(codeBytes)],
            codeBytes,
            messageBytes,
        )
    )


def encodeSpecialReply(kind: MessageType, identifier: bytes) -> bytes:
    """
    Encode a header-only reply (types 1 to 5).

    :param kind: One of the special reply types.
    :param identifier: The identifier of the request answered.
    :raises InvalidMessage: If C{kind} is not a special reply type.
    """
    if kind not in _SPECIAL_REPLY_TYPES:
        raise InvalidMessage(f"{kind!r} is not a header-only reply type")
    _checkIdentifier(identifier)
    return bytes((kind,)) + identifier


def encodeAcceptConf(
    readTimeout: int,
    messageBufferSize: int,
    subProtocol: bytes | None = None,
    majorVersion: int = ACCEPT_CONF_VERSION[0],
    minorVersion: int = ACCEPT_CONF_VERSION[1],
) -> bytes:
    """
    Encode the server's first message (type 23).

    :param readTimeout: Milliseconds, 1 to 2**32-1 (0 would break clients).
    :param messageBufferSize: Bytes, 32 to 2**32-1.
    :param subProtocol: The sub-protocol name; C{None} or empty for none.
    :raises InvalidMessage: If a value is out of range.
    """
    if not 1 <= readTimeout <= _UINT32_MAX:
        raise InvalidMessage(f"read timeout {readTimeout} ms out of range")
    if not MIN_MESSAGE_BUFFER_SIZE <= messageBufferSize <= _UINT32_MAX:
        raise InvalidMessage(f"message buffer size {messageBufferSize} out of range")
    if not (0 <= majorVersion <= 255 and 0 <= minorVersion <= 255):
        raise InvalidMessage(f"version {majorVersion}.{minorVersion} out of range")
    return b"".join(
        (
            bytes((MessageType.ACCEPT_CONF, majorVersion, minorVersion)),
            _ACCEPT_CONF_NUMBERS.pack(readTimeout, messageBufferSize),
            subProtocol or b"",
        )
    )


def encodeHeartbeat() -> bytes:
    """Encode a heartbeat (type 33)."""
    return _HEARTBEAT


def encodeSessionCreated(session: bytes, maxSize: int | None = None) -> bytes:
    """
    Encode a session-created notification (type 21).

    :param session: The session as UTF-8 JSON.
    :raises InvalidMessage: If C{session} is empty or the message too large.
    """
    if not session:
        raise InvalidMessage("a session-created notification needs a session")
    _checkSize(1 + len(session), maxSize, "session-created notification")
    return bytes((MessageType.NOTIFY_SESSION_CREATED,)) + session


def encodeSessionClosed() -> bytes:
    """Encode a session-closed notification (type 22)."""
    return _SESSION_CLOSED


def encodeRestoreSession(
    identifier: bytes, key: str, maxSize: int | None = None
) -> bytes:
    """
    Encode a restore-session request (type 32).

    :param identifier: The request identifier.
    :param key: The session key: 1-255 printable ASCII characters.
    :raises InvalidMessage: If the key is invalid or the message too large.
    """
    _checkIdentifier(identifier)
    keyBytes = _asciiField(key, "session key", 1)
    _checkSize(9 + len(keyBytes), maxSize, "restore-session request")
    return bytes((MessageType.REQUEST_RESTORE_SESSION,)) + identifier + keyBytes


def encodeCloseSession(identifier: bytes) -> bytes:
    """
    Encode a close-session request (type 31).

    :param identifier: The request identifier.
    """
    _checkIdentifier(identifier)
    return bytes((MessageType.REQUEST_CLOSE_SESSION,)) + identifier
