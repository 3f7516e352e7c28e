"""
Test support for TLS: throwaway certificates made with C{cryptography} at
test time, so nothing secret (or expiring) is committed to the repository.

All keys are EC P-256, which are quick to make: the whole set (two CAs,
four server certificates, written to disk) takes a few milliseconds, so
every test makes its own.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateFiles", "TLSFiles", "makeTLSFiles"]

_Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class CertificateFiles:
    """
    One server certificate and its private key, as absolute paths of PEM
    files.

    :ivar key: The private key (PKCS#8, unencrypted).
    :ivar cert: The certificate.
    """

    key: str
    cert: str


@dataclass(frozen=True)
class TLSFiles:
    """
    The PEM files of a private CA and the server certificates the TLS tests
    use; all paths are absolute.

    :ivar caCert: The CA's certificate: what a client trusts.
    :ivar server: Issued by the CA for DNS C{localhost} and IP 127.0.0.1.
    :ivar wrongName: Issued by the CA for DNS C{example.invalid} only.
    :ivar untrusted: Self-signed for DNS C{localhost} and IP 127.0.0.1,
        unrelated to the CA.
    :ivar intermediate: Issued for DNS C{localhost} and IP 127.0.0.1 by an
        intermediate CA, which the CA issued.
    :ivar chain: The intermediate CA's certificate, as C{extraCertChain}
        wants it.
    :ivar fullChain: C{intermediate}'s certificate followed by C{chain},
        like Let's Encrypt's C{fullchain.pem}.
    """

    caCert: str
    server: CertificateFiles
    wrongName: CertificateFiles
    untrusted: CertificateFiles
    intermediate: CertificateFiles
    chain: str
    fullChain: str


def _newKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(commonName: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "WebWire tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    publicKey: ec.EllipticCurvePublicKey,
) -> x509.CertificateBuilder:
    """Valid from a minute ago for a day."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False
        )
    )


def _makeCA(commonName: str, issuer: _Pair | None) -> _Pair:
    """
    A CA certificate, signed by C{issuer} (an intermediate CA), or
    self-signed if C{issuer} is C{None} (a root CA).
    """
    key = _newKey()
    name = _name(commonName)
    if issuer is None:
        issuerName, signingKey = name, key
    else:
        issuerName, signingKey = issuer[0].subject, issuer[1]
    pathLength = 1 if issuer is None else 0
    cert = (
        _builder(name, issuerName, key.public_key())
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=pathLength), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(signingKey, hashes.SHA256())
    )
    return cert, key


def _makeServer(
    dnsNames: list[str],
    ipAddresses: list[str],
    issuer: _Pair | None,
) -> _Pair:
    """
    A server certificate for the names given, signed by C{issuer}, or
    self-signed if C{issuer} is C{None}.
    """
    key = _newKey()
    subject = _name(dnsNames[0])
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in dnsNames]
    alternatives += [x509.IPAddress(ipaddress.ip_address(a)) for a in ipAddresses]
    if issuer is None:
        issuerName, signingKey = subject, key
    else:
        issuerName, signingKey = issuer[0].subject, issuer[1]
    builder = (
        _builder(subject, issuerName, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    return builder.sign(signingKey, hashes.SHA256()), key


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _certPEM(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _writePair(
    directory: str,
    stem: str,
    pair: _Pair,
) -> CertificateFiles:
    cert, key = pair
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertificateFiles(
        key=_write(os.path.join(directory, f"{stem}-key.pem"), keyPEM),
        cert=_write(os.path.join(directory, f"{stem}-cert.pem"), _certPEM(cert)),
    )


def makeTLSFiles(directory: str) -> TLSFiles:
    """
    Make a private CA and the test server certificates (see L{TLSFiles}),
    and write them as PEM files into C{directory}, which is created if
    missing (give it C{self.mktemp()}).
    """
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    ca = _makeCA("WebWire test CA", None)
    intermediateCA = _makeCA("WebWire test intermediate CA", ca)
    intermediate = _makeServer(["localhost"], ["127.0.0.1"], intermediateCA)
    chain = _certPEM(intermediateCA[0])
    return TLSFiles(
        caCert=_write(os.path.join(directory, "ca-cert.pem"), _certPEM(ca[0])),
        server=_writePair(
            directory, "server", _makeServer(["localhost"], ["127.0.0.1"], ca)
        ),
        wrongName=_writePair(
            directory, "wrongname", _makeServer(["example.invalid"], [], ca)
        ),
        untrusted=_writePair(
            directory,
            "untrusted",
            _makeServer(["localhost"], ["127.0.0.1"], None),
        ),
        intermediate=_writePair(directory, "intermediate", intermediate),
        chain=_write(os.path.join(directory, "chain.pem"), chain),
        fullChain=_write(
            os.path.join(directory, "fullchain.pem"),
            _certPEM(intermediate[0]) + chain,
        ),
    )
