# -*- test-case-name: tests.test_sessions -*-
"""
Sessions as applications and session managers see them, and their JSON.

A session is created by the server on one connection, announced to the
client as JSON, persisted by a session manager, and attached to further
connections when a client restores it by key.

Times are aware C{datetime}s. Python keeps microseconds, so the JSON carries
at most six fraction digits; WebWire peers accept any number of digits
(the Go server writes nine), and parsing keeps the first six.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from copy import deepcopy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attr

__all__ = [
    "Session",
    "SessionLookupResult",
    "formatTime",
    "parseTime",
]


def formatTime(when: datetime) -> str:
    """
    Format a time as Go's C{time.Time} JSON does: RFC 3339, C{Z} for UTC,
    fraction digits without trailing zeros, no dot for whole seconds.

    :param when: An aware datetime.
    :raises ValueError: If C{when} is naive.
    """
    offset = when.utcoffset()
    if offset is None:
        raise ValueError(f"a session time needs a time zone: {when!r}")
    # Not strftime: its %Y does not pad years below 1000 on every platform.
    text = (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
        f"T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    )
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:(Z)|([+-])(\d{2}):(\d{2}))\Z"
)


def parseTime(text: str) -> datetime:
    """
    Parse an RFC 3339 time with a zone (C{Z} or C{+hh:mm}) and any number of
    fraction digits, as WebWire peers write them.

    :raises ValueError: If C{text} is not such a time.
    """
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time with a zone: {text!r}")
    year, month, day, hour, minute, second, fraction, z, sign, oh, om = match.groups()
    if z:
        zone: timezone = UTC
    else:
        delta = timedelta(hours=int(oh), minutes=int(om))
        zone = timezone(-delta if sign == "-" else delta)
    micro = int((fraction or "").ljust(6, "0")[:6])
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second),
        micro,
        zone,
    )


def documentFields(
    document: object,
) -> tuple[str, str, dict[str, Any] | None]:
    """
    The creation time, last lookup time (as written) and info of a session
    document: a JSON object with time strings C{"c"} and C{"l"} and an
    optional object (or C{null}) C{"i"}, as the protocol sends sessions
    and the session managers store them.

    :raises ValueError: If C{document} is not such an object.
    """
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    creation, lastLookup = document.get("c"), document.get("l")
    info = document.get("i")
    if not isinstance(creation, str) or not isinstance(lastLookup, str):
        raise ValueError('"c" and "l" must be time strings')
    if info is not None and not isinstance(info, dict):
        raise ValueError('"i" must be a JSON object or null')
    return creation, lastLookup, info


def _frozenInfo(info: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return deepcopy(dict(info)) if info else {}


@attr.s(frozen=True, auto_attribs=True)
class SessionLookupResult:
    """
    What a session manager knows of a stored session.

    :ivar creation: When the session was created.
    :ivar lastLookup: When it was last looked up before this lookup.
    :ivar info: The session info (a JSON object); empty if none.
    """

    creation: datetime
    lastLookup: datetime
    info: Mapping[str, Any] = attr.ib(factory=dict, converter=_frozenInfo)


@attr.s(frozen=True, auto_attribs=True)
class Session:
    """
    A session: its key, when it was created and last looked up, and its
    info (any JSON object the application attached).

    :ivar key: The session key.
    :ivar creation: When the session was created (aware).
    :ivar lastLookup: When it was last looked up (aware).
    :ivar info: The session info; empty if none. A copy: changing it
        changes nothing stored.
    """

    key: str
    creation: datetime
    lastLookup: datetime
    info: Mapping[str, Any] = attr.ib(factory=dict, converter=_frozenInfo)

    def toJSON(self) -> bytes:
        """
        The session as the protocol sends it: compact UTF-8 JSON
        C{{"k","c","l"[,"i"]}}, the info left out when empty.
        """
        document: dict[str, Any] = {
            "k": self.key,
            "c": formatTime(self.creation),
            "l": formatTime(self.lastLookup),
        }
        if self.info:
            document["i"] = self.info
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def fromJSON(cls, data: bytes | str) -> Session:
        """
        Read a session from the protocol's JSON.

        :raises ValueError: If C{data} is not a valid session document.
        """
        try:
            document = json.loads(data)
            if isinstance(document, dict) and not document.get("i"):
                document = {**document, "i": None}  # any empty info: none
            creation, lastLookup, info = documentFields(document)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"not a session document: {e}") from None
        key = document.get("k")
        if not isinstance(key, str) or not key:
            raise ValueError("not a session document: bad key")
        return cls(key, parseTime(creation), parseTime(lastLookup), info or {})
