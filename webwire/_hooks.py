"""
Calling what users plug in: an application's hooks and handlers, a session
manager's hooks. The one helper both the dispatcher and the session
registry use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

__all__ = ["callHook"]


def callHook(hook: Callable[..., object], *args: object) -> Deferred[Any]:
    """
    Call C{hook(*args)}: it may return a value, a Deferred or a coroutine.

    :returns: A Deferred of its result; an exception it raises is the
        Deferred's failure, never raised here.
    """
    return maybeDeferred(hook, *args)
