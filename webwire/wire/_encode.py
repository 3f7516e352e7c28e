# -*- test-case-name: tests.test_wire -*-
"""
Encoding messages: one function per message type, each refusing what a
sender must not send (see L{webwire.wire}).
"""

from __future__ import annotations

from typing import Final

from webwire.wire._base import (
    _ACCEPT_CONF_NUMBERS,
    _MAX_NAME_LENGTH,
    _SPECIAL_REPLY_TYPES,
    _UINT32_MAX,
    ACCEPT_CONF_VERSION,
    IDENTIFIER_LENGTH,
    MIN_MESSAGE_BUFFER_SIZE,
    Encoding,
    InvalidMessage,
    MessageTooLarge,
    MessageType,
    _encodeText,
    isPrintableASCII,
)

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

_REPLY_BINARY: Final = _REPLY_TYPES[Encoding.BINARY]
_REPLY_UTF8: Final = _REPLY_TYPES[Encoding.UTF8]


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
    if type(identifier) is not bytes or len(identifier) != IDENTIFIER_LENGTH:
        _checkIdentifier(identifier)
    # Compared by identity: an enum's hash is computed in Python.
    if encoding is Encoding.BINARY:
        head = _REPLY_BINARY
    elif encoding is Encoding.UTF8:
        head = _REPLY_UTF8
    else:
        head = _REPLY_TYPES[encoding]  # a KeyError for what is no Encoding
        _checkUtf16(payload, "reply")
        _checkSize(10 + len(payload), maxSize, "reply")
        return b"".join((head, identifier, _PADDING, payload))
    if maxSize is not None and 9 + len(payload) > maxSize:
        _checkSize(9 + len(payload), maxSize, "reply")
    return b"".join((head, identifier, payload))


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
