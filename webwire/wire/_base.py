# -*- test-case-name: tests.test_wire -*-
"""
The codec's vocabulary: limits, errors, message types, payload encodings
and payloads. Pure, as the whole codec (see L{webwire.wire}).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

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
_ACCEPT_CONF_NUMBERS: Final = struct.Struct("<II")


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
    :param errors: As for C{bytes.decode}.
    :raises UnicodeDecodeError: If the payload is not valid text and
        C{errors} is C{"strict"}.
    """
    return data.decode(_TEXT_CODECS[encoding], errors)


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(self, data: bytes = b"", encoding: Encoding = Encoding.BINARY) -> None:
        # What the frozen dataclass's __init__ does, setting the slots
        # directly rather than through object.__setattr__: handlers build
        # one per reply.
        _setPayloadData(self, data)
        _setPayloadEncoding(self, encoding)

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


_setPayloadData: Final = vars(Payload)["data"].__set__
_setPayloadEncoding: Final = vars(Payload)["encoding"].__set__
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
