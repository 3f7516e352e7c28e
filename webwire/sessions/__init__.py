"""
Server-managed sessions: what they are, how keys are made, and the managers
that persist them (L{FileSessionManager}, the default, and
L{MemorySessionManager}).
"""

from webwire.sessions.file import FileSessionManager
from webwire.sessions.keys import (
    PrefixedKeyGenerator,
    RandomKeyGenerator,
    checkKey,
    isSafeKey,
)
from webwire.sessions.memory import MemorySessionManager
from webwire.sessions.session import (
    Session,
    SessionLookupResult,
    formatTime,
    parseTime,
)

__all__ = [
    "FileSessionManager",
    "MemorySessionManager",
    "PrefixedKeyGenerator",
    "RandomKeyGenerator",
    "Session",
    "SessionLookupResult",
    "checkKey",
    "formatTime",
    "isSafeKey",
    "parseTime",
]
