# -*- test-case-name: tests.test_cli -*-
"""
C{webwire}: talk to a WebWire server from the shell.

Built on L{webwire.client.WebWireClient}: C{request}, C{signal} and
C{restore} connect once (no reconnection) and exit; C{listen} stays
connected, reconnects when the connection is lost, and prints what the
server sends until interrupted or until C{--count} events.

This is the one module whose job is output: it writes to C{sys.stdout} and
C{sys.stderr} itself, and starts logging (to stderr, only with
C{--verbose}) as twistd would.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any, Final, NoReturn

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure

from webwire import wire
from webwire._version import __version__
from webwire.client import ClientHooks, ClientOptions, WebWireClient
from webwire.errors import (
    Disconnected,
    HandshakeError,
    InternalError,
    InvalidMessage,
    MaxSessionConnections,
    RequestError,
    RequestTimeout,
    ServerShutdown,
    SessionActive,
    SessionNotFound,
    SessionsDisabled,
)
from webwire.sessions.session import Session, formatTime

__all__ = [
    "EXIT_CONNECTION",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "buildParser",
    "formatPayload",
    "main",
    "payloadFields",
    "sessionFields",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONNECTION: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_INTERRUPTED: Final = 130

_CLOSE_WAIT: Final = 2.0
"""Seconds to wait for the server to acknowledge our close before exiting."""

_EPILOG: Final = """\
output:
  Text payloads (UTF-8, UTF-16) are printed decoded; binary payloads as
  "binary: " and space-separated hex bytes ("binary: 68 69"), an empty one
  as "binary: (empty)". With --json every output line is one JSON object:
  {"type": "reply", "encoding": "utf8", "payload": "..."}, binary payloads
  in base64. Errors go to stderr, one line, prefixed "webwire: ".

exit codes:
  0    success (listen: also when interrupted)
  1    the server answered with an error reply ("CODE: message" on
       stderr) or another failure reply: internal error, shutting down,
       session not found, max session connections, sessions disabled
  2    usage error: bad option or hex, a name or payload that cannot be
       sent, a URL that is not ws:// or wss://, an unreadable PEM file
  3    connection failure: refused, dial timeout, TLS, handshake mismatch
       (protocol version, sub-protocol, buffer size), connection lost
  4    no reply within --timeout
  130  a one-shot command was interrupted (Ctrl-C, SIGTERM)
"""

_EXAMPLES: Final = """\
examples:
  webwire request ws://localhost:8080/ echo hello
  webwire request ws://localhost:8080/ echo "68 69" --hex --json
  webwire request ws://localhost:8080/ login ada    # prints the session key
  webwire restore ws://localhost:8080/ KEY
  webwire signal ws://localhost:8080/ echo-signal hi
  webwire listen wss://example.org/ --session KEY --ca-certificates ca.pem
  (put -- before a PAYLOAD that starts with "-")

"""

_FAILURE_REPLIES: Final[dict[type[Exception], str]] = {
    InternalError: "internal error",
    ServerShutdown: "server shutting down",
    SessionNotFound: "session not found",
    MaxSessionConnections: "max session connections reached",
    SessionsDisabled: "sessions disabled",
    SessionActive: "session active",
}


class _Failed(Exception):
    """
    An expected failure: one line for stderr and an exit code.
    """

    def __init__(self, exitCode: int, message: str) -> None:
        super().__init__(exitCode, message)
        self.exitCode = exitCode
        self.message = message


# Output ---------------------------------------------------------------------


def formatPayload(data: bytes, encoding: wire.Encoding) -> str:
    """
    A payload as the text output shows it.

    :param data: The payload bytes.
    :param encoding: Their encoding.
    :returns: Text decoded (undecodable bytes backslash-escaped); binary as
        C{binary: 68 69}, or C{binary: (empty)}.
    """
    if encoding is wire.Encoding.BINARY:
        return "binary: " + (data.hex(" ") or "(empty)")
    return wire.decodeText(data, encoding, "backslashreplace")


def payloadFields(data: bytes, encoding: wire.Encoding) -> dict[str, str]:
    """
    A payload as the JSON output shows it.

    :param data: The payload bytes.
    :param encoding: Their encoding.
    :returns: C{encoding} (C{binary}, C{utf8}, C{utf16}) and C{payload}:
        text decoded (U+FFFD for undecodable bytes), binary in base64.
    """
    if encoding is wire.Encoding.BINARY:
        text = base64.b64encode(data).decode("ascii")
    else:
        text = wire.decodeText(data, encoding, "replace")
    return {"encoding": encoding.value, "payload": text}


def sessionFields(session: Session) -> dict[str, Any]:
    """
    A session as the output shows it.

    :returns: C{key}, C{creation} and C{lastLookup} (RFC 3339), C{info}.
    """
    return {
        "key": session.key,
        "creation": formatTime(session.creation),
        "lastLookup": formatTime(session.lastLookup),
        "info": dict(session.info),
    }


class _Output:
    """
    Writes results to stdout (text or one JSON object a line) and errors to
    stderr, flushing every line so that C{listen} works in pipes.
    """

    def __init__(self, asJSON: bool, stdout: IO[str], stderr: IO[str]) -> None:
        self.asJSON = asJSON
        self.stdout = stdout
        self.stderr = stderr
        self.broken: Deferred[None] = Deferred()

    def emit(self, kind: str, text: str, **fields: Any) -> None:
        """
        One result: C{text} in text mode, else C{{"type": kind, **fields}}.
        """
        line = json.dumps({"type": kind, **fields}) if self.asJSON else text
        try:
            self.stdout.write(line + "\n")
            self.stdout.flush()
        except BrokenPipeError:
            # The reader went away (e.g. `| head -1`): stop writing; the
            # interpreter must not fail flushing stdout at exit either.
            self.stdout = open(os.devnull, "w")
            if not self.broken.called:
                self.broken.callback(None)

    def error(self, message: str) -> None:
        """One line on stderr."""
        self.stderr.write(f"webwire: {message}\n")
        self.stderr.flush()


# The commands ---------------------------------------------------------------


def _explain(error: BaseException) -> _Failed:
    """The exit code and message for an exception a client call failed with."""
    if isinstance(error, _Failed):
        return error
    if isinstance(error, RequestError):
        return _Failed(EXIT_FAILURE, str(error))
    for kind, label in _FAILURE_REPLIES.items():
        if isinstance(error, kind):
            return _Failed(EXIT_FAILURE, f"{label}: {error}")
    if isinstance(error, RequestTimeout):
        return _Failed(EXIT_TIMEOUT, f"no reply in time: {error}")
    if isinstance(error, HandshakeError):
        return _Failed(EXIT_CONNECTION, f"handshake failed: {error}")
    if isinstance(error, Disconnected):
        return _Failed(EXIT_CONNECTION, f"connection failed: {error}")
    if isinstance(error, InvalidMessage):
        return _Failed(EXIT_USAGE, f"invalid message: {error}")
    raise error


async def _call(d: Awaitable[Any]) -> Any:
    """Await a client call; turn its expected failures into L{_Failed}."""
    try:
        return await d
    except CancelledError:
        raise
    except Exception as e:
        raise _explain(e) from None


async def _connect(run: _Run, client: WebWireClient) -> None:
    """Connect; every failure (a timeout too) is a connection failure."""
    try:
        await client.connect()
    except RequestTimeout:
        # Only with autoconnect (listen): the client retried meanwhile and
        # logged why each attempt failed.
        hint = "" if run.args.verbose else " (--verbose shows why)"
        raise _Failed(
            EXIT_CONNECTION,
            f"cannot connect to {client.url}: no connection within "
            f"{client.options.requestTimeout:g} seconds{hint}",
        ) from None
    except HandshakeError as e:
        raise _explain(e) from None
    except Disconnected as e:
        # The client's message already starts "cannot connect: ".
        why = str(e).removeprefix("cannot connect: ")
        if "certificate verify failed" in why:
            # OpenSSL's reason arrives wrapped in Autobahn's and pyOpenSSL's
            # texts ("(in )", a list of tuples): say it once, plainly.
            why = (
                "TLS certificate verify failed: the server's certificate is not "
                "trusted, or not for this host name"
            )
            if not run.args.caCertificates:
                why += (
                    " (a self-signed certificate or a private CA? give its PEM "
                    "file with --ca-certificates)"
                )
        raise _Failed(
            EXIT_CONNECTION, f"cannot connect to {client.url}: {why}"
        ) from None


def _payload(args: argparse.Namespace) -> wire.Payload:
    """The payload the arguments ask for (hex was checked by L{main})."""
    if args.payload is None:
        return wire.Payload()
    if args.hex:
        return wire.Payload(bytes.fromhex(args.payload), wire.Encoding.BINARY)
    encoding = (
        wire.Encoding.UTF16
        if args.utf16
        else wire.Encoding.BINARY
        if args.binary
        else wire.Encoding.UTF8
    )
    try:
        return wire.Payload.fromText(args.payload, encoding)
    except InvalidMessage as e:
        raise _explain(e) from None


def _check(args: argparse.Namespace, payload: wire.Payload) -> None:
    """
    Fail with a usage error now if the name or payload cannot be sent, not
    after connecting.
    """
    try:
        if args.command == "request":
            wire.encodeRequest(
                bytes(wire.IDENTIFIER_LENGTH),
                args.name,
                payload.data,
                payload.encoding,
                args.bufferSize,
            )
        else:
            wire.encodeSignal(
                args.name, payload.data, payload.encoding, args.bufferSize
            )
    except InvalidMessage as e:
        raise _explain(e) from None


async def _restoreFirst(client: WebWireClient, args: argparse.Namespace) -> None:
    if args.session is not None:
        await _call(client.restoreSession(args.session, timeout=args.timeout))


async def _request(run: _Run, client: WebWireClient) -> None:
    args = run.args
    payload = _payload(args)
    _check(args, payload)
    await _connect(run, client)
    await _restoreFirst(client, args)
    before = client.session
    reply: wire.Reply = await _call(
        client.request(args.name, payload, timeout=args.timeout)
    )
    if run.out.asJSON and client.session is not None and client.session is not before:
        # A session the request created: its key is worth keeping, whatever
        # the reply says. (The text output stays the reply alone.)
        run.out.emit(
            "session-created",
            f"session created: {client.session.key}",
            session=sessionFields(client.session),
        )
    run.out.emit(
        "reply",
        formatPayload(reply.payload, reply.encoding),
        **payloadFields(reply.payload, reply.encoding),
    )


async def _signal(run: _Run, client: WebWireClient) -> None:
    args = run.args
    payload = _payload(args)
    _check(args, payload)
    await _connect(run, client)
    await _call(client.signal(args.name, payload, timeout=args.timeout))
    run.out.emit("sent", f"sent signal {args.name}", name=args.name)


async def _restore(run: _Run, client: WebWireClient) -> None:
    await _connect(run, client)
    session = await _call(client.restoreSession(run.args.key, timeout=run.args.timeout))
    fields = sessionFields(session)
    run.out.emit("session", json.dumps(fields, ensure_ascii=False), session=fields)


class _ListenHooks(ClientHooks):
    """
    Prints what a listening client is told; fires C{done} after C{count}
    signals and session notifications, or fails it with a L{_Failed} when
    the client stops reconnecting.
    """

    def __init__(self, out: _Output, count: int | None, clock: IReactorTime) -> None:
        self.out = out
        self.remaining = count
        self.clock = clock
        self.done: Deferred[None] = Deferred()
        self.restoring = False
        self._wasConnected = False
        self._connectedNow = False

    @property
    def stopping(self) -> bool:
        return self.done.called

    def stop(self) -> None:
        """Stop listening: the events that follow are not printed."""
        if not self.done.called:
            self.done.callback(None)

    def _counted(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.stop()

    def onConnected(self, client: WebWireClient) -> None:
        self._connectedNow = True
        if self.stopping:
            return
        kind = "reconnected" if self._wasConnected else "connected"
        self._wasConnected = True
        self.out.emit(kind, f"{kind} to {client.url}", url=client.url)

    def onDisconnected(self, client: WebWireClient, reason: Failure) -> None:
        self._connectedNow = False
        if self.stopping:
            return
        why = reason.getErrorMessage()
        self.out.emit("disconnected", f"disconnected: {why}", reason=why)
        # On a later turn, once the client's own reconnection is under way.
        self.clock.callLater(0, self._watch, client)

    def _watch(self, client: WebWireClient) -> None:
        Deferred.fromCoroutine(self._waitForReconnection(client))

    async def _waitForReconnection(self, client: WebWireClient) -> None:
        """
        The client reconnects by itself, but gives up silently on a
        handshake error: that ends listening.
        """
        while not self.stopping:
            try:
                await client.connect()
                return
            except RequestTimeout:
                continue  # still trying; wait again
            except HandshakeError as e:
                if not self.done.called:
                    self.done.errback(_explain(e))
                return
            except CancelledError:
                raise
            except Exception:
                return  # closed meanwhile

    def onSignal(self, client: WebWireClient, signal: wire.Signal) -> None:
        if self.stopping:
            return
        fields = payloadFields(signal.payload, signal.encoding)
        text = formatPayload(signal.payload, signal.encoding)
        self.out.emit(
            "signal", f"signal {signal.name}: {text}", name=signal.name, **fields
        )
        self._counted()

    def onSessionCreated(self, client: WebWireClient, session: Session) -> None:
        if self.stopping:
            return
        # The hook does not say why: a restore (ours, or the client's after a
        # reconnection, before onConnected) or the server's notification.
        restored = self.restoring or not self._connectedNow
        kind = "session-restored" if restored else "session-created"
        text = f"session {'restored' if restored else 'created'}: {session.key}"
        self.out.emit(kind, text, session=sessionFields(session))
        self._counted()

    def onSessionClosed(self, client: WebWireClient) -> None:
        if self.stopping:
            return
        self.out.emit("session-closed", "session closed")
        self._counted()

    def onSessionLost(
        self, client: WebWireClient, session: Session, reason: Failure
    ) -> None:
        if self.stopping:
            return
        why = reason.getErrorMessage()
        self.out.emit(
            "session-lost",
            f"session lost: {session.key}: {why}",
            key=session.key,
            reason=why,
        )
        self._counted()


async def _listen(run: _Run, client: WebWireClient) -> None:
    hooks = client.hooks
    assert isinstance(hooks, _ListenHooks)
    run.out.broken.addCallback(lambda _: hooks.stop())
    run.onInterrupt = hooks.stop
    await _connect(run, client)
    if run.args.session is not None:
        hooks.restoring = True
        try:
            await _restoreFirst(client, run.args)
        finally:
            hooks.restoring = False
    await hooks.done


_Command = Callable[["_Run", WebWireClient], Awaitable[None]]
_COMMANDS: Final[dict[str, _Command]] = {
    "request": _request,
    "signal": _signal,
    "restore": _restore,
    "listen": _listen,
}


class _Run:
    """
    One run of the tool: the command, its client, and the exit code.
    """

    def __init__(self, args: argparse.Namespace, out: _Output) -> None:
        self.args = args
        self.out = out
        self.exitCode = EXIT_OK
        self.client: WebWireClient | None = None
        self.finished = False
        self.interrupted = False
        self.onInterrupt: Callable[[], None] | None = None
        self._completion: list[Deferred[None]] = []

    def makeClient(self, reactor: Any) -> WebWireClient:
        args = self.args
        listening = args.command == "listen"
        options = ClientOptions(
            dialTimeout=args.dialTimeout,
            # One-shot commands: connecting is bounded by the dial timeout,
            # the reply by --timeout. listen: --timeout bounds the first
            # connection (retried meanwhile).
            requestTimeout=args.timeout
            if listening
            else args.dialTimeout + args.timeout,
            autoconnect=listening,
            messageBufferSize=args.bufferSize,
            subProtocol=args.subProtocol,
            caCertificates=args.caCertificates,
        )
        hooks = _ListenHooks(self.out, args.count, reactor) if listening else None
        try:
            return WebWireClient(args.url, hooks, options, reactor=reactor)
        except OSError as e:
            raise _Failed(EXIT_USAGE, f"cannot read --ca-certificates: {e}") from None
        except ValueError as e:
            raise _Failed(EXIT_USAGE, str(e)) from None

    async def run(self, reactor: Any) -> None:
        """Run the command; never fails (see C{exitCode})."""
        reactor.addSystemEventTrigger("before", "shutdown", self._shuttingDown, reactor)
        try:
            self.client = self.makeClient(reactor)
            await _COMMANDS[self.args.command](self, self.client)
        except Exception as e:
            if not self.interrupted:
                self._report(e)
        finally:
            if self.client is not None:
                await _close(self.client, reactor)
            self.finished = True
            waiters, self._completion = self._completion, []
            for waiter in waiters:
                if not waiter.called:  # else the reactor gave up waiting
                    waiter.callback(None)

    def _report(self, error: Exception) -> None:
        try:
            failed = _explain(error)
        except Exception:
            self.out.stderr.write("webwire: unexpected error (a bug):\n")
            traceback.print_exc(file=self.out.stderr)
            self.exitCode = EXIT_FAILURE
            return
        self.out.error(failed.message)
        self.exitCode = failed.exitCode

    def _shuttingDown(self, reactor: IReactorTime) -> Deferred[None] | None:
        """
        The reactor is stopping (Ctrl-C, SIGTERM) or we are done: stop
        what runs, and make the reactor wait until it has stopped.
        """
        if self.finished:
            return None
        self.interrupted = True
        if self.onInterrupt is not None:
            self.onInterrupt()  # listen: a normal end
        else:
            self.exitCode = EXIT_INTERRUPTED
            self.out.error("interrupted")
        if self.client is not None:
            # Fails what waits for the connection or a reply; run() ends.
            self.client.close()
        waiter: Deferred[None] = Deferred()
        self._completion.append(waiter)
        return waiter.addTimeout(_CLOSE_WAIT + 1, reactor, lambda r, t: None)


async def _close(client: WebWireClient, clock: IReactorTime) -> None:
    """Close the connection, waiting a little for the server's answer."""
    closing = client.close().addTimeout(_CLOSE_WAIT, clock)
    # A timeout (the server did not answer our close) or any other failure:
    # nothing to tell, we are leaving anyway.
    await closing.addErrback(lambda failure: None)


# Arguments ------------------------------------------------------------------


def _positiveFloat(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positiveInt(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


_COMMON_DEFAULTS: Final[dict[str, Any]] = {
    "timeout": 10.0,
    "dialTimeout": 5.0,
    "caCertificates": None,
    "subProtocol": None,
    "bufferSize": wire.DEFAULT_MESSAGE_BUFFER_SIZE,
    "asJSON": False,
    "verbose": False,
}


def _addCommonOptions(options: Any) -> None:
    """
    Add the connection and output options to a parser or group, without
    defaults (see L{_COMMON_DEFAULTS}).
    """

    def add(*names: str, **kwargs: Any) -> None:
        options.add_argument(*names, default=argparse.SUPPRESS, **kwargs)

    add(
        "--timeout",
        type=_positiveFloat,
        metavar="SECONDS",
        help="seconds to wait for the reply once connected (listen: for the "
        "first connection) [default: 10]",
    )
    add(
        "--dial-timeout",
        dest="dialTimeout",
        type=_positiveFloat,
        metavar="SECONDS",
        help="seconds one connection attempt may take: TCP, TLS, WebSocket "
        "and WebWire handshakes [default: 5]",
    )
    add(
        "--ca-certificates",
        dest="caCertificates",
        metavar="PEM",
        help="for wss:// URLs: trust the certificate authorities in this PEM "
        "file instead of the system's",
    )
    add(
        "--sub-protocol",
        dest="subProtocol",
        metavar="NAME",
        help="the WebWire sub-protocol the server must advertise [default: none]",
    )
    add(
        "--buffer-size",
        dest="bufferSize",
        type=_positiveInt,
        metavar="BYTES",
        help="message buffer size; must equal the server's "
        f"[default: {wire.DEFAULT_MESSAGE_BUFFER_SIZE}]",
    )
    add(
        "--json",
        dest="asJSON",
        action="store_true",
        help="print one JSON object per line (binary payloads in base64)",
    )
    add("-v", "--verbose", action="store_true", help="log to stderr what happens")


def buildParser() -> argparse.ArgumentParser:
    """
    The argument parser of the C{webwire} command.

    :returns: A parser whose namespaces have C{command} (C{request},
        C{signal}, C{listen}, C{restore}) and that command's options.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="webwire",
        description="Talk to a WebWire 2.0 server: send a request or a signal,\n"
        "restore a session, or listen for signals and session events.\n"
        "'webwire COMMAND --help' describes each command's options.",
        epilog=_EXAMPLES + _EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )

    # The common options go before or after COMMAND. Their defaults are set
    # once, on the top parser: a subparser's own defaults would overwrite
    # what was given before COMMAND.
    common = argparse.ArgumentParser(add_help=False)
    _addCommonOptions(common.add_argument_group("connection and output options"))
    _addCommonOptions(
        parser.add_argument_group(
            "connection and output options (before or after COMMAND)"
        )
    )
    parser.set_defaults(**_COMMON_DEFAULTS)

    payload = argparse.ArgumentParser(add_help=False)
    # Not in an argument group: argparse would lose the group's title for
    # the mutually exclusive options inherited through parents=.
    encoding = payload.add_mutually_exclusive_group()
    encoding.add_argument(
        "--utf16", action="store_true", help="send PAYLOAD as UTF-16 text"
    )
    encoding.add_argument(
        "--binary", action="store_true", help="send PAYLOAD's UTF-8 bytes as binary"
    )
    payload.add_argument(
        "--hex",
        action="store_true",
        help="PAYLOAD is hexadecimal (spaces allowed), sent as binary",
    )

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, parents: list[argparse.ArgumentParser], summary: str
    ) -> argparse.ArgumentParser:
        command = commands.add_parser(
            name,
            parents=parents,
            help=summary,
            description=summary,
            epilog=_EPILOG,
            formatter_class=formatter,
        )
        # So that later checks report errors with the command's usage.
        command.set_defaults(commandParser=command)
        return command

    urlHelp = "ws://host[:port][/path] or wss://..."
    request = add(
        "request",
        [payload, common],
        "Send one request, print the reply's payload and exit.",
    )
    request.add_argument("url", metavar="URL", help=urlHelp)
    request.add_argument("name", metavar="NAME", help="the request name")
    request.add_argument(
        "payload",
        metavar="PAYLOAD",
        nargs="?",
        help="the payload: text, sent as UTF-8 unless told otherwise [default: empty]",
    )
    request.add_argument(
        "--session", metavar="KEY", help="restore this session before the request"
    )

    signal = add(
        "signal", [payload, common], "Send one signal and exit once it is sent."
    )
    signal.add_argument("url", metavar="URL", help=urlHelp)
    signal.add_argument("name", metavar="NAME", help="the signal name")
    signal.add_argument(
        "payload", metavar="PAYLOAD", nargs="?", help="the payload (as for request)"
    )

    listen = add(
        "listen",
        [common],
        "Stay connected (reconnecting when the connection is lost) and print "
        "every signal and session event until interrupted.",
    )
    listen.add_argument("url", metavar="URL", help=urlHelp)
    listen.add_argument("--session", metavar="KEY", help="restore this session first")
    listen.add_argument(
        "--count",
        type=_positiveInt,
        metavar="N",
        help="exit after N signals and session events (created, restored, "
        "closed, lost)",
    )

    restore = add("restore", [common], "Restore a session and print it as JSON.")
    restore.add_argument("url", metavar="URL", help=urlHelp)
    restore.add_argument("key", metavar="KEY", help="the session key")
    # Options that not every command has, so that the code can read them.
    parser.set_defaults(count=None, session=None)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args = buildParser().parse_args(argv)
    parser: argparse.ArgumentParser = args.commandParser
    if getattr(args, "hex", False):
        if args.utf16:
            parser.error("--hex sends binary: it cannot be combined with --utf16")
        if args.payload is not None:
            try:
                bytes.fromhex(args.payload)
            except ValueError as e:
                parser.error(f"PAYLOAD is not hexadecimal: {e}")
    return args


def _startLogging(verbose: bool, stderr: IO[str]) -> None:
    """
    Begin logging: to stderr with C{verbose}, else nowhere (so that nothing
    is buffered and nothing printed, not even warnings).
    """
    observers = []
    if verbose:
        observers.append(
            FilteringLogObserver(
                textFileLogObserver(stderr),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)],
            )
        )
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """
    Run the C{webwire} command and exit with its exit code (see the
    C{--help} epilog).

    :param argv: The arguments, without the program name; C{sys.argv[1:]}
        if omitted.
    """
    args = _parse(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    _startLogging(args.verbose, sys.stderr)
    run = _Run(args, _Output(args.asJSON, sys.stdout, sys.stderr))
    try:
        react(run.run)
    except SystemExit:
        pass
    sys.exit(run.exitCode)
