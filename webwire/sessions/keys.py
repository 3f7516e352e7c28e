# -*- test-case-name: tests.test_sessions -*-
"""
Session keys: the default generator, one that prefixes keys, and what
makes a key valid.
"""

from __future__ import annotations

import base64
import re
import secrets

from zope.interface import implementer

from webwire.interfaces import ISessionKeyGenerator

__all__ = [
    "KEY_ALPHABET",
    "MAX_KEY_LENGTH",
    "PrefixedKeyGenerator",
    "RandomKeyGenerator",
    "checkKey",
    "isSafeKey",
    "shortKey",
]

KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
"""The characters of a session key: those of URL-safe base64."""

MAX_KEY_LENGTH = 240
"""The longest session key, in characters."""

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


@implementer(ISessionKeyGenerator)
class PrefixedKeyGenerator:
    """
    Keys of another generator behind a fixed prefix, say C{"eu1-"}: which
    deployment or server made a session shows in its key, in logs (they
    show a key's first characters), in a shared Redis, and to a load
    balancer that routes restores by key. The prefix adds no secrecy: the
    key is as unguessable as the generator's.
    """

    def __init__(
        self, prefix: str, generator: ISessionKeyGenerator | None = None
    ) -> None:
        """
        :param prefix: 1 to 176 characters of L{KEY_ALPHABET} (a key
            of the default generator after it stays within
            L{MAX_KEY_LENGTH}).
        :param generator: Makes the rest of each key; a
            L{RandomKeyGenerator} if omitted.
        :raises ValueError: If C{prefix} is empty, too long or has other
            characters.
        """
        if (
            not (isinstance(prefix, str) and _SAFE.match(prefix))
            or len(prefix) > MAX_KEY_LENGTH - 64
        ):
            raise ValueError(
                f"a key prefix must be 1 to {MAX_KEY_LENGTH - 64} characters of "
                f"[A-Za-z0-9_-], not {prefix!r}"
            )
        self.prefix = prefix
        self.generator = generator if generator is not None else RandomKeyGenerator()

    def generate(self) -> str:
        """
        Return the prefix and a new key of the generator.

        :raises ValueError: If the result is no valid key (the generator's
            key is too long, or has other characters).
        """
        return checkKey(self.prefix + self.generator.generate())


def checkKey(key: object) -> str:
    """
    Check a generated key: 1 to L{MAX_KEY_LENGTH} characters of
    L{KEY_ALPHABET}, the default generator's alphabet. Only such keys can be
    restored: the server answers "session not found" to a restore of any
    other key without asking the session manager or the cluster, so a
    generator that makes other keys would make sessions nobody can restore.

    :returns: C{key}.
    :raises ValueError: If the key is not valid.
    """
    if not isinstance(key, str) or not isSafeKey(key):
        raise ValueError(
            f"a session key must be 1 to {MAX_KEY_LENGTH} characters of "
            f"[A-Za-z0-9_-], not {key!r}"
        )
    return key


def isSafeKey(key: object) -> bool:
    """
    Whether C{key} is a valid session key: a string of 1 to
    L{MAX_KEY_LENGTH} characters of L{KEY_ALPHABET} (C{[A-Za-z0-9_-]}).

    Every session manager checks a key with it before any lookup, and
    treats any other key as unknown. Since no key contains a character
    outside the alphabet, a namespace prefix that ends with one (C{":"},
    C{"/"}) can never be reached from another prefix's namespace: see
    L{webwire.sessions.redis.RedisSessionManager}.
    """
    return isinstance(key, str) and _SAFE.match(key) is not None


def shortKey(key: str) -> str:
    """
    A prefix of C{key} that identifies it in logs without revealing it: the
    first four characters, or fewer for a shorter key.
    """
    return key[: min(4, len(key) // 4)] + "\N{HORIZONTAL ELLIPSIS}"
