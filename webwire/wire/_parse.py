# -*- test-case-name: tests.test_wire -*-
"""
Parsing messages: one parser per message type, byte for byte by the
protocol's validity rules, raising only L{ProtocolViolation}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from webwire.wire._base import (
    _ACCEPT_CONF_NUMBERS,
    _SPECIAL_REPLY_TYPES,
    Encoding,
    MessageType,
    ProtocolViolation,
)
from webwire.wire._messages import (
    AcceptConf,
    CloseSession,
    ErrorReply,
    Heartbeat,
    Message,
    Reply,
    RestoreSession,
    SessionClosed,
    SessionCreated,
    Signal,
    SpecialReply,
    _newRequest,
)

_HEARTBEAT_MESSAGE: Final = Heartbeat()
_SESSION_CLOSED_MESSAGE: Final = SessionClosed()

_NAME_CACHE_SIZE: Final = 256

# The names decoded lately, by their bytes: emptied when full, so that a
# flood of distinct names costs a decoding each, as without it, and
# holds at most _NAME_CACHE_SIZE names (each at most 255 bytes).
_names: dict[bytes, str] = {}


def _decodeName(raw: bytes) -> str:
    """The name of a request or signal, from its bytes (see L{parse})."""
    name = _names.get(raw)
    if name is None:
        name = raw.decode("latin-1")
        if len(_names) >= _NAME_CACHE_SIZE:
            _names.clear()
        _names[raw] = name
    return name


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
        raw = data[2:end]
        # _decodeName(raw), without a call when the name is known.
        return Signal(_names.get(raw) or _decodeName(raw), data[end:], encoding)

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
    return Signal(_decodeName(data[2 : 2 + n]), data[start:], Encoding.UTF16)


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
        raw = data[10:end]
        # _decodeName(raw), without a call when the name is known.
        name = _names.get(raw) or _decodeName(raw)
        return _newRequest(data[1:9], name, data[end:], encoding)

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
    return _newRequest(
        data[1:9], _decodeName(data[10 : 10 + n]), data[start:], Encoding.UTF16
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

    Request and signal names are decoded as Latin-1 (any byte is
    accepted). A name parsed lately comes back as the same C{str} object
    (up to 256 distinct names are kept; the cache is emptied when full):
    cheaper than decoding it again, and what looks it up (a router's
    table, the metrics' labels) compares it by identity and hashes it
    once.

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
