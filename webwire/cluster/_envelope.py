# -*- test-case-name: tests.test_cluster -*-
"""
The messages server processes exchange through Redis pub/sub.

One message is::

    kind       1 byte     b"S" session, b"T" topic, b"B" everyone,
                          b"C" close a session
    node       1 byte length, then that many bytes of ASCII: the sender
    target     2 bytes length (big endian), then that much UTF-8: the
                          session key or topic; empty for b"B"
    data       the rest: the encoded WebWire signal (empty for b"C")

The signal travels encoded, exactly as the receiving process sends it to
its clients, so it is encoded once for the whole cluster. The format is
simple on purpose: a program that is not a WebWire server (a batch job, a
service in another language) can publish signals to a cluster with any
Redis client.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["KINDS", "Envelope", "pack", "unpack"]

KINDS = frozenset((b"S", b"T", b"B", b"C"))
"""The kinds of message."""

_LENGTH = struct.Struct(">H")


class Envelope(NamedTuple):
    """One message between processes."""

    kind: bytes
    node: str
    target: str
    data: bytes


def pack(kind: bytes, node: str, target: str, data: bytes) -> bytes:
    """
    Encode a message.

    :raises ValueError: If a part does not fit the format.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    nodeBytes = node.encode("ascii")
    targetBytes = target.encode("utf-8")
    if len(nodeBytes) > 255 or len(targetBytes) > 0xFFFF:
        raise ValueError("node or target too long")
    return b"".join(
        (
            kind,
            bytes((len(nodeBytes),)),
            nodeBytes,
            _LENGTH.pack(len(targetBytes)),
            targetBytes,
            data,
        )
    )


def unpack(message: bytes) -> Envelope:
    """
    Decode a message.

    :raises ValueError: If it is not one.
    """
    if not isinstance(message, bytes) or len(message) < 4:
        raise ValueError("too short")
    kind = message[:1]
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    nodeEnd = 2 + message[1]
    if len(message) < nodeEnd + 2:
        raise ValueError("truncated")
    (targetLength,) = _LENGTH.unpack_from(message, nodeEnd)
    targetEnd = nodeEnd + 2 + targetLength
    if len(message) < targetEnd:
        raise ValueError("truncated")
    try:
        node = message[2:nodeEnd].decode("ascii")
        target = message[nodeEnd + 2 : targetEnd].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"bad text: {e}") from None
    return Envelope(kind, node, target, message[targetEnd:])
