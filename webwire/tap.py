# -*- test-case-name: tests.test_tap -*-
"""
C{twistd webwire}: command-line options and the service they make.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage
from twisted.python.reflect import namedAny

from webwire.interfaces import IWebWireServer
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService

__all__ = ["Options", "makeService"]

DEFAULT_LISTEN = "tcp:8080"
DEFAULT_APP = "webwire.conformance.makeApplication"


def loadApplication(name: str) -> IWebWireServer:
    """
    Find the application a dotted name refers to.

    :param name: The fully qualified name of an object that provides
        L{IWebWireServer}, or of a callable that returns one when called
        without arguments.
    :raises usage.UsageError: If it cannot be imported, fails, or does not
        provide L{IWebWireServer}.
    """
    try:
        found = namedAny(name)
    except Exception as e:
        raise usage.UsageError(f"--app {name}: cannot import it ({e})") from None
    if IWebWireServer.providedBy(found):
        return found
    if not callable(found):
        raise usage.UsageError(
            f"--app {name}: neither a WebWire application nor a callable"
        )
    try:
        application = found()
    except Exception as e:
        raise usage.UsageError(f"--app {name}: calling it failed ({e!r})") from None
    if not IWebWireServer.providedBy(application):
        raise usage.UsageError(
            f"--app {name}: returned {application!r}, which does not provide "
            "IWebWireServer"
        )
    return application


class Options(usage.Options):
    """
    The options of C{twistd webwire}.
    """

    synopsis = "[webwire options]"
    longdesc = (
        "Serve a WebWire application over WebSocket. Without options, the "
        "conformance application is served on tcp:8080."
    )
    optParameters = [
        [
            "app",
            "a",
            DEFAULT_APP,
            "Fully qualified name of an IWebWireServer, or of a callable "
            "returning one.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Add an endpoint to listen on (repeatable), e.g. tcp:8080,
        unix:/var/run/webwire.sock or
        ssl:8443:privateKey=key.pem:certKey=cert.pem [default: tcp:8080]
        """
        self["listen"].append(description)

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        self["application"] = loadApplication(self["app"])


def makeService(config: Options, reactor: Any = None) -> IService:
    """
    Make the service C{twistd webwire} runs.

    :param config: Parsed L{Options}.
    :param reactor: The reactor to listen with; the global one if omitted.
    """
    factory = WebWireServerFactory(config["application"], reactor=reactor)
    return WebWireService(factory, config["listen"], reactor=reactor)
