"""
A custom session manager: sessions in SQLite, through Twisted's adbapi so
that queries run in a thread pool, never on the reactor.

Run the conformance application on port 8080 with its sessions in
``sessions.sqlite`` (from the repository root, after ``pip install .``):

    python -m examples.sqlite_sessions

In your own code:

    manager = SQLiteSessionManager("sessions.sqlite")
    factory = WebWireServerFactory(MyApp(), sessionManager=manager)

Any class with the three hooks of ``ISessionManager`` works the same way;
each hook may return a plain value or a Deferred.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver
from zope.interface import implementer

from webwire.interfaces import IConnection, ISessionManager
from webwire.sessions import SessionLookupResult, formatTime, isSafeKey, parseTime

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    creation TEXT NOT NULL,
    last_lookup TEXT NOT NULL,
    info TEXT NOT NULL
)
"""


@implementer(ISessionManager)
class SQLiteSessionManager:
    """
    Keeps sessions in one SQLite table. The database file is the
    namespace: give each application its own.

    As every session manager should, it checks keys with C{isSafeKey}
    before any query: another key is unknown on lookup, ignored on close
    and refused on creation.

    :param path: The database file (created if missing).
    """

    def __init__(self, path: str) -> None:
        self._pool = adbapi.ConnectionPool(
            "sqlite3", path, check_same_thread=False, cp_min=1, cp_max=1
        )
        self._ready = self._pool.runOperation(_SCHEMA)

    def close(self) -> None:
        """
        Close the database connections. Not needed when the reactor stops:
        the pool closes itself then (and closing it twice fails).
        """
        self._pool.close()

    async def onSessionCreated(self, connection: IConnection) -> None:
        session = connection.session
        assert session is not None
        if not isSafeKey(session.key):
            raise ValueError("not a valid session key")
        await self._ready
        await self._pool.runOperation(
            "INSERT INTO sessions VALUES (?, ?, ?, ?)",
            (
                session.key,
                formatTime(session.creation),
                formatTime(session.lastLookup),
                json.dumps(dict(session.info)),
            ),
        )

    async def onSessionLookup(self, key: str) -> SessionLookupResult | None:
        # Keys are passed as query parameters, never spliced into SQL; still,
        # a key that no generator of ours makes is unknown without a query.
        if not isSafeKey(key):
            return None
        await self._ready
        result: SessionLookupResult | None = await self._pool.runInteraction(
            _lookup, key
        )
        return result

    async def onSessionClosed(self, key: str) -> None:
        if not isSafeKey(key):
            return
        await self._ready
        await self._pool.runOperation("DELETE FROM sessions WHERE key = ?", (key,))


def _lookup(cursor: Any, key: str) -> SessionLookupResult | None:
    """Read the session and record this lookup, in one transaction."""
    cursor.execute(
        "SELECT creation, last_lookup, info FROM sessions WHERE key = ?", (key,)
    )
    row = cursor.fetchone()
    if row is None:
        return None
    now = formatTime(datetime.now(UTC))
    cursor.execute("UPDATE sessions SET last_lookup = ? WHERE key = ?", (now, key))
    creation, lastLookup, info = row
    return SessionLookupResult(
        parseTime(creation), parseTime(lastLookup), json.loads(info)
    )


def main(
    reactor: Any, path: str = "sessions.sqlite", listen: str = "tcp:8080"
) -> Deferred[None]:
    """Serve the conformance application until interrupted."""
    from webwire.conformance import ConformanceApplication
    from webwire.server import WebWireServerFactory
    from webwire.service import WebWireService

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    manager = SQLiteSessionManager(path)
    factory = WebWireServerFactory(ConformanceApplication(), sessionManager=manager)
    service = WebWireService(factory, [listen])
    service.startService()
    # The pool closes itself when the reactor stops, after the drain.
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    return Deferred()  # runs until the reactor stops (Ctrl-C)


if __name__ == "__main__":
    react(main)
