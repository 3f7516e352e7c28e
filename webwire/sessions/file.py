# -*- test-case-name: tests.test_sessions -*-
"""
The default session manager: one small JSON file per session, in a
directory, in the format of the original Go server (PROTOCOL.md section
5.7), so either server can restore the other's sessions::

    <directory>/<key>.wwrsess    {"c":<creation>,"l":<last lookup>,"i":<info or null>}

Differences from the Go manager, all deliberate:

  - Keys are checked with L{isSafeKey} before anything touches the file
    system; any other key never becomes a path: it is not found on lookup,
    closing it does nothing, and storing it fails.
  - The directory is created with mode 0700 and the files with mode 0600
    (Go uses 0640, which leaves the directory unusable).
  - Files are replaced atomically: written to a temporary file in the same
    directory, flushed to disk, then renamed over the old one, so a crash
    leaves either the old or the new content, never half a file.
  - Files are opened without following symbolic links, and must be regular
    files: a link planted in the directory is reported as a corrupt session
    (the lookup fails, which the server logs and answers with an internal
    error) rather than silently reading, or "not finding", what it points to.
  - Closing a session that has no file is not an error (see
    L{FileSessionManager}).
  - Sessions may expire (C{maxIdle}).
  - Temporary files a crash left behind (C{.wwrsess-<16 hex>.tmp}, from a
    write cut short by C{kill -9} or a power loss) are removed when the
    service starts and at every sweep, once they are older than
    L{STALE_TEMPORARY_AGE} (ten minutes): a write takes milliseconds, so
    a temporary file that old belongs to no write in progress, not even
    one of another server sharing the directory.

Why a thread pool: the reactor serves every connection from one thread, and
a synchronous disk write that ends with C{fsync} takes milliseconds on a
good day and seconds on a loaded or networked disk; done in the reactor, it
would stall every client for that long. So each file operation runs in the
reactor's thread pool (or whatever C{runInThread} the manager was given) and
the hooks return Deferreds. Operations on the same key are serialized
within the process; several processes sharing a directory are not
coordinated beyond the atomicity of each file replacement.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.python.filepath import FilePath
from zope.interface import implementer

from webwire._reactor import defaultReactor
from webwire.interfaces import IConnection, ISessionManager
from webwire.sessions._expiry import ExpiringManager
from webwire.sessions.keys import isSafeKey, shortKey
from webwire.sessions.session import (
    SessionLookupResult,
    documentFields,
    formatTime,
    parseTime,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["CorruptSessionError", "FileSessionManager"]

_T = TypeVar("_T")

SUFFIX = ".wwrsess"
"""The extension of session files."""

_TEMP_PREFIX = ".wwrsess-"
_TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\.wwrsess-[0-9a-f]{16}\.tmp\Z")

STALE_TEMPORARY_AGE = 600.0
"""
Seconds after its last modification when a temporary file is taken for a
crash's leftover and removed: far longer than any write takes.
"""
_DIRECTORY_MODE = 0o700
_FILE_MODE = 0o600
_LOCK_STRIPES = 64

_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
_O_BINARY: int = getattr(os, "O_BINARY", 0)
_O_DIRECTORY: int = getattr(os, "O_DIRECTORY", 0)
_READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
)

_StoredSession = tuple[str, str, dict[str, Any] | None]


class CorruptSessionError(ValueError):
    """
    A session file exists but cannot be used: it is not valid session JSON,
    or it is a symbolic link or not a regular file.
    """


def _threadsOf(clock: object) -> Callable[..., Deferred[Any]]:
    """
    C{runInThread} for a manager with C{clock}: the thread pool of C{clock}
    if it is a reactor with threads (an injected reactor), else that of the
    global reactor (imported only when first used).
    """

    def runInThread(f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        from twisted.internet.threads import deferToThreadPool

        threads = IReactorThreads(
            clock if IReactorThreads.providedBy(clock) else defaultReactor()
        )
        return deferToThreadPool(threads, threads.getThreadPool(), f, *args)

    return runInThread


def _encode(creation: str, lastLookup: str, info: Mapping[str, Any] | None) -> bytes:
    """
    The content of a session file: compact JSON, members C{c}, C{l}, C{i}
    in this order; C{"i":null} without info. Info members are sorted, as
    Go writes them.
    """

    def dump(value: object, sortKeys: bool = False) -> str:
        return json.dumps(
            value,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            sort_keys=sortKeys,
        )

    members = (dump(creation), dump(lastLookup), dump(info or None, sortKeys=True))
    return '{{"c":{},"l":{},"i":{}}}'.format(*members).encode()


def _decode(data: bytes, name: str) -> _StoredSession:
    """
    Read a session file's content, keeping the time strings as they are.

    :raises CorruptSessionError: If it is not a session document.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise CorruptSessionError(f"{name}: invalid JSON ({e})") from None
    try:
        return documentFields(document)
    except ValueError as e:
        raise CorruptSessionError(f"{name}: {e}") from None


def _parseStoredTime(text: str, name: str) -> datetime:
    try:
        return parseTime(text)
    except ValueError as e:
        raise CorruptSessionError(f"{name}: {e}") from None


@contextmanager
def _hidingKey(key: str) -> Iterator[None]:
    """
    Re-raise an C{OSError} without the file name, which holds the full key:
    the server logs these errors.
    """
    try:
        yield
    except OSError as e:
        reason = e.strerror if e.strerror is not None else str(e)
        message = f"{reason} (session file {shortKey(key)}{SUFFIX})"
        if e.errno is None:
            raise OSError(message) from None
        raise OSError(e.errno, message) from None


@implementer(ISessionManager)
class FileSessionManager(ExpiringManager):
    """
    Keeps each session in a file C{<directory>/<key>.wwrsess}; the default
    session manager. See the module's documentation for the format and the
    guarantees.

    Every hook returns a Deferred: the file operations run through
    C{runInThread}.

    Keys that could not safely become a file name (anything but 1 to 240
    characters of C{[A-Za-z0-9_-]}, which includes every key of the default
    generator) are unknown on lookup and ignored on close; storing one
    fails with C{ValueError}.

    Closing is idempotent: closing a session whose file does not exist (or
    no longer does) is not an error, so that a session closed twice, e.g.
    by two servers sharing the directory or after it expired, does not log
    spurious errors.

    It is also a Twisted service: add it to your application (or start it)
    to have expired session files removed periodically when C{maxIdle} is
    set; a sweep only considers C{*.wwrsess} files with a valid key, leaves
    everything else alone, and skips (and counts in a warning) files it
    cannot read. Starting the service, and every sweep, also removes the
    temporary files of writes a crash interrupted, once they are
    L{STALE_TEMPORARY_AGE} seconds old (by their modification time, against
    the system clock that set it, not C{clock}); younger ones may belong to
    a write in progress in another process and are left alone.

    :param directory: Where the session files are. Default: C{wwrsess} in
        the working directory at construction time (C{os.path.abspath}); a
        relative path is likewise made absolute at once. It is created,
        with its parents, when the first session is stored.
    :param maxIdle: Seconds a session may stay unused (since its creation
        or last lookup) before it expires; C{None} (the default): never.
    :param sweepInterval: Seconds between two sweeps of expired sessions
        while the service runs; default: C{maxIdle}, at most an hour.
        Ignored without C{maxIdle}.
    :param clock: The clock of lookups and sweeps; default: the global
        reactor.
    :param runInThread: C{runInThread(function, *args)} runs C{function} off
        the reactor thread and returns a Deferred of its result. Default:
        the thread pool of C{clock} if it is a reactor (an injected reactor:
        its own pool, results delivered on it), else the global reactor's.
        Tests may pass C{twisted.internet.defer.maybeDeferred} to run
        everything at once.
    :raises ValueError: If C{maxIdle} or C{sweepInterval} is not positive.
    :ivar directory: The absolute directory of the session files.
    """

    def __init__(
        self,
        directory: str | FilePath[str] | None = None,
        maxIdle: float | None = None,
        sweepInterval: float | None = None,
        clock: IReactorTime | None = None,
        runInThread: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        super().__init__(maxIdle, sweepInterval, clock)
        if directory is None:
            directory = "wwrsess"
        if isinstance(directory, FilePath):
            path = os.path.abspath(directory.path)
        else:
            path = os.path.abspath(directory)
        self.directory: FilePath[str] = FilePath(path)
        self._path = path
        self._runInThread: Callable[..., Deferred[Any]] = (
            _threadsOf(clock) if runInThread is None else runInThread
        )
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    # The hooks (reactor thread).

    def onSessionCreated(self, connection: IConnection) -> Deferred[None]:
        """
        Write the file of the session of C{connection}.

        :returns: A Deferred that fires once the file is written, or fails
            with C{ValueError} if the connection has no session, its key is
            not safe or its info is not JSON, or with C{OSError}.
        """
        try:
            session = connection.session
            if session is None:
                raise ValueError("the connection has no session to store")
            key = session.key
            if not isSafeKey(key):
                raise ValueError(
                    f"cannot store session {shortKey(str(key))} in a file: "
                    "its key is not 1 to 240 characters of [A-Za-z0-9_-]"
                )
            data = _encode(
                formatTime(session.creation),
                formatTime(session.lastLookup),
                session.info,
            )
        except Exception:
            return fail()
        return self._runInThread(self._store, key, data)

    def onSessionLookup(self, key: str) -> Deferred[SessionLookupResult | None]:
        """
        Read the session C{key}, and record in its file that it was looked
        up now.

        :returns: A Deferred that fires with the session's creation time,
            previous lookup time and info, or with C{None} if there is no
            such file, the key is not safe, or the session expired (its file
            is then removed). It fails with L{CorruptSessionError} if the
            file is not a valid session (including a symbolic link), or
            with C{OSError} if it cannot be read or rewritten (it is then
            unchanged).
        """
        if not isSafeKey(key):
            return succeed(None)
        d = self._runInThread(self._lookup, key, self._now())

        def logged(
            outcome: tuple[SessionLookupResult | None, bool],
        ) -> SessionLookupResult | None:
            result, expired = outcome
            if expired:
                self._log.debug("session {key} expired", key=shortKey(key))
            return result

        return d.addCallback(logged)

    def onSessionClosed(self, key: str) -> Deferred[None]:
        """
        Remove the file of the session C{key}; a missing file or an unsafe
        key is not an error.

        :returns: A Deferred that fires once it is removed, or fails with
            C{OSError}.
        """
        if not isSafeKey(key):
            return succeed(None)
        return self._runInThread(self._remove, key)

    def _sweepExpired(self, now: datetime) -> Deferred[int]:
        def report(outcome: tuple[int, int, int]) -> int:
            removed, failed, temporaries = outcome
            self._logTemporaries(temporaries)
            if failed:
                self._log.warn(
                    "sweep skipped {failed} unreadable session file(s) in {directory}",
                    failed=failed,
                    directory=self._path,
                )
            return removed

        return self._runInThread(self._sweepFiles, now).addCallback(report)

    def startService(self) -> None:
        """
        Start the service: remove the stale temporary files a crash left
        (see L{removeStaleTemporaries}), and sweep expired sessions
        periodically if C{maxIdle} is set.
        """
        super().startService()
        # Best effort, in the background: nothing waits for it.
        self.removeStaleTemporaries().addErrback(
            lambda f: self._log.warn(
                "could not remove stale temporary files in {directory}: {error}",
                directory=self._path,
                error=f.getErrorMessage(),
            )
        )

    def removeStaleTemporaries(self) -> Deferred[int]:
        """
        Remove the temporary files (C{.wwrsess-<16 hex>.tmp}) of the
        directory not modified for L{STALE_TEMPORARY_AGE} seconds: what a
        crash during a write leaves. Younger ones, which may belong to a
        write in progress (in this process or another), and anything that
        is not a regular file are left alone.

        :returns: A Deferred firing with how many were removed, or failing
            with C{OSError} if the directory cannot be listed.
        """

        def logged(count: int) -> int:
            self._logTemporaries(count)
            return count

        d = self._runInThread(self._removeTemporaries)
        return d.addCallback(logged)

    def _logTemporaries(self, count: int) -> None:
        if count:
            self._log.info(
                "removed {count} stale temporary file(s) from {directory}",
                count=count,
                directory=self._path,
            )

    # The file operations (run through runInThread).

    def _removeTemporaries(self) -> int:
        # Modification times are the system clock's, so is the age.
        now = time.time()
        try:
            names = os.listdir(self._path)
        except FileNotFoundError:
            return 0
        removed = 0
        for name in names:
            if not _TEMP_NAME.match(name):
                continue
            path = os.path.join(self._path, name)
            try:
                status = os.lstat(path)
                if stat.S_ISREG(status.st_mode) and (
                    now - status.st_mtime > STALE_TEMPORARY_AGE
                ):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                pass  # renamed into place, or removed by another process
        return removed

    def _lockFor(self, key: str) -> threading.Lock:
        return self._locks[hash(key) % _LOCK_STRIPES]

    def _fileFor(self, key: str) -> str:
        return os.path.join(self._path, key + SUFFIX)

    def _store(self, key: str, data: bytes) -> None:
        with self._lockFor(key), _hidingKey(key):
            self._write(key, data)

    def _lookup(
        self, key: str, now: datetime
    ) -> tuple[SessionLookupResult | None, bool]:
        """
        :returns: The result, and whether the session was found expired.
        """
        name = shortKey(key) + SUFFIX
        with self._lockFor(key), _hidingKey(key):
            stored = self._read(key)
            if stored is None:
                return None, False
            creationText, lastLookupText, info = stored
            creation = _parseStoredTime(creationText, name)
            lastLookup = _parseStoredTime(lastLookupText, name)
            if self._isExpired(lastLookup, now):
                self._unlink(key)
                return None, True
            self._write(key, _encode(creationText, formatTime(now), info))
        return SessionLookupResult(creation, lastLookup, info or {}), False

    def _remove(self, key: str) -> None:
        with self._lockFor(key), _hidingKey(key):
            self._unlink(key)

    def _sweepFiles(self, now: datetime) -> tuple[int, int, int]:
        """
        :returns: How many expired files were removed, how many session
            files could not be read or removed, and how many stale temporary
            files were removed.
        """
        try:
            names = os.listdir(self._path)
        except FileNotFoundError:
            return 0, 0, 0
        removed = failed = 0
        for name in names:
            key = name[: -len(SUFFIX)]
            if not name.endswith(SUFFIX) or not isSafeKey(key):
                continue
            try:
                with self._lockFor(key):
                    stored = self._read(key)
                    if stored is not None and self._isExpired(
                        _parseStoredTime(stored[1], name), now
                    ):
                        self._unlink(key)
                        removed += 1
            except (OSError, ValueError):
                failed += 1
        return removed, failed, self._removeTemporaries()

    def _read(self, key: str) -> _StoredSession | None:
        """
        Read the file of C{key} without following a symbolic link.

        :returns: Its creation and last lookup time strings and its info, or
            C{None} if there is no such file.
        """
        name = shortKey(key) + SUFFIX
        try:
            fd = os.open(self._fileFor(key), _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK):
                raise CorruptSessionError(
                    f"{name} is a symbolic link; it is not followed"
                ) from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CorruptSessionError(f"{name} is not a regular file")
            f = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        with f:
            data = f.read()
        return _decode(data, name)

    def _write(self, key: str, data: bytes) -> None:
        """
        Replace the file of C{key} atomically with C{data}.
        """
        self._makeDirectory()
        temporary = os.path.join(
            self._path, _TEMP_PREFIX + secrets.token_hex(8) + _TEMP_SUFFIX
        )
        fd = os.open(temporary, _CREATE_FLAGS, _FILE_MODE)
        try:
            try:
                f = os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                raise
            with f:
                if hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), _FILE_MODE)  # whatever the umask
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self._fileFor(key))
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary)
            raise
        self._syncDirectory()

    def _unlink(self, key: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self._fileFor(key))

    def _makeDirectory(self) -> None:
        """
        Create the directory, and its parents, if missing. Parents get the
        default mode; the directory itself mode 0700.
        """
        try:
            os.mkdir(self._path, _DIRECTORY_MODE)
        except FileExistsError:
            return
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            try:
                os.mkdir(self._path, _DIRECTORY_MODE)
            except FileExistsError:
                return
        os.chmod(self._path, _DIRECTORY_MODE)  # whatever the umask

    def _syncDirectory(self) -> None:
        """
        Make a rename durable, where the platform allows it.
        """
        try:
            fd = os.open(self._path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except OSError:
            return
        try:
            with suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
