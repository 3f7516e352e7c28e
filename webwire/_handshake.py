# -*- test-case-name: tests.test_handshake -*-
"""
The server's handshake policy, apart from the protocol: whether an HTTP
request asks for the WebSocket upgrade, which browser origins may connect,
cookies of the upgrade request, and accepting permessage-deflate.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.web.iweb import IRequest

__all__ = ["acceptDeflate", "cookiesOf", "isWebSocketUpgrade", "originAllowed"]


def isWebSocketUpgrade(request: IRequest) -> bool:
    """
    Whether C{request} asks for the WebSocket upgrade: its C{Upgrade}
    header is C{websocket}, in any case (RFC 6455, section 4.2.1).
    """
    upgrade = request.getHeader(b"upgrade") or b""
    return upgrade.lower() == b"websocket"


def originAllowed(origin: str | None, host: str, allowed: Sequence[str]) -> bool:
    """
    Whether a browser on C{origin} may connect: no Origin (not a browser;
    C{None} or empty),
    the server's own host, or a match in C{allowed} (C{*} wildcards).
    """
    if not origin:
        return True
    if origin != "null":
        netloc = urlsplit(origin).netloc
        if netloc and netloc.lower() == host.lower():
            return True
    return any(fnmatchcase(origin.lower(), pattern.lower()) for pattern in allowed)


def cookiesOf(header: str) -> dict[str, str]:
    """The cookies of a C{Cookie} header; none if it cannot be parsed."""
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def acceptDeflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    """Accept the first permessage-deflate offer of a client, if any."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None
