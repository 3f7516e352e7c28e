# An existing Twisted application (here: a TCP echo service) that gains a
# WebWire service next to it. Run it (from the repository root, after
# ``pip install .``):
#
#     twistd -ny examples/existing_application.tac
#
# SIGTERM or Ctrl-C stops both; the WebWire service shuts down gracefully
# (running requests are answered) before its port closes. The environment
# variables ECHO_LISTEN and WEBWIRE_LISTEN override the two endpoints.

import os
import sys

# twistd runs this file without putting its directory's parent on sys.path:
# make ``examples`` importable from wherever twistd is started.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.application import service, strports
from twisted.internet.protocol import Factory
from twisted.protocols.wire import Echo

from examples.quickstart import Greeter
from webwire import ServerOptions, WebWireServerFactory, WebWireService

application = service.Application("existing application")

# What the application already had.
echoListen = os.environ.get("ECHO_LISTEN", "tcp:7007")
strports.service(echoListen, Factory.forProtocol(Echo)).setServiceParent(application)

# What it gains: WebWire on another port.
factory = WebWireServerFactory(Greeter(), ServerOptions(sessions=False))
webwireListen = os.environ.get("WEBWIRE_LISTEN", "tcp:8080")
WebWireService(factory, [webwireListen]).setServiceParent(application)
