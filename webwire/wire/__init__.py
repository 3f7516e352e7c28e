# -*- test-case-name: tests.test_wire -*-
"""
The WebWire 2.0 binary codec: bytes in, messages out, and back.

This package is pure: none of its modules imports anything from Twisted,
Autobahn or zope.interface (or from the rest of WebWire), does I/O or reads
a clock, so the server, the client and any tool can share it.

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

The codec is split into private modules along its seams: C{_base}
(limits, errors, message types, payloads), C{_encode}, C{_messages} and
C{_parse}; everything public is re-exported here.
"""

from __future__ import annotations

from webwire.wire._base import (
    ACCEPT_CONF_VERSION,
    DEFAULT_MESSAGE_BUFFER_SIZE,
    DEFAULT_READ_TIMEOUT_MS,
    IDENTIFIER_LENGTH,
    MIN_MESSAGE_BUFFER_SIZE,
    Encoding,
    InvalidMessage,
    MessageTooLarge,
    MessageType,
    Payload,
    PayloadLike,
    ProtocolViolation,
    decodeText,
    isPrintableASCII,
)
from webwire.wire._encode import (
    encodeAcceptConf,
    encodeCloseSession,
    encodeErrorReply,
    encodeHeartbeat,
    encodeReply,
    encodeRequest,
    encodeRestoreSession,
    encodeSessionClosed,
    encodeSessionCreated,
    encodeSignal,
    encodeSpecialReply,
)
from webwire.wire._messages import (
    AcceptConf,
    CloseSession,
    ErrorReply,
    Heartbeat,
    Message,
    Reply,
    Request,
    RestoreSession,
    SessionClosed,
    SessionCreated,
    Signal,
    SpecialReply,
)
from webwire.wire._parse import (
    parse,
)

__all__ = [
    "ACCEPT_CONF_VERSION",
    "DEFAULT_MESSAGE_BUFFER_SIZE",
    "DEFAULT_READ_TIMEOUT_MS",
    "IDENTIFIER_LENGTH",
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
