# -*- test-case-name: tests.test_sessions -*-
"""
Session keys: the default generator, and what makes a key valid.
"""

from __future__ import annotations

import base64
import re
import secrets

from zope.interface import implementer

from webwire.interfaces import ISessionKeyGenerator

__all__ = ["RandomKeyGenerator", "checkKey", "isSafeKey", "shortKey"]

_PRINTABLE = re.compile(r"[\x20-\x7e]{1,255}\Z")
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,240}\Z")


@implementer(ISessionKeyGenerator)
class RandomKeyGenerator:
    """
    The default key generator: 48 bytes from the operating system's
    cryptographically secure generator, URL-safe base64: always 64
    characters of C{[A-Za-z0-9_-]}, as the original server makes them.
    """

    def generate(self) -> str:
        """Return a new random key."""
        return base64.urlsafe_b64encode(secrets.token_bytes(48)).decode("ascii")


def checkKey(key: object) -> str:
    """
    Check a generated key: 1 to 255 printable ASCII characters, so that every
    client can send it back.

    :returns: C{key}.
    :raises ValueError: If the key is not valid.
    """
    if not isinstance(key, str) or not _PRINTABLE.match(key):
        raise ValueError(
            f"a session key must be 1 to 255 printable ASCII characters, not {key!r}"
        )
    return key


def isSafeKey(key: str) -> bool:
    """
    Whether C{key} may become part of a file or database name: 1 to 240
    characters of the default generator's alphabet (C{[A-Za-z0-9_-]}).
    Managers treat any other key as unknown.
    """
    return _SAFE.match(key) is not None


def shortKey(key: str) -> str:
    """
    A prefix of C{key} that identifies it in logs without revealing it: the
    first four characters, or fewer for a shorter key.
    """
    return key[: min(4, len(key) // 4)] + "\N{HORIZONTAL ELLIPSIS}"
