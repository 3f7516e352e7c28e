"""
TLS over real loopback sockets: a L{WebWireService} serving C{wss://} from a
strports C{ssl:} endpoint description, as C{twistd webwire --listen} does,
and L{WebWireClient} (and a raw WebSocket client) connecting to it with
certificate and host-name verification.

The certificates are made for each test by L{tests.tlshelpers}.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IReactorSSL,
)
from twisted.internet.protocol import Factory, Protocol, ServerFactory, connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers import (
    DEFAULT_ACCEPT_CONF,
    RawClientProtocol,
    listeningPort,
    portNumber,
)
from tests.tlshelpers import CertificateFiles, TLSFiles, makeTLSFiles
from webwire import wire
from webwire.cli import EXIT_CONNECTION
from webwire.client import ClientOptions, WebWireClient
from webwire.conformance import ConformanceApplication
from webwire.errors import Disconnected
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory, WebWireServerProtocol
from webwire.service import WebWireService

# OpenSSL 3 refuses TLS 1.0 and 1.1 at its default security level: a client
# (or server) that is to speak them at all needs level 0.
_LEGACY_CIPHERS = b"DEFAULT:@SECLEVEL=0"


def escape(value: str) -> str:
    """Escape C{value} for use inside an endpoint description."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def sslDescription(
    certificate: CertificateFiles, extraCertChain: str | None = None
) -> str:
    """The strports description of a TLS port on 127.0.0.1, any free port."""
    description = (
        f"ssl:0:privateKey={escape(certificate.key)}"
        f":certKey={escape(certificate.cert)}:interface=127.0.0.1"
    )
    if extraCertChain is not None:
        description += f":extraCertChain={escape(extraCertChain)}"
    return description


def trustOnly(path: str) -> Any:
    """A trust root of only the certificate in the PEM file C{path}."""
    with open(path, "rb") as f:
        return trustRootFromCertificates([Certificate.loadPEM(f.read())])


def serverContextFactory(
    certificate: CertificateFiles,
    minimum: TLSVersion,
    maximum: TLSVersion,
) -> CertificateOptions:
    """
    Server TLS options for C{certificate} that speak C{minimum} to
    C{maximum}, the legacy versions included.
    """
    with open(certificate.cert, "rb") as c, open(certificate.key, "rb") as k:
        pair = PrivateCertificate.loadPEM(c.read() + k.read())
    options = CertificateOptions(
        privateKey=pair.privateKey.original,
        certificate=pair.original,
        insecurelyLowerMinimumTo=minimum,
        lowerMaximumSecurityTo=maximum,
    )
    # getContext() caches the context, so this is the one connections get.
    options.getContext().set_cipher_list(_LEGACY_CIPHERS)
    return options


class TrackedServerProtocol(WebWireServerProtocol):
    """
    A L{WebWireServerProtocol} that tells its factory when its transport
    connected and when it is gone, TLS handshake failures included.
    """

    factory: TrackedServerFactory

    def connectionMade(self) -> None:
        self.factory.live[self] = Deferred()
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.factory.live.pop(self).callback(None)


class TrackedServerFactory(WebWireServerFactory):
    """
    A L{WebWireServerFactory} of the conformance application, without
    sessions, that can wait until none of its transports is left: also
    those whose TLS handshake failed, which L{WebWireServerFactory.shutdown}
    never sees.
    """

    protocol = TrackedServerProtocol

    def __init__(self) -> None:
        super().__init__(ConformanceApplication(), ServerOptions(sessions=False))
        self.live: dict[TrackedServerProtocol, Deferred[None]] = {}

    async def allClosed(self) -> None:
        """Return once every connection made so far is closed."""
        await DeferredList(list(self.live.values()))


class TrackedProtocol(Protocol):
    """
    A protocol whose C{lost} fires once its connection is gone.
    """

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class TrackingFactory(ServerFactory):
    """
    Makes L{TrackedProtocol}s and can wait until all their connections are
    gone.
    """

    protocol = TrackedProtocol

    def __init__(self) -> None:
        self.built: list[TrackedProtocol] = []

    def buildProtocol(self, addr: IAddress | None) -> TrackedProtocol:
        protocol = TrackedProtocol()
        protocol.factory = self
        self.built.append(protocol)
        return protocol

    async def allClosed(self) -> None:
        """Return once every connection made so far is closed."""
        await DeferredList([p.lost for p in self.built])


@implementer(IHandshakeListener)
class HandshakeProbe(TrackedProtocol):
    """
    A TLS client protocol that only shakes hands: C{handshake} fires with
    the TLS version negotiated (and the connection is closed), or fails
    with the reason the connection was lost before.
    """

    def __init__(self) -> None:
        super().__init__()
        self.handshake: Deferred[str] = Deferred()

    def handshakeCompleted(self) -> None:
        transport = cast(TLSMemoryBIOProtocol, self.transport)
        version = transport.getHandle().get_protocol_version_name()
        transport.loseConnection()
        self.handshake.callback(version)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.handshake.called:
            self.handshake.errback(reason)
        super().connectionLost(reason)


@implementer(IOpenSSLClientConnectionCreator)
class LegacyClientTLS:
    """
    A TLS client that speaks exactly one, possibly obsolete, TLS version and
    verifies nothing: to see what a server accepts.
    """

    def __init__(self, version: int) -> None:
        """
        :param version: C{OpenSSL.SSL.TLS1_1_VERSION} and the like.
        """
        self._context = SSL.Context(SSL.TLS_METHOD)
        self._context.set_min_proto_version(version)
        self._context.set_max_proto_version(version)
        self._context.set_cipher_list(_LEGACY_CIPHERS)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


class TLSTestCase(TestCase):
    """
    Serves TLS on loopback sockets with throwaway certificates, and cleans
    up after both sides.
    """

    timeout = 30

    def setUp(self) -> None:
        self.files: TLSFiles = makeTLSFiles(self.mktemp())

    async def serve(
        self,
        certificate: CertificateFiles | None = None,
        extraCertChain: str | None = None,
    ) -> tuple[TrackedServerFactory, int]:
        """
        Serve the conformance application with a L{WebWireService} on the
        strports TLS endpoint of C{certificate} (the CA-issued one for
        C{localhost} by default) and C{extraCertChain}.

        :returns: The factory and the port number it listens on.
        """
        if certificate is None:
            certificate = self.files.server
        factory = TrackedServerFactory()
        service = WebWireService(factory, [sslDescription(certificate, extraCertChain)])
        service.startService()
        self.addCleanup(factory.allClosed)  # after the service stopped
        self.addCleanup(service.stopService)
        return factory, portNumber(await listeningPort(service))

    def listenLegacy(
        self, certificate: CertificateFiles, factory: ServerFactory, maximum: TLSVersion
    ) -> int:
        """
        Listen with C{factory} on 127.0.0.1 speaking TLS 1.0 to C{maximum}
        (OpenSSL permitting).

        :returns: The port number.
        """
        port = cast(IReactorSSL, reactor).listenSSL(
            0,
            factory,
            serverContextFactory(certificate, TLSVersion.TLSv1_0, maximum),
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)
        return portNumber(port)

    def client(self, url: str, caCertificates: str | None = None) -> WebWireClient:
        """
        A client of C{url} that trusts C{caCertificates} (the test CA by
        default), does not reconnect, and is closed at the end of the test.
        """
        client = WebWireClient(
            url,
            options=ClientOptions(
                caCertificates=caCertificates or self.files.caCert,
                autoconnect=False,
                dialTimeout=5,
            ),
        )
        self.addCleanup(client.close)
        return client

    async def assertDisconnected(self, d: Deferred[Any]) -> Disconnected:
        """
        Check C{d} (a client's call) fails with L{Disconnected}.

        :returns: The exception.
        """
        try:
            result = await d
        except Disconnected as e:
            return e
        self.fail(f"expected Disconnected, got {result!r}")

    async def assertHandshakeFails(self, port: int, creator: Any) -> Failure:
        """
        Connect to C{port} on 127.0.0.1 with the TLS client C{creator} and
        check the TLS handshake fails; wait for the connection to close.

        :returns: The failure (an C{OpenSSL.SSL.Error}).
        """
        endpoint = wrapClientTLS(
            creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )
        probe = cast(
            HandshakeProbe,
            await endpoint.connect(Factory.forProtocol(HandshakeProbe)),
        )
        try:
            version = await probe.handshake
        except SSL.Error:
            failure = Failure()
        else:
            self.fail(f"the TLS handshake succeeded with {version}")
        await probe.lost
        return failure


class WSSTests(TLSTestCase):
    """
    L{WebWireClient} and a raw WebSocket client over TLS to a
    L{WebWireService} listening on a strports C{ssl:} endpoint.
    """

    async def test_echo(self) -> None:
        """
        With the CA that issued the server's certificate as its trust root,
        a client of C{wss://localhost:port/} verifies the certificate and
        the host name, connects, and gets the reply to a request.
        """
        _, port = await self.serve()
        client = self.client(f"wss://localhost:{port}/")
        reply = await client.request("echo", "hello over TLS")
        self.assertEqual(
            (reply.payload, reply.encoding), (b"hello over TLS", wire.Encoding.UTF8)
        )
        self.assertTrue(client.isConnected)

    async def test_ipAddress(self) -> None:
        """
        The server certificate names IP 127.0.0.1 too, so C{wss://127.0.0.1}
        verifies as well.
        """
        _, port = await self.serve()
        client = self.client(f"wss://127.0.0.1:{port}/")
        reply = await client.request("echo", b"\x00\x01")
        self.assertEqual(reply.payload, b"\x00\x01")

    async def test_extraCertChain(self) -> None:
        """
        With C{extraCertChain} the server sends the intermediate CA's
        certificate too, so a client trusting only the root CA verifies a
        certificate the intermediate issued.
        """
        _, port = await self.serve(self.files.intermediate, self.files.chain)
        client = self.client(f"wss://localhost:{port}/")
        reply = await client.request("echo", "chained")
        self.assertEqual(reply.payload, b"chained")

    async def test_fullChainAsCertKeyAlone(self) -> None:
        """
        Twisted takes only the first certificate of the C{certKey} file: a
        full chain there, without C{extraCertChain}, leaves the intermediate
        out, and a client trusting only the root CA refuses the server.
        """
        files = self.files
        fullChain = CertificateFiles(files.intermediate.key, files.fullChain)
        _, port = await self.serve(fullChain)
        client = self.client(f"wss://localhost:{port}/")
        await self.assertDisconnected(client.request("echo", "x"))

    async def test_fullChainAsBoth(self) -> None:
        """
        A full chain as both C{certKey} and C{extraCertChain} works (the
        server certificate is sent twice).
        """
        files = self.files
        fullChain = CertificateFiles(files.intermediate.key, files.fullChain)
        _, port = await self.serve(fullChain, files.fullChain)
        client = self.client(f"wss://localhost:{port}/")
        reply = await client.request("echo", "x")
        self.assertEqual(reply.payload, b"x")

    async def test_rawClient(self) -> None:
        """
        A raw WebSocket client over TLS (verifying certificate and host
        name) gets the default AcceptConf as its first message.
        """
        factory, port = await self.serve()
        wsFactory = WebSocketClientFactory(f"wss://localhost:{port}/")
        wsFactory.protocol = RawClientProtocol
        creator = optionsForClientTLS(
            "localhost",
            trustRoot=trustOnly(self.files.caCert),
        )
        endpoint = wrapClientTLS(
            creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )
        raw = cast(RawClientProtocol, await endpoint.connect(wsFactory))
        await raw.is_open
        self.assertEqual(await raw.message(0), DEFAULT_ACCEPT_CONF)
        await factory.shutdown()
        wasClean, code, _ = await raw.closed
        self.assertEqual((wasClean, code), (True, 1001))


class VerificationTests(TLSTestCase):
    """
    L{WebWireClient} refuses servers whose certificate it cannot verify.
    """

    async def assertRefused(self, certificate: CertificateFiles) -> Disconnected:
        """
        Serve C{certificate} and check a request to C{wss://localhost}
        fails with L{Disconnected}, leaving the client disconnected.

        :returns: The exception.
        """
        _, port = await self.serve(certificate)
        client = self.client(f"wss://localhost:{port}/")
        error = await self.assertDisconnected(client.request("echo", "x"))
        self.assertFalse(client.isConnected)
        return error

    async def test_hostNameMismatch(self) -> None:
        """
        A certificate issued by the trusted CA for another host name
        (C{example.invalid}) is refused: the request fails with
        L{Disconnected}.
        """
        await self.assertRefused(self.files.wrongName)

    async def test_untrusted(self) -> None:
        """
        A self-signed certificate for the right host name, but not issued by
        the trusted CA, is refused: the request fails with L{Disconnected}.
        """
        await self.assertRefused(self.files.untrusted)

    async def test_systemTrustRoots(self) -> None:
        """
        Without C{caCertificates} the client trusts the system's CAs only, so
        a certificate from a private CA is refused.
        """
        _, port = await self.serve()
        client = WebWireClient(
            f"wss://localhost:{port}/",
            options=ClientOptions(autoconnect=False, dialTimeout=5),
        )
        self.addCleanup(client.close)
        await self.assertDisconnected(client.request("echo", "x"))

    async def test_untrustedExplained(self) -> None:
        """
        The L{Disconnected} error of an untrusted certificate says that its
        verification failed (OpenSSL's reason, passed on by Autobahn).
        """
        error = await self.assertRefused(self.files.untrusted)
        self.assertIn("certificate verify failed", str(error))

    async def test_hostNameMismatchExplained(self) -> None:
        """
        The L{Disconnected} error of a host-name mismatch says that the
        certificate does not match the host name, not only that the
        connection was closed.
        """
        error = await self.assertRefused(self.files.wrongName)
        self.assertRegex(str(error), r"(?i)certificate|verif|host.?name|mismatch")


class TLSVersionTests(TLSTestCase):
    """
    Both ends insist on TLS 1.2 or later.
    """

    async def skipUnlessLegacyTLS(self, version: int) -> None:
        """
        Skip the test unless OpenSSL here can still negotiate C{version},
        checked against a server that allows it.
        """
        factory = TrackingFactory()
        port = self.listenLegacy(self.files.server, factory, TLSVersion.TLSv1_3)
        self.addCleanup(factory.allClosed)
        endpoint = wrapClientTLS(
            LegacyClientTLS(version),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
        )
        probe = cast(
            HandshakeProbe,
            await endpoint.connect(Factory.forProtocol(HandshakeProbe)),
        )
        try:
            await probe.handshake
        except SSL.Error as e:
            await probe.lost
            self.skipTest(f"OpenSSL here cannot speak TLS version {version:#x}: {e}")
        await probe.lost

    async def test_serverRefusesTLS11(self) -> None:
        """
        A strports C{ssl:} server refuses a client that speaks TLS 1.1 at
        most, with a protocol-version alert: Twisted's default minimum is
        TLS 1.2. (The same client does connect to a server allowing 1.1.)
        """
        await self.skipUnlessLegacyTLS(SSL.TLS1_1_VERSION)
        _, port = await self.serve()
        failure = await self.assertHandshakeFails(
            port, LegacyClientTLS(SSL.TLS1_1_VERSION)
        )
        self.assertIn("protocol version", failure.getErrorMessage())

    async def test_serverRefusesTLS10(self) -> None:
        """
        A strports C{ssl:} server refuses a TLS 1.0 client, too.
        """
        await self.skipUnlessLegacyTLS(SSL.TLS1_VERSION)
        _, port = await self.serve()
        failure = await self.assertHandshakeFails(
            port, LegacyClientTLS(SSL.TLS1_VERSION)
        )
        self.assertIn("protocol version", failure.getErrorMessage())

    async def test_serverNegotiatesTLS13(self) -> None:
        """
        A client offering everything gets TLS 1.3 from a strports C{ssl:}
        server.
        """
        _, port = await self.serve()
        creator = optionsForClientTLS(
            "localhost",
            trustRoot=trustOnly(self.files.caCert),
        )
        endpoint = wrapClientTLS(
            creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )
        probe = cast(
            HandshakeProbe,
            await endpoint.connect(Factory.forProtocol(HandshakeProbe)),
        )
        self.assertEqual(await probe.handshake, "TLSv1.3")
        await probe.lost

    async def test_twistedClientCappedAtTLS11(self) -> None:
        """
        A Twisted client built with C{optionsForClientTLS} and
        C{lowerMaximumSecurityTo=TLSv1_1} cannot connect; OpenSSL refuses
        already on the client's side ("no protocols available"), at its
        default security level.
        """
        _, port = await self.serve()
        creator = optionsForClientTLS(
            "localhost",
            trustRoot=trustOnly(self.files.caCert),
            extraCertificateOptions={"lowerMaximumSecurityTo": TLSVersion.TLSv1_1},
        )
        failure = await self.assertHandshakeFails(port, creator)
        self.assertIn("no protocols available", failure.getErrorMessage())

    async def test_clientRefusesTLS11Server(self) -> None:
        """
        L{WebWireClient} refuses a server that speaks TLS 1.1 at most: the
        request fails with L{Disconnected}, which names the protocol-version
        alert.
        """
        await self.skipUnlessLegacyTLS(SSL.TLS1_1_VERSION)
        factory = TrackedServerFactory()
        port = self.listenLegacy(self.files.server, factory, TLSVersion.TLSv1_1)
        self.addCleanup(factory.allClosed)
        client = self.client(f"wss://localhost:{port}/")
        error = await self.assertDisconnected(client.request("echo", "x"))
        self.assertIn("protocol version", str(error))


class CommandLineTests(TLSTestCase):
    """
    The C{webwire} command-line tool against a C{wss://} server.
    """

    async def tool(self, *argv: str) -> tuple[int, str, str]:
        """Run C{python -m webwire argv...}: its status, stdout and stderr."""
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "webwire", *argv], env=env
        )
        return code, out.decode(), err.decode()

    async def test_selfSignedHint(self) -> None:
        """
        A certificate the system does not trust, without
        C{--ca-certificates}: exit 3 and one line that says why and hints
        at C{--ca-certificates}; with it, the request goes through.
        """
        _, port = await self.serve(self.files.untrusted)
        url = f"wss://localhost:{port}/"
        code, out, err = await self.tool("request", url, "echo", "hi")
        self.assertEqual((code, out), (EXIT_CONNECTION, ""), err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("certificate verify failed", err)
        self.assertIn(
            "(a self-signed certificate or a private CA? give its PEM file with "
            "--ca-certificates)",
            err,
        )
        self.assertNotIn("(in )", err)
        _, port = await self.serve()
        code, out, err = await self.tool(
            "request",
            f"wss://localhost:{port}/",
            "echo",
            "hi",
            "--ca-certificates",
            self.files.caCert,
        )
        self.assertEqual((code, out, err), (0, "hi\n", ""))
