# -*- test-case-name: tests.test_cli -*-
"""
C{webwire}: talk to a WebWire server from the shell.

Built on L{webwire.client.WebWireClient}: C{request}, C{signal} and
C{restore} connect once (no reconnection) and exit; C{listen} stays
connected, reconnects when the connection is lost, and prints what the
server sends until interrupted or until C{--count} events.

This module runs the commands; L{webwire._cliargs} parses the arguments
and L{webwire._clioutput} formats what is printed. They are the package's
modules whose job is output: they write to C{sys.stdout} and C{sys.stderr}
themselves, and this one starts logging (to stderr, only with
C{--verbose}) as twistd would.
"""

from __future__ import annotations

import argparse
import io
import json
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
from webwire._cliargs import _parse, buildParser
from webwire._clioutput import (
    EXIT_CONNECTION,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    _explain,
    _Failed,
    _Output,
    formatPayload,
    payloadFields,
    sessionFields,
)
from webwire._reactor import IWebWireReactor
from webwire.client import ClientHooks, ClientOptions, WebWireClient
from webwire.errors import (
    Disconnected,
    HandshakeError,
    InvalidMessage,
    RequestTimeout,
)
from webwire.sessions.session import Session

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

_CLOSE_WAIT: Final = 2.0
"""Seconds to wait for the server to acknowledge our close before exiting."""


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

    def makeClient(self, reactor: IWebWireReactor) -> WebWireClient:
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

    async def run(self, reactor: IWebWireReactor) -> None:
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
