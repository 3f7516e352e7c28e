# -*- test-case-name: tests.test_tap -*-
"""
C{twistd webwire}: command-line options and the service they make.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import replace
from typing import Any

from twisted.application.service import IService, Service
from twisted.logger import Logger
from twisted.python import usage

from webwire._apploader import addAppDirectory, loadApplication
from webwire._listening import ListenFailed, checkEndpoint
from webwire._reactor import IWebWireReactor
from webwire._version import __version__
from webwire.interfaces import IServerCluster, ISessionManager
from webwire.options import ServerOptions
from webwire.server import WebWireServerFactory
from webwire.service import WebWireService
from webwire.sessions import FileSessionManager, MemorySessionManager
from webwire.web import WebWireRoot, makeSite
from webwire.workers import (
    PER_WORKER,
    WORKER_ENVIRONMENT,
    WorkerSupervisor,
    checkWorkerOptions,
    parseListen,
    parseWorkers,
)

__all__ = ["Options", "loadApplication", "makeService"]

DEFAULT_LISTEN = "tcp:8080"
DEFAULT_APP = "webwire.conformance.makeApplication"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value < 0:
            raise ValueError(f"must not be negative: {text}")
        return value

    parse.coerceDoc = "A number, 0 or more."  # type: ignore[attr-defined]
    return parse


def _concurrency(text: str) -> int | None:
    if text == "unlimited":
        return None
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1 (or 'unlimited')")
    return value


_concurrency.coerceDoc = "A whole number, 1 or more, or 'unlimited'."  # type: ignore[attr-defined]

SESSION_MANAGERS = ("file", "memory", "redis", "off")


class Options(usage.Options):
    """
    The options of C{twistd webwire}; the defaults are those of
    L{ServerOptions}.
    """

    synopsis = "[webwire options]"
    longdesc = (
        "Serve a WebWire application over WebSocket. Without options, the "
        "conformance application is served on tcp:8080 (every WebSocket "
        "path), with sessions kept in ./wwrsess, and a chat-room demo at "
        "http://localhost:8080/ (its WebWire endpoint is /chat)."
    )
    optFlags = [
        ["compression", None, "Accept permessage-deflate when clients offer it."],
        ["forward-signals", None, "With --backend: post client signals too."],
        [
            "cluster",
            None,
            "Share signals, session closes and per-session connection limits "
            "with every process on the same --redis-url.",
        ],
    ]
    optParameters = [
        [
            "app",
            "a",
            DEFAULT_APP,
            "An IWebWireServer, or a callable returning one: module.attr or "
            "module:attr, the module found in --app-dir or installed.",
        ],
        [
            "app-dir",
            None,
            ".",
            "Directory searched for --app's module before the installed packages.",
        ],
        [
            "read-timeout",
            None,
            60.0,
            "Seconds of client silence before a "
            "client is dropped (advertised to clients).",
            _positive(float),
        ],
        [
            "message-buffer-size",
            None,
            8192,
            "Largest message in bytes, both "
            "ways (at least 32; clients compare it with theirs).",
            int,
        ],
        [
            "concurrency",
            None,
            64,
            "Handlers running at once per connection, or 'unlimited'.",
            _concurrency,
        ],
        ["sub-protocol", None, None, "WebWire sub-protocol name to advertise."],
        [
            "max-connections",
            None,
            0,
            "Connections served at once; more get HTTP 503 (0: no limit).",
            _positive(int),
        ],
        [
            "shutdown-timeout",
            None,
            30.0,
            "Seconds a graceful shutdown waits "
            "for running handlers before cancelling them.",
            _positive(float),
        ],
        [
            "close-timeout",
            None,
            5.0,
            "Seconds a close may take after the Close frame (flushing, waiting "
            "for the client to close) before the connection is aborted.",
            _positive(float),
        ],
        [
            "open-handshake-timeout",
            None,
            5.0,
            "Seconds from the TCP accept to a complete WebSocket upgrade (or "
            "HTTP request) before the connection is dropped.",
            _positive(float),
        ],
        [
            "sessions",
            None,
            "file",
            "Where sessions are kept: file (in --session-directory), memory, "
            "redis (at --redis-url) or off.",
        ],
        [
            "session-directory",
            None,
            "wwrsess",
            "Directory of session files (with --sessions file).",
        ],
        [
            "max-session-connections",
            None,
            0,
            "Connections one session may have at once (0: no limit).",
            _positive(int),
        ],
        [
            "session-max-idle",
            None,
            None,
            "Forget sessions not restored for this many seconds [default: never]",
            _positive(float),
        ],
        [
            "redis-url",
            None,
            DEFAULT_REDIS_URL,
            "The Redis server of --sessions redis and --cluster: "
            "redis://[:password@]host:port/db.",
        ],
        [
            "cluster-heartbeat",
            None,
            5.0,
            "With --cluster: seconds between renewals of this process's "
            "registration; a process that stops renewing stops counting after "
            "three.",
            _positive(float),
        ],
        [
            "backend",
            None,
            None,
            "Serve the HTTP backend gateway instead of --app: forward every "
            "request to this URL (POST <backend>/<name>).",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint, e.g. "
            "tcp:9100:interface=127.0.0.1 [default: none]",
        ],
        [
            "backend-timeout",
            None,
            10.0,
            "Seconds the gateway waits for the backend.",
            _positive(float),
        ],
        [
            "workers",
            None,
            1,
            "Worker processes serving the same --listen sockets, or 'auto' "
            "(one per usable CPU); restarted if they die. Sessions: file or "
            "redis; " + PER_WORKER + ".",
            parseWorkers,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.argv: list[str] = []
        self["listen"] = []
        self["origins"] = []
        self["paths"] = []
        self._refused = False

    def parseOptions(self, options: list[str] | None = None) -> None:
        # Kept for --workers: each worker parses the same options.
        self.argv = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError:
            self._refused = True
            raise

    def getUsage(self, width: int | None = None) -> str:
        """
        The full usage for C{--help}; after a bad option just a pointer to
        it, so that the one line saying what is wrong (which twistd prints
        after the usage) is not lost below sixty lines of options.
        """
        if self._refused:
            return "webwire [options] ('twistd webwire --help' lists them)"
        return super().getUsage(width)

    def opt_listen(self, description: str) -> None:
        """Add an endpoint to listen on (repeatable), e.g. tcp:8080, unix:/run/webwire.sock or ssl:8443:privateKey=key.pem:certKey=cert.pem [default: tcp:8080]"""  # noqa: E501 (one line: --help keeps line breaks)
        self["listen"].append(description)

    def opt_allowed_origin(self, origin: str) -> None:
        """Allow browsers on this origin (repeatable, * wildcards), e.g. https://app.example.com [default: the server's own origin only]"""  # noqa: E501 (one line: --help keeps line breaks)
        self["origins"].append(origin)

    def opt_path(self, path: str) -> None:
        """Accept WebSocket upgrades only on this path (repeatable), e.g. /ws [default: any path]"""  # noqa: E501 (one line: --help keeps line breaks)
        self["paths"].append(path)

    def opt_version(self) -> None:
        """Print the WebWire version and exit."""
        sys.stdout.write(f"webwire {__version__}\n")
        sys.exit(0)

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        for description in self["listen"]:
            checkEndpoint(description)
        if self["metrics"] is not None:
            checkEndpoint(self["metrics"], option="--metrics")
        try:
            checkWorkerOptions(self)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if self["sessions"] == "redis" or self["cluster"]:
            what = "--cluster" if self["cluster"] else "--sessions redis"
            try:
                from webwire.sessions.redis import parseURL
            except ImportError:
                raise usage.UsageError(
                    f"{what} needs txredisapi: pip install 'webwire[redis]'"
                ) from None
            try:
                parseURL(self["redis-url"])
            except ValueError as e:
                raise usage.UsageError(f"--redis-url: {e}") from None
        _checkApplicable(self)
        if self["sessions"] == "file":
            _checkSessionDirectory(self["session-directory"])
        if not self["cluster-heartbeat"] > 0:
            raise usage.UsageError("--cluster-heartbeat must be more than 0")
        if self["sessions"] not in SESSION_MANAGERS:
            raise usage.UsageError(
                f"--sessions must be one of {', '.join(SESSION_MANAGERS)}, "
                f"not {self['sessions']!r}"
            )
        try:
            self["options"] = ServerOptions(
                readTimeout=self["read-timeout"],
                messageBufferSize=self["message-buffer-size"],
                subProtocol=self["sub-protocol"],
                concurrency=self["concurrency"],
                shutdownTimeout=self["shutdown-timeout"],
                maxConnections=self["max-connections"],
                closeTimeout=self["close-timeout"],
                openHandshakeTimeout=self["open-handshake-timeout"],
                sessions=self["sessions"] != "off",
                maxSessionConnections=self["max-session-connections"],
                allowedOrigins=tuple(self["origins"]),
                compression=bool(self["compression"]),
                paths=tuple(self["paths"]),
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if self["backend"] is None:
            addAppDirectory(self["app-dir"])
            self["application"] = loadApplication(self["app"], self["app-dir"])
            return
        if self["app"] != DEFAULT_APP:
            raise usage.UsageError("give --backend or --app, not both")
        from webwire.gateway import HTTPGateway

        try:
            self["application"] = HTTPGateway(
                self["backend"],
                timeout=self["backend-timeout"],
                forwardSignals=bool(self["forward-signals"]),
                messageBufferSize=self["options"].messageBufferSize,
            )
        except ValueError as e:
            raise usage.UsageError(f"--backend: {e}") from None


def _checkApplicable(config: Options) -> None:
    """
    Refuse options that would be ignored: they are mistakes, not choices.

    :raises usage.UsageError: For C{--forward-signals} or
        C{--backend-timeout} without C{--backend}, and a C{--redis-url}
        without C{--sessions redis} or C{--cluster}.
    """
    if config["backend"] is None:
        if config["forward-signals"]:
            raise usage.UsageError("--forward-signals applies only with --backend")
        if config["backend-timeout"] != 10.0:
            raise usage.UsageError("--backend-timeout applies only with --backend")
    usesRedis = config["sessions"] == "redis" or config["cluster"]
    if config["redis-url"] != DEFAULT_REDIS_URL and not usesRedis:
        raise usage.UsageError(
            "--redis-url applies only with --sessions redis or --cluster"
        )


def _checkSessionDirectory(directory: str) -> None:
    """
    Make sure sessions can be stored in C{directory}, so that a server does
    not start only to lose every session: an existing directory must take
    a file; a missing one (made on first use) must have an existing,
    writable directory above it. Nothing is left behind.

    :raises usage.UsageError: One line naming the directory and why not.
    """
    where = f"--session-directory {directory}"
    if os.path.isdir(directory):
        try:
            handle, probe = tempfile.mkstemp(dir=directory, prefix=".probe-")
            os.close(handle)
            os.remove(probe)
        except OSError as e:
            raise usage.UsageError(
                f"{where}: cannot write in it: {e.strerror}"
            ) from None
        return
    if os.path.lexists(directory):
        raise usage.UsageError(f"{where}: not a directory")
    above = os.path.dirname(os.path.abspath(directory))
    while not os.path.lexists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise usage.UsageError(f"{where}: cannot create it: {above} is not a directory")
    if not os.access(above, os.W_OK | os.X_OK):
        raise usage.UsageError(f"{where}: cannot create it in {above}: not writable")


def _sessionManager(
    config: Options,
    reactor: IWebWireReactor | None,
    subdirectory: str | None = None,
) -> ISessionManager | None:
    maxIdle = config["session-max-idle"]
    if config["sessions"] == "file":
        directory = config["session-directory"]
        if subdirectory is not None:
            directory = os.path.join(directory, subdirectory)
        return FileSessionManager(directory, maxIdle=maxIdle, clock=reactor)
    if config["sessions"] == "memory":
        return MemorySessionManager(maxIdle=maxIdle, clock=reactor)
    if config["sessions"] == "redis":
        from webwire.sessions.redis import RedisSessionManager

        # Prefixes that never nest: webwire:session: and webwire:chat:session:.
        prefix = "webwire:" + (f"{subdirectory}:" if subdirectory else "") + "session:"
        return RedisSessionManager(
            config["redis-url"], prefix=prefix, maxIdle=maxIdle, clock=reactor
        )
    return None


def _cluster(
    config: Options,
    reactor: IWebWireReactor | None,
    application: str | None = None,
) -> IServerCluster | None:
    if not config["cluster"]:
        return None
    from webwire.cluster.redis import RedisCluster

    prefix = "webwire:" + (f"{application}:" if application else "") + "cluster:"
    return RedisCluster(
        config["redis-url"],
        prefix=prefix,
        heartbeat=config["cluster-heartbeat"],
        reactor=reactor,
    )


def _sessionStore(config: Options, demo: bool) -> str:
    """How C{config} keeps sessions, in words (no password)."""
    kind = config["sessions"]
    if kind == "off":
        return "sessions off"
    if kind == "memory":
        store = "sessions in memory"
    elif kind == "file":
        directory = config["session-directory"]
        chat = f" (chat: {os.path.join(directory, 'chat')})" if demo else ""
        store = f"sessions in {directory}{chat}"
    else:
        from webwire.outage import withoutPassword

        store = f"sessions in Redis at {withoutPassword(config['redis-url'])}"
    if config["cluster"]:
        store += ", clustered through Redis"
    return store


def servedSummary(config: Options) -> str:
    """
    What C{twistd webwire} with C{config} serves, in one line for its
    start-up log: the application, where, on which paths, the chat page,
    the session store, and the workers and metrics if any.
    """
    demo = config["app"] == DEFAULT_APP and config["backend"] is None
    if config["backend"] is not None:
        application = f"the HTTP gateway to {config['backend']}"
    else:
        application = f"{type(config['application']).__name__} ({config['app']})"
    where = ", ".join(str(d) for d in config["listen"])
    paths = ", ".join(config["paths"]) or "any path"
    parts = [f"serving {application} on {where}, WebSocket upgrades on {paths}"]
    if demo:
        page = re.match(r"(tcp6?|ssl):(\d+)", str(config["listen"][0]))
        url = (
            f"{'https' if page.group(1) == 'ssl' else 'http'}://localhost:"
            f"{page.group(2)}/"
            if page is not None and page.group(2) != "0"
            else "/"
        )
        parts.append(f"the chat demo at /chat, its page at {url}")
    parts.append(_sessionStore(config, demo))
    if config["metrics"] is not None:
        parts.append(f"metrics at /metrics on {config['metrics']}")
    if config["workers"] > 1:
        parts.append(f"{config['workers']} workers")
    return "; ".join(parts)


_log = Logger()


class _Announce(Service):
    """Logs what is served once started (after the listening children)."""

    def __init__(self, summary: str) -> None:
        self._summary = summary

    def startService(self) -> None:
        super().startService()
        _log.info("{summary}", summary=self._summary)


def makeService(config: Options, reactor: IWebWireReactor | None = None) -> IService:
    """
    Make the service C{twistd webwire} runs: a web site on every endpoint
    that hands WebSocket upgrades on any path to the application and serves
    the browser client at C{/webwire.js}. With the default application it
    also serves the chat demo: its page at C{/}, its WebWire endpoint at
    C{/chat}, with sessions of its own (in C{chat} below the session
    directory, or under the Redis prefix C{webwire:chat:session:} beside
    the application's C{webwire:session:}): a session of one application is
    no session of the other, whatever key a client sends. With C{--cluster}
    each has its own L{webwire.cluster.redis.RedisCluster} too (prefixes
    C{webwire:cluster:} and C{webwire:chat:cluster:}). No prefix given here
    starts with another. With C{--metrics} one
    L{webwire.metrics.ServerMetrics} counts for both.

    With C{--workers} above 1 it is a L{WorkerSupervisor} instead, which
    runs that many processes, each serving all of the above.

    :param config: Parsed L{Options}.
    :param reactor: The reactor to listen with; the global one if omitted.
    """
    if config["workers"] > 1:
        _log.info("{summary}", summary=servedSummary(config))
        return WorkerSupervisor(
            config.argv,
            [parseListen(description) for description in config["listen"]],
            config["workers"],
            config["shutdown-timeout"],
            cluster=bool(config["cluster"]),
            reactor=reactor,
        )
    manager = _sessionManager(config, reactor)
    metrics = None
    if config["metrics"] is not None:
        from webwire.metrics import ServerMetrics, newRegistry

        metrics = ServerMetrics(newRegistry())
    factory = WebWireServerFactory(
        config["application"],
        config["options"],
        sessionManager=manager,
        cluster=_cluster(config, reactor),
        reactor=reactor,
        observer=metrics,
    )
    more: list[WebWireServerFactory] = []
    if config["app"] == DEFAULT_APP and config["backend"] is None:
        from webwire.demo import ChatApplication, makeDemoRoot

        # --path is the application's: the chat page connects to /chat.
        chat = WebWireServerFactory(
            ChatApplication(reactor),
            replace(config["options"], paths=()),
            sessionManager=_sessionManager(config, reactor, "chat"),
            cluster=_cluster(config, reactor, "chat"),
            reactor=reactor,
            observer=metrics,
        )
        more.append(chat)
        root = makeDemoRoot(factory, chat)
    else:
        root = WebWireRoot(factory)
    service = _TwistdService(
        factory,
        config["listen"],
        reactor=reactor,
        site=makeSite(root),
        moreFactories=more,
    )
    if metrics is not None:
        from webwire.metrics import metricsService

        metricsService(config["metrics"], metrics, reactor).setServiceParent(service)
    if not os.environ.get(WORKER_ENVIRONMENT):
        # Once, by the process that was started: not by each worker.
        _Announce(servedSummary(config)).setServiceParent(service)
    return service


class _TwistdService(WebWireService):
    """
    The service of C{twistd webwire}: an endpoint that cannot listen ends
    the process with one line on stderr, not a traceback.
    """

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenFailed as e:
            raise SystemExit(f"twistd webwire: {e}") from None
