"""
One load generator process of the cluster benchmark (C{python -m
benchmarks.cluster load}): its connections log in or restore a session,
keep echo requests in flight on the benchmark's command, count the round
trips, check every message, then log out and close.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.stdio import StandardIO
from twisted.python.failure import Failure

from benchmarks._common import (
    IDENTIFIER,
    PHASE_TIMEOUT,
    BenchmarkError,
    Countdown,
    Task,
    checkEcho,
    decode,
    report,
    within,
)
from benchmarks._processes import Control
from webwire import wire


class Load(Task):
    """What the connections of one load generator process share."""

    def __init__(self, opts: argparse.Namespace) -> None:
        super().__init__("load generator")
        self.inflight: int = opts.inflight
        self.payload = bytes(i % 251 for i in range(opts.payload))
        self.sending = False  # while set, every echo reply sends the next
        self.clients: list[LoadClientProtocol] = []
        self.opened = Countdown(opts.connections)  # AcceptConf seen
        self.steps = Countdown(0)  # replaced for each phase
        self.drained = Countdown(opts.connections)  # no echo outstanding
        self.closed = Countdown(opts.connections)


class LoadClientProtocol(WebSocketClientProtocol):
    """
    One connection of the load: logs in or restores its neighbour's session,
    keeps C{load.inflight} echo requests in flight, logs out; checks every
    message it gets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.load: Load  # these three are set by the factory
        self.index = -1  # in the order of connecting
        self.user = ""
        self.localPort = 0
        self.stage = "handshake"  # handshake, idle, login, restore, echo, logout
        self.outstanding: set[bytes] = set()  # echo identifiers awaiting a reply
        self.counter = 0
        self.completed = 0  # echo round trips
        self.stepIdentifier = b""  # of the login, restore or logout request
        self.noticed = False  # the session notification of this step came
        self.sessionKey = ""
        self.closing = False

    def onOpen(self) -> None:
        transport: Any = self.transport
        self.localPort = transport.getHost().port

    def nextIdentifier(self) -> bytes:
        self.counter += 1
        return IDENTIFIER.pack(self.counter)

    def step(self, stage: str, name: str, payload: bytes) -> None:
        """Send a login or logout request, and expect its answer."""
        self.stepIdentifier = self.nextIdentifier()
        self.stage, self.noticed = stage, False
        message = wire.encodeRequest(
            self.stepIdentifier, name, payload, wire.Encoding.UTF8
        )
        self.sendMessage(message, isBinary=True)

    def login(self) -> None:
        self.step("login", "login", self.user.encode())

    def logout(self) -> None:
        self.step("logout", "logout", b"")

    def restore(self) -> None:
        self.sessionKey = self.load.clients[self.index - 1].sessionKey
        self.stepIdentifier = self.nextIdentifier()
        self.stage = "restore"
        message = wire.encodeRestoreSession(self.stepIdentifier, self.sessionKey)
        self.sendMessage(message, isBinary=True)

    def startEcho(self) -> None:
        self.stage = "echo"
        for _ in range(self.load.inflight):
            self.sendEcho()

    def sendEcho(self) -> None:
        identifier = self.nextIdentifier()
        self.outstanding.add(identifier)
        data = wire.encodeRequest(
            identifier, "echo-binary", self.load.payload, wire.Encoding.BINARY
        )
        self.sendMessage(data, isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            message = decode(payload, isBinary)
        except BenchmarkError as e:
            self.wrong(str(e))
            return
        if self.stage == "echo":
            self.echoed(message)
        elif self.stage == "handshake" and isinstance(message, wire.AcceptConf):
            self.stage = "idle"
            self.load.opened.tick()
        elif self.stage == "login":
            self.loginAnswered(message)
        elif self.stage == "restore":
            self.restoreAnswered(message)
        elif self.stage == "logout":
            self.logoutAnswered(message)
        else:
            self.wrong(f"unexpected {message!r:.80} while {self.stage}")

    def echoed(self, message: wire.Message) -> None:
        load = self.load
        if not (
            isinstance(message, wire.Reply) and message.encoding is wire.Encoding.BINARY
        ):
            self.wrong(f"expected a binary echo reply, got {message!r:.80}")
            return
        try:
            checkEcho(message, self.outstanding, load.payload)
        except BenchmarkError as e:
            self.wrong(str(e))
            return
        self.completed += 1
        if load.sending:
            self.sendEcho()
        elif not self.outstanding:
            self.stage = "idle"
            load.drained.tick()

    def loginAnswered(self, message: wire.Message) -> None:
        if isinstance(message, wire.SessionCreated) and not self.noticed:
            session = self.parseSession(message.session)
            if session is not None:
                self.noticed, self.sessionKey = True, session["k"]
        elif self.noticed and self.isStepReply(message, self.sessionKey.encode()):
            self.stepDone()
        else:
            self.wrong(f"unexpected {message!r:.80} after login")

    def restoreAnswered(self, message: wire.Message) -> None:
        if not isinstance(message, wire.Reply) or not self.isStepReply(message):
            self.wrong(f"unexpected {message!r:.80} after restoring")
            return
        session = self.parseSession(message.payload)
        if session is None:
            return
        if session["k"] != self.sessionKey:
            self.wrong(f"restored session {session['k']!r:.12}, not the one asked")
        else:
            self.stepDone()

    def logoutAnswered(self, message: wire.Message) -> None:
        if isinstance(message, wire.SessionClosed) and not self.noticed:
            self.noticed = True
        elif self.noticed and self.isStepReply(message, b""):
            self.stepDone()
        else:
            self.wrong(f"unexpected {message!r:.80} after logout")

    def isStepReply(self, message: wire.Message, payload: bytes | None = None) -> bool:
        return (
            isinstance(message, wire.Reply)
            and message.identifier == self.stepIdentifier
            and (payload is None or message.payload == payload)
        )

    def parseSession(self, data: bytes) -> dict[str, Any] | None:
        """The session document, checked; None (and the load aborted) if wrong."""
        try:
            session = json.loads(data)
            if not isinstance(session, dict) or not session.get("k"):
                raise ValueError("no session key")
            if session.get("i") != {"user": self.user}:
                raise ValueError(f"not the session of {self.user}")
        except ValueError as e:
            self.wrong(f"bad session document {data[:40]!r}: {e}")
            return None
        return session

    def stepDone(self) -> None:
        self.stage = "idle"
        self.load.steps.tick()

    def wrong(self, reason: str) -> None:
        self.load.abort(f"connection {self.index}: {reason}")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.closing:
            self.load.closed.tick()
        else:
            self.load.abort(f"connection {self.index} closed ({code}: {reason})")


class LoadClientFactory(WebSocketClientFactory):
    """Connects the L{LoadClientProtocol}s of one L{Load}."""

    protocol = LoadClientProtocol

    def __init__(self, url: str, load: Load) -> None:
        super().__init__(url)
        self.load = load

    def buildProtocol(self, addr: Any) -> Any:
        """
        Number the connections in the order they connect, not the order
        their handshakes end: the second tends to group them by server
        process, and neighbours share sessions.
        """
        protocol: Any = super().buildProtocol(addr)  # a LoadClientProtocol
        protocol.load = self.load
        protocol.index = len(self.load.clients)
        protocol.user = f"bench{protocol.index - protocol.index % 2}"  # a pair's
        self.load.clients.append(protocol)
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.load.abort(f"cannot connect: {reason.getErrorMessage()}")


async def phase(
    reactor: Any,
    load: Load,
    clients: list[LoadClientProtocol],
    start: Callable[[LoadClientProtocol], None],
    what: str,
) -> None:
    """Call C{start} on each of C{clients}, then wait until each is done."""
    if not clients:
        return
    load.steps = Countdown(len(clients))
    for client in clients:
        start(client)
    await within(reactor, load.steps.done, PHASE_TIMEOUT, what)


async def generateLoad(reactor: Any, load: Load, opts: argparse.Namespace) -> None:
    """
    Connect, set the sessions up, say C{ready} with the local ports; then
    obey the benchmark: C{start} sending, C{mark N} (answered with the time
    and each connection's round trips so far), C{stop}: collect the last
    replies, log out, close, say C{done}.
    """
    control = Control()
    StandardIO(control, reactor=reactor)
    factory = LoadClientFactory(f"ws://127.0.0.1:{opts.port}/", load)
    for _ in range(opts.connections):
        reactor.connectTCP("127.0.0.1", opts.port, factory)
    await within(reactor, load.opened.done, PHASE_TIMEOUT, "open connections")
    # Connections 0, 2, 4... log in; 1, 3, 5... restore the one before's.
    first, second = load.clients[0::2], load.clients[1::2]
    await phase(reactor, load, first, LoadClientProtocol.login, "logins")
    await phase(reactor, load, second, LoadClientProtocol.restore, "restores")
    control.say("ready " + ",".join(str(c.localPort) for c in load.clients))

    while (command := await control.nextLine()) != "stop":
        if command is None:
            raise BenchmarkError("the benchmark is gone")
        if command == "start":
            load.sending = True
            for client in load.clients:
                client.startEcho()
        elif command.startswith("mark "):
            counts = ",".join(str(client.completed) for client in load.clients)
            control.say(f"{command} {time.perf_counter()!r} {counts}")

    load.sending = False  # the last replies are checked like all others
    await within(reactor, load.drained.done, PHASE_TIMEOUT, "last replies")
    await phase(reactor, load, load.clients, LoadClientProtocol.logout, "logouts")
    for client in load.clients:
        client.closing = True
        client.sendClose(1000)
    await within(reactor, load.closed.done, PHASE_TIMEOUT, "closed connections")
    control.say("done")
    await control.close()


async def generate(reactor: Any, opts: argparse.Namespace) -> None:
    """Run one load generator process; exit with status 1 on an error."""
    load = Load(opts)
    try:
        await load.run(generateLoad(reactor, load, opts))
    except BenchmarkError as e:
        report(f"{e}", sys.stderr)
        raise SystemExit(1) from None
