"""
WebWire and a web site on one port, with two WebWire applications on two
paths (each with its own options).

Run it (from the repository root, after ``pip install .``):

    python -m examples.shared_port

then open http://localhost:8080/ in a browser, and point WebWire clients at
ws://localhost:8080/api/conformance (the conformance application) or
ws://localhost:8080/api/greeter (examples/quickstart.py, sub-protocol
"greet").
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.application.strports import service as endpointService
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from examples.quickstart import Greeter
from webwire import ServerOptions, WebWireServerFactory
from webwire.conformance import ConformanceApplication
from webwire.resource import WebWireResource

PAGE = b"""<!doctype html>
<title>WebWire on a shared port</title>
<p>This page and two WebWire applications share one port:
<code>/api/conformance</code> and <code>/api/greeter</code>.</p>
"""


class SharedPortService(MultiService):
    """
    A site with a page and two WebWire applications; stopping it shuts the
    WebWire applications down gracefully before the port closes.
    """

    def __init__(self, listen: str = "tcp:8080") -> None:
        super().__init__()
        self.factories = [
            WebWireServerFactory(ConformanceApplication()),
            WebWireServerFactory(
                Greeter(), ServerOptions(subProtocol="greet", sessions=False)
            ),
        ]
        root = Resource()
        root.putChild(b"", Data(PAGE, "text/html; charset=utf-8"))
        api = Resource()
        api.putChild(b"conformance", WebWireResource(self.factories[0]))
        api.putChild(b"greeter", WebWireResource(self.factories[1]))
        root.putChild(b"api", api)
        self.site = Site(root)
        endpointService(listen, self.site).setServiceParent(self)

    async def _stop(self) -> None:
        for factory in self.factories:
            await factory.shutdown()
        await MultiService.stopService(self)

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())


def main(reactor: Any) -> Deferred[None]:
    """Serve until interrupted."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = SharedPortService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    return Deferred()


if __name__ == "__main__":
    react(main)
