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
    IReactorFDSet,
    IReactorPluggableNameResolver,
    IReactorProcess,
    IReactorSocket,
    IReactorTCP,
    IReactorTime,
    IReactorUNIX,
)

__all__ = ["IWebWireReactor", "defaultReactor"]


class IWebWireReactor(
    IReactorCore,
    IReactorTime,
    IReactorTCP,
    IReactorUNIX,
    IReactorPluggableNameResolver,
    IReactorSocket,
    IReactorProcess,
    IReactorFDSet,
):
    """
    What WebWire needs of a reactor: to run, tell time and schedule, make
    and accept TCP and UNIX connections to names it resolves, and, for
    C{--workers}, adopt sockets, spawn processes and watch descriptors.
    Every reactor Twisted installs on a POSIX system provides it all; a part
    that needs less says so in its parameter's type (C{IReactorTime} for a
    clock). Tests hand in a C{twisted.internet.testing.MemoryReactorClock},
    cast to this type.
    """


def defaultReactor(reactor: object = None) -> IWebWireReactor:
    """
    C{reactor} if given, else the global reactor (imported now).
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    return cast(IWebWireReactor, reactor)
