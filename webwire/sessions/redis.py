# -*- test-case-name: tests.test_redis -*-
"""
A session manager that keeps sessions in Redis, so that several servers
(or a restarted one) share them.

Each session is a Redis hash under C{<prefix><key>} with the fields of the
file manager's documents (PROTOCOL.md section 5.7): C{c} (creation time),
C{l} (last lookup time), both as Go formats them, and C{i} (the info as
compact JSON with sorted members, or C{null}).

With C{maxIdle}, every write (creation and lookup) sets the key's time to
live to C{maxIdle} seconds, rounded up: Redis itself forgets idle sessions,
so there is no sweeper (and the manager is not a service).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit
from weakref import WeakValueDictionary

import txredisapi  # type: ignore[import-untyped]
from twisted.application.service import IService, Service
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from webwire._reactor import IWebWireReactor, defaultReactor
from webwire.interfaces import IConnection, ISessionManager
from webwire.outage import Availability, Unavailable, withoutPassword
from webwire.sessions.keys import KEY_ALPHABET, isSafeKey, shortKey
from webwire.sessions.session import (
    SessionLookupResult,
    documentFields,
    formatTime,
    parseTime,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

# parseURL and connectionPool are helpers this module shares with
# webwire.cluster.redis, not API.
__all__ = [
    "CorruptRedisSessionError",
    "RedisSessionManager",
]

_T = TypeVar("_T")

DEFAULT_TIMEOUT = 5.0
"""Seconds an operation may take before its Deferred fails."""

_LOOKUP_SCRIPT = """\
local stored = redis.call('HMGET', KEYS[1], 'c', 'l', 'i')
if not stored[1] then
  return false
end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return stored
"""
"""
Read a session and set its last lookup time (and time to live), at once:
returns C{[c, l, i]} as they were, or nil if there is no such session.
"""

_STORE_SCRIPT = """\
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'l', ARGV[2], 'i', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return 1
"""
"""Replace a session, and set its time to live, at once."""


class CorruptRedisSessionError(ValueError):
    """
    A session hash exists but is not a valid session.
    """


def _dumpInfo(info: Mapping[str, Any] | None) -> str:
    """
    The info as the file manager writes it: compact JSON with sorted
    members, or C{null} without info.
    """
    return json.dumps(
        info or None,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        sort_keys=True,
    )


def parseURL(url: str) -> tuple[str, int, int, str | None]:
    """
    Split C{redis://[:password@]host[:port][/db]}.

    :returns: The host, port, database number and password.
    :raises ValueError: If C{url} is not such a URL.
    """
    parts = urlsplit(url)
    if parts.scheme == "rediss":
        raise ValueError(
            "rediss:// is not supported: give a redis:// URL (see RedisSessionManager)"
        )
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in Redis URL {url!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"invalid port in Redis URL {url!r}") from None
    path = parts.path.lstrip("/")
    if path and not path.isdigit():
        raise ValueError(f"the database of a Redis URL must be a number: {url!r}")
    db = int(path) if path else 0
    password = unquote(parts.password) if parts.password is not None else None
    return host, port, db, password


_log = Logger()

RECONNECT_DELAY = 0.1
"""Seconds before the first attempt to reconnect to Redis."""

RECONNECT_MAX_DELAY = 2.0
"""The longest wait between attempts to reconnect to Redis."""


_availabilities: WeakValueDictionary[str, Availability] = WeakValueDictionary()


def availabilityOf(url: str) -> Availability:
    """
    The L{Availability} of the Redis at C{url}, shared by every pool of
    that URL in this process (the session manager's and the cluster's), so
    that an outage is logged once.
    """
    name = f"Redis at {withoutPassword(url)}"
    availability = _availabilities.get(name)
    if availability is None:
        availability = Availability(
            name, "session and cluster operations fail at once until it is back"
        )
        _availabilities[name] = availability
    return availability


class _WatchedFactory(txredisapi.RedisFactory):  # type: ignore[misc]
    """A pool's factory that reports each usable connection as Redis being up."""

    availability: Availability

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.availability.succeeded(self)


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """An endpoint that reports each failed connection attempt of a pool."""

    def __init__(self, wrapped: Any, factory: _WatchedFactory) -> None:
        self._wrapped = wrapped
        self._factory = factory

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        def failed(f: Failure) -> Failure:
            if not f.check(CancelledError) and not self._factory.size:
                self._factory.availability.failed(
                    f.getErrorMessage() or repr(f.value), self._factory
                )
            return f

        d: Deferred[Any] = self._wrapped.connect(protocolFactory)
        return d.addErrback(failed)


class GuardedPool:
    """
    A txredisapi pool (its handler) that fails at once, with L{Unavailable},
    while its Redis is known to be down: every attribute is the handler's,
    but for commands called during an outage, and L{disconnect}.

    :ivar availability: The L{Availability} of its Redis.
    """

    def __init__(self, factory: _WatchedFactory) -> None:
        self._factory = factory
        self.availability = factory.availability

    def disconnect(self) -> Deferred[Any]:
        """Close the connections, stop reconnecting, forget the pool's state."""
        self.availability.forget(self._factory)
        d: Deferred[Any] = self._factory.handler.disconnect()
        return d

    def __getattr__(self, name: str) -> Any:
        command = getattr(self._factory.handler, name)
        if not callable(command):
            return command

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                self.availability.check(self._factory)
            except Unavailable:
                return fail()
            return command(*args, **kwargs)

        return guarded


def connectionPool(
    url: str, poolSize: int, timeout: float, reactor: IWebWireReactor | None = None
) -> GuardedPool:
    """
    A lazy txredisapi connection pool for C{url}: it connects in the
    background and reconnects by itself, first after L{RECONNECT_DELAY}
    seconds, then waiting up to L{RECONNECT_MAX_DELAY} between attempts
    (txredisapi's own pools wait up to 10 seconds, which would keep a
    server failing for that long after Redis is back).

    Its connections are made with C{reactor} (the global one if omitted).
    txredisapi itself schedules its reconnection delays and reply timeouts
    on the global reactor, whatever it is given: it takes no reactor
    argument (1.6.0).

    While an attempt to connect has failed and no connection is up, Redis
    is down for this pool: one warning names it and its URL (without the
    password) for the whole outage (L{availabilityOf}), its commands fail
    at once with L{Unavailable}, and an info line says when it is back.

    :param timeout: Seconds connecting and each reply may take.
    :raises ValueError: If C{url} is not a C{redis://} URL.
    """
    host, port, db, password = parseURL(url)
    factory = _WatchedFactory(
        f"{host}:{port}",
        db or None,  # no SELECT on connecting for database 0
        poolSize,
        isLazy=True,
        password=password,
        replyTimeout=timeout,
        convertNumbers=False,
    )
    factory.availability = availabilityOf(url)
    factory.initialDelay = RECONNECT_DELAY
    factory.maxDelay = RECONNECT_MAX_DELAY
    # A lazy pool's handler is returned at once; this Deferred only reports
    # a connection refused for good (a wrong password: txredisapi stops
    # trying, and every operation fails with "Not connected").
    factory.deferred.addErrback(
        lambda f: _log.error(
            "cannot use Redis at {host}:{port}: {error}",
            host=host,
            port=port,
            error=f.getErrorMessage(),
        )
    )
    endpoint = HostnameEndpoint(defaultReactor(reactor), host, port, timeout=timeout)
    factory.startConnecting(_WatchedEndpoint(endpoint, factory))
    return GuardedPool(factory)


@implementer(ISessionManager, IService)
class RedisSessionManager(Service):
    """
    Keeps sessions in Redis, through a lazy txredisapi connection pool that
    connects on first use and reconnects by itself after an outage. See the
    module's documentation for the format.

    It is a service: the pool is made when it starts (after twistd has
    daemonized) and disconnected when it stops. L{webwire.service.WebWireService}
    starts and stops the session manager of its server (after the server's
    drain); a server run otherwise must start it, e.g. with
    C{manager.setServiceParent(application)}. Its hooks fail with
    C{RuntimeError} while it is not running.

    Every hook returns a Deferred. If Redis cannot be reached or does not
    answer within C{timeout} seconds, it fails (the server then logs the
    error and answers "internal error"): an outage is never reported as
    "session not found". Once the pool has found Redis down (a connection
    attempt failed), the hooks fail at once with
    L{webwire.outage.Unavailable} until it is back, and the outage is
    logged once (L{connectionPool}) rather than with each request.

    Keys are checked with L{isSafeKey} before any Redis command: a key that
    is not 1 to 240 characters of C{[A-Za-z0-9_-]} is unknown on lookup,
    ignored on close, and refused (C{ValueError}) on creation.

    The prefix is a namespace: it must end with a character that no key
    contains (C{":"} by convention), so that C{<prefix><key>} of one
    manager is never C{<prefix><key>} of a manager with another prefix,
    even when one prefix starts with the other (C{webwire:session:} and
    C{webwire:session:chat:}): a key would need a C{":"} to reach across.
    Two applications sharing a Redis need different prefixes.

    Closing is idempotent: closing an unknown (or expired) session is not
    an error.

    TLS (C{rediss://}) is not supported: this manager raises C{ValueError}
    for such URLs. txredisapi 1.6.0 does have TLS support (its
    C{ssl_context_factory} argument, wrapping the connection in
    C{TLSMemoryBIOFactory}), but its documented argument is an old-style
    C{ClientContextFactory}, which verifies neither the server's
    certificate nor its name, and this manager does not wire up or test
    anything better; rather than offer TLS that does not authenticate the
    server, it refuses. Reach a remote Redis through a verified tunnel.

    :param url: C{redis://[:password@]host[:port][/db]}; default: database
        0 on 127.0.0.1:6379.
    :param prefix: Prepended to each key to name its Redis hash: the
        manager's namespace. It must end with a character outside the key
        alphabet.
    :param maxIdle: Seconds a session may stay unused (since its creation
        or last lookup) before Redis forgets it; C{None} (the default):
        never. Redis counts whole seconds: this is rounded up.
    :param clock: The clock of lookup times and operation timeouts;
        default: C{reactor}.
    :param reactor: What connects to Redis, and the default clock; the
        global reactor if omitted.
    :param timeout: Seconds each operation may take (connecting included).
    :param poolSize: How many connections the pool keeps open.
    :raises ValueError: If C{url} is not a C{redis://} URL, C{prefix} does
        not end with a character outside the key alphabet, or C{maxIdle} or
        C{timeout} is not positive.
    """

    _log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "webwire:session:",
        maxIdle: float | None = None,
        clock: IReactorTime | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        poolSize: int = 2,
        reactor: IWebWireReactor | None = None,
    ) -> None:
        if maxIdle is not None and not maxIdle > 0:
            raise ValueError(f"maxIdle must be positive or None, not {maxIdle!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if not prefix or prefix[-1] in KEY_ALPHABET:
            raise ValueError(
                "the prefix must end with a character no session key contains "
                f"(such as ':'), not {prefix!r}"
            )
        self.maxIdle = maxIdle
        self.prefix = prefix
        self.timeout = timeout
        parseURL(url)  # a bad URL is refused now, not when started
        self._url = url
        self._poolSize = poolSize
        self._reactor = reactor
        self._clock: IReactorTime | None = clock if clock is not None else reactor
        self._ttl = "" if maxIdle is None else str(math.ceil(maxIdle))
        self._pool: Any = None

    @property
    def availability(self) -> Availability:
        """
        Whether this manager's Redis is known to be down (and when back),
        shared with every pool of the same URL (L{availabilityOf}), started
        or not.
        """
        return availabilityOf(self._url)

    @property
    def clock(self) -> IReactorTime:
        """
        The clock of lookup times and timeouts: the one given to the
        constructor, else the global reactor (imported on first use).
        """
        if self._clock is None:
            self._clock = defaultReactor()
        return self._clock

    def startService(self) -> None:
        """Make the connection pool (it connects in the background)."""
        super().startService()
        self._pool = connectionPool(
            self._url, self._poolSize, self.timeout, self._reactor
        )

    def stopService(self) -> Deferred[None]:
        """
        Close the connections and stop reconnecting.

        :returns: A Deferred that fires once every connection is closed.
        """
        super().stopService()
        pool, self._pool = self._pool, None
        if pool is None:
            return succeed(None)
        d: Deferred[Any] = pool.disconnect()
        return d.addCallback(lambda _: None)

    def disconnect(self) -> Deferred[None]:
        """
        Stop the service (see L{stopService}); kept for code written before
        the manager was a service.
        """
        return self.stopService()

    @property
    def _redis(self) -> Any:
        """
        The connection pool.

        :raises RuntimeError: If the service is not running.
        """
        if self._pool is None:
            raise RuntimeError(f"{self!r} is not started")
        return self._pool

    def _bounded(self, d: Deferred[_T]) -> Deferred[_T]:
        """
        C{d}, failing with C{twisted.internet.defer.TimeoutError} if it has
        not fired after C{timeout} seconds.
        """
        return d.addTimeout(self.timeout, self.clock)

    def _name(self, key: str) -> str:
        return self.prefix + key

    def onSessionCreated(self, connection: IConnection) -> Deferred[None]:
        """
        Store the session of C{connection} (replacing any with its key).

        :returns: A Deferred that fires once it is stored, or fails with
            C{ValueError} if the connection has no session, its key is not
            valid or its info is not JSON, or with the Redis
            error (or a timeout).
        """
        try:
            session = connection.session
            if session is None:
                raise ValueError("the connection has no session to store")
            key = session.key
            if not isSafeKey(key):
                raise ValueError(
                    f"cannot store session {shortKey(str(key))}: its key is "
                    "not 1 to 240 characters of [A-Za-z0-9_-]"
                )
            fields = {
                "c": formatTime(session.creation),
                "l": formatTime(session.lastLookup),
                "i": _dumpInfo(session.info),
            }
            redis = self._redis
        except Exception:
            return fail()
        d: Deferred[Any] = redis.eval(
            _STORE_SCRIPT,
            keys=[self._name(key)],
            args=[fields["c"], fields["l"], fields["i"], self._ttl],
        )
        return self._bounded(d).addCallback(lambda _: None)

    def onSessionLookup(self, key: str) -> Deferred[SessionLookupResult | None]:
        """
        Read the session C{key} and, in the same atomic step, record that it
        was looked up now (and restart its time to live).

        :returns: A Deferred that fires with the session's creation time,
            previous lookup time and info, or with C{None} if there is no
            such session (or it expired, or the key is not valid:
            L{isSafeKey}). It fails with L{CorruptRedisSessionError} if the hash
            is not a valid session, and with the Redis error (or a timeout)
            if Redis cannot answer: never C{None} for an outage.
        """
        if not isSafeKey(key):
            return succeed(None)
        try:
            redis = self._redis
        except RuntimeError:
            return fail()
        now = formatTime(datetime.fromtimestamp(self.clock.seconds(), UTC))
        d: Deferred[Any] = redis.eval(
            _LOOKUP_SCRIPT, keys=[self._name(key)], args=[now, self._ttl]
        )

        def parsed(stored: Any) -> SessionLookupResult | None:
            if stored is None:
                return None
            return _parseStored(stored, shortKey(key))

        return self._bounded(d).addCallback(parsed)

    def onSessionClosed(self, key: str) -> Deferred[None]:
        """
        Delete the session C{key}; an unknown key is not an error.

        :returns: A Deferred that fires once it is deleted, or fails with
            the Redis error (or a timeout).
        """
        if not isSafeKey(key):
            return succeed(None)
        try:
            redis = self._redis
        except RuntimeError:
            return fail()
        d: Deferred[Any] = redis.delete(self._name(key))
        return self._bounded(d).addCallback(lambda _: None)


def _parseStored(stored: Any, name: str) -> SessionLookupResult:
    """
    The session of the fields C{[c, l, i]} read from Redis.

    :raises CorruptRedisSessionError: If they are not a valid session.
    """
    try:
        creationText, lastLookupText, infoText = stored
        document = {
            "c": creationText,
            "l": lastLookupText,
            "i": json.loads(infoText) if infoText is not None else None,
        }
        creationText, lastLookupText, info = documentFields(document)
        return SessionLookupResult(
            parseTime(creationText), parseTime(lastLookupText), info or {}
        )
    except (TypeError, ValueError, RecursionError) as e:
        raise CorruptRedisSessionError(f"session {name}: {e}") from None
