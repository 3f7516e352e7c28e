"""
WebWire for Twisted: WebWire 2.0 binary messaging over WebSockets.

The names most applications need are importable from here; the modules hold
the rest (L{webwire.wire} is the codec).
"""

from webwire._version import __version__
from webwire.application import Application
from webwire.connection import Connection
from webwire.errors import (
    Disconnected,
    InvalidMessage,
    MessageTooLarge,
    ProtocolViolation,
    RequestError,
)
from webwire.interfaces import IConnection, IHandshakeRequest, IWebWireServer
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.wire import Encoding, Payload, Request, Signal

__all__ = [
    "Application",
    "Connection",
    "Disconnected",
    "Encoding",
    "IConnection",
    "IHandshakeRequest",
    "IWebWireServer",
    "InvalidMessage",
    "MessageTooLarge",
    "Payload",
    "ProtocolViolation",
    "Request",
    "RequestError",
    "ServerOptions",
    "Signal",
    "WebWireServerFactory",
    "WebWireService",
    "__version__",
]
