"""
The reactor WebWire's parts are given, as one type, and where the default
comes from.

Every part that connects, listens or schedules takes a C{reactor}
argument typed L{IWebWireReactor} and uses it for everything it does: the
global reactor is only ever a default, taken by L{defaultReactor} when the
argument is omitted, and imported then (so that building a part installs
no reactor).
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
)

__all__ = ["IWebWireReactor", "defaultReactor"]


class IWebWireReactor(
    IReactorCore, IReactorTime, IReactorTCP, IReactorPluggableNameResolver
):
    """
    What WebWire needs of a reactor: to run, tell time and schedule, and
    make and accept TCP connections to names it resolves (every reactor
    Twisted installs provides it; a test gives a
    L{twisted.internet.testing.MemoryReactorClock}).
    """


def defaultReactor(reactor: object = None) -> IWebWireReactor:
    """
    C{reactor} if given, else the global reactor (imported now).
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    return cast(IWebWireReactor, reactor)
