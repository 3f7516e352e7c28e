"""
Tests for L{webwire.wire}, the pure WebWire 2.0 binary codec.

The byte vectors are those of PROTOCOL.md section 13, which were checked
against the Go parser and writer (and the JS parser for server-to-client
messages); they are copied here byte for byte.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import assert_never

from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import h, ident
from webwire import wire
from webwire.wire import _parse


def encodeWithFunction(message: wire.Message) -> bytes:
    """
    Encode C{message} with the module-level C{wire.encode*} function of its
    type, rather than with its C{encode} method.
    """
    match message:
        case wire.AcceptConf():
            return wire.encodeAcceptConf(
                message.readTimeout,
                message.messageBufferSize,
                message.subProtocol,
                message.majorVersion,
                message.minorVersion,
            )
        case wire.Heartbeat():
            return wire.encodeHeartbeat()
        case wire.Request():
            return wire.encodeRequest(
                message.identifier, message.name, message.payload, message.encoding
            )
        case wire.Signal():
            return wire.encodeSignal(message.name, message.payload, message.encoding)
        case wire.Reply():
            return wire.encodeReply(
                message.identifier, message.payload, message.encoding
            )
        case wire.ErrorReply():
            return wire.encodeErrorReply(
                message.identifier, message.code, message.message
            )
        case wire.SpecialReply():
            return wire.encodeSpecialReply(message.type, message.identifier)
        case wire.SessionCreated():
            return wire.encodeSessionCreated(message.session)
        case wire.SessionClosed():
            return wire.encodeSessionClosed()
        case wire.RestoreSession():
            return wire.encodeRestoreSession(message.identifier, message.key)
        case wire.CloseSession():
            return wire.encodeCloseSession(message.identifier)
        case _:
            assert_never(message)


BINARY = wire.Encoding.BINARY
UTF8 = wire.Encoding.UTF8
UTF16 = wire.Encoding.UTF16

ID1 = ident(1)
ID2 = ident(2)
ID3 = ident(3)
JS_ID1 = h("00 00 00 00 01 00 00 00")

T25_SESSION_JSON = (
    b'{"k":"abc","c":"2019-01-15T12:29:22.123456789Z",'
    b'"l":"2019-01-15T12:29:22.123456789Z"}'
)
T25_HEX = """
15 7B 22 6B 22 3A 22 61 62 63 22 2C 22 63 22 3A 22 32 30 31 39 2D 30 31 2D 31 35 54 31
32 3A 32 39 3A 32 32 2E 31 32 33 34 35 36 37 38 39 5A 22 2C 22 6C 22 3A 22 32 30 31 39
2D 30 31 2D 31 35 54 31 32 3A 32 39 3A 32 32 2E 31 32 33 34 35 36 37 38 39 5A 22 7D
"""

T28_SESSION_JSON = (
    b'{"k":"abc","c":"2019-01-15T12:29:22.12Z",'
    b'"l":"2019-01-15T13:29:22+01:00","i":{"admin":true}}'
)
T28_HEX = """
C0 01 00 00 00 00 00 00 00 7B 22 6B 22 3A 22 61 62 63 22 2C 22 63 22 3A 22 32 30 31 39
2D 30 31 2D 31 35 54 31 32 3A 32 39 3A 32 32 2E 31 32 5A 22 2C 22 6C 22 3A 22 32 30 31
39 2D 30 31 2D 31 35 54 31 33 3A 32 39 3A 32 32 2B 30 31 3A 30 30 22 2C 22 69 22 3A 7B
22 61 64 6D 69 6E 22 3A 74 72 75 65 7D 7D
"""

VALID_VECTORS: Sequence[tuple[str, str, wire.Message]] = [
    (
        "T01",
        "17 02 00 60 EA 00 00 00 20 00 00",
        wire.AcceptConf(
            readTimeout=60000,
            messageBufferSize=8192,
            subProtocol=None,
            majorVersion=2,
            minorVersion=0,
        ),
    ),
    (
        "T02",
        "17 02 00 B8 0B 00 00 00 20 00 00 63 68 61 74",
        wire.AcceptConf(
            readTimeout=3000,
            messageBufferSize=8192,
            subProtocol=b"chat",
            majorVersion=2,
            minorVersion=0,
        ),
    ),
    ("T03", "21", wire.Heartbeat()),
    (
        "T04",
        "7F 01 00 00 00 00 00 00 00 04 65 63 68 6F 68 69",
        wire.Request(identifier=ID1, name="echo", payload=b"hi", encoding=BINARY),
    ),
    (
        "T05",
        "80 02 00 00 00 00 00 00 00 00 68 65 6C 6C 6F",
        wire.Request(identifier=ID2, name="", payload=b"hello", encoding=UTF8),
    ),
    (
        "T06",
        "7F 03 00 00 00 00 00 00 00 04 70 69 6E 67",
        wire.Request(identifier=ID3, name="ping", payload=b"", encoding=BINARY),
    ),
    (
        "T07",
        "81 01 00 00 00 00 00 00 00 03 6F 64 64 00 68 00 69 00",
        wire.Request(identifier=ID1, name="odd", payload=b"h\x00i\x00", encoding=UTF16),
    ),
    (
        "T08",
        "81 02 00 00 00 00 00 00 00 02 61 62 68 00 69 00",
        wire.Request(identifier=ID2, name="ab", payload=b"h\x00i\x00", encoding=UTF16),
    ),
    (
        "T09",
        "81 03 00 00 00 00 00 00 00 00 41 00",
        wire.Request(identifier=ID3, name="", payload=b"A\x00", encoding=UTF16),
    ),
    (
        "T10",
        "81 01 00 00 00 00 00 00 00 01 72 00",
        wire.Request(identifier=ID1, name="r", payload=b"", encoding=UTF16),
    ),
    (
        "T11",
        "BF 01 00 00 00 00 00 00 00 68 69",
        wire.Reply(identifier=ID1, payload=b"hi", encoding=BINARY),
    ),
    (
        "T12",
        "C0 02 00 00 00 00 00 00 00",
        wire.Reply(identifier=ID2, payload=b"", encoding=UTF8),
    ),
    (
        "T13",
        "C1 01 00 00 00 00 00 00 00 00 68 00 69 00",
        wire.Reply(identifier=ID1, payload=b"h\x00i\x00", encoding=UTF16),
    ),
    (
        "T14",
        "C1 01 00 00 00 00 00 00 00 00",
        wire.Reply(identifier=ID1, payload=b"", encoding=UTF16),
    ),
    (
        "T15",
        "00 01 00 00 00 00 00 00 00 09 4E 4F 54 5F 46 4F 55 4E 44"
        " 6E 6F 20 73 75 63 68 20 69 74 65 6D",
        wire.ErrorReply(identifier=ID1, code="NOT_FOUND", message="no such item"),
    ),
    (
        "T16",
        "01 01 00 00 00 00 00 00 00",
        wire.SpecialReply(type=wire.MessageType.REPLY_SHUTDOWN, identifier=ID1),
    ),
    (
        "T17",
        "02 01 00 00 00 00 00 00 00",
        wire.SpecialReply(type=wire.MessageType.REPLY_INTERNAL_ERROR, identifier=ID1),
    ),
    (
        "T18",
        "03 01 00 00 00 00 00 00 00",
        wire.SpecialReply(
            type=wire.MessageType.REPLY_SESSION_NOT_FOUND, identifier=ID1
        ),
    ),
    (
        "T19",
        "04 01 00 00 00 00 00 00 00",
        wire.SpecialReply(
            type=wire.MessageType.REPLY_MAX_SESSION_CONNECTIONS_REACHED,
            identifier=ID1,
        ),
    ),
    (
        "T20",
        "05 01 00 00 00 00 00 00 00",
        wire.SpecialReply(
            type=wire.MessageType.REPLY_SESSIONS_DISABLED, identifier=ID1
        ),
    ),
    (
        "T21",
        "40 03 65 76 74 78",
        wire.Signal(name="evt", payload=b"x", encoding=UTF8),
    ),
    (
        "T22",
        "3F 00 01 02",
        wire.Signal(name="", payload=b"\x01\x02", encoding=BINARY),
    ),
    (
        "T23",
        "41 01 61 00 68 00 69 00",
        wire.Signal(name="a", payload=b"h\x00i\x00", encoding=UTF16),
    ),
    (
        "T24",
        "3F 02 67 6F",
        wire.Signal(name="go", payload=b"", encoding=BINARY),
    ),
    ("T25", T25_HEX, wire.SessionCreated(session=T25_SESSION_JSON)),
    ("T26", "16", wire.SessionClosed()),
    (
        "T27",
        "20 01 00 00 00 00 00 00 00 61 62 63",
        wire.RestoreSession(identifier=ID1, key="abc"),
    ),
    (
        "T28",
        T28_HEX,
        wire.Reply(identifier=ID1, payload=T28_SESSION_JSON, encoding=UTF8),
    ),
    (
        "T29",
        "1F 02 00 00 00 00 00 00 00",
        wire.CloseSession(identifier=ID2),
    ),
    (
        "T30",
        "BF 02 00 00 00 00 00 00 00",
        wire.Reply(identifier=ID2, payload=b"", encoding=BINARY),
    ),
    (
        "T31",
        "80 00 00 00 00 01 00 00 00 04 65 63 68 6F 68 69",
        wire.Request(identifier=JS_ID1, name="echo", payload=b"hi", encoding=UTF8),
    ),
]
"""(vector, hex, parsed message) for every valid vector of section 13."""

VALID_EDGE_CASES: Sequence[tuple[str, str, wire.Message]] = [
    (
        "padding value FF is ignored",
        "81 01 00 00 00 00 00 00 00 03 6F 64 64 FF 68 00",
        wire.Request(identifier=ID1, name="odd", payload=b"h\x00", encoding=UTF16),
    ),
    (
        "extra bytes after a special reply are ignored",
        "02 01 00 00 00 00 00 00 00 FF FF",
        wire.SpecialReply(type=wire.MessageType.REPLY_INTERNAL_ERROR, identifier=ID1),
    ),
    (
        "name byte 0x0A is accepted on receipt",
        "80 01 00 00 00 00 00 00 00 01 0A",
        wire.Request(identifier=ID1, name="\n", payload=b"", encoding=UTF8),
    ),
]
"""(description, hex, parsed message): the valid edge cases after section 13's
table of invalid inputs."""

INVALID_VECTORS: Sequence[tuple[str, str, str]] = [
    ("X01", "7F 00 00 00 00 00 00 00 00 00", "too short"),
    ("X02", "C8", "invalid message type 200"),
    ("X03", "81 01 00 00 00 00 00 00 00 01 72", "unaligned"),
    ("X04", "7F 00 00 00 00 00 00 00 00 03 41", "too short for its name"),
    ("X05", "21 00", "heartbeat must be 1 byte"),
    ("X06", "1F 00 00 00 00 00 00 00 00 00", "close-session request must be 9"),
    ("X07", "41 02 67 6F", "needs a payload"),
    ("X08", "3F 00", "name or a payload"),
    ("X09", "20 01 00 00 00 00 00 00 00", "without session key"),
    ("X10", "00 01 00 00 00 00 00 00 00 00 41", "empty error code"),
    ("X11", "", "no message type"),
]
"""(vector, hex, a substring of the error message) for section 13's invalid
inputs."""

MORE_INVALID_INPUTS: Sequence[tuple[str, str, str]] = [
    ("v1 ReplyProtocolError type", "06 01 00 00 00 00 00 00 00", "message type 6"),
    ("accept-conf of 10 bytes", "17 02 00 60 EA 00 00 00 20 00", "too short"),
    ("session-created without JSON", "15", "without session"),
    ("session-closed of 2 bytes", "16 00", "1 byte"),
    ("close-session of 8 bytes", "1F 01 00 00 00 00 00 00", "must be 9 bytes"),
    ("special reply of 8 bytes", "01 01 00 00 00 00 00 00", "too short"),
    ("error reply of 10 bytes", "00 01 00 00 00 00 00 00 00 01", "too short"),
    (
        "error reply code longer than the message",
        "00 01 00 00 00 00 00 00 00 03 41 42",
        "too short for its error code",
    ),
    ("binary reply of 8 bytes", "BF 01 00 00 00 00 00 00", "too short"),
    ("UTF-16 reply of 9 bytes", "C1 01 00 00 00 00 00 00 00", "too short"),
    ("UTF-16 reply of odd length", "C1 01 00 00 00 00 00 00 00 00 68", "unaligned"),
    ("UTF-16 request of 10 bytes", "81 01 00 00 00 00 00 00 00 00", "too short"),
    (
        "UTF-16 request with a truncated even name",
        "81 01 00 00 00 00 00 00 00 04 61 62",
        "too short for its name",
    ),
    ("UTF-16 signal of odd length", "41 00 68 00 69", "unaligned"),
    ("UTF-16 signal of 2 bytes", "41 00", "too short"),
    ("UTF-16 signal with only padding", "41 01 61 00", "payload"),
    ("binary signal with a truncated name", "3F 05 61 62", "too short for its name"),
]
"""(description, hex, a substring of the error message): further inputs that
violate the validity rules of section 3.2."""


def forbiddenImports(source: bytes | str) -> list[str]:
    """
    The modules from C{twisted}, C{autobahn} or C{zope} (or their
    submodules) that Python C{source} imports, with C{import x} or
    C{from x import y}.
    """
    forbidden = {"twisted", "autobahn", "zope"}
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found.extend(m for m in modules if m.split(".")[0] in forbidden)
    return found


class VectorTests(SynchronousTestCase):
    """
    The codec parses and writes the test vectors of PROTOCOL.md section 13
    exactly.
    """

    def test_validVectorsParse(self) -> None:
        """
        Every valid vector T01-T31 parses to exactly the message the
        specification states.
        """
        failures = []
        for vector, hexString, expected in VALID_VECTORS:
            parsed = wire.parse(h(hexString))
            if parsed != expected:
                failures.append(f"{vector}: parsed {parsed!r}, expected {expected!r}")
        self.assertEqual([], failures)

    def test_validVectorsEncodeWithMethod(self) -> None:
        """
        C{encode()} of the message of every valid vector T01-T31 produces
        exactly the vector's bytes.
        """
        failures = []
        for vector, hexString, message in VALID_VECTORS:
            encoded = message.encode()
            if encoded != h(hexString):
                failures.append(f"{vector}: encoded {encoded.hex(' ')}")
        self.assertEqual([], failures)

    def test_validVectorsEncodeWithFunction(self) -> None:
        """
        The module-level C{encode*} function of each message type produces
        exactly the bytes of every valid vector T01-T31.
        """
        failures = []
        for vector, hexString, message in VALID_VECTORS:
            encoded = encodeWithFunction(message)
            if encoded != h(hexString):
                failures.append(f"{vector}: encoded {encoded.hex(' ')}")
        self.assertEqual([], failures)

    def test_vectorsTable(self) -> None:
        """
        The table holds every valid vector T01-T31 once, in order.
        """
        self.assertEqual(
            [f"T{n:02}" for n in range(1, 32)],
            [vector for vector, _, _ in VALID_VECTORS],
        )

    def test_sessionCreatedCarriesSpecJSON(self) -> None:
        """
        T25 is 86 bytes; its session is byte for byte the JSON text of the
        specification.
        """
        data = h(T25_HEX)
        self.assertEqual(86, len(data))
        message = wire.parse(data)
        assert isinstance(message, wire.SessionCreated)
        self.assertEqual(
            b'{"k":"abc","c":"2019-01-15T12:29:22.123456789Z",'
            b'"l":"2019-01-15T12:29:22.123456789Z"}',
            message.session,
        )
        self.assertEqual(
            {
                "k": "abc",
                "c": "2019-01-15T12:29:22.123456789Z",
                "l": "2019-01-15T12:29:22.123456789Z",
            },
            json.loads(message.session),
        )

    def test_restoreReplyCarriesSpecJSON(self) -> None:
        """
        T28 is 101 bytes: a UTF-8 reply to request 1 whose payload is byte for
        byte the session JSON (with info) of the specification.
        """
        data = h(T28_HEX)
        self.assertEqual(101, len(data))
        message = wire.parse(data)
        assert isinstance(message, wire.Reply)
        self.assertEqual((ID1, UTF8), (message.identifier, message.encoding))
        self.assertEqual(
            b'{"k":"abc","c":"2019-01-15T12:29:22.12Z",'
            b'"l":"2019-01-15T13:29:22+01:00","i":{"admin":true}}',
            message.payload,
        )
        self.assertEqual(
            {
                "k": "abc",
                "c": "2019-01-15T12:29:22.12Z",
                "l": "2019-01-15T13:29:22+01:00",
                "i": {"admin": True},
            },
            json.loads(message.text()),
        )

    def test_invalidVectorsRaiseProtocolViolation(self) -> None:
        """
        Every invalid vector X01-X11 raises L{wire.ProtocolViolation}, whose
        message says what is wrong.
        """
        self.assertViolations(INVALID_VECTORS)

    def test_moreInvalidInputsRaiseProtocolViolation(self) -> None:
        """
        Further inputs that break the length, alignment and type rules of
        section 3.2 raise L{wire.ProtocolViolation} saying what is wrong.
        """
        self.assertViolations(MORE_INVALID_INPUTS)

    def assertViolations(self, cases: Sequence[tuple[str, str, str]]) -> None:
        """
        Assert that parsing each hex string of C{cases} raises
        L{wire.ProtocolViolation} (and nothing else) whose message contains the
        given substring.
        """
        failures = []
        for case, hexString, expectedText in cases:
            try:
                parsed = wire.parse(h(hexString))
            except wire.ProtocolViolation as e:
                if expectedText not in str(e):
                    failures.append(
                        f"{case}: message {str(e)!r} lacks {expectedText!r}"
                    )
            else:
                failures.append(f"{case}: parsed as {parsed!r}")
        self.assertEqual([], failures)

    def test_validEdgeCases(self) -> None:
        """
        A UTF-16 padding byte of any value is ignored, extra bytes after a
        special reply are ignored, and a name byte outside printable ASCII is
        accepted on receipt (names are decoded as Latin-1).
        """
        failures = []
        for case, hexString, expected in VALID_EDGE_CASES:
            parsed = wire.parse(h(hexString))
            if parsed != expected:
                failures.append(f"{case}: parsed {parsed!r}, expected {expected!r}")
        self.assertEqual([], failures)

    def test_namesAreLatin1OnReceipt(self) -> None:
        """
        Every byte value of a received name, error code or session key comes
        back as the character with that code point.
        """
        allBytes = bytes(range(1, 256))
        self.assertEqual(
            wire.Signal(allBytes.decode("latin-1"), b"", BINARY),
            wire.parse(b"\x3f\xff" + allBytes),
        )
        self.assertEqual(
            wire.ErrorReply(ID1, allBytes.decode("latin-1"), ""),
            wire.parse(b"\x00" + ID1 + b"\xff" + allBytes),
        )
        self.assertEqual(
            wire.RestoreSession(ID1, allBytes.decode("latin-1")),
            wire.parse(b"\x20" + ID1 + allBytes),
        )

    def test_invalidUtf8ErrorMessage(self) -> None:
        """
        An error message that is not valid UTF-8 is decoded with
        replacement characters rather than rejected.
        """
        self.assertEqual(
            wire.ErrorReply(ID1, "E", "a\ufffdb"),
            wire.parse(h("00 01 00 00 00 00 00 00 00 01 45 61 FF 62")),
        )

    def test_forbiddenImportsDetected(self) -> None:
        """
        L{forbiddenImports}, which the purity test relies on, finds imports of
        Twisted, Autobahn and zope in both forms, including submodules, and
        nothing else.
        """
        source = (
            "import os, twisted\n"
            "import zope.interface as zi\n"
            "from autobahn.twisted.websocket import WebSocketServerProtocol\n"
            "from twisted import logger\n"
            "from . import twisted\n"
            "import twistedish\n"
            "def f():\n"
            "    from zope.interface import Interface\n"
        )
        self.assertEqual(
            sorted(
                [
                    "twisted",
                    "zope.interface",
                    "autobahn.twisted.websocket",
                    "twisted",
                    "zope.interface",
                ]
            ),
            sorted(forbiddenImports(source)),
        )

    def test_wireModuleIsPure(self) -> None:
        """
        Every module of the codec (the C{webwire.wire} package) imports
        nothing from Twisted, Autobahn or zope, and nothing of WebWire's
        but the codec's own modules (which would bring those in).
        """
        package = FilePath(wire.__file__).parent()
        self.assertEqual("wire", package.basename())
        modules = sorted(package.globChildren("*.py"))
        self.assertEqual(
            ["__init__.py", "_base.py", "_encode.py", "_messages.py", "_parse.py"],
            [module.basename() for module in modules],
        )
        for module in modules:
            source = module.getContent()
            self.assertEqual([], forbiddenImports(source), module.basename())
            self.assertEqual([], webwireImports(source), module.basename())

    def test_webwireImportsDetected(self) -> None:
        """
        L{webwireImports} finds imports of WebWire modules outside the codec
        in both forms, and relative ones, and nothing else.
        """
        source = (
            "import webwire.errors\n"
            "from webwire import wire\n"
            "from webwire.wire._base import Encoding\n"
            "from webwire.wire import _parse\n"
            "from webwire.sessions import session\n"
            "from . import _base\n"
            "from .. import errors\n"
            "import webwireish\n"
        )
        self.assertEqual(
            ["..", "webwire", "webwire.errors", "webwire.sessions"],
            sorted(webwireImports(source)),
        )


def webwireImports(source: bytes | str) -> list[str]:
    """
    The WebWire modules outside C{webwire.wire} that Python C{source}
    imports (C{from webwire import x} counts as C{webwire}; a relative
    import that leaves the package, as its dots).
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                found.append("." * node.level)
                continue
            if node.level == 1 or not node.module:
                continue
            modules = [node.module]
        else:
            continue
        for module in modules:
            inCodec = module == "webwire.wire" or module.startswith("webwire.wire.")
            if module.split(".")[0] == "webwire" and not inCodec:
                found.append(module)
    return found


def tooLong(n: int) -> str:
    """
    A printable ASCII string of C{n} characters.
    """
    return "a" * n


REFUSED: Sequence[tuple[str, str, Callable[[], object]]] = [
    (
        "request name of 256 characters",
        "0 to 255 characters",
        lambda: wire.encodeRequest(ID1, tooLong(256), b"x", BINARY),
    ),
    (
        "signal name of 256 characters",
        "0 to 255 characters",
        lambda: wire.encodeSignal(tooLong(256), b"x", BINARY),
    ),
    (
        "request name with a line feed",
        "printable ASCII",
        lambda: wire.encodeRequest(ID1, "a\nb", b"x", BINARY),
    ),
    (
        "request name with DEL",
        "printable ASCII",
        lambda: wire.encodeRequest(ID1, "a\x7f", b"x", UTF8),
    ),
    (
        "request name with a non-ASCII letter",
        "printable ASCII",
        lambda: wire.Request(ID1, "caf\u00e9", b"x", BINARY).encode(),
    ),
    (
        "signal name with a line feed",
        "printable ASCII",
        lambda: wire.encodeSignal("\n", b"x", BINARY),
    ),
    (
        "signal name with DEL",
        "printable ASCII",
        lambda: wire.encodeSignal("\x7f", b"x", UTF8),
    ),
    (
        "signal name with a non-ASCII letter",
        "printable ASCII",
        lambda: wire.Signal("\u00e9", b"x", BINARY).encode(),
    ),
    (
        "UTF-16 request with an odd payload",
        "odd length 3",
        lambda: wire.encodeRequest(ID1, "r", b"abc", UTF16),
    ),
    (
        "UTF-16 signal with an odd payload",
        "odd length 1",
        lambda: wire.encodeSignal("s", b"a", UTF16),
    ),
    (
        "UTF-16 reply with an odd payload",
        "odd length 3",
        lambda: wire.encodeReply(ID1, b"abc", UTF16),
    ),
    (
        "UTF-16 signal with a name but no payload",
        "needs a payload",
        lambda: wire.encodeSignal("go", b"", UTF16),
    ),
    (
        "UTF-16 signal with neither name nor payload",
        "needs a payload",
        lambda: wire.Signal("", b"", UTF16).encode(),
    ),
    (
        "empty error code",
        "1 to 255 characters",
        lambda: wire.encodeErrorReply(ID1, "", "message"),
    ),
    (
        "error code of 256 characters",
        "1 to 255 characters",
        lambda: wire.encodeErrorReply(ID1, tooLong(256), "message"),
    ),
    (
        "error code with a tab",
        "printable ASCII",
        lambda: wire.encodeErrorReply(ID1, "NOT\tFOUND", "message"),
    ),
    (
        "error code with a non-ASCII letter",
        "printable ASCII",
        lambda: wire.ErrorReply(ID1, "\u00c9CHEC", "message").encode(),
    ),
    (
        "binary request with neither name nor payload",
        "name, a payload or both",
        lambda: wire.encodeRequest(ID1, "", b"", BINARY),
    ),
    (
        "UTF-8 request with neither name nor payload",
        "name, a payload or both",
        lambda: wire.encodeRequest(ID1, "", b"", UTF8),
    ),
    (
        "UTF-16 request with neither name nor payload",
        "name, a payload or both",
        lambda: wire.Request(ID1, "", b"", UTF16).encode(),
    ),
    (
        "binary signal with neither name nor payload",
        "name, a payload or both",
        lambda: wire.encodeSignal("", b"", BINARY),
    ),
    (
        "UTF-8 signal with neither name nor payload",
        "name, a payload or both",
        lambda: wire.Signal("", b"", UTF8).encode(),
    ),
    (
        "request identifier of 7 bytes",
        "8 bytes",
        lambda: wire.encodeRequest(ID1[:7], "echo", b"x", BINARY),
    ),
    (
        "request identifier of 9 bytes",
        "8 bytes",
        lambda: wire.encodeRequest(ID1 + b"\x00", "echo", b"x", BINARY),
    ),
    (
        "empty reply identifier",
        "8 bytes",
        lambda: wire.encodeReply(b"", b"x", BINARY),
    ),
    (
        "error reply identifier of 7 bytes",
        "8 bytes",
        lambda: wire.encodeErrorReply(ID1[:7], "E", ""),
    ),
    (
        "special reply identifier of 9 bytes",
        "8 bytes",
        lambda: wire.encodeSpecialReply(wire.MessageType.REPLY_SHUTDOWN, ID1 + b"\x00"),
    ),
    (
        "restore-session identifier of 7 bytes",
        "8 bytes",
        lambda: wire.encodeRestoreSession(ID1[:7], "abc"),
    ),
    (
        "close-session identifier of 9 bytes",
        "8 bytes",
        lambda: wire.CloseSession(ID1 + b"\x00").encode(),
    ),
    (
        "empty session key",
        "1 to 255 characters",
        lambda: wire.encodeRestoreSession(ID1, ""),
    ),
    (
        "session key of 256 characters",
        "1 to 255 characters",
        lambda: wire.encodeRestoreSession(ID1, tooLong(256)),
    ),
    (
        "session key with a line feed",
        "printable ASCII",
        lambda: wire.encodeRestoreSession(ID1, "abc\n"),
    ),
    (
        "special reply of a non-special type",
        "not a header-only reply type",
        lambda: wire.encodeSpecialReply(wire.MessageType.REPLY_BINARY, ID1),
    ),
    (
        "session-created notification without session",
        "needs a session",
        lambda: wire.encodeSessionCreated(b""),
    ),
    (
        "accept-conf read timeout of 0",
        "read timeout 0",
        lambda: wire.AcceptConf(readTimeout=0).encode(),
    ),
    (
        "accept-conf read timeout over 2**32-1",
        "read timeout",
        lambda: wire.encodeAcceptConf(2**32, 8192),
    ),
    (
        "accept-conf buffer size of 31",
        "message buffer size 31",
        lambda: wire.AcceptConf(messageBufferSize=31).encode(),
    ),
    (
        "accept-conf buffer size over 2**32-1",
        "message buffer size",
        lambda: wire.encodeAcceptConf(60000, 2**32),
    ),
]
"""(description, a substring of the error message, an attempt to encode
something a sender must not send)."""


SIZED: Sequence[tuple[str, int, Callable[[int | None], bytes]]] = [
    (
        "binary request",
        10 + 4 + 20,
        lambda maxSize: wire.Request(ID1, "echo", b"x" * 20, BINARY).encode(maxSize),
    ),
    (
        "UTF-16 request with an odd name (padding counted)",
        10 + 3 + 1 + 4,
        lambda maxSize: wire.encodeRequest(ID1, "odd", b"h\x00i\x00", UTF16, maxSize),
    ),
    (
        "UTF-8 signal",
        2 + 3 + 5,
        lambda maxSize: wire.Signal("evt", b"hello", UTF8).encode(maxSize),
    ),
    (
        "UTF-16 signal with an odd name (padding counted)",
        2 + 1 + 1 + 4,
        lambda maxSize: wire.encodeSignal("a", b"h\x00i\x00", UTF16, maxSize),
    ),
    (
        "binary reply",
        9 + 30,
        lambda maxSize: wire.Reply(ID1, b"x" * 30, BINARY).encode(maxSize),
    ),
    (
        "UTF-16 reply (padding counted)",
        10 + 4,
        lambda maxSize: wire.encodeReply(ID1, b"h\x00i\x00", UTF16, maxSize),
    ),
    (
        "empty UTF-16 reply (padding counted)",
        10,
        lambda maxSize: wire.Reply(ID1, b"", UTF16).encode(maxSize),
    ),
    (
        "error reply (message counted in UTF-8 bytes)",
        10 + 9 + 15,
        lambda maxSize: wire.encodeErrorReply(
            ID1, "NOT_FOUND", "no such \u00e9l\u00e8ve", maxSize
        ),
    ),
    (
        "error reply via its method",
        10 + 1 + 3,
        lambda maxSize: wire.ErrorReply(ID1, "E", "abc").encode(maxSize),
    ),
    (
        "restore-session request",
        9 + 3,
        lambda maxSize: wire.RestoreSession(ID1, "abc").encode(maxSize),
    ),
    (
        "session-created notification",
        86,
        lambda maxSize: wire.encodeSessionCreated(T25_SESSION_JSON, maxSize),
    ),
]
"""(description, encoded size, encoder taking C{maxSize}) for every message
that a peer's buffer size limits."""


class NameCacheTests(SynchronousTestCase):
    """
    L{wire.parse} hands out one C{str} object per request or signal name
    seen lately, from a cache that stays bounded.
    """

    def encodings(self, name: str) -> list[bytes]:
        """
        C{name} in a request and a signal of every encoding, each message
        a new C{bytes} object.
        """
        messages = []
        for encoding in (BINARY, UTF8, UTF16):
            messages.append(wire.encodeRequest(ID1, name, b"xy", encoding))
            messages.append(wire.encodeSignal(name, b"xy", encoding))
        return messages

    def test_repeatedNameIsOneObject(self) -> None:
        """
        A name parsed again, in any message with a name, is the very
        object parsed before, and equal to its bytes decoded as Latin-1.
        """
        names = []
        for message in self.encodings("echo") + self.encodings("echo"):
            parsed = wire.parse(message)
            assert isinstance(parsed, (wire.Request, wire.Signal))
            names.append(parsed.name)
        self.assertEqual(["echo"] * 12, names)
        self.assertEqual([id(names[0])] * 12, [id(each) for each in names])
        raw = b"\xe9cho"
        latin1 = bytes([wire.MessageType.REQUEST_BINARY, *ID1, len(raw), *raw, 1])
        first, second = wire.parse(latin1), wire.parse(bytes(bytearray(latin1)))
        assert isinstance(first, wire.Request) and isinstance(second, wire.Request)
        self.assertEqual("\xe9cho", first.name)
        self.assertIs(first.name, second.name)

    def test_floodStaysBounded(self) -> None:
        """
        A flood of distinct names keeps at most C{_NAME_CACHE_SIZE} of
        them, each parsed right; names are shared again after the flood.
        """
        limit = _parse._NAME_CACHE_SIZE
        for number in range(3 * limit):
            name = f"flood-{number}"
            parsed = wire.parse(wire.encodeRequest(ID1, name, b"", BINARY))
            assert isinstance(parsed, wire.Request)
            self.assertEqual(name, parsed.name)
            self.assertLessEqual(len(_parse._names), limit)
        first, second = (
            wire.parse(wire.encodeRequest(ID1, "after", b"", BINARY)) for _ in range(2)
        )
        assert isinstance(first, wire.Request) and isinstance(second, wire.Request)
        self.assertIs(first.name, second.name)


class EncoderRefusalTests(SynchronousTestCase):
    """
    Encoders refuse, with L{wire.InvalidMessage}, what a sender must not send.
    """

    def test_refusals(self) -> None:
        """
        Over-long or non-printable names, codes and keys, odd UTF-16
        payloads, UTF-16 signals without payload, requests and signals with
        neither name nor payload, identifiers that are not 8 bytes and
        out-of-range accept-conf values raise L{wire.InvalidMessage} (not
        L{wire.MessageTooLarge}) saying what is wrong.
        """
        failures = []
        for case, expectedText, attempt in REFUSED:
            try:
                result = attempt()
            except wire.InvalidMessage as e:
                if isinstance(e, wire.MessageTooLarge):
                    failures.append(f"{case}: refused as too large")
                elif expectedText not in str(e):
                    failures.append(
                        f"{case}: message {str(e)!r} lacks {expectedText!r}"
                    )
            else:
                failures.append(f"{case}: encoded as {result!r}")
        self.assertEqual([], failures)

    def test_messageTooLargeIsInvalidMessage(self) -> None:
        """
        L{wire.MessageTooLarge} is a kind of L{wire.InvalidMessage}, and
        neither is a L{wire.ProtocolViolation}.
        """
        self.assertTrue(issubclass(wire.MessageTooLarge, wire.InvalidMessage))
        self.assertFalse(issubclass(wire.InvalidMessage, wire.ProtocolViolation))

    def test_sizeBoundary(self) -> None:
        """
        A message whose encoded size equals C{maxSize} is encoded; with
        C{maxSize} one byte smaller it raises L{wire.MessageTooLarge}.
        """
        failures = []
        for case, size, encode in SIZED:
            unlimited = encode(None)
            if len(unlimited) != size:
                failures.append(f"{case}: {len(unlimited)} bytes, expected {size}")
            if encode(size) != unlimited:
                failures.append(f"{case}: differs when maxSize is its size")
            try:
                encode(size - 1)
            except wire.MessageTooLarge as e:
                if str(size) not in str(e):
                    failures.append(f"{case}: message {str(e)!r} lacks its size")
            else:
                failures.append(f"{case}: not refused with maxSize {size - 1}")
        self.assertEqual([], failures)

    def test_longestAndWidestNamesAccepted(self) -> None:
        """
        Names of 255 characters and names using every printable ASCII
        character (0x20-0x7E) are encoded.
        """
        longest = tooLong(255)
        widest = "".join(map(chr, range(0x20, 0x7F)))
        for name in (longest, widest):
            encoded = wire.encodeRequest(ID1, name, b"", BINARY)
            self.assertEqual(
                b"\x7f" + ID1 + bytes((len(name),)) + name.encode("ascii"), encoded
            )
            self.assertEqual(
                b"\x3f" + bytes((len(name),)) + name.encode("ascii"),
                wire.encodeSignal(name, b"", BINARY),
            )
        self.assertEqual(
            b"\x00" + ID1 + b"\xff" + longest.encode("ascii"),
            wire.encodeErrorReply(ID1, longest, ""),
        )

    def test_acceptConfLowestValues(self) -> None:
        """
        AcceptConf accepts a read timeout of 1 ms and a buffer size of 32,
        the smallest valid values.
        """
        self.assertEqual(
            h("17 02 00 01 00 00 00 20 00 00 00"),
            wire.AcceptConf(readTimeout=1, messageBufferSize=32).encode(),
        )

    def test_acceptConfDefaults(self) -> None:
        """
        A default AcceptConf encodes as the Go server's default message (T01).
        """
        self.assertEqual(
            h("17 02 00 60 EA 00 00 00 20 00 00"), wire.AcceptConf().encode()
        )


identifiers = st.binary(min_size=8, max_size=8)
names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=255
)
nonEmptyAsciiFields = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    min_size=1,
    max_size=255,
)
evenBinary = st.binary(max_size=200).map(lambda data: data[: len(data) & ~1])


@st.composite
def payloads(draw: st.DrawFn) -> tuple[bytes, wire.Encoding]:
    """
    A payload and its encoding; UTF-16 payloads have an even length.
    """
    encoding = draw(st.sampled_from(wire.Encoding))
    if encoding is wire.Encoding.UTF16:
        data = draw(
            st.one_of(evenBinary, st.text().map(lambda t: t.encode("utf-16-le")))
        )
    elif encoding is wire.Encoding.UTF8:
        data = draw(st.one_of(st.binary(), st.text().map(lambda t: t.encode("utf-8"))))
    else:
        data = draw(st.binary())
    return data, encoding


arbitraryMessages = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda kind, rest: bytes((kind,)) + rest,
        st.sampled_from(wire.MessageType),
        st.one_of(
            st.binary(max_size=300),
            st.lists(st.sampled_from(b"\x00\x01\x02\x03\xffAh"), max_size=40).map(
                bytes
            ),
        ),
    ),
)
"""Random bytes; two thirds of them start with a known message type, and
half of those continue with small length bytes and printable characters, so
that many of them parse."""


class RoundTripTests(SynchronousTestCase):
    """
    Whatever the encoders accept parses back to the same message.
    """

    @given(identifiers, names, payloads())
    def test_request(
        self, identifier: bytes, name: str, payload: tuple[bytes, wire.Encoding]
    ) -> None:
        """
        A request with any identifier, name, payload and encoding round-trips.
        """
        data, encoding = payload
        assume(name or data)
        message = wire.Request(identifier, name, data, encoding)
        self.assertEqual(message, wire.parse(message.encode()))

    def test_parsedRequestIsAnyRequest(self) -> None:
        """
        A parsed request (built without the dataclass's C{__init__}) is
        what the constructor builds: equal, same hash and repr, frozen.
        """
        for built in [
            wire.Request(ident(1), "echo", b"xy", wire.Encoding.BINARY),
            wire.Request(ident(2), "abc", h("7800"), wire.Encoding.UTF16),
        ]:
            parsed = wire.parse(built.encode())
            assert isinstance(parsed, wire.Request)
            self.assertIs(type(parsed), wire.Request)
            self.assertEqual(parsed, built)
            self.assertEqual(hash(parsed), hash(built))
            self.assertEqual(repr(parsed), repr(built))
            with self.assertRaises(dataclasses.FrozenInstanceError):
                parsed.name = "other"  # type: ignore[misc]
            self.assertEqual(dataclasses.replace(parsed, name="x").name, "x")

    @given(names, payloads())
    def test_signal(self, name: str, payload: tuple[bytes, wire.Encoding]) -> None:
        """
        A signal with any name, payload and encoding round-trips.
        """
        data, encoding = payload
        assume(name or data)
        assume(encoding is not wire.Encoding.UTF16 or len(data) >= 2)
        message = wire.Signal(name, data, encoding)
        self.assertEqual(message, wire.parse(message.encode()))

    @given(identifiers, payloads())
    def test_reply(
        self, identifier: bytes, payload: tuple[bytes, wire.Encoding]
    ) -> None:
        """
        A reply with any identifier, payload and encoding round-trips.
        """
        data, encoding = payload
        message = wire.Reply(identifier, data, encoding)
        self.assertEqual(message, wire.parse(message.encode()))

    @given(identifiers, nonEmptyAsciiFields, st.text())
    def test_errorReply(self, identifier: bytes, code: str, text: str) -> None:
        """
        An error reply with any identifier, code of 1-255 printable ASCII
        characters and message round-trips.
        """
        message = wire.ErrorReply(identifier, code, text)
        self.assertEqual(message, wire.parse(message.encode()))

    @given(st.sampled_from(sorted(wire.MessageType)[1:6]), identifiers)
    def test_specialReply(self, kind: wire.MessageType, identifier: bytes) -> None:
        """
        A header-only reply of each type round-trips.
        """
        message = wire.SpecialReply(kind, identifier)
        self.assertEqual(message, wire.parse(message.encode()))

    @given(identifiers, nonEmptyAsciiFields)
    def test_restoreSession(self, identifier: bytes, key: str) -> None:
        """
        A restore-session request with any identifier and key round-trips.
        """
        message = wire.RestoreSession(identifier, key)
        self.assertEqual(message, wire.parse(message.encode()))

    @given(identifiers)
    def test_closeSession(self, identifier: bytes) -> None:
        """
        A close-session request with any identifier round-trips.
        """
        message = wire.CloseSession(identifier)
        self.assertEqual(message, wire.parse(message.encode()))

    @given(st.binary(min_size=1))
    def test_sessionCreated(self, session: bytes) -> None:
        """
        A session-created notification with any session bytes round-trips.
        """
        message = wire.SessionCreated(session)
        self.assertEqual(message, wire.parse(message.encode()))

    @given(
        st.integers(1, 2**32 - 1),
        st.integers(32, 2**32 - 1),
        st.none() | st.binary(min_size=1),
        st.integers(0, 255),
        st.integers(0, 255),
    )
    def test_acceptConf(
        self,
        readTimeout: int,
        bufferSize: int,
        subProtocol: bytes | None,
        major: int,
        minor: int,
    ) -> None:
        """
        An AcceptConf with any valid values round-trips.
        """
        message = wire.AcceptConf(readTimeout, bufferSize, subProtocol, major, minor)
        self.assertEqual(message, wire.parse(message.encode()))

    def test_emptyMessages(self) -> None:
        """
        A heartbeat and a session-closed notification round-trip.
        """
        for message in (wire.Heartbeat(), wire.SessionClosed()):
            self.assertEqual(message, wire.parse(message.encode()))


class ArbitraryInputTests(SynchronousTestCase):
    """
    The parser copes with any bytes.
    """

    @given(arbitraryMessages)
    def test_onlyProtocolViolation(self, data: bytes) -> None:
        """
        Parsing any bytes either returns a message or raises
        L{wire.ProtocolViolation} with a non-empty message; no other exception
        escapes.
        """
        try:
            wire.parse(data)
        except wire.ProtocolViolation as e:
            self.assertTrue(str(e))

    @given(arbitraryMessages)
    def test_reencodeReparses(self, data: bytes) -> None:
        """
        Any message parsed from arbitrary bytes that the encoder accepts
        re-encodes to bytes that parse to the same message.
        """
        try:
            message = wire.parse(data)
        except wire.ProtocolViolation:
            return
        try:
            encoded = message.encode()
        except wire.InvalidMessage:
            # Non-canonical content a sender must not send, such as a name
            # outside printable ASCII or a read timeout of 0.
            return
        self.assertEqual(message, wire.parse(encoded))


class PayloadTests(SynchronousTestCase):
    """
    L{wire.Payload} turns application values into payload bytes and back.
    """

    def test_frozenValue(self) -> None:
        """
        A Payload is a frozen value: defaults, keywords, equality, hash and
        repr by its fields; no field can be set.
        """
        self.assertEqual(wire.Payload(), wire.Payload(b"", wire.Encoding.BINARY))
        payload = wire.Payload(encoding=wire.Encoding.UTF8, data=b"x")
        self.assertEqual(payload, wire.Payload(b"x", wire.Encoding.UTF8))
        self.assertNotEqual(payload, wire.Payload(b"x", wire.Encoding.BINARY))
        self.assertEqual(hash(payload), hash(wire.Payload(b"x", wire.Encoding.UTF8)))
        self.assertEqual(
            repr(payload), "Payload(data=b'x', encoding=<Encoding.UTF8: 'utf8'>)"
        )
        with self.assertRaises(dataclasses.FrozenInstanceError):
            payload.data = b"y"  # type: ignore[misc]
        self.assertEqual(dataclasses.replace(payload, data=b"y").data, b"y")

    def test_coerceNone(self) -> None:
        """
        C{None} is an empty binary payload.
        """
        self.assertEqual(wire.Payload(b"", BINARY), wire.Payload.coerce(None))

    def test_coerceBytesLike(self) -> None:
        """
        C{bytes}, C{bytearray} and C{memoryview} are binary payloads whose data
        is C{bytes}.
        """
        for value in (b"\x00ab", bytearray(b"\x00ab"), memoryview(b"\x00ab")):
            payload = wire.Payload.coerce(value)
            self.assertEqual(wire.Payload(b"\x00ab", BINARY), payload)
            self.assertIs(bytes, type(payload.data))

    def test_coerceStr(self) -> None:
        """
        C{str} is a UTF-8 payload.
        """
        self.assertEqual(
            wire.Payload("h\u00e9\U0001f600".encode(), UTF8),
            wire.Payload.coerce("h\u00e9\U0001f600"),
        )

    def test_coercePayload(self) -> None:
        """
        A L{wire.Payload} is taken as it is.
        """
        payload = wire.Payload(b"h\x00", UTF16)
        self.assertIs(payload, wire.Payload.coerce(payload))

    def test_coerceOtherTypes(self) -> None:
        """
        Any other type raises L{TypeError} naming it.
        """
        for value in (42, 1.5, ["a"]):
            e = self.assertRaises(TypeError, wire.Payload.coerce, value)
            self.assertIn(type(value).__name__, str(e))

    def test_fromTextDefaultsToUtf8(self) -> None:
        """
        L{wire.Payload.fromText} encodes as UTF-8 unless told otherwise.
        """
        self.assertEqual(
            wire.Payload(b"h\xc3\xa9", UTF8), wire.Payload.fromText("h\u00e9")
        )

    def test_fromTextEncodings(self) -> None:
        """
        L{wire.Payload.fromText} writes UTF-8 for binary and UTF-8 payloads
        and UTF-16LE without BOM, with a surrogate pair for a non-BMP
        character, for UTF-16; C{text()} reads each back.
        """
        text = "h\u00e9\U0001f600"
        expected = {
            BINARY: b"h\xc3\xa9\xf0\x9f\x98\x80",
            UTF8: b"h\xc3\xa9\xf0\x9f\x98\x80",
            UTF16: b"h\x00\xe9\x00\x3d\xd8\x00\xde",
        }
        for encoding, data in expected.items():
            payload = wire.Payload.fromText(text, encoding)
            self.assertEqual(wire.Payload(data, encoding), payload)
            self.assertEqual(text, payload.text())

    def test_of(self) -> None:
        """
        L{wire.Payload.of} takes a signal's payload and encoding: text is
        written in the encoding given, anything else keeps its bytes and
        takes that encoding; without one, it is L{wire.Payload.coerce}d.
        """
        self.assertEqual(
            wire.Payload.of("h\u00e9", UTF16), wire.Payload(b"h\x00\xe9\x00", UTF16)
        )
        self.assertEqual(wire.Payload.of(b"ab", UTF8), wire.Payload(b"ab", UTF8))
        self.assertEqual(wire.Payload.of(None, UTF8), wire.Payload(b"", UTF8))
        self.assertEqual(wire.Payload.of("x"), wire.Payload.coerce("x"))
        self.assertRaises(TypeError, wire.Payload.of, 42, UTF8)

    def test_isPrintableASCII(self) -> None:
        """
        Printable ASCII is 0x20 to 0x7E, no more, no less.
        """
        self.assertTrue(wire.isPrintableASCII(" ~" + "".join(map(chr, range(32, 127)))))
        self.assertTrue(wire.isPrintableASCII(""))
        for bad in ["\x1f", "\x7f", "\t", "\u00e9", "a\nb"]:
            self.assertFalse(wire.isPrintableASCII(bad), repr(bad))

    @given(st.text(), st.sampled_from(wire.Encoding))
    def test_textRoundTrip(self, text: str, encoding: wire.Encoding) -> None:
        """
        C{fromText} then C{text()} gives back any text in every encoding.
        """
        self.assertEqual(text, wire.Payload.fromText(text, encoding).text())

    def test_messageText(self) -> None:
        """
        Requests, signals and replies decode their payloads by their
        encoding, UTF-16 payloads as UTF-16LE.
        """
        messages: list[wire.Request | wire.Signal | wire.Reply] = [
            wire.Request(ID1, "", "h\u00e9".encode("utf-16-le"), UTF16),
            wire.Signal("", "h\u00e9".encode(), UTF8),
            wire.Reply(ID1, "h\u00e9".encode(), BINARY),
        ]
        for message in messages:
            self.assertEqual("h\u00e9", message.text())
