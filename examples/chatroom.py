"""
The chat demo as an application of its own: the chat page and its WebWire
server on one port.

Run it (from the repository root, after ``pip install .``):

    python -m examples.chatroom

then open http://localhost:8080/ in two browser windows, sign in with two
names and chat.

The server is L{webwire.demo.ChatApplication} (its docstring has the whole
request/signal contract); the page is C{webwire/static/chat.html} with
C{chat.js}, and the browser client C{webwire.js} is served at
C{/webwire.js}. To make the chat your own, copy this file together with
C{webwire/demo.py} (the application: C{ChatApplication} and its helpers,
about 200 lines) and the three files of C{webwire/static/}, change
C{STATIC} below to where you put the page, and import C{ChatApplication}
from your copy.

Sessions are kept in memory for a day since their last use: a reloaded page
stays signed in, a restarted server forgets everyone. Pass a
L{webwire.sessions.FileSessionManager} to keep them across restarts.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python.filepath import FilePath
from twisted.web.static import File

from webwire import WebWireServerFactory, WebWireService
from webwire.demo import ChatApplication
from webwire.interfaces import IServerCluster, ISessionManager
from webwire.sessions import MemorySessionManager
from webwire.web import STATIC, WebWireRoot, makeSite

SESSION_MAX_IDLE = 24 * 3600


def makeService(
    listen: str = "tcp:8080",
    sessionManager: ISessionManager | None = None,
    static: FilePath[str] = STATIC,
    reactor: Any = None,
    cluster: IServerCluster | None = None,
) -> WebWireService:
    """
    The chat room as a service: the page at C{/}, C{/chat.js}, and the chat
    application answering WebSocket upgrades on any path (the page uses
    C{/chat}).

    :param listen: Where to listen (a server endpoint string).
    :param sessionManager: Where sessions are kept; in memory (for a day
        since their last use) if omitted.
    :param static: The directory holding C{chat.html} and C{chat.js}.
    :param reactor: The reactor to listen with and the clock of the chat;
        the global reactor if omitted.
    :param cluster: How messages and sign-outs reach other server processes
        (see C{examples/cluster}); this process only if omitted. A cluster
        that is a service is started and stopped with the chat's.
    """
    if sessionManager is None:
        sessionManager = MemorySessionManager(maxIdle=SESSION_MAX_IDLE, clock=reactor)
    factory = WebWireServerFactory(
        ChatApplication(reactor),
        sessionManager=sessionManager,
        cluster=cluster,
        reactor=reactor,
    )
    root = WebWireRoot(factory)
    root.putChild(b"", File(static.child("chat.html").path, defaultType="text/html"))
    root.putChild(
        b"chat.js", File(static.child("chat.js").path, defaultType="text/javascript")
    )
    return WebWireService(factory, [listen], reactor, site=makeSite(root))


def main(reactor: Any) -> Deferred[None]:
    """Serve on tcp:8080 until interrupted."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = makeService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    return Deferred()


if __name__ == "__main__":
    react(main)
