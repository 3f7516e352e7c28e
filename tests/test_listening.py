"""
Tests for L{webwire._listening}: C{--listen} endpoints that cannot work are
one line each, before or when listening, never a traceback.
"""

from __future__ import annotations

import os
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import ProcessProtocol
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_tap import parse
from tests.test_twistd import ROOT, TWISTD
from tests.tlshelpers import makeTLSFiles
from webwire._listening import checkEndpoint, describeListenFailure


class CheckEndpointTests(SynchronousTestCase):
    """
    L{checkEndpoint}, through C{twistd webwire --listen}.
    """

    def assertRefused(self, description: str, expected: str) -> None:
        """
        C{--listen description} is a one-line usage error, naming the option
        and the description, that ends with C{expected}.
        """
        error = self.assertRaises(usage.UsageError, parse, "--listen", description)
        self.assertEqual(str(error), f"--listen {description}: {expected}")

    def test_unknownType(self) -> None:
        """
        An unknown endpoint type is named.
        """
        self.assertRefused("nonsense", "Unknown endpoint type: 'nonsense'")

    def test_badPort(self) -> None:
        """
        A port that is no number, or out of range, is refused.
        """
        self.assertRefused("tcp:notaport", "the port must be a number from 0 to 65535")
        self.assertRefused(
            "tcp:99999", "the port must be a number from 0 to 65535, not 99999"
        )

    def test_tlsFiles(self) -> None:
        """
        A missing key (also the default C{server.pem}), a file that is not
        PEM, a key file without a certificate, and a key that does not match
        its certificate are each named.
        """
        files = makeTLSFiles(self.mktemp())
        key, cert = files.server.key, files.server.cert
        self.assertRefused(
            "ssl:8443",
            "cannot read privateKey server.pem: No such file or directory "
            "(no privateKey= given: the default is server.pem)",
        )
        self.assertRefused(
            "ssl:8443:privateKey=no.pem",
            "cannot read privateKey no.pem: No such file or directory",
        )
        notPEM = self.mktemp()
        with open(notPEM, "w") as f:
            f.write("not a key\n")
        self.assertRefused(
            f"ssl:8443:privateKey={notPEM}:certKey={cert}",
            f"privateKey {notPEM} is not a PEM file with a private key",
        )
        self.assertRefused(
            f"ssl:8443:privateKey={key}",
            f"certKey {key} is not a PEM file with a certificate",
        )
        other = files.untrusted.cert
        self.assertRefused(
            f"ssl:8443:privateKey={key}:certKey={other}",
            f"privateKey {key} does not match certKey {other}",
        )

    def test_good(self) -> None:
        """
        Endpoints that can work pass.
        """
        files = makeTLSFiles(self.mktemp())
        checkEndpoint("tcp:0")
        checkEndpoint("unix:/tmp/x.sock")
        checkEndpoint(
            f"ssl:0:privateKey={files.server.key}:certKey={files.server.cert}"
        )

    def test_listenFailure(self) -> None:
        """
        A port in use is one line naming the endpoint, address and reason.
        """
        error = CannotListenError("", 8080, OSError(98, "Address already in use"))
        self.assertEqual(
            str(describeListenFailure("tcp:8080", error)),
            "--listen tcp:8080: cannot listen on any:8080: address already in use",
        )


class _Exit(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None) or 0)


class TwistdTests(TestCase):
    """
    C{twistd webwire} in a real process.
    """

    async def twistd(self, *arguments: str) -> tuple[int, list[str]]:
        """Run twistd webwire with C{arguments}; its exit code and lines."""
        process = _Exit()
        env = dict(os.environ, PYTHONPATH=ROOT.path)
        reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, *TWISTD, "webwire", *arguments],
            env=env,
        )
        code = await process.ended
        return code, process.output.decode("utf-8", "replace").splitlines()

    async def test_portInUse(self) -> None:
        """
        A port in use ends twistd with status 1 and one line saying so,
        without a traceback.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        description = f"tcp:{port}:interface=127.0.0.1"
        code, lines = await self.twistd("--listen", description)
        self.assertEqual(code, 1)
        self.assertNotIn("Traceback", "\n".join(lines))
        self.assertTrue(
            lines[-1].endswith(
                f"twistd webwire: --listen {description}: cannot listen on "
                f"127.0.0.1:{port}: address already in use"
            ),
            lines,
        )

    async def test_badOption(self) -> None:
        """
        A refused option is the last line, after a short pointer to
        C{--help} instead of the whole usage.
        """
        code, lines = await self.twistd("--listen", "tcp:99999")
        self.assertEqual(code, 1)
        self.assertLess(len(lines), 4, lines)
        self.assertIn("twistd webwire --help", "\n".join(lines))
        self.assertTrue(
            lines[-1].endswith(
                "--listen tcp:99999: the port must be a number from 0 to 65535, "
                "not 99999"
            ),
            lines,
        )

    async def test_badMetricsEndpoint(self) -> None:
        """
        A malformed C{--metrics} endpoint is refused as C{--listen} ones
        are: one last line naming the option, nothing started.
        """
        for description, problem in [
            ("nonsense", "Unknown endpoint type: 'nonsense'"),
            ("tcp:99999", "the port must be a number from 0 to 65535, not 99999"),
        ]:
            code, lines = await self.twistd("--metrics", description)
            self.assertEqual(code, 1)
            self.assertNotIn("Traceback", "\n".join(lines))
            self.assertTrue(
                lines[-1].endswith(f"--metrics {description}: {problem}"), lines
            )
