"""
Tests for L{webwire.sessions}: keys, times and the session JSON, then the
two built-in session managers: one shared contract
(L{SessionManagerContract}), run by each, and each one's specifics.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast

from twisted.application.service import IService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from webwire import wire
from webwire.application import Application
from webwire.interfaces import IConnection, ISessionKeyGenerator, ISessionManager
from webwire.sessions.file import (
    STALE_TEMPORARY_AGE,
    CorruptSessionError,
    FileSessionManager,
)
from webwire.sessions.keys import (
    KEY_ALPHABET,
    PrefixedKeyGenerator,
    RandomKeyGenerator,
    checkKey,
    isSafeKey,
)
from webwire.sessions.memory import MemorySessionManager
from webwire.sessions.session import (
    Session,
    SessionLookupResult,
    formatTime,
    parseTime,
)
from webwire.testing import MemoryServer

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"
OTHER_KEY = "Zm9vYmFyLWJhei1xdXV4X3NwYW0tZWdncy1oYW0tYmFjb24tbGV0dHVjZS0xMjM0"
INFO: dict[str, Any] = {
    "user": "bob",
    "admin": True,
    "nested": {"list": [1, 2.5, None, "\u00fc\u20ac\U0001f600"], "empty": {}},
    "\u00fcn\u00efcode": "\u65e5\u672c",
}
INVALID_KEYS = ["../x", "/etc/passwd", "a\x00b", "x" * 5000, "", "\u00fc"]
NAMESPACE = "chat"
"""The name of the inner namespace of L{SessionManagerContract.namespacedPair}."""


def crossingKeys(key: str) -> list[str]:
    """
    Keys a client could send to reach session C{key} of a namespace called
    L{NAMESPACE} inside (or beside) its own, if keys were not checked.
    """
    keys = [key]
    for separator in ":/\\.| \x00":
        keys.append(NAMESPACE + separator + key)
        keys.append(".." + separator + NAMESPACE + separator + key)
        keys.append(separator + key)
    keys.append(NAMESPACE + key)
    return keys


START = 1547555362.0
"""2019-01-15T12:29:22Z, as a POSIX timestamp."""
T0 = datetime(2019, 1, 15, 12, 29, 22, tzinfo=UTC)


class _FakeConnection:
    """
    Just what a session manager reads of a connection: its session.
    """

    def __init__(self, session: Session | None) -> None:
        self.session = session


def connectionWith(session: Session | None) -> IConnection:
    """
    A stand-in connection holding C{session}.
    """
    return cast(IConnection, _FakeConnection(session))


def capturedLines(
    testCase: SynchronousTestCase, minimum: LogLevel = LogLevel.debug
) -> Callable[[], list[str]]:
    """
    Capture the log events from now on; return a function that gives the
    formatted events of at least level C{minimum}.
    """
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    testCase.addCleanup(globalLogPublisher.removeObserver, observer)

    def lines() -> list[str]:
        return [formatEvent(e) for e in events if e["log_level"] >= minimum]

    return lines


# Keys, times and the session JSON.


class KeyGeneratorContract:
    """
    What every L{ISessionKeyGenerator} does; a test case mixes it in and
    says how to make its generator.
    """

    def makeGenerator(self) -> ISessionKeyGenerator:
        raise NotImplementedError()

    def test_providesInterface(self: Any) -> None:
        """
        It provides L{ISessionKeyGenerator}.
        """
        self.assertTrue(verifyObject(ISessionKeyGenerator, self.makeGenerator()))

    def test_keysRestorable(self: Any) -> None:
        """
        Every key is one the server can restore: L{checkKey} accepts it.
        """
        generator = self.makeGenerator()
        for _ in range(200):
            key = generator.generate()
            self.assertEqual(checkKey(key), key)

    def test_keysUnguessable(self: Any) -> None:
        """
        Keys differ, and each carries at least 256 bits of the operating
        system's randomness: 43 characters of a 64-letter alphabet that
        vary from key to key.
        """
        generator = self.makeGenerator()
        keys = [generator.generate() for _ in range(200)]
        self.assertEqual(len(set(keys)), 200)
        varying = sum(len({key[i] for key in keys}) > 1 for i in range(len(keys[0])))
        self.assertGreaterEqual(varying, 43)


class RandomKeyGeneratorContractTests(KeyGeneratorContract, SynchronousTestCase):
    """L{RandomKeyGenerator} keeps the key generators' contract."""

    def makeGenerator(self) -> ISessionKeyGenerator:
        return RandomKeyGenerator()


class PrefixedKeyGeneratorContractTests(KeyGeneratorContract, SynchronousTestCase):
    """L{PrefixedKeyGenerator} keeps the key generators' contract."""

    def makeGenerator(self) -> ISessionKeyGenerator:
        return PrefixedKeyGenerator("eu1-")


class PrefixedKeyGeneratorTests(SynchronousTestCase):
    """
    Tests for L{PrefixedKeyGenerator}.
    """

    def test_prefix(self) -> None:
        """
        A key is the prefix, then a key of the generator (by default 64
        random characters).
        """
        key = PrefixedKeyGenerator("eu1-").generate()
        self.assertRegex(key, r"\Aeu1-[A-Za-z0-9_-]{64}\Z")

        @implementer(ISessionKeyGenerator)
        class Counting:
            def __init__(self) -> None:
                self.n = 0

            def generate(self) -> str:
                self.n += 1
                return str(self.n)

        generator = PrefixedKeyGenerator("p_", Counting())
        self.assertEqual([generator.generate() for _ in range(2)], ["p_1", "p_2"])

    def test_badPrefix(self) -> None:
        """
        A prefix that is empty, longer than 176 characters or has characters
        outside the key alphabet is refused at once.
        """
        PrefixedKeyGenerator("a" * 176)
        for prefix in ["", "a" * 177, "eu 1", "é", "a/b", 7]:
            self.assertRaises(ValueError, PrefixedKeyGenerator, prefix)

    def test_badKeyRefused(self) -> None:
        """
        A generator whose keys make the result invalid makes C{generate}
        raise C{ValueError} rather than hand out a key nobody could restore.
        """

        @implementer(ISessionKeyGenerator)
        class Long:
            def generate(self) -> str:
                return "k" * 200

        self.assertRaises(ValueError, PrefixedKeyGenerator("a" * 41, Long()).generate)
        self.assertEqual(len(PrefixedKeyGenerator("a" * 40, Long()).generate()), 240)

    def test_served(self) -> None:
        """
        A server given a L{PrefixedKeyGenerator} creates sessions with its
        keys, and a second client restores one.
        """
        server = MemoryServer(Application(), keyGenerator=PrefixedKeyGenerator("n7-"))
        first, second = server.connect(), server.connect()
        session = self.successResultOf(first.connection.createSession())
        self.assertTrue(session.key.startswith("n7-"))
        restored = self.successResultOf(second.restoreSession(session.key))
        self.assertIsInstance(restored, wire.Reply)


class RandomKeyGeneratorTests(SynchronousTestCase):
    """
    Tests for L{RandomKeyGenerator}.
    """

    def test_keyShape(self) -> None:
        """
        Keys are 64 characters of the URL-safe base64 alphabet, never C{=}.
        """
        generator = RandomKeyGenerator()
        for _ in range(200):
            key = generator.generate()
            self.assertEqual(len(key), 64)
            self.assertRegex(key, r"\A[A-Za-z0-9_-]{64}\Z")
            self.assertNotIn("=", key)
            self.assertEqual(checkKey(key), key)
            self.assertTrue(isSafeKey(key))

    def test_keysDiffer(self) -> None:
        """
        Each call makes a different key.
        """
        generator = RandomKeyGenerator()
        keys = {generator.generate() for _ in range(200)}
        self.assertEqual(len(keys), 200)


class CheckKeyTests(SynchronousTestCase):
    """
    Tests for L{checkKey} and L{isSafeKey}.
    """

    def test_checkKeyAccepts(self) -> None:
        """
        1 to 240 characters of the default generator's alphabet are accepted
        and returned.
        """
        for key in ["a", "-", "_", "a" * 240, KEY_ALPHABET, KEY]:
            self.assertEqual(checkKey(key), key)

    def test_checkKeyRejects(self) -> None:
        """
        Empty or too long keys, keys with any character outside the
        alphabet (printable or not) and non-strings are refused with
        C{ValueError}.
        """
        bad: list[object] = ["", "a" * 241, "\n", "a\x7f", "\u00e9", 42, b"abc", None]
        bad += [" ", "~", "a:b", "../x", "chat:" + KEY]
        for key in bad:
            self.assertRaises(ValueError, checkKey, key)

    def test_isSafeKey(self) -> None:
        """
        Safe keys are 1 to 240 characters of C{[A-Za-z0-9_-]}.
        """
        for key in ["a", "a" * 240, "Az09_-", KEY]:
            self.assertTrue(isSafeKey(key), key)
        for key in ["a" * 241, "a.b", "a b", "a/b", "..", *INVALID_KEYS]:
            self.assertFalse(isSafeKey(key), key)


class TimeTests(SynchronousTestCase):
    """
    Tests for L{formatTime} and L{parseTime}, with the examples of
    PROTOCOL.md section 5.3.
    """

    def test_nanoseconds(self) -> None:
        """
        Nine fraction digits parse to the first six; microseconds format
        with six digits.
        """
        when = datetime(2019, 1, 15, 12, 29, 22, 123456, UTC)
        self.assertEqual(parseTime("2019-01-15T12:29:22.123456789Z"), when)
        self.assertEqual(formatTime(when), "2019-01-15T12:29:22.123456Z")

    def test_trailingZeros(self) -> None:
        """
        Trailing zeros of the fraction are left out.
        """
        when = datetime(2019, 1, 15, 12, 29, 22, 120000, UTC)
        self.assertEqual(parseTime("2019-01-15T12:29:22.12Z"), when)
        self.assertEqual(formatTime(when), "2019-01-15T12:29:22.12Z")

    def test_belowMicrosecond(self) -> None:
        """
        A fraction below a microsecond parses to 0; a whole second formats
        without a dot.
        """
        when = parseTime("2019-01-15T12:29:22.0000001Z")
        self.assertEqual(when, T0)
        self.assertEqual(when.microsecond, 0)
        self.assertEqual(formatTime(when), "2019-01-15T12:29:22Z")

    def test_offsets(self) -> None:
        """
        A non-zero offset is written C{+hh:mm} (or C{-hh:mm}) and parsed
        back to the same instant and offset.
        """
        plusOne = timezone(timedelta(hours=1))
        examples = [
            ("2019-01-15T13:29:22.5+01:00", datetime(2019, 1, 15, 13, 29, 22, 500000)),
            ("2019-01-15T13:29:22+01:00", datetime(2019, 1, 15, 13, 29, 22)),
        ]
        for text, local in examples:
            when = local.replace(tzinfo=plusOne)
            self.assertEqual(formatTime(when), text)
            parsed = parseTime(text)
            self.assertEqual(parsed, when)
            self.assertEqual(parsed.utcoffset(), timedelta(hours=1))
        self.assertEqual(
            parseTime("2019-01-15T13:29:22.5+01:00"),
            datetime(2019, 1, 15, 12, 29, 22, 500000, UTC),
        )
        minus = timezone(-timedelta(hours=5, minutes=30))
        when = datetime(2019, 1, 15, 6, 59, 22, tzinfo=minus)
        self.assertEqual(formatTime(when), "2019-01-15T06:59:22-05:30")
        self.assertEqual(parseTime("2019-01-15T06:59:22-05:30"), T0)

    def test_parseZeroTime(self) -> None:
        """
        Go's zero time parses.
        """
        self.assertEqual(
            parseTime("0001-01-01T00:00:00Z"), datetime(1, 1, 1, tzinfo=UTC)
        )

    def test_formatZeroTime(self) -> None:
        """
        Go's zero time formats with a four-digit year.
        """
        self.assertEqual(
            formatTime(datetime(1, 1, 1, tzinfo=UTC)), "0001-01-01T00:00:00Z"
        )

    def test_formatNaive(self) -> None:
        """
        A naive datetime cannot be formatted.
        """
        self.assertRaises(ValueError, formatTime, datetime(2019, 1, 15, 12, 29, 22))

    def test_parseRejects(self) -> None:
        """
        A space separator, a missing zone, a lowercase C{z}, numbers and
        other forms are refused with C{ValueError}.
        """
        for text in [
            "2019-01-15 12:29:22Z",
            "2019-01-15T12:29:22",
            "2019-01-15T12:29:22.5",
            "2019-01-15T12:29:22z",
            "2019-01-15T12:29:22+0100",
            "1547555362",
            "",
            "2019-01-15T12:29:22Z ",
        ]:
            self.assertRaises(ValueError, parseTime, text)

    def test_parseIsoformat(self) -> None:
        """
        Python's C{isoformat} output parses.
        """
        when = datetime(2019, 1, 15, 12, 29, 22, 123456, UTC)
        self.assertEqual(parseTime(when.isoformat()), when)

    def test_roundTrip(self) -> None:
        """
        Formatting then parsing gives the same instant, offset included.
        """
        zones = [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=9))]
        for micro in [0, 1, 10, 999999, 500000, 123450]:
            for zone in zones:
                when = datetime(2024, 2, 29, 23, 59, 59, micro, zone)
                parsed = parseTime(formatTime(when))
                self.assertEqual(parsed, when)
                self.assertEqual(parsed.utcoffset(), when.utcoffset())


class SessionJSONTests(SynchronousTestCase):
    """
    Tests for L{Session.toJSON} and L{Session.fromJSON}.
    """

    def test_toJSONWithInfo(self) -> None:
        """
        Compact JSON, members in the order k, c, l, i.
        """
        when = datetime(2019, 1, 15, 12, 29, 22, 123456, UTC)
        session = Session(KEY, when, when, {"admin": True, "user": "bob"})
        self.assertEqual(
            session.toJSON(),
            b'{"k":"' + KEY.encode() + b'","c":"2019-01-15T12:29:22.123456Z",'
            b'"l":"2019-01-15T12:29:22.123456Z","i":{"admin":true,"user":"bob"}}',
        )

    def test_toJSONWithoutInfo(self) -> None:
        """
        Without info, C{i} is left out.
        """
        session = Session("abc", T0, T0 + timedelta(seconds=1))
        self.assertEqual(
            session.toJSON(),
            b'{"k":"abc","c":"2019-01-15T12:29:22Z","l":"2019-01-15T12:29:23Z"}',
        )

    def test_fromJSONT25(self) -> None:
        """
        The session JSON of test vector T25 reads.
        """
        session = Session.fromJSON(
            b'{"k":"abc","c":"2019-01-15T12:29:22.123456789Z",'
            b'"l":"2019-01-15T12:29:22.123456789Z"}'
        )
        when = datetime(2019, 1, 15, 12, 29, 22, 123456, UTC)
        self.assertEqual(session, Session("abc", when, when))
        self.assertEqual(session.info, {})

    def test_fromJSONT28(self) -> None:
        """
        The session JSON of test vector T28 reads, offset and info included.
        """
        session = Session.fromJSON(
            '{"k":"abc","c":"2019-01-15T12:29:22.12Z",'
            '"l":"2019-01-15T13:29:22+01:00","i":{"admin":true}}'
        )
        self.assertEqual(session.key, "abc")
        self.assertEqual(
            session.creation, datetime(2019, 1, 15, 12, 29, 22, 120000, UTC)
        )
        self.assertEqual(session.lastLookup, T0)
        self.assertEqual(session.lastLookup.utcoffset(), timedelta(hours=1))
        self.assertEqual(session.info, {"admin": True})


# The session manager contract.

if TYPE_CHECKING:
    _ContractBase = TestCase
else:
    _ContractBase = object


class SessionManagerContract(_ContractBase):
    """
    What every built-in L{ISessionManager} does. Mix into a (trial)
    L{TestCase} that sets C{self.clock} (at L{START}) in C{setUp} and
    implements L{makeManager} and L{storedKeys}. The tests are coroutines,
    so managers whose hooks return Deferreds that fire later (on real I/O)
    fulfil the same contract.
    """

    clock: Clock

    def makeManager(self, maxIdle: float | None = None) -> ISessionManager:
        """
        A new, empty manager on C{self.clock}.
        """
        raise NotImplementedError()

    def storedKeys(self, manager: ISessionManager) -> set[str] | Deferred[set[str]]:
        """
        The keys C{manager} holds, expired or not (or a Deferred of them).
        """
        raise NotImplementedError()

    def namespacedPair(self) -> tuple[ISessionManager, ISessionManager]:
        """
        Two managers on the same store, in different namespaces, the second
        one's named L{NAMESPACE} and as close to the first's as the manager
        allows (nested inside it where it can be): the worst case.
        """
        raise NotImplementedError()

    async def resolve(self, result: object) -> Any:
        """
        A hook's result: its value, or what its Deferred (or coroutine)
        fired with.
        """
        if isinstance(result, Deferred | Coroutine):
            return await result
        return result

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    async def create(
        self,
        manager: ISessionManager,
        key: str = KEY,
        info: dict[str, Any] | None = None,
    ) -> Session:
        """
        Create a session now through C{manager}'s hook.
        """
        now = self.now()
        session = Session(key, now, now, INFO if info is None else info)
        await self.resolve(manager.onSessionCreated(connectionWith(session)))
        return session

    async def lookup(
        self, manager: ISessionManager, key: str
    ) -> SessionLookupResult | None:
        result = await self.resolve(manager.onSessionLookup(key))
        assert result is None or isinstance(result, SessionLookupResult)
        return result

    async def close(self, manager: ISessionManager, key: str) -> None:
        await self.resolve(manager.onSessionClosed(key))

    async def test_provides(self) -> None:
        """
        The manager fully provides L{ISessionManager}.
        """
        self.assertTrue(verifyObject(ISessionManager, self.makeManager()))

    async def test_lookupCreated(self) -> None:
        """
        A created session is found: its creation time, its creation time as
        last lookup the first time, and its info intact (nested, unicode).
        """
        manager = self.makeManager()
        session = await self.create(manager)
        self.clock.advance(5)
        result = await self.lookup(manager, KEY)
        assert result is not None
        self.assertEqual(result.creation, session.creation)
        self.assertEqual(result.lastLookup, session.creation)
        self.assertEqual(result.info, INFO)
        self.assertEqual(result.creation.utcoffset(), timedelta(0))

    async def test_lookupReturnsPreviousLookup(self) -> None:
        """
        Each lookup returns the time of the previous one as last lookup.
        """
        manager = self.makeManager()
        session = await self.create(manager)
        self.clock.advance(5)
        firstLookup = self.now()
        await self.lookup(manager, KEY)
        self.clock.advance(10)
        result = await self.lookup(manager, KEY)
        assert result is not None
        self.assertEqual(result.creation, session.creation)
        self.assertEqual(result.lastLookup, firstLookup)
        self.assertEqual(result.info, INFO)

    async def test_withoutInfo(self) -> None:
        """
        A session without info is found with empty info.
        """
        manager = self.makeManager()
        await self.create(manager, info={})
        result = await self.lookup(manager, KEY)
        assert result is not None
        self.assertEqual(result.info, {})

    async def test_infoIsCopied(self) -> None:
        """
        Changing the info of the created session or of a lookup result does
        not change what is stored.
        """
        manager = self.makeManager()
        session = await self.create(manager)
        cast(dict[str, Any], session.info)["user"] = "mallory"
        first = await self.lookup(manager, KEY)
        assert first is not None
        cast(dict[str, Any], first.info)["nested"]["list"].append("more")
        second = await self.lookup(manager, KEY)
        assert second is not None
        self.assertEqual(second.info, INFO)

    async def test_sessionsAreSeparate(self) -> None:
        """
        Each key has its own session; closing one leaves the other.
        """
        manager = self.makeManager()
        await self.create(manager, KEY, {"n": 1})
        await self.create(manager, OTHER_KEY, {"n": 2})
        await self.close(manager, KEY)
        self.assertIsNone(await self.lookup(manager, KEY))
        other = await self.lookup(manager, OTHER_KEY)
        assert other is not None
        self.assertEqual(other.info, {"n": 2})

    async def test_unknownKey(self) -> None:
        """
        An unknown key is not found.
        """
        manager = self.makeManager()
        await self.create(manager)
        self.assertIsNone(await self.lookup(manager, OTHER_KEY))

    async def test_closed(self) -> None:
        """
        A closed session is not found any more.
        """
        manager = self.makeManager()
        await self.create(manager)
        await self.close(manager, KEY)
        self.assertIsNone(await self.lookup(manager, KEY))
        self.assertEqual(await self.resolve(self.storedKeys(manager)), set())

    async def test_closeIsIdempotent(self) -> None:
        """
        Closing a session twice, or an unknown one, does no harm.
        """
        manager = self.makeManager()
        await self.create(manager)
        await self.close(manager, KEY)
        await self.close(manager, KEY)
        await self.close(manager, OTHER_KEY)
        self.assertIsNone(await self.lookup(manager, KEY))

    async def test_invalidKeys(self) -> None:
        """
        Keys that could be path tricks, or are empty, huge or non-ASCII, are
        not found, and closing them does no harm.
        """
        manager = self.makeManager()
        await self.create(manager)
        for key in INVALID_KEYS:
            self.assertIsNone(await self.lookup(manager, key), key)
            await self.close(manager, key)
        self.assertEqual(await self.resolve(self.storedKeys(manager)), {KEY})

    async def test_createInvalidKeys(self) -> None:
        """
        A session whose key is not of the generator's alphabet and length is
        refused (C{ValueError}), and nothing is stored.
        """
        manager = self.makeManager()
        for key in [*INVALID_KEYS, "a.b", "a:b", "a" * 241, "chat:" + KEY]:
            session = Session(key, self.now(), self.now())
            with self.assertRaises(ValueError):
                await self.resolve(manager.onSessionCreated(connectionWith(session)))
        self.assertEqual(await self.resolve(self.storedKeys(manager)), set())

    async def test_namespacesAreSeparate(self) -> None:
        """
        Two managers with different namespaces on one store cannot see each
        other's sessions, whatever key is sent: a lookup or close of the
        other's key, or of the key spelled as a path into the other's
        namespace, finds and removes nothing, in either direction.
        """
        outer, inner = self.namespacedPair()
        await self.create(outer, KEY, {"user": "alice"})
        await self.create(inner, OTHER_KEY, {"user": "mallory"})
        for looking, key in [(outer, OTHER_KEY), (inner, KEY)]:
            for crossing in crossingKeys(key):
                self.assertIsNone(await self.lookup(looking, crossing), crossing)
                await self.close(looking, crossing)
        own = await self.lookup(outer, KEY)
        assert own is not None
        self.assertEqual(own.info, {"user": "alice"})
        other = await self.lookup(inner, OTHER_KEY)
        assert other is not None
        self.assertEqual(other.info, {"user": "mallory"})

    async def test_expiry(self) -> None:
        """
        With C{maxIdle}, a session idle that long is still found; one idle
        longer is not, and is removed.
        """
        manager = self.makeManager(maxIdle=100)
        await self.create(manager)
        self.clock.advance(99)
        self.assertIsNotNone(await self.lookup(manager, KEY))
        self.clock.advance(101)
        self.assertIsNone(await self.lookup(manager, KEY))
        self.assertEqual(await self.resolve(self.storedKeys(manager)), set())

    async def test_idleSinceLastLookup(self) -> None:
        """
        Idle time counts from the last lookup, not from the creation.
        """
        manager = self.makeManager(maxIdle=100)
        await self.create(manager)
        for _ in range(5):
            self.clock.advance(60)
            self.assertIsNotNone(await self.lookup(manager, KEY))

    async def test_noExpiryByDefault(self) -> None:
        """
        Without C{maxIdle}, sessions never expire, and the service does not
        schedule anything.
        """
        manager = self.makeManager()
        await self.create(manager)
        service = IService(manager)
        service.startService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10 * 365 * 24 * 3600)
        self.assertIsNotNone(await self.lookup(manager, KEY))
        self.assertIsNone(service.stopService())
        self.assertFalse(service.running)

    async def test_sweep(self) -> None:
        """
        While the service runs, every C{sweepInterval} (by default
        C{maxIdle}) seconds, expired sessions are removed; stopping the
        service stops the sweeps.
        """
        manager = self.makeManager(maxIdle=100)
        await self.create(manager, KEY)
        self.clock.advance(50)
        await self.create(manager, OTHER_KEY)
        service = IService(manager)
        service.startService()
        self.assertTrue(service.running)
        self.clock.advance(99)
        self.assertEqual(await self.resolve(self.storedKeys(manager)), {KEY, OTHER_KEY})
        self.clock.advance(1)  # KEY idle 150 s, OTHER_KEY 100 s
        self.assertEqual(await self.resolve(self.storedKeys(manager)), {OTHER_KEY})
        self.clock.advance(100)
        self.assertEqual(await self.resolve(self.storedKeys(manager)), set())
        await self.create(manager, KEY)
        stopped = service.stopService()
        if stopped is not None:
            self.successResultOf(stopped)
        self.assertFalse(service.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1000)
        self.assertEqual(await self.resolve(self.storedKeys(manager)), {KEY})

    async def test_sweepLogsCountNotKeys(self) -> None:
        """
        A sweep logs how many sessions it removed at info level; no full key
        is logged above debug level.
        """
        lines = capturedLines(self, LogLevel.info)
        manager = self.makeManager(maxIdle=100)
        await self.create(manager, KEY)
        await self.create(manager, OTHER_KEY)
        service = IService(manager)
        service.startService()
        self.clock.advance(200)  # the sweep at 100 s finds none expired
        await self.create(manager, KEY)
        self.clock.advance(101)
        self.assertIsNone(await self.lookup(manager, KEY))
        await self.close(manager, KEY)
        service.stopService()
        self.assertIn("swept 2 expired session(s)", lines())
        for line in lines():
            self.assertNotIn(KEY, line)
            self.assertNotIn(OTHER_KEY, line)


class MemorySessionManagerTests(SessionManagerContract, TestCase):
    """
    L{MemorySessionManager} fulfils the contract.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)

    def makeManager(self, maxIdle: float | None = None) -> MemorySessionManager:
        return MemorySessionManager(maxIdle=maxIdle, clock=self.clock)

    def storedKeys(self, manager: ISessionManager) -> set[str]:
        return set(cast(MemorySessionManager, manager)._sessions)

    def namespacedPair(self) -> tuple[MemorySessionManager, MemorySessionManager]:
        # Each manager is its own store: its namespace.
        return self.makeManager(), self.makeManager()

    async def test_createWithoutSession(self) -> None:
        """
        A connection without a session cannot be stored.
        """
        manager = self.makeManager()
        self.assertRaises(ValueError, manager.onSessionCreated, connectionWith(None))


class ExpiringManagerTests(SynchronousTestCase):
    """
    The expiry settings shared by the built-in managers.
    """

    def test_sweepIntervalDefault(self) -> None:
        """
        The sweep interval defaults to C{maxIdle}, at most an hour; without
        C{maxIdle} there is none.
        """
        self.assertEqual(MemorySessionManager(maxIdle=100).sweepInterval, 100)
        self.assertEqual(MemorySessionManager(maxIdle=86400).sweepInterval, 3600)
        self.assertEqual(
            MemorySessionManager(maxIdle=86400, sweepInterval=60).sweepInterval, 60
        )
        self.assertIsNone(MemorySessionManager(sweepInterval=60).sweepInterval)
        self.assertIsNone(FileSessionManager(self.mktemp()).sweepInterval)
        self.assertEqual(
            FileSessionManager(self.mktemp(), maxIdle=7200).sweepInterval, 3600
        )

    def test_invalidSettings(self) -> None:
        """
        C{maxIdle} and C{sweepInterval} must be positive.
        """
        for kwargs in [{"maxIdle": 0}, {"maxIdle": -1}, {"sweepInterval": 0}]:
            self.assertRaises(ValueError, MemorySessionManager, **kwargs)
            self.assertRaises(ValueError, FileSessionManager, self.mktemp(), **kwargs)

    def test_defaultClock(self) -> None:
        """
        The clock defaults to the global reactor.
        """
        from twisted.internet import reactor

        self.assertIs(MemorySessionManager().clock, reactor)
        self.assertIs(FileSessionManager(self.mktemp()).clock, reactor)

    def test_sweepWithoutMaxIdle(self) -> None:
        """
        Without C{maxIdle}, a sweep removes nothing.
        """
        manager = MemorySessionManager(clock=Clock())
        self.assertEqual(self.successResultOf(manager.sweep()), 0)


# The file manager.


class _ManualRunner:
    """
    A C{runInThread} that runs nothing until told to.
    """

    def __init__(self) -> None:
        self.pending: list[
            tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]
        ] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append((f, args, d))
        return d

    def runAll(self) -> None:
        pending, self.pending = self.pending, []
        for f, args, d in pending:
            maybeDeferred(f, *args).chainDeferred(d)


def goFile(info: str = '{"admin":true}') -> bytes:
    """
    A session file as the Go server writes it.
    """
    return (
        b'{"c":"2019-01-15T12:29:22.123456789Z","l":"2019-01-15T12:29:22.12Z","i":'
        + info.encode()
        + b"}"
    )


def tree(root: FilePath[str]) -> dict[str, bytes | None]:
    """
    Every path under C{root}, with the content of regular files.
    """
    return {
        "/".join(path.segmentsFrom(root)): (
            path.getContent() if path.isfile() and not path.islink() else None
        )
        for path in root.walk()
        if path != root
    }


class FileSessionManagerTests(SessionManagerContract, TestCase):
    """
    L{FileSessionManager} fulfils the contract (running its file operations
    at once), and keeps its files as PROTOCOL.md section 5.7 says, safely.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.base = FilePath(self.mktemp())
        self.base.makedirs()
        self.directory = self.base.child("sessions")

    def makeManager(
        self,
        maxIdle: float | None = None,
        runInThread: Callable[..., Deferred[Any]] = maybeDeferred,
    ) -> FileSessionManager:
        return FileSessionManager(
            self.directory, maxIdle=maxIdle, clock=self.clock, runInThread=runInThread
        )

    def storedKeys(self, manager: ISessionManager) -> set[str]:
        if not self.directory.exists():
            return set()
        return {
            name.removesuffix(".wwrsess")
            for name in self.directory.listdir()
            if name.endswith(".wwrsess")
        }

    def namespacedPair(self) -> tuple[FileSessionManager, FileSessionManager]:
        # As twistd webwire does it: the chat demo's directory inside the
        # application's.
        inner = FileSessionManager(
            self.directory.child(NAMESPACE),
            clock=self.clock,
            runInThread=maybeDeferred,
        )
        return self.makeManager(), inner

    def sessionFile(self, key: str = KEY) -> FilePath[str]:
        return self.directory.child(key + ".wwrsess")

    def plant(self, content: bytes, key: str = KEY) -> FilePath[str]:
        """
        Write a session file by hand.
        """
        self.directory.makedirs(ignoreExistingDirectory=True)
        path = self.sessionFile(key)
        path.setContent(content)
        return path

    def useUmask(self, mask: int) -> None:
        self.addCleanup(os.umask, os.umask(mask))

    async def test_directoryCreatedWithParents(self) -> None:
        """
        The directory, and its parents, is created on the first store (not
        on a lookup), mode 0700; session files are mode 0600.
        """
        self.directory = self.base.descendant(["a", "b", "sessions"])
        manager = self.makeManager()
        self.assertIsNone(await self.lookup(manager, KEY))
        self.assertFalse(self.base.child("a").exists())
        self.useUmask(0o022)
        await self.create(manager)
        self.assertEqual(stat.S_IMODE(os.stat(self.directory.path).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.sessionFile().path).st_mode), 0o600)

    async def test_modesWhateverTheUmask(self) -> None:
        """
        The directory is mode 0700 and files 0600 even under a umask that
        would take the owner's permissions away.
        """
        manager = self.makeManager()
        self.useUmask(0o277)
        await self.create(manager)
        self.assertEqual(stat.S_IMODE(os.stat(self.directory.path).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.sessionFile().path).st_mode), 0o600)
        os.umask(0o377)
        self.assertIsNotNone(await self.lookup(manager, KEY))
        self.assertEqual(stat.S_IMODE(os.stat(self.sessionFile().path).st_mode), 0o600)

    async def test_existingDirectoryKept(self) -> None:
        """
        An existing directory's mode is left as it is.
        """
        self.directory.makedirs()
        self.directory.chmod(0o750)
        await self.create(self.makeManager())
        self.assertEqual(stat.S_IMODE(os.stat(self.directory.path).st_mode), 0o750)

    def test_defaultDirectory(self) -> None:
        """
        The default directory is C{wwrsess} in the working directory at
        construction time; a relative one is made absolute; neither is
        created before use.
        """
        self.assertEqual(
            FileSessionManager().directory, FilePath(os.path.abspath("wwrsess"))
        )
        self.assertEqual(
            FileSessionManager("rel/dir").directory.path, os.path.abspath("rel/dir")
        )
        self.assertFalse(os.path.exists("wwrsess"))

    async def test_contentWithInfo(self) -> None:
        """
        The file is compact JSON C{{"c","l","i"}}, info members sorted, in
        UTF-8.
        """
        manager = self.makeManager()
        when = datetime(2019, 1, 15, 12, 29, 22, 123456, UTC)
        info = {"user": "b\u00f6b", "admin": True}
        session = Session(KEY, when, when, info)
        await self.resolve(manager.onSessionCreated(connectionWith(session)))
        self.assertEqual(
            self.sessionFile().getContent(),
            '{"c":"2019-01-15T12:29:22.123456Z","l":"2019-01-15T12:29:22.123456Z",'
            '"i":{"admin":true,"user":"b\u00f6b"}}'.encode(),
        )

    async def test_contentWithoutInfo(self) -> None:
        """
        Without info, the file says C{"i":null}.
        """
        await self.create(self.makeManager(), info={})
        self.assertEqual(
            self.sessionFile().getContent(),
            b'{"c":"2019-01-15T12:29:22Z","l":"2019-01-15T12:29:22Z","i":null}',
        )

    async def test_lookupRewritesLastLookup(self) -> None:
        """
        A lookup of a file written by the Go server returns its times and
        info, and rewrites only C{"l"} (now, UTC), keeping C{"c"} as it was
        written.
        """
        path = self.plant(goFile())
        self.clock.advance(100)
        result = await self.lookup(self.makeManager(), KEY)
        self.assertEqual(
            result,
            SessionLookupResult(
                datetime(2019, 1, 15, 12, 29, 22, 123456, UTC),
                datetime(2019, 1, 15, 12, 29, 22, 120000, UTC),
                {"admin": True},
            ),
        )
        self.assertEqual(
            path.getContent(),
            b'{"c":"2019-01-15T12:29:22.123456789Z","l":"2019-01-15T12:31:02Z",'
            b'"i":{"admin":true}}',
        )

    async def test_nullInfo(self) -> None:
        """
        A file with C{"i":null}, as the Go server writes it, reads as empty
        info, and stays so.
        """
        path = self.plant(goFile("null"))
        result = await self.lookup(self.makeManager(), KEY)
        assert result is not None
        self.assertEqual(result.info, {})
        self.assertEqual(json.loads(path.getContent())["i"], None)

    def test_corruptFile(self) -> None:
        """
        A file that is not a valid session fails the lookup (it is not
        "not found"), and is left as it is.
        """
        manager = self.makeManager()
        for content in [
            b"{not json",
            b"",
            b"[]",
            b"\xff\xfe{}",
            b'{"c":"2019-01-15T12:29:22Z","i":null}',
            b'{"c":1,"l":"2019-01-15T12:29:22Z","i":null}',
            b'{"c":"yesterday","l":"2019-01-15T12:29:22Z","i":null}',
            b'{"c":"2019-13-15T12:29:22Z","l":"2019-01-15T12:29:22Z","i":null}',
            b'{"c":"2019-01-15T12:29:22Z","l":"2019-01-15T12:29:22Z","i":[1]}',
            b"[" * 100000,
        ]:
            path = self.plant(content)
            self.failureResultOf(manager.onSessionLookup(KEY), CorruptSessionError)
            self.assertEqual(path.getContent(), content)

    async def test_rewriteFailureKeepsFile(self) -> None:
        """
        If the rewrite of a lookup fails, the lookup fails, the file is
        unchanged, no temporary file remains, and the error does not reveal
        the key.
        """
        manager = self.makeManager()
        await self.create(manager)
        original = self.sessionFile().getContent()

        def failingReplace(*args: object) -> None:
            raise OSError(errno.EIO, "disk on fire", args[0], None, args[1])

        self.patch(os, "replace", failingReplace)
        self.clock.advance(10)
        failure = self.failureResultOf(manager.onSessionLookup(KEY), OSError)
        self.assertNotIn(KEY, str(failure.value))
        self.assertIn("disk on fire", str(failure.value))
        self.assertEqual(self.sessionFile().getContent(), original)
        self.assertEqual(self.directory.listdir(), [KEY + ".wwrsess"])

    def test_createFailureLeavesNothing(self) -> None:
        """
        If writing a new file fails, no file (temporary or not) remains.
        """

        def failingFsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, "no space left")

        self.patch(os, "fsync", failingFsync)
        manager = self.makeManager()
        session = Session(KEY, T0, T0)
        self.failureResultOf(manager.onSessionCreated(connectionWith(session)), OSError)
        self.assertEqual(self.directory.listdir(), [])

    def test_createInvalid(self) -> None:
        """
        A connection without session, a session whose key cannot be a file
        name, or info that is not JSON cannot be stored (C{ValueError}), and
        nothing is written.
        """
        manager = self.makeManager()
        self.failureResultOf(manager.onSessionCreated(connectionWith(None)), ValueError)
        for key in ["../x", "a.b", "a" * 241]:
            session = Session(key, T0, T0)
            failure = self.failureResultOf(
                manager.onSessionCreated(connectionWith(session)), ValueError
            )
            self.assertNotIn(key, str(failure.value))
        session = Session(KEY, T0, T0, {"nan": float("nan")})
        self.failureResultOf(
            manager.onSessionCreated(connectionWith(session)), ValueError
        )
        self.assertFalse(self.directory.exists())

    async def test_symlinkNotFollowed(self) -> None:
        """
        A symbolic link planted as a session file is not followed: the
        lookup fails as for a corrupt file, the file it points to is
        untouched, and closing removes only the link.
        """
        outside = self.base.child("outside.json")
        outside.setContent(goFile())
        self.directory.makedirs()
        link = self.sessionFile()
        os.symlink(outside.path, link.path)
        manager = self.makeManager()
        failure = self.failureResultOf(
            manager.onSessionLookup(KEY), CorruptSessionError
        )
        self.assertNotIn(KEY, str(failure.value))
        self.assertTrue(link.islink())
        self.assertEqual(outside.getContent(), goFile())
        await self.close(manager, KEY)
        self.assertFalse(os.path.lexists(link.path))  # noqa: ASYNC240
        self.assertEqual(outside.getContent(), goFile())

    def test_notRegularFile(self) -> None:
        """
        A directory or a FIFO named as a session file fails the lookup,
        without blocking on the FIFO.
        """
        manager = self.makeManager()
        self.sessionFile().makedirs()
        self.failureResultOf(manager.onSessionLookup(KEY), CorruptSessionError)
        if hasattr(os, "mkfifo"):
            os.mkfifo(self.sessionFile(OTHER_KEY).path)
            self.failureResultOf(
                manager.onSessionLookup(OTHER_KEY), CorruptSessionError
            )

    async def test_pathTricksStayInside(self) -> None:
        """
        Invalid keys never read, write or remove anything, inside or outside
        the directory.
        """
        self.base.child("x.wwrsess").setContent(goFile())
        self.base.child("passwd.wwrsess").setContent(goFile())
        manager = self.makeManager()
        await self.create(manager)
        before = tree(self.base)
        for key in INVALID_KEYS + ["..", "sessions/../x", "."]:
            self.assertIsNone(await self.lookup(manager, key), key)
            await self.close(manager, key)
            session = Session(key or "k", T0, T0)
            if key:
                self.failureResultOf(
                    manager.onSessionCreated(connectionWith(session)), ValueError
                )
        self.assertEqual(tree(self.base), before)

    async def test_sweepSkipsOtherFiles(self) -> None:
        """
        A sweep removes expired session files only: temporary files, other
        names, invalid keys, and unreadable files are left alone.
        """
        manager = self.makeManager(maxIdle=100)
        await self.create(manager, KEY)
        self.plant(b"{broken", "corrupt")
        others = {
            ".wwrsess-0123456789abcdef.tmp": goFile(),
            "README": b"hello",
            "bad.key.wwrsess": goFile(),
            "\u00fc.wwrsess": goFile(),
            "expired.wwrsess.bak": goFile(),
        }
        for name, content in others.items():
            self.directory.child(name).setContent(content)
        self.directory.child("subdir.wwrsess").makedirs()
        lines = capturedLines(self, LogLevel.warn)
        self.clock.advance(101)
        self.assertEqual(self.successResultOf(manager.sweep()), 1)
        self.assertFalse(self.sessionFile().exists())
        for name, content in others.items():
            self.assertEqual(self.directory.child(name).getContent(), content)
        self.assertEqual(self.sessionFile("corrupt").getContent(), b"{broken")
        self.assertTrue(self.directory.child("subdir.wwrsess").isdir())
        self.assertEqual(
            lines(),
            [f"sweep skipped 2 unreadable session file(s) in {self.directory.path}"],
        )

    def test_sweepMissingDirectory(self) -> None:
        """
        Sweeping before any session was stored finds nothing and creates
        nothing.
        """
        manager = self.makeManager(maxIdle=100)
        self.assertEqual(self.successResultOf(manager.sweep()), 0)
        self.assertFalse(self.directory.exists())

    def test_sweepFailureLogged(self) -> None:
        """
        A failed sweep is logged, and sweeps go on.
        """
        self.directory.setContent(b"not a directory")
        manager = self.makeManager(maxIdle=100)
        manager.startService()
        self.clock.advance(100)
        self.assertEqual(len(self.flushLoggedErrors(NotADirectoryError)), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(100)
        self.assertEqual(len(self.flushLoggedErrors(NotADirectoryError)), 1)
        manager.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def plantTemporaries(self) -> dict[str, float]:
        """
        Plant temporary files by their age in seconds (modification times
        are the system clock's): stale and fresh ones, and look-alikes that
        are never removed.
        """
        self.directory.makedirs(ignoreExistingDirectory=True)
        ages = {
            ".wwrsess-00000000000000aa.tmp": STALE_TEMPORARY_AGE + 60,
            ".wwrsess-00000000000000bb.tmp": 86400.0,
            ".wwrsess-00000000000000cc.tmp": STALE_TEMPORARY_AGE - 60,
            ".wwrsess-00000000000000dd.tmp": 0.0,
            ".wwrsess-not-hex.tmp": 86400.0,
            "x.tmp": 86400.0,
        }
        for name, age in ages.items():
            path = self.directory.child(name)
            path.setContent(b'{"c":')
            when = time.time() - age
            os.utime(path.path, (when, when))
        return ages

    def test_staleTemporariesRemovedAtStart(self) -> None:
        """
        Starting the service removes the temporary files a crash left, once
        they are older than L{STALE_TEMPORARY_AGE}; younger ones (a write in
        progress, maybe in another process), other names and directories
        are left alone.
        """
        ages = self.plantTemporaries()
        self.directory.child(".wwrsess-00000000000000ee.tmp").makedirs()
        lines = capturedLines(self, LogLevel.info)
        runner = _ManualRunner()
        manager = self.makeManager(runInThread=runner)
        manager.startService()
        self.addCleanup(manager.stopService)
        self.assertTrue(
            os.path.exists(self.directory.child(".wwrsess-00000000000000aa.tmp").path)
        )
        runner.runAll()
        kept = {n for n, age in ages.items() if age <= STALE_TEMPORARY_AGE}
        kept |= {".wwrsess-not-hex.tmp", "x.tmp", ".wwrsess-00000000000000ee.tmp"}
        self.assertEqual(set(self.directory.listdir()), kept)
        self.assertIn("removed 2 stale temporary file(s)", " ".join(lines()))

    def test_sweepRemovesStaleTemporaries(self) -> None:
        """
        Every sweep removes the temporary files that became stale since the
        start, and only those.
        """
        manager = self.makeManager(maxIdle=100)
        manager.startService()
        self.addCleanup(manager.stopService)
        ages = self.plantTemporaries()
        self.clock.advance(100)
        kept = {
            n
            for n, age in ages.items()
            if age <= STALE_TEMPORARY_AGE or "0000" not in n
        }
        self.assertEqual(set(self.directory.listdir()), kept)
        self.assertIn(".wwrsess-00000000000000dd.tmp", kept)

    def test_stopWaitsForSweep(self) -> None:
        """
        Stopping the service during a sweep fires once the sweep is done.
        """
        runner = _ManualRunner()
        manager = self.makeManager(maxIdle=100, runInThread=runner)
        manager.startService()
        runner.runAll()  # the start-up cleaning
        self.clock.advance(100)
        self.assertEqual(len(runner.pending), 1)
        stopped = manager.stopService()
        assert stopped is not None
        self.assertNoResult(stopped)
        runner.runAll()
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_hooksRunInThread(self) -> None:
        """
        Every file operation goes through C{runInThread}; nothing touches
        the disk before it runs.
        """
        runner = _ManualRunner()
        manager = self.makeManager(runInThread=runner)
        created = manager.onSessionCreated(connectionWith(Session(KEY, T0, T0)))
        self.assertFalse(self.directory.exists())
        runner.runAll()
        self.successResultOf(created)
        looked = manager.onSessionLookup(KEY)
        closed = manager.onSessionClosed(KEY)
        self.assertNoResult(looked)
        self.assertNoResult(closed)
        runner.runAll()
        self.assertIsNotNone(self.successResultOf(looked))
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(self.directory.listdir(), [])


class FileSessionManagerThreadTests(TestCase):
    """
    L{FileSessionManager} with its default C{runInThread}: the real
    reactor's thread pool.
    """

    async def test_defaultThreadPool(self) -> None:
        """
        Sessions are stored, looked up and closed through the reactor's
        thread pool, off the reactor thread.
        """
        threads: set[int] = set()
        realFsync = os.fsync

        def recordingFsync(fd: int) -> None:
            threads.add(threading.get_ident())
            realFsync(fd)

        self.patch(os, "fsync", recordingFsync)
        manager = FileSessionManager(self.mktemp())
        now = datetime.now(UTC).replace(microsecond=0)
        session = Session(KEY, now, now, {"user": "ada"})
        await manager.onSessionCreated(connectionWith(session))
        result = await manager.onSessionLookup(KEY)
        assert result is not None
        self.assertEqual((result.creation, result.info), (now, {"user": "ada"}))
        await manager.onSessionClosed(KEY)
        self.assertIsNone(await manager.onSessionLookup(KEY))
        self.assertTrue(threads)
        self.assertNotIn(threading.get_ident(), threads)
        self.assertEqual(os.listdir(manager.directory.path), [])

    async def test_injectedReactorsThreadPool(self) -> None:
        """
        Given a reactor with threads as its clock, the manager runs its file
        operations in that reactor's thread pool and has their results
        delivered by it, not by the global reactor's.
        """
        from twisted.internet import reactor as globalReactor

        pool = ThreadPool(1, 1, "injected")
        pool.start()
        self.addCleanup(pool.stop)
        injected = _ThreadedClock(pool, globalReactor)
        threadNames: list[str] = []
        realFsync = os.fsync

        def recordingFsync(fd: int) -> None:
            threadNames.append(threading.current_thread().name)
            realFsync(fd)

        self.patch(os, "fsync", recordingFsync)
        manager = FileSessionManager(self.mktemp(), clock=injected)
        now = datetime.now(UTC).replace(microsecond=0)
        await manager.onSessionCreated(connectionWith(Session(KEY, now, now, None)))
        self.assertIsNotNone(await manager.onSessionLookup(KEY))
        self.assertTrue(threadNames)
        self.assertTrue(all("-injected-" in name for name in threadNames))
        self.assertEqual(injected.delivered, 2)


@implementer(IReactorThreads)
class _ThreadedClock(Clock):
    """
    A clock that is also a reactor with threads: its own thread pool; what
    threads hand back is counted and passed to C{deliverWith}.
    """

    def __init__(self, pool: ThreadPool, deliverWith: Any) -> None:
        super().__init__()
        self.pool = pool
        self.deliverWith = deliverWith
        self.delivered = 0

    def getThreadPool(self) -> ThreadPool:
        return self.pool

    def callFromThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        def deliver() -> None:
            self.delivered += 1
            callable(*args, **kwargs)

        self.deliverWith.callFromThread(deliver)

    def callInThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        self.pool.callInThread(callable, *args, **kwargs)

    def suggestThreadPoolSize(self, size: int) -> None:
        self.pool.adjustPoolsize(maxthreads=size)
