"""
The public API: what is exported exists and is documented.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from twisted.trial.unittest import SynchronousTestCase

import webwire


def publicModules() -> list[str]:
    """Every module of the package whose name does not start with _."""
    names = ["webwire"]
    for info in pkgutil.walk_packages(webwire.__path__, "webwire."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


class PublicAPITests(SynchronousTestCase):
    """
    Every public module declares its API, and everything in it is
    documented.
    """

    def test_documented(self) -> None:
        """
        Each public module has a docstring and an C{__all__}; each class
        and function it exports exists and has a docstring.
        """
        undocumented = []
        for name in publicModules():
            module = importlib.import_module(name)
            if not module.__doc__:
                undocumented.append(name)
            self.assertTrue(hasattr(module, "__all__"), name)
            for exported in module.__all__:
                value = getattr(module, exported)
                if inspect.isclass(value) or inspect.isfunction(value):
                    if not inspect.getdoc(value):
                        undocumented.append(f"{name}.{exported}")
        self.assertEqual(undocumented, [])

    def test_internalsPrivate(self) -> None:
        """
        The server's internals (the Autobahn adapter, the dispatcher, the
        handshake policy, the CLI's parts) are private modules; the names
        users need are exported from public ones.
        """
        public = publicModules()
        for internal in ("protocol", "handshake", "dispatch", "cliargs", "clioutput"):
            self.assertNotIn(f"webwire.{internal}", public)
            importlib.import_module(f"webwire._{internal}")
        from webwire._protocol import WebWireServerProtocol
        from webwire.server import WebWireServerProtocol as exported

        self.assertIs(exported, WebWireServerProtocol)
        self.assertIn(
            "WebWireServerProtocol", importlib.import_module("webwire.server").__all__
        )
        redis = importlib.import_module("webwire.sessions.redis")
        self.assertEqual(
            sorted(redis.__all__), ["CorruptRedisSessionError", "RedisSessionManager"]
        )

    def test_testingPublic(self) -> None:
        """L{webwire.testing} is public and exports the in-memory pair."""
        self.assertIn("webwire.testing", publicModules())
        testing = importlib.import_module("webwire.testing")
        for name in ("MemoryServer", "Pair", "connectedPair"):
            self.assertIn(name, testing.__all__)
