"""
The stress run's oracle, without sockets: what the conformance application
must answer to a message (L{Generator} makes the messages and the
expectations together), and L{ConnectionCheck}, which holds every message
one connection receives against what it expects, counting into a L{Tally}.
"""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from webwire import wire

IDENTIFIER_SIZE = 8
SLEEP_MS = 40  # the longest sleep request the run sends
# Names the generator never sends, nor keeps when a mutation makes them:
# "internal" logs a traceback by design, and session requests are only sent
# one at a time (their answers depend on the order they run in).
_AVOIDED = frozenset({"internal", "login", "logout", "whoami", "sleep"})
_ECHO_NAMES = ("", "echo", "oddecho")
_SIGNALLING = {"signal-me": "ping", "signal-odd": "odd"}


class Tally(Counter[str]):
    """
    What a run counted: messages and connections, replies verified, and
    every failure (C{lost}, C{duplicated}, C{mismatched}, ...), with the
    first few failures described in L{samples}. Close codes are counted as
    C{close <code>}.
    """

    FAILURES = (
        "lost",
        "duplicated",
        "mismatched",
        "signals lost",
        "pongs lost",
        "wrong close",
        "unfinished close",
        "stalled",
        "run errors",
    )
    SAMPLES = 3  # descriptions kept of each kind of failure

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[str] = []

    def fail(self, kind: str, description: str, count: int = 1) -> None:
        """Count C{count} failures of C{kind}, keeping a sample description."""
        assert kind in self.FAILURES, kind
        self[kind] += count
        self._sample(f"{kind}: {description}")

    def _sample(self, sample: str) -> None:
        kind = sample.split(":", 1)[0]
        if sum(s.startswith(kind + ":") for s in self.samples) < self.SAMPLES:
            self.samples.append(sample)

    def failures(self) -> int:
        """How many failures were counted, of all kinds."""
        return sum(self[kind] for kind in self.FAILURES)

    def merge(self, other: dict[str, Any]) -> None:
        """Add a tally in its L{asDict} form (from another process)."""
        self.update(other["counts"])
        for sample in other["samples"]:
            self._sample(sample)

    def asDict(self) -> dict[str, Any]:
        return {"counts": dict(self), "samples": self.samples}


# Expectations --------------------------------------------------------------


@dataclass
class Expected:
    """
    The one reply a request must get.

    :ivar name: What was sent (in failure descriptions).
    :ivar reply: The exact reply, or C{None} when only its kind is fixed.
    :ivar anyError: Any error reply will do (the application cannot do what
        was asked, and says so).
    :ivar signal: The signal (name, payload, encoding) that must arrive
        before the reply, if any.
    :ivar notification: The session notification that must arrive before
        the reply: C{"created"} or C{"closed"}.
    :ivar sessionOf: For a login or restore: the user whose session the
        reply (a key, or the session document) must carry.
    :ivar restoredKey: For a restore: the key that must come back.
    """

    name: str
    reply: wire.Message | None = None
    anyError: bool = False
    signal: tuple[str, bytes, wire.Encoding] | None = None
    notification: str | None = None
    sessionOf: str | None = None
    restoredKey: str | None = None
    signalled: bool = field(default=False, init=False)


def expectRequest(request: wire.Request) -> Expected | None:
    """
    What the conformance application answers to C{request}, or C{None} for
    a request it does not answer in a fixed way (see L{_AVOIDED}).
    """
    name, payload, encoding = request.name, request.payload, request.encoding
    ident = request.identifier
    if name in _AVOIDED:
        return None
    if name in _ECHO_NAMES:
        return Expected(name, wire.Reply(ident, payload, encoding))
    if name == "echo-binary":
        return Expected(name, wire.Reply(ident, payload, wire.Encoding.BINARY))
    if name == "error":
        return Expected(name, wire.ErrorReply(ident, "TEST_ERROR", "test error"))
    if name in _SIGNALLING:
        if encoding is wire.Encoding.UTF16 and not payload:
            # No UTF-16 signal can be empty: it must say so with an error.
            return Expected(name, anyError=True)
        return Expected(
            name,
            wire.Reply(ident, payload, encoding),
            signal=(_SIGNALLING[name], payload, encoding),
        )
    message = f"unknown request: {name}"
    return Expected(name, wire.ErrorReply(ident, "UNKNOWN_REQUEST", message))


def expectSignal(signal: wire.Signal) -> tuple[str, bytes, wire.Encoding] | None:
    """The signal the application sends back for C{signal}, if any."""
    if signal.name == "echo-signal":
        return ("echoed", signal.payload, signal.encoding)
    return None


def sessionDocument(data: bytes) -> tuple[str, Any]:
    """The key and info of a session document; raise ValueError if wrong."""
    document = json.loads(data)
    if not isinstance(document, dict) or not isinstance(document.get("k"), str):
        raise ValueError("not a session document")
    return document["k"], document.get("i")


# One connection's check -----------------------------------------------------


class ConnectionCheck:
    """
    Every message one connection receives, held against what it expects.

    Call L{expect} once a request was fully written, L{expectSignal} for a
    signal the server must send, L{received} with each binary message from
    the server, and L{finish} once the connection is gone.
    """

    def __init__(self, tally: Tally, name: str = "connection") -> None:
        self.tally = tally
        self.name = name
        self.outstanding: dict[bytes, Expected] = {}
        self.answered: set[bytes] = set()
        # Signals expected, in the order their requests were sent, each
        # with the request that causes it (None for echoed signals).
        self.signals: deque[tuple[tuple[str, bytes, wire.Encoding], bytes | None]]
        self.signals = deque()
        self.notifications: deque[tuple[str, bytes]] = deque()
        self.sessionKey: str | None = None  # as the server told us
        self.sessionUser: str | None = None

    @property
    def idle(self) -> bool:
        """Nothing more is expected."""
        return not (self.outstanding or self.signals or self.notifications)

    def expect(self, identifier: bytes, expected: Expected) -> None:
        """The request C{identifier} was fully written: it must be answered."""
        assert identifier not in self.outstanding, identifier
        self.outstanding[identifier] = expected
        self.tally["requests"] += 1
        if expected.signal is not None:
            self.signals.append((expected.signal, identifier))
        if expected.notification is not None:
            self.notifications.append((expected.notification, identifier))

    def expectSignal(self, signal: tuple[str, bytes, wire.Encoding]) -> None:
        """A signal the server must send (in answer to one of ours)."""
        self.signals.append((signal, None))

    def _mismatch(self, what: str) -> None:
        self.tally.fail("mismatched", f"{self.name}: {what}")

    def received(self, data: bytes) -> None:
        """Check one binary message from the server."""
        try:
            message = wire.parse(data)
        except wire.ProtocolViolation as e:
            self._mismatch(f"unparsable {data[:24]!r}: {e}")
            return
        if isinstance(message, wire.Signal):
            self._signal(message)
        elif isinstance(message, (wire.SessionCreated, wire.SessionClosed)):
            self._notification(message)
        elif isinstance(message, (wire.Reply, wire.ErrorReply, wire.SpecialReply)):
            self._reply(message)
        else:
            self._mismatch(f"unexpected {message!r:.100}")

    def _signal(self, signal: wire.Signal) -> None:
        got = (signal.name, signal.payload, signal.encoding)
        for i, (wanted, identifier) in enumerate(self.signals):
            if wanted == got:
                del self.signals[i]
                if identifier is not None and identifier in self.outstanding:
                    self.outstanding[identifier].signalled = True
                self.tally["signals verified"] += 1
                return
        self._mismatch(f"unexpected signal {signal!r:.100}")

    def _notification(self, message: wire.SessionCreated | wire.SessionClosed) -> None:
        kind = "created" if isinstance(message, wire.SessionCreated) else "closed"
        if not self.notifications or self.notifications[0][0] != kind:
            self._mismatch(f"unexpected session-{kind} notification")
            return
        _, identifier = self.notifications.popleft()
        expected = self.outstanding.get(identifier)
        if isinstance(message, wire.SessionCreated) and expected is not None:
            try:
                key, info = sessionDocument(message.session)
            except ValueError as e:
                self._mismatch(f"bad session-created notification: {e}")
                return
            if info != {"user": expected.sessionOf}:
                self._mismatch(f"session created for {info!r:.60}")
                return
            self.sessionKey, self.sessionUser = key, expected.sessionOf
        elif isinstance(message, wire.SessionClosed):
            self.sessionKey = self.sessionUser = None
        self.tally["notifications verified"] += 1

    def _reply(self, message: wire.Reply | wire.ErrorReply | wire.SpecialReply) -> None:
        identifier = message.identifier
        expected = self.outstanding.pop(identifier, None)
        if expected is None:
            if identifier in self.answered:
                self.tally.fail("duplicated", f"{self.name}: {message!r:.100}")
            else:
                self._mismatch(f"reply to no request sent: {message!r:.100}")
            return
        self.answered.add(identifier)
        problem = self._judge(expected, message)
        if problem is not None:
            self._mismatch(f"{expected.name!r} answered wrongly: {problem}")
        else:
            self.tally["replies verified"] += 1

    def _judge(
        self,
        expected: Expected,
        message: wire.Reply | wire.ErrorReply | wire.SpecialReply,
    ) -> str | None:
        if expected.signal is not None and not expected.signalled:
            return f"reply before its signal {expected.signal[0]!r}"
        if any(
            identifier == message.identifier for _, identifier in self.notifications
        ):
            return "reply before its session notification"
        if expected.anyError:
            if isinstance(message, wire.ErrorReply):
                return None
            return f"{message!r:.100}, not an error reply"
        if expected.reply is not None:
            if message != expected.reply:
                return f"{message!r:.100}, not {expected.reply!r:.100}"
            return None
        if not isinstance(message, wire.Reply):
            return f"{message!r:.100}, not a reply"
        if expected.restoredKey is not None:
            try:
                key, info = sessionDocument(message.payload)
            except ValueError as e:
                return f"bad session document {message.payload[:40]!r}: {e}"
            if key != expected.restoredKey or info != {"user": expected.sessionOf}:
                return f"restored {key!r:.20} of {info!r:.40}"
            self.sessionKey, self.sessionUser = key, expected.sessionOf
            return None
        if expected.sessionOf is not None:  # a login: the reply is the key
            if message.encoding is not wire.Encoding.UTF8:
                return f"login reply in {message.encoding.value}"
            if self.sessionKey is None or message.payload != self.sessionKey.encode():
                return "login reply is not the key of the session created"
            return None
        return "nothing was expected"  # pragma: no cover (no such expectation)

    def finish(self, complete: bool) -> None:
        """
        The connection is gone. If it was C{complete} (not aborted by the
        run), whatever is still expected was lost.
        """
        if complete:
            if self.outstanding:
                names = Counter(e.name for e in self.outstanding.values())
                self.tally.fail(
                    "lost",
                    f"{self.name}: {len(self.outstanding)} replies to {dict(names)}",
                    len(self.outstanding),
                )
            lostSignals = [s for s, identifier in self.signals]
            if lostSignals:
                self.tally.fail(
                    "signals lost",
                    f"{self.name}: {lostSignals[0][0]!r} and "
                    f"{len(lostSignals) - 1} more",
                    len(lostSignals),
                )
        self.outstanding.clear()
        self.signals.clear()
        self.notifications.clear()


# Messages -------------------------------------------------------------------

_ENCODINGS = (wire.Encoding.BINARY, wire.Encoding.UTF8, wire.Encoding.UTF16)
_NAMES = ("", "echo", "oddecho", "echo-binary", "error", "signal-me", "signal-odd")
_NAME_WEIGHTS = (3, 6, 3, 6, 1, 3, 1)
_SERVER_ONLY = (
    bytes.fromhex("17 02 00 60 EA 00 00 00 20 00 00"),  # AcceptConf
    bytes.fromhex("BF 01 00 00 00 00 00 00 00 68 69"),  # ReplyBinary
    bytes.fromhex("02 01 00 00 00 00 00 00 00"),  # ReplyInternalError
    bytes.fromhex("16"),  # NotifySessionClosed
    b'\x15{"k":"abc"}',  # NotifySessionCreated
)
# Invalid messages the protocol lists (the server must close with 1002).
INVALID = tuple(
    bytes.fromhex(text)
    for text in (
        "7F 00 00 00 00 00 00 00 00 00",
        "C8",
        "81 01 00 00 00 00 00 00 00 01 72",
        "7F 00 00 00 00 00 00 00 00 03 41",
        "21 00",
        "1F 00 00 00 00 00 00 00 00 00",
        "41 02 67 6F",
        "3F 00",
        "20 01 00 00 00 00 00 00 00",
        "00 01 00 00 00 00 00 00 00 00 41",
        "",
    )
)


class Generator:
    """
    Random WebWire messages for one connection, each with what the server
    must answer; request identifiers count up from 1.

    :ivar maxSize: The server's message buffer size.
    """

    def __init__(self, rng: random.Random, maxSize: int) -> None:
        self.rng = rng
        self.maxSize = maxSize
        self.counter = 0

    def nextIdentifier(self) -> bytes:
        self.counter += 1
        return self.counter.to_bytes(IDENTIFIER_SIZE, "little")

    def payloadSize(self, largest: int) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.7:
            size = rng.randint(0, 64)
        elif roll < 0.95:
            size = rng.randint(65, 1024)
        else:
            size = rng.randint(1025, largest)
        return min(size, largest)

    def payload(self, encoding: wire.Encoding, largest: int) -> bytes:
        size = self.payloadSize(largest)
        if encoding is wire.Encoding.UTF16:
            size -= size % 2
        return self.rng.randbytes(size)

    def request(self, name: str | None = None) -> tuple[bytes, Expected]:
        """A valid request the application answers exactly, and its answer."""
        rng = self.rng
        if name is None:
            name = rng.choices(_NAMES, _NAME_WEIGHTS)[0]
            if rng.random() < 0.03:
                name = "no-such-" + rng.choice("abcdefghijklmnopqrstuvwxyz") * 3
        encoding = rng.choice(_ENCODINGS)
        payload = self.payload(encoding, self.maxSize - 12 - len(name))
        if not name and not payload:
            payload = b"\x01\x00"
        identifier = self.nextIdentifier()
        data = wire.encodeRequest(identifier, name, payload, encoding)
        expected = expectRequest(wire.Request(identifier, name, payload, encoding))
        assert expected is not None
        return data, expected

    def sleep(self) -> tuple[bytes, Expected]:
        """A C{sleep} request of up to L{SLEEP_MS} milliseconds."""
        identifier = self.nextIdentifier()
        text = str(self.rng.randint(0, SLEEP_MS))
        encoding = self.rng.choice(_ENCODINGS)
        payload = wire.Payload.fromText(text, encoding).data
        data = wire.encodeRequest(identifier, "sleep", payload, encoding)
        return data, Expected("sleep", wire.Reply(identifier, payload, encoding))

    def signal(self) -> tuple[bytes, tuple[str, bytes, wire.Encoding] | None]:
        """A valid signal, and the signal the server sends back, if any."""
        rng = self.rng
        name = "echo-signal" if rng.random() < 0.6 else "ignored"
        encoding = rng.choice(_ENCODINGS)
        payload = self.payload(encoding, self.maxSize - 4 - len(name))
        if encoding is wire.Encoding.UTF16 and not payload:
            payload = b"\x00\x00"
        data = wire.encodeSignal(name, payload, encoding)
        return data, expectSignal(wire.Signal(name, payload, encoding))

    def serverOnly(self) -> bytes:
        """A well-formed message only servers send: the server ignores it."""
        return self.rng.choice(_SERVER_ONLY)

    def mutated(
        self,
    ) -> tuple[bytes, Expected | tuple[str, bytes, wire.Encoding] | None, bool]:
        """
        A valid message with random damage: C{(data, expectation, valid)}.
        Damage that leaves it valid is answered like any message (a request
        gets a fresh identifier); C{valid} is false for a malformed one.
        """
        rng = self.rng
        for _ in range(20):
            base = rng.choice((self.request, self.signal))()[0]
            data = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                how = rng.randrange(5)
                if how == 0 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif how == 1 and data:
                    del data[rng.randrange(len(data)) :]
                elif how == 2:
                    data += rng.randbytes(rng.randint(1, 16))
                elif how == 3 and data:
                    data[0] = rng.choice(list(wire.MessageType))
                elif len(data) > 9:
                    data[9] = rng.randrange(256)
            if len(data) > self.maxSize:
                continue
            try:
                message = wire.parse(bytes(data))
            except wire.ProtocolViolation:
                return bytes(data), None, False
            if isinstance(message, wire.Request):
                data[1:9] = self.nextIdentifier()
                expected = expectRequest(wire.parse(bytes(data)))  # type: ignore[arg-type]
                if expected is not None:
                    return bytes(data), expected, True
            elif isinstance(message, wire.Signal):
                return bytes(data), expectSignal(message), True
            elif not isinstance(message, (wire.RestoreSession, wire.CloseSession)):
                return bytes(data), None, True  # ignored by the server
        return rng.choice(INVALID), None, False

    def invalid(self) -> bytes:
        """A malformed message: one of the protocol's list, or damaged."""
        if self.rng.random() < 0.5:
            return self.rng.choice(INVALID)
        for _ in range(20):
            data, _, valid = self.mutated()
            if not valid:
                return data
        return b"\xc8"

    def login(self, user: str) -> tuple[bytes, Expected]:
        identifier = self.nextIdentifier()
        data = wire.encodeRequest(
            identifier, "login", user.encode(), wire.Encoding.UTF8
        )
        return data, Expected("login", notification="created", sessionOf=user)

    def whoami(self, key: str | None) -> tuple[bytes, Expected]:
        identifier = self.nextIdentifier()
        data = wire.encodeRequest(identifier, "whoami", b"", wire.Encoding.BINARY)
        reply = wire.Reply(identifier, (key or "").encode(), wire.Encoding.UTF8)
        return data, Expected("whoami", reply)

    def logout(self, hasSession: bool) -> tuple[bytes, Expected]:
        identifier = self.nextIdentifier()
        data = wire.encodeRequest(identifier, "logout", b"", wire.Encoding.BINARY)
        reply = wire.Reply(identifier, b"", wire.Encoding.BINARY)
        notification = "closed" if hasSession else None
        return data, Expected("logout", reply, notification=notification)

    def restore(self, key: str, user: str | None) -> tuple[bytes, Expected]:
        """Restore C{key}: the session of C{user}, or unknown if C{None}."""
        identifier = self.nextIdentifier()
        data = wire.encodeRestoreSession(identifier, key)
        if user is None:
            kind = wire.MessageType.REPLY_SESSION_NOT_FOUND
            return data, Expected("restore", wire.SpecialReply(kind, identifier))
        return data, Expected("restore", sessionOf=user, restoredKey=key)
