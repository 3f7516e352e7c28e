"""
The C{twistd webwire} plugin. It only names L{webwire.tap}; keep it that way,
because twistd imports every plugin file on every start.
"""

from twisted.application.service import ServiceMaker

webwire = ServiceMaker(
    "WebWire", "webwire.tap", "WebWire messaging over WebSocket.", "webwire"
)
