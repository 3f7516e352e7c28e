"""
The session registry on its own: its outcomes are sessions or the errors
of L{webwire.errors}, never encoded replies.
"""

from __future__ import annotations

import ast
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

import webwire.sessions
from webwire.cluster import LocalCluster
from webwire.errors import InternalError, MaxSessionConnections, SessionNotFound
from webwire.interfaces import IConnection
from webwire.sessions.keys import RandomKeyGenerator
from webwire.sessions.memory import MemorySessionManager
from webwire.sessions.registry import SessionRegistry
from webwire.sessions.session import Session


class RecordingChannel:
    """A connection as the registry sees it, recording what it is told."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.isActive = True
        # The session manager reads the session off the connection.
        self.connection: IConnection | None = cast(IConnection, self)
        self.told: list[str] = []

    def sendSessionCreated(self, session: Session) -> None:
        self.told.append(f"created {session.key}")

    def sendSessionClosed(self) -> None:
        self.told.append("closed")


class PendingReserveCluster(LocalCluster):
    """A cluster whose counting the test answers."""

    def __init__(self) -> None:
        super().__init__()
        self.reserves: list[Deferred[bool]] = []

    def reserve(self, key: str, maximum: int) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        self.reserves.append(d)
        return d


class RegistryOutcomeTests(TestCase):
    def setUp(self) -> None:
        self.manager = MemorySessionManager()
        self.logged: list[LogEvent] = []
        observer = cast(ILogObserver, self.logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def registry(self, cluster: LocalCluster, maximum: int = 0) -> SessionRegistry:
        return SessionRegistry(
            self.manager, RandomKeyGenerator(), maximum, Clock(), cluster
        )

    def messages(self) -> list[str]:
        return [str(e.get("log_format", "")) for e in self.logged]

    def test_restoreOutcomes(self) -> None:
        """
        A restore fires with the L{Session} the channel now holds, or fails
        with L{SessionNotFound} (an unknown or malformed key) or
        L{MaxSessionConnections}; the registry tells the channel nothing.
        """
        registry = self.registry(LocalCluster(), maximum=1)
        first = RecordingChannel()
        created = self.successResultOf(registry.create(first, {"user": "ada"}))
        self.assertEqual(first.told, [f"created {created.key}"])

        second = RecordingChannel()
        self.failureResultOf(registry.restore(second, created.key)).trap(
            MaxSessionConnections
        )
        registry.detach(first)
        restored = self.successResultOf(registry.restore(second, created.key))
        self.assertEqual((restored.key, restored.info), (created.key, {"user": "ada"}))
        self.assertIs(second.session, restored)
        self.assertEqual(second.told, [])

        for key in ["A" * 40, "not a key"]:
            self.failureResultOf(
                registry.restore(RecordingChannel(), key), SessionNotFound
            )

    def test_refusedByAccept(self) -> None:
        """
        A restored session that C{accept} refuses (a reply too large) fails
        the restore with L{InternalError}, logged, and the connection does
        not take it.
        """
        registry = self.registry(LocalCluster())
        created = self.successResultOf(registry.create(RecordingChannel(), None))
        channel = RecordingChannel()

        def refuse(session: Session) -> None:
            raise ValueError("too large")

        self.failureResultOf(
            registry.restore(channel, created.key, refuse), InternalError
        )
        self.assertIsNone(channel.session)
        self.assertNotIn(channel, registry.channelsOf(created.key))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_cancelledWhileCounting(self) -> None:
        """
        A restore cancelled while the cluster counts it fails with
        L{CancelledError} and logs a cancellation, not a counting failure
        (a cancellation is not swallowed as an error).
        """
        cluster = PendingReserveCluster()
        registry = self.registry(cluster)
        channel = RecordingChannel()
        restoring: Deferred[Any] = registry.restore(channel, "A" * 40)
        self.assertEqual(len(cluster.reserves), 1)
        restoring.cancel()
        self.failureResultOf(restoring, CancelledError)
        logged = " ".join(self.messages())
        self.assertIn("restoring session {key} was cancelled", logged)
        self.assertNotIn("counting the connections of session {key} failed", logged)
        self.assertEqual(self.flushLoggedErrors(), [])


class LayeringTests(TestCase):
    def test_sessionsKnowNoWireFormat(self) -> None:
        """
        No module of C{webwire.sessions} imports the codec: sessions are
        values and outcomes, and the protocol encodes them.
        """
        package = FilePath(webwire.sessions.__file__).parent()
        modules = package.globChildren("*.py")
        self.assertIn("registry.py", [m.basename() for m in modules])
        for module in modules:
            imported: list[str] = []
            for node in ast.walk(ast.parse(module.getContent())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    imported.append(node.module)
                    imported.extend(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    imported.extend(a.name for a in node.names)
            wireImports = [
                name
                for name in imported
                if name == "webwire.wire" or name.startswith("webwire.wire.")
            ]
            self.assertEqual(wireImports, [], module.basename())
