"""
The public API: what is exported exists and is documented; and the
layering: the protocol knows nothing of twistd.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil

from twisted.python.filepath import FilePath
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


TWISTD_MODULES = (
    "twisted.application",
    "twisted.scripts",
    "twisted.plugins",
    "webwire.tap",
    "webwire.service",
    "webwire.workers",
)
"""What belongs to running under twistd: none of it below the service."""

PROTOCOL_MODULES = (
    "_protocol.py",
    "_dispatch.py",
    "server.py",
    "connection.py",
    "guard.py",
    "_handshake.py",
    "_hooks.py",
    "_constants.py",
    "sessions/registry.py",
)
"""The protocol layer: the server factory and what a connection is made of."""


def twistdImports(source: bytes | str) -> list[str]:
    """
    The modules of L{TWISTD_MODULES} (or their submodules) that Python
    C{source} imports, in any form (C{import a.b}, C{from a import b},
    C{from a.b import c}), also under C{if TYPE_CHECKING}.
    """
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.append(node.module)
            imported.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return sorted(
        {
            name
            for name in imported
            for banned in TWISTD_MODULES
            if name == banned or name.startswith(banned + ".")
        }
    )


class LayeringTests(SynchronousTestCase):
    """
    Dependencies point one way: the protocol knows nothing of twistd.
    """

    def test_protocolKnowsNoTwistd(self) -> None:
        """
        The adapter, the dispatcher, the server factory and the parts of a
        connection import nothing of twistd, the plugin or the service.
        """
        package = FilePath(webwire.__file__).parent()
        for relative in PROTOCOL_MODULES:
            module = package.preauthChild(relative)
            self.assertTrue(module.exists(), relative)
            self.assertEqual([], twistdImports(module.getContent()), relative)

    def test_twistdImportsDetected(self) -> None:
        """
        L{twistdImports}, which the layering test relies on, finds every
        form of import of a twistd module, and nothing else.
        """
        source = (
            "import twisted.application.service\n"
            "from twisted.application import internet\n"
            "from twisted import application\n"
            "from twisted.scripts.twistd import run\n"
            "from webwire import tap\n"
            "import webwire.service as s\n"
            "from webwire.workers import WorkerPool\n"
            "from twisted.internet import reactor\n"
            "from webwire import server\n"
            "import webwire.taps\n"
            "if TYPE_CHECKING:\n"
            "    from twisted.plugins import webwire_plugin\n"
        )
        self.assertEqual(
            twistdImports(source),
            [
                "twisted.application",
                "twisted.application.internet",
                "twisted.application.service",
                "twisted.plugins",
                "twisted.plugins.webwire_plugin",
                "twisted.scripts.twistd",
                "twisted.scripts.twistd.run",
                "webwire.service",
                "webwire.tap",
                "webwire.workers",
                "webwire.workers.WorkerPool",
            ],
        )
