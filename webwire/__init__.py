"""
WebWire for Twisted: WebWire 2.0 binary messaging over WebSockets.

The names most applications need are importable from here; the modules hold
the rest (L{webwire.wire} is the codec).
"""

from webwire._version import __version__
from webwire.application import Application
from webwire.client import ClientHooks, ClientOptions, WebWireClient
from webwire.connection import Connection
from webwire.errors import (
    Disconnected,
    InvalidMessage,
    MessageTooLarge,
    ProtocolViolation,
    RequestError,
    UpgradeRefused,
)
from webwire.interfaces import (
    IConnection,
    IHandshakeRequest,
    ISessionKeyGenerator,
    ISessionManager,
    IUpgradeGuard,
    IWebWireClientHooks,
    IWebWireServer,
)
from webwire.options import ServerOptions
from webwire.resource import WebWireResource
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.wire import Encoding, Payload, Reply, Request, Signal

__all__ = [
    "Application",
    "ClientHooks",
    "ClientOptions",
    "Connection",
    "Disconnected",
    "Encoding",
    "IConnection",
    "IHandshakeRequest",
    "ISessionKeyGenerator",
    "ISessionManager",
    "IUpgradeGuard",
    "IWebWireClientHooks",
    "IWebWireServer",
    "InvalidMessage",
    "MessageTooLarge",
    "Payload",
    "ProtocolViolation",
    "Reply",
    "Request",
    "RequestError",
    "ServerOptions",
    "Signal",
    "UpgradeRefused",
    "WebWireClient",
    "WebWireResource",
    "WebWireServerFactory",
    "WebWireService",
    "__version__",
]
