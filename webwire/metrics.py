# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics for WebWire servers.

A server reports what happens to an L{IServerObserver}: the factory's
C{observer} (see L{webwire.server.WebWireServerFactory}). Without one it
reports to a L{NullObserver}, which does nothing. L{ServerMetrics} is the
observer that counts for Prometheus::

    from prometheus_client import CollectorRegistry
    from webwire.metrics import MetricsResource, ServerMetrics

    registry = CollectorRegistry()
    metrics = ServerMetrics(registry)
    factory = WebWireServerFactory(application, observer=metrics)
    root.putChild(b"metrics", MetricsResource(registry))   # any twisted.web site

C{twistd webwire --metrics tcp:9100:interface=127.0.0.1} does the same and
serves C{/metrics} on that endpoint, with the process collectors
(L{newRegistry}).

Counting costs little where it happens. Messages, bytes and signals are
counted by every server anyway (its L{webwire.traffic.Traffic}, a few
additions per read and per write). Requests answered at once, the common
case, are counted by their connection, in a L{ReplyTally} the observer
gave it: one clock read at the start of a read and one at its end, and
two additions, whatever the number of requests in it; the observer adds
the tallies up when it is scraped. The rest only adds to plain integers
(Twisted runs it on one thread); the Prometheus metric families are made
when a scrape asks for them (a custom collector, see
L{ServerMetrics.collect}), and the gauges (open connections, running
handlers, active sessions) and the traffic are read from the servers then.

A request's duration runs from the start of the read that brought it to
its reply: it includes the time it waited for a handler slot. Replies made
while a read is processed are timed at its end, which is when they are
written (together, in one write) once the connection is open.

Label values never come from clients unchecked: a request name is a label
only if an allow-list (C{requestNames}) or the served application knows it
(an application with a C{knowsRequest(name)} method, as
L{webwire.router.Router} has); every other name is counted as C{"other"}.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from twisted.application import strports
from twisted.application.service import IService
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import Attribute, Interface, implementer

from webwire import wire
from webwire._constants import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
)
from webwire._reactor import IWebWireReactor
from webwire._version import __version__

if TYPE_CHECKING:
    from webwire._protocol import WebWireServerProtocol
    from webwire.server import WebWireServerFactory

__all__ = [
    "DURATION_BUCKETS",
    "IServerObserver",
    "MetricsResource",
    "NullObserver",
    "OTHER",
    "ReplyTally",
    "ServerMetrics",
    "metricsRoot",
    "metricsService",
    "newRegistry",
]

OTHER: Final = "other"
"""The label of every request name that is not allowed as a label."""

DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the request duration histogram's buckets."""

REFUSALS: Final = ("origin", "path", "limit", "shutdown", "application", "invalid")
"""Why a WebSocket handshake was refused: a foreign origin (403), a path not
served (404), the connection limit (503), a shutdown (503), the
application's C{beforeUpgrade}, or a malformed upgrade request."""

OUTCOMES: Final = ("reply", "error", "internal_error", "shutdown", "cancelled")
"""How a request ended: a reply, an error reply (L{RequestError}; the error
code is the application's and no label), an internal-error reply, a
shutdown reply, or an internal-error reply because its handler was
cancelled (by a shutdown's timeout)."""

RESTORE_FAILURES: Final = ("not_found", "limit", "error")
"""Why a restore-session request failed: no such session, the session's
connection limit, or a failure of the session manager or cluster."""

CLUSTER_OPERATIONS: Final = ("count", "publish", "subscribe", "heartbeat", "deliver")
"""The cluster operations whose failures are counted: counting a session's
connections, publishing to the other processes, the subscription, the
heartbeat, and delivering a message from another process."""

SESSION_MANAGER_OPERATIONS: Final = ("store", "lookup", "forget")
"""The session manager hooks whose failures are counted."""

VIOLATION_CODES: Final = (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    CLOSE_MESSAGE_TOO_BIG,
)
"""The close codes of protocol violations: malformed, text, oversized."""

_OUTCOME_OF_REPLY: Final[dict[int, str]] = {
    wire.MessageType.REPLY_ERROR: "error",
    wire.MessageType.REPLY_INTERNAL_ERROR: "internal_error",
    wire.MessageType.REPLY_SHUTDOWN: "shutdown",
}


_TRAFFIC_COUNTERS: Final = (
    ("signals_received", "Client signals handed on.", "signalsReceived"),
    ("signals_sent", "Signals sent to clients.", "signalsSent"),
    ("messages_received", "WebSocket messages received.", "messagesReceived"),
    ("messages_sent", "WebWire messages sent.", "messagesSent"),
    ("received_bytes", "Bytes of WebSocket messages received.", "bytesReceived"),
    ("sent_bytes", "Bytes of WebWire messages sent.", "bytesSent"),
)
"""The counters read from the servers' L{webwire.traffic.Traffic}: each
metric's name (without C{webwire_} and C{_total}), its help, the attribute."""


class ReplyTally:
    """
    The replies one connection made at once (not in Deferreds, not errors)
    to its requests of one name, in reads that took at most C{bound}
    seconds: counted by the connection itself, with two additions per read,
    where counting costs least. The observer that made it
    (L{IServerObserver.tally}) reads it when it is scraped, and adds it to
    its totals once the connection is done with it
    (L{IServerObserver.tallyDone}).

    :ivar name: The request name whose replies it counts.
    :ivar label: What the observer counts them under (for L{ServerMetrics},
        the name's label); the server does not look at it.
    :ivar bound: The longest read, in seconds, whose replies it counts;
        replies of longer reads are told to L{IServerObserver.replied}.
    :ivar count: How many replies it has counted.
    :ivar seconds: The sum of their durations, in seconds.
    """

    __slots__ = ("bound", "count", "label", "name", "seconds")

    def __init__(self, name: str, label: str, bound: float) -> None:
        self.name = name
        self.label = label
        self.bound = bound
        self.count = 0
        self.seconds = 0.0

    def __repr__(self) -> str:
        return (
            f"<ReplyTally {self.name!r} as {self.label!r}: {self.count} replies, "
            f"{self.seconds:g} s, reads up to {self.bound:g} s>"
        )


class IServerObserver(Interface):
    """
    What a WebWire server reports as it runs. Every method is called on the
    reactor thread and must return quickly without raising; those marked
    hot are called for every read or every request.
    """

    def attach(server: WebWireServerFactory) -> None:
        """C{server} reports here from now on (called once per server)."""

    clock = Attribute(
        """
        Hot: a callable that returns a time in seconds (a float), what
        reads are timed with while observed (C{started} of L{requestDone},
        C{seconds} of L{replied} and of a L{ReplyTally}). Looked up once
        per connection.
        """
    )

    def connectionOpened() -> None:
        """A WebSocket connection was accepted (its handshake completed)."""

    def handshakeRefused(reason: str) -> None:
        """A handshake was refused; C{reason} is one of L{REFUSALS}."""

    def tally(name: str) -> ReplyTally:
        """
        A new L{ReplyTally} for one connection's replies, made at once, to
        requests named C{name}: the connection counts in it until it tells
        L{tallyDone}. Called when a connection's requests answered at once
        change name (first: when its first one is answered).
        """

    def tallyDone(tally: ReplyTally) -> None:
        """
        The connection is done with C{tally} (it closed, or its requests
        changed name): what it counted is final.
        """

    def replied(name: str, count: int, seconds: float) -> None:
        """
        C{count} requests named C{name}, read in one read that took
        C{seconds} (by L{clock}, from its start until its replies were
        written), were answered with replies their handlers returned at
        once, and not counted in a L{ReplyTally}: the connection had none
        for that name, or the read took longer than the tally's bound.
        """

    def requestDone(
        name: str, reply: bytes, started: float | None, cancelled: bool = False
    ) -> None:
        """
        Request C{name} is answered with the encoded C{reply}, in any way
        but those counted by L{replied} and in a L{ReplyTally}.

        :param started: What L{clock} said when the read that brought the
            request began; C{None} if no handler was called (a shutdown
            reply).
        :param cancelled: Whether the handler was cancelled.
        """

    def violation(code: int) -> None:
        """A client broke the protocol; the connection closes with C{code}."""

    def sendBufferCutOff() -> None:
        """A client that does not read was cut off (send buffer full)."""

    def sessionCreated() -> None:
        """A session was created."""

    def sessionRestored() -> None:
        """A session was restored on a connection."""

    def sessionClosed() -> None:
        """A session was closed for good (its manager told to forget it)."""

    def restoreFailed(reason: str) -> None:
        """A restore failed; C{reason} is one of L{RESTORE_FAILURES}."""

    def clusterFailure(operation: str) -> None:
        """A cluster operation (one of L{CLUSTER_OPERATIONS}) failed."""

    def sessionManagerFailure(operation: str) -> None:
        """A session manager hook (L{SESSION_MANAGER_OPERATIONS}) failed."""


@implementer(IServerObserver)
class NullObserver:
    """Observes nothing: what a server without an observer reports to."""

    def attach(self, server: WebWireServerFactory) -> None:
        pass

    clock = staticmethod(time.perf_counter)

    def connectionOpened(self) -> None:
        pass

    def handshakeRefused(self, reason: str) -> None:
        pass

    def tally(self, name: str) -> ReplyTally:
        # Takes no read (none is that short): a subclass that overrides
        # replied is told of every reply.
        return ReplyTally(name, name, -math.inf)

    def tallyDone(self, tally: ReplyTally) -> None:
        pass

    def replied(self, name: str, count: int, seconds: float) -> None:
        pass

    def requestDone(
        self, name: str, reply: bytes, started: float | None, cancelled: bool = False
    ) -> None:
        pass

    def violation(self, code: int) -> None:
        pass

    def sendBufferCutOff(self) -> None:
        pass

    def sessionCreated(self) -> None:
        pass

    def sessionRestored(self) -> None:
        pass

    def sessionClosed(self) -> None:
        pass

    def restoreFailed(self, reason: str) -> None:
        pass

    def clusterFailure(self, operation: str) -> None:
        pass

    def sessionManagerFailure(self, operation: str) -> None:
        pass


NULL_OBSERVER: Final = NullObserver()


def refusalReason(protocol: WebWireServerProtocol, code: int) -> str:
    """
    Why C{protocol}'s handshake is refused with HTTP status C{code}: one of
    L{REFUSALS}. The server's own refusals come before the application is
    asked (which is when the handshake request is recorded); Autobahn
    answers 503 at the connection limit and 400 to a malformed upgrade.
    """
    if protocol._handshake is not None:
        return "application"
    if code == 503:
        return "shutdown" if protocol.factory.isShuttingDown else "limit"
    if code == 404:
        return "path"
    if code == 403:
        return "origin"
    return "invalid"


class _Durations:
    """
    A histogram of durations: counts per bucket (not cumulative) and their
    sum.
    """

    __slots__ = ("bounds", "counts", "first", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        """:param bounds: Increasing upper bounds, at least one, without +Inf."""
        self.bounds = bounds
        self.first = bounds[0]
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float, count: int = 1) -> None:
        """Count C{count} durations of C{seconds} each."""
        # Most durations are in the first bucket: no search for them.
        if seconds <= self.first:
            self.counts[0] += count
        else:
            self.counts[bisect_left(self.bounds, seconds)] += count
        self.total += seconds * count

    @property
    def count(self) -> int:
        """How many durations were counted."""
        return sum(self.counts)

    def add(self, other: _Durations) -> _Durations:
        """A new histogram with the counts of both (the same bounds)."""
        both = _Durations(self.bounds)
        both.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        both.total = self.total + other.total
        return both

    def copy(self) -> _Durations:
        """A new histogram with the same counts."""
        same = _Durations(self.bounds)
        same.counts = list(self.counts)
        same.total = self.total
        return same

    def addTally(self, tally: ReplyTally) -> None:
        """Count what C{tally} counted: durations up to its bound, the first."""
        self.counts[0] += tally.count
        self.total += tally.seconds


@implementer(IServerObserver)
class ServerMetrics:
    """
    Counts what one or more servers report and exposes it to Prometheus
    (see the module docstring). Give one instance to every server of a
    process that should be counted together: counters add up, gauges are
    summed over the servers.

    Metric families (all prefixed C{webwire_}): C{connections_open},
    C{connections_accepted_total}, C{handshakes_refused_total{reason}},
    C{requests_total{name,outcome}}, C{request_duration_seconds{name}},
    C{handlers_running}, C{signals_received_total}, C{signals_sent_total},
    C{messages_received_total}, C{messages_sent_total},
    C{received_bytes_total}, C{sent_bytes_total}, C{sessions_active},
    C{sessions_created_total}, C{sessions_restored_total},
    C{sessions_closed_total}, C{session_restore_failures_total{reason}},
    C{protocol_violations_total{code}}, C{send_buffer_cutoffs_total},
    C{cluster_failures_total{operation}},
    C{session_manager_failures_total{operation}} and C{build_info{version}}.

    :ivar registry: The registry it is registered with, or C{None}.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        requestNames: Collection[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        buckets: tuple[float, ...] = DURATION_BUCKETS,
    ) -> None:
        """
        :param registry: Where to register; Prometheus's default registry if
            omitted, none if C{None} (register it yourself).
        :param requestNames: The request names that are labels as they are;
            if omitted, those the served applications know (their
            C{knowsRequest(name)} method). Any other name is L{OTHER}.
        :param clock: Seconds, for request durations (its C{clock}).
        :param buckets: Increasing upper bounds (seconds) of the duration
            histogram's buckets, at least one, without +Inf.
        :raises ValueError: If C{registry} has these metrics already, or
            C{buckets} are not increasing.
        """
        bounds = tuple(float(bound) for bound in buckets)
        if not bounds or any(a >= b for a, b in pairwise(bounds)):
            raise ValueError(f"bucket bounds must increase, at least one: {buckets!r}")
        self._allowed = frozenset(requestNames) if requestNames is not None else None
        self.clock = clock
        self._bounds = bounds
        self._servers: list[WebWireServerFactory] = []
        self._labels: dict[str, str] = {}
        # Requests answered through requestDone, by label and outcome, and
        # their durations by label. Those answered at once with replies
        # (all with the outcome "reply") are counted only in durations, by
        # label: in the tallies of open connections (all in the first
        # bucket), and in _replied (what replied was told, and the tallies
        # that are done). A scrape adds them up.
        self._requests: dict[tuple[str, str], int] = {}
        self._durations: dict[str, _Durations] = {}
        self._replied: dict[str, _Durations] = {}
        self._tallies: set[ReplyTally] = set()
        self._refused = dict.fromkeys(REFUSALS, 0)
        self._restoreFailures = dict.fromkeys(RESTORE_FAILURES, 0)
        self._clusterFailures = dict.fromkeys(CLUSTER_OPERATIONS, 0)
        self._managerFailures = dict.fromkeys(SESSION_MANAGER_OPERATIONS, 0)
        self._violations: dict[int, int] = dict.fromkeys(VIOLATION_CODES, 0)
        self.accepted = 0
        self.cutOffs = 0
        self.sessionsCreated = 0
        self.sessionsRestored = 0
        self.sessionsClosed = 0
        self.registry = registry
        if registry is not None:
            registry.register(self)

    # IServerObserver --------------------------------------------------------

    def attach(self, server: WebWireServerFactory) -> None:
        self._servers.append(server)

    def connectionOpened(self) -> None:
        self.accepted += 1

    def handshakeRefused(self, reason: str) -> None:
        self._refused[reason] = self._refused.get(reason, 0) + 1

    def tally(self, name: str) -> ReplyTally:
        tally = ReplyTally(name, self._labelOf(name), self._bounds[0])
        self._tallies.add(tally)
        return tally

    def tallyDone(self, tally: ReplyTally) -> None:
        if tally in self._tallies:
            self._tallies.remove(tally)
            self._histogramOf(self._replied, tally.label).addTally(tally)

    def replied(self, name: str, count: int, seconds: float) -> None:
        self._histogramOf(self._replied, self._labelOf(name)).observe(seconds, count)

    def requestDone(
        self, name: str, reply: bytes, started: float | None, cancelled: bool = False
    ) -> None:
        label = self._labelOf(name)
        outcome = "cancelled" if cancelled else _OUTCOME_OF_REPLY.get(reply[0], "reply")
        key = (label, outcome)
        self._requests[key] = self._requests.get(key, 0) + 1
        if started is not None:
            self._histogramOf(self._durations, label).observe(self.clock() - started)

    def violation(self, code: int) -> None:
        self._violations[code] = self._violations.get(code, 0) + 1

    def sendBufferCutOff(self) -> None:
        self.cutOffs += 1

    def sessionCreated(self) -> None:
        self.sessionsCreated += 1

    def sessionRestored(self) -> None:
        self.sessionsRestored += 1

    def sessionClosed(self) -> None:
        self.sessionsClosed += 1

    def restoreFailed(self, reason: str) -> None:
        self._restoreFailures[reason] = self._restoreFailures.get(reason, 0) + 1

    def clusterFailure(self, operation: str) -> None:
        self._clusterFailures[operation] = self._clusterFailures.get(operation, 0) + 1

    def sessionManagerFailure(self, operation: str) -> None:
        self._managerFailures[operation] = self._managerFailures.get(operation, 0) + 1

    # Labels -----------------------------------------------------------------

    def _labelOf(self, name: str) -> str:
        """The label of a request name: itself if allowed, else L{OTHER}."""
        label = self._labels.get(name)
        return label if label is not None else self._label(name)

    def _histogramOf(self, histograms: dict[str, _Durations], label: str) -> _Durations:
        """The histogram of C{label} in C{histograms}, made if it has none."""
        durations = histograms.get(label)
        if durations is None:
            durations = histograms[label] = _Durations(self._bounds)
        return durations

    def _label(self, name: str) -> str:
        """
        The label of a request name not seen as a label yet. Only allowed
        names are remembered, so the table stays as small as the allow-list.
        """
        if self._allowed is not None:
            known = name in self._allowed
        else:
            known = any(_knows(server.application, name) for server in self._servers)
        if not known:
            return OTHER
        self._labels[name] = name
        return name

    # The Prometheus collector -----------------------------------------------

    def describe(self) -> list[Metric]:
        """
        The metric families, for the registry's check that no other
        collector has them.
        """
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        """Make the metric families from the counts (called by a scrape)."""
        servers = self._servers
        yield _gauge(
            "connections_open",
            "WebSocket connections open now.",
            sum(len(s.connections) for s in servers),
        )
        yield _counter(
            "connections_accepted", "WebSocket connections accepted.", self.accepted
        )
        yield _labelled(
            "handshakes_refused",
            "WebSocket handshakes refused, by reason.",
            "reason",
            self._refused,
        )
        requests = CounterMetricFamily(
            "webwire_requests",
            "Requests answered, by name and outcome.",
            labels=["name", "outcome"],
        )
        replied = self._repliedNow()
        counts = dict(self._requests)
        for label, durations in replied.items():
            key = (label, "reply")
            counts[key] = counts.get(key, 0) + durations.count
        for (name, outcome), count in sorted(counts.items()):
            requests.add_metric([name, outcome], count)
        yield requests
        yield self._histogram(replied)
        yield _gauge(
            "handlers_running",
            "Request and signal handlers running now.",
            sum(s.runningHandlers for s in servers),
        )
        traffic = [s.traffic for s in servers]
        for name, documentation, attribute in _TRAFFIC_COUNTERS:
            count = sum(getattr(t, attribute) for t in traffic)
            yield _counter(name, documentation, count)
        yield _gauge(
            "sessions_active",
            "Sessions held by at least one connection now.",
            sum(s.activeSessionCount for s in servers),
        )
        yield _counter("sessions_created", "Sessions created.", self.sessionsCreated)
        yield _counter("sessions_restored", "Sessions restored.", self.sessionsRestored)
        yield _counter(
            "sessions_closed", "Sessions closed for good.", self.sessionsClosed
        )
        yield _labelled(
            "session_restore_failures",
            "Restore-session requests that failed, by reason.",
            "reason",
            self._restoreFailures,
        )
        yield _labelled(
            "protocol_violations",
            "Connections closed for a protocol violation, by close code.",
            "code",
            {str(code): count for code, count in self._violations.items()},
        )
        yield _counter(
            "send_buffer_cutoffs",
            "Connections dropped because the client did not read.",
            self.cutOffs,
        )
        yield _labelled(
            "cluster_failures",
            "Cluster (Redis) operations that failed, by operation.",
            "operation",
            self._clusterFailures,
        )
        yield _labelled(
            "session_manager_failures",
            "Session manager hooks that failed, by operation.",
            "operation",
            self._managerFailures,
        )
        info = GaugeMetricFamily(
            "webwire_build_info", "The WebWire version.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info

    def _repliedNow(self) -> dict[str, _Durations]:
        """
        The durations of the requests answered at once with replies, by
        label: C{_replied} and the tallies of the open connections.
        """
        replied = {label: d.copy() for label, d in self._replied.items()}
        for tally in self._tallies:
            self._histogramOf(replied, tally.label).addTally(tally)
        return replied

    def _histogram(self, replied: dict[str, _Durations]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "webwire_request_duration_seconds",
            "Seconds from reading a request to its reply, by name.",
            labels=["name"],
        )
        bounds = [_bound(b) for b in self._bounds] + ["+Inf"]
        histograms = dict(self._durations)
        for label, durations in replied.items():
            general = histograms.get(label)
            histograms[label] = durations if general is None else general.add(durations)
        for name, durations in sorted(histograms.items()):
            cumulative = 0
            buckets = []
            for bound, count in zip(bounds, durations.counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric([name], buckets, durations.total)
        return family


def _knows(application: object, name: str) -> bool:
    knowsRequest = getattr(application, "knowsRequest", None)
    return bool(knowsRequest(name)) if knowsRequest is not None else False


def _bound(value: float) -> str:
    return repr(float(value))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"webwire_{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"webwire_{name}", documentation, value=value)


def _labelled(
    name: str, documentation: str, label: str, values: dict[Any, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"webwire_{name}", documentation, labels=[label])
    for value, count in values.items():
        family.add_metric([str(value)], count)
    return family


def newRegistry() -> CollectorRegistry:
    """
    A registry with Prometheus's process, platform and garbage collector
    collectors (C{process_*}, C{python_info}, C{python_gc_*}): what
    C{twistd webwire --metrics} serves, with a L{ServerMetrics}.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class MetricsResource(Resource):
    """
    Serves a registry in Prometheus's text format (or OpenMetrics, if the
    scraper asks for it), on the reactor thread: the collectors read the
    servers' state, which only the reactor thread may touch.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        accept = request.getHeader(b"accept") or b""
        encode, contentType = choose_encoder(accept.decode("latin-1"))
        request.setHeader(b"content-type", contentType.encode("ascii"))
        return encode(self.registry)


def metricsRoot(registry: CollectorRegistry) -> Resource:
    """A root resource with the registry at C{/metrics}."""
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry))
    return root


def metricsService(
    description: str,
    metrics: ServerMetrics,
    reactor: IWebWireReactor | None = None,
) -> IService:
    """
    A service that serves C{metrics}' registry at C{/metrics} on an
    endpoint: what C{twistd webwire --metrics} adds.

    :param description: A server endpoint description (strports syntax),
        e.g. C{"tcp:9100:interface=127.0.0.1"}.
    :param metrics: Registered (see L{ServerMetrics.registry}).
    :param reactor: What it listens with; the global reactor if omitted.
    :raises ValueError: If C{metrics} is registered nowhere.
    """
    if metrics.registry is None:
        raise ValueError("the metrics are not registered anywhere")
    site = Site(metricsRoot(metrics.registry))
    site.noisy = False
    kwargs = {} if reactor is None else {"reactor": reactor}
    return strports.service(description, site, **kwargs)
