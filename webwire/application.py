# -*- test-case-name: tests.test_server -*-
"""
A base class for WebWire applications.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from webwire import wire
from webwire.errors import RequestError
from webwire.interfaces import IConnection, IWebWireServer, RequestResult

__all__ = ["Application"]


@implementer(IWebWireServer)
class Application:
    """
    An L{IWebWireServer} that does nothing: subclass it and override the
    hooks you need.

    Unless overridden, connections are accepted, signals ignored and every
    request answered with the error C{UNKNOWN_REQUEST}.
    """

    def onClientConnected(self, connection: IConnection) -> Deferred[None] | None:
        """A client connected (see L{IWebWireServer.onClientConnected})."""

    def onClientDisconnected(self, connection: IConnection, reason: Failure) -> None:
        """A client went away (see L{IWebWireServer.onClientDisconnected})."""

    def onSignal(self, connection: IConnection, signal: wire.Signal) -> None:
        """A signal arrived (see L{IWebWireServer.onSignal}); ignored."""

    def onRequest(
        self, connection: IConnection, request: wire.Request
    ) -> RequestResult:
        """
        A request arrived (see L{IWebWireServer.onRequest}).

        :raises RequestError: C{UNKNOWN_REQUEST}, always.
        """
        raise RequestError("UNKNOWN_REQUEST", f"unknown request: {request.name}")
