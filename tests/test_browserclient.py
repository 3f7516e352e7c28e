"""
webwire.js, the browser client, in real headless Chromium: against the
conformance application (replies, errors, signals, sessions across page
loads, timeouts, heartbeats, concurrency, reconnection), and against a
scripted WebSocket server that checks the exact bytes the client sends and
feeds it exact bytes (reply types, junk, handshake mismatches).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.static import File

from tests.browser import Browser, BrowserTestCase, WebServer, testPage
from tests.helpers import DEFAULT_ACCEPT_CONF, h
from webwire.conformance import ConformanceApplication, DeliberateInternalError
from webwire.options import ServerOptions
from webwire.resource import WebWireResource
from webwire.server import WebWireServerFactory
from webwire.sessions import MemorySessionManager
from webwire.web import WebWireRoot, clientScript

if TYPE_CHECKING:
    from playwright.sync_api import Page


def openTestPage(browser: Browser, server: WebServer) -> Page:
    """Open the test page of C{server}; wait until webwire.js is loaded."""
    page = browser.newPage(server.url("/test.html"))
    page.wait_for_function("() => window.webwire !== undefined")
    return page


class ConformanceTests(BrowserTestCase):
    """
    webwire.js against the conformance application, served by WebWireRoot:
    C{/} is the conformance application, C{/fast} the same with a read
    timeout of 0.4 seconds.
    """

    def setUp(self) -> None:
        super().setUp()
        self.sessionManager = MemorySessionManager()
        self.server = WebServer(self, self.build)

    def build(self) -> tuple[Resource, list[WebSocketServerFactory]]:
        self.factory = WebWireServerFactory(
            ConformanceApplication(), sessionManager=self.sessionManager
        )
        self.fast = WebWireServerFactory(
            ConformanceApplication(),
            ServerOptions(readTimeout=0.4),
            sessionManager=MemorySessionManager(),
        )
        root = WebWireRoot(self.factory)
        root.putChild(b"test.html", testPage())
        root.putChild(b"fast", WebWireResource(self.fast))
        return root, [self.factory, self.fast]

    def run_(self, body: Callable[[Browser, Page], Any]) -> Deferred[Any]:
        """Run C{body} with the test page open."""
        return self.inBrowser(
            lambda browser: body(browser, openTestPage(browser, self.server))
        )

    def test_replies(self) -> Deferred[Any]:
        """
        Binary, UTF-8 and UTF-16 replies (an odd and an even name; surrogate
        pairs) and empty replies of each encoding arrive with their encoding.
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const c = new webwire.WebWireClient("/", {storage: null});
                const show = (r) => [r.encoding, r.text(), Array.from(r.payload)];
                const ask = async (name, payload, encoding) =>
                    show(await c.request(name, payload, {encoding}));
                const out = {
                    utf8: await ask("echo", "héllo"),
                    binary: await ask("echo", new Uint8Array([0, 1, 254, 255])),
                    buffer: await ask("echo-binary", new Uint8Array([7, 8]).buffer),
                    utf16odd: await ask("oddecho", "𝄞 ✓", "utf16"),
                    utf16even: await ask("echo", "ab𝄞", "utf16"),
                    nameless: await ask("", "payload only"),
                    emptyUtf16: await ask("oddecho", "", "utf16"),
                    emptyUtf8: await ask("echo", "", "utf8"),
                    emptyBinary: await ask("logout"),
                    bom: (await c.request("echo", "\\ufeffx")).text(),
                    textAsBinary: await ask("echo", "é", "binary"),
                };
                await c.close();
                out.status = c.status;
                return out;
            }"""
            )
            utf16 = "𝄞 ✓".encode("utf-16-le")
            self.assertEqual(
                result,
                {
                    "utf8": ["utf8", "héllo", list("héllo".encode())],
                    "binary": ["binary", "\x00\x01\ufffd\ufffd", [0, 1, 254, 255]],
                    "buffer": ["binary", "\x07\x08", [7, 8]],
                    "utf16odd": ["utf16", "𝄞 ✓", list(utf16)],
                    "utf16even": ["utf16", "ab𝄞", list("ab𝄞".encode("utf-16-le"))],
                    "nameless": ["utf8", "payload only", list(b"payload only")],
                    "emptyUtf16": ["utf16", "", []],
                    "emptyUtf8": ["utf8", "", []],
                    "emptyBinary": ["binary", "", []],
                    "bom": "\ufeffx",
                    "textAsBinary": ["binary", "é", list("é".encode())],
                    "status": "disabled",
                },
            )

        return self.run_(body)

    def test_errors(self) -> Deferred[Any]:
        """
        Error replies become WebWireErrors of kind request (with code and
        message) or internal; invalid calls are refused with kind protocol
        without connecting.
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const c = new webwire.WebWireClient("/", {storage: null});
                const fail = async (p) => {
                    try {
                        await p;
                        return "resolved";
                    } catch (e) {
                        const {WebWireError} = webwire;
                        if (!(e instanceof WebWireError && e instanceof Error)) {
                            return String(e);
                        }
                        return [e.kind, e.code ?? null, e.message];
                    }
                };
                const local = [
                    await fail(c.request()),
                    await fail(c.request("", "")),
                    await fail(c.request("bad\\nname")),
                    await fail(c.request("x".repeat(256))),
                    await fail(c.request("é")),
                    await fail(c.request("x", "\\ud800")),
                    await fail(c.signal()),
                    await fail(c.signal("u", "", {encoding: "utf16"})),
                    await fail(c.request("x", new Uint8Array(3), {encoding: "utf16"})),
                    await fail(c.request("x", "a".repeat(9000))),
                    await fail(c.request("x", 42)),
                    await fail(c.request("x", "y", {encoding: "latin1"})),
                    await fail(c.restoreSession("")),
                ].map((r) => r[0]);
                const statusBefore = c.status;
                const remote = {
                    error: await fail(c.request("error")),
                    internal: await fail(c.request("internal")),
                    unknown: await fail(c.request("x".repeat(255))),
                };
                await c.close();
                return {local, statusBefore, remote};
            }"""
            )
            self.assertEqual(result["local"], ["protocol"] * 13)
            self.assertEqual(result["statusBefore"], "disconnected")
            self.assertEqual(
                result["remote"],
                {
                    "error": ["request", "TEST_ERROR", "test error"],
                    "internal": [
                        "internal",
                        None,
                        "the server failed to handle the request",
                    ],
                    "unknown": [
                        "request",
                        "UNKNOWN_REQUEST",
                        "unknown request: " + "x" * 255,
                    ],
                },
            )

        d = self.run_(body)
        d.addCallback(lambda _: self.flushLoggedErrors(DeliberateInternalError))
        return d

    def test_signals(self) -> Deferred[Any]:
        """
        Signals go both ways in every encoding; a signal a request handler
        sends arrives before the request's reply.
        """

        def body(browser: Browser, page: Page) -> None:
            events = page.evaluate(
                """async () => {
                const events = [];
                const c = new webwire.WebWireClient("/", {
                    storage: null,
                    hooks: {
                        onSignal: (s) =>
                            events.push(["signal", s.name, s.encoding, s.text()]),
                    },
                });
                await c.signal("echo-signal", "ping ✓");
                await c.signal("echo-signal", new Uint8Array([104, 105]));
                await c.signal("echo-signal", "𝄞", {encoding: "utf16"});
                events.push(["reply", (await c.request("signal-me", "first")).text()]);
                const odd = await c.request("signal-odd", "ödd", {encoding: "utf16"});
                events.push(["reply", odd.text()]);
                await c.close();
                return events;
            }"""
            )
            self.assertEqual(
                events,
                [
                    ["signal", "echoed", "utf8", "ping ✓"],
                    ["signal", "echoed", "binary", "hi"],
                    ["signal", "echoed", "utf16", "𝄞"],
                    ["signal", "ping", "utf8", "first"],
                    ["reply", "first"],
                    ["signal", "odd", "utf16", "ödd"],
                    ["reply", "ödd"],
                ],
            )

        return self.run_(body)

    def test_sessionAcrossReload(self) -> Deferred[Any]:
        """
        A session the server creates is kept in localStorage in the original
        JS client's format; after a reload the new client restores it before
        its first request goes out. closeSession() forgets it.
        """

        def body(browser: Browser, page: Page) -> None:
            first = page.evaluate(
                """async () => {
                const events = [];
                const c = new webwire.WebWireClient("/", {hooks: {
                    onSessionCreated: (s) => events.push(
                        ["created", s.key, s.info.user, s.creation instanceof Date]),
                }});
                const key = (await c.request("login", "ada")).text();
                return {
                    key, events, url: c.url,
                    stored: localStorage.getItem(c.url),
                    session: [c.session.key, c.session.info],
                    whoami: (await c.request("whoami")).text(),
                };
            }"""
            )
            key = first["key"]
            self.assertEqual(len(key), 64)
            self.assertEqual(first["url"], self.server.wsURL("/"))
            self.assertEqual(first["events"], [["created", key, "ada", True]])
            self.assertEqual(json.loads(first["stored"]), {"session": key})
            self.assertEqual(first["session"], [key, {"user": "ada"}])
            self.assertEqual(first["whoami"], key)

            page.reload()
            page.wait_for_function("() => window.webwire !== undefined")
            second = page.evaluate(
                """async () => {
                const events = [];
                const c = new webwire.WebWireClient("/", {hooks: {
                    onSessionCreated: (s) => events.push(["created", s.key]),
                    onConnected: () => events.push(["connected", c.session?.key]),
                }});
                const whoami = (await c.request("whoami")).text();
                const s = c.session;
                const out = {
                    whoami, events, key: s.key, info: s.info,
                    age: Date.now() - s.creation.getTime(),
                    lastLookup: s.lastLookup instanceof Date,
                };
                await c.closeSession();
                out.after = {
                    session: c.session,
                    stored: localStorage.getItem(c.url),
                    whoami: (await c.request("whoami")).text(),
                };
                return out;
            }"""
            )
            self.assertEqual(second["whoami"], key)
            self.assertEqual(second["events"], [["created", key], ["connected", key]])
            self.assertEqual((second["key"], second["info"]), (key, {"user": "ada"}))
            self.assertTrue(0 <= second["age"] < 60_000, second["age"])
            self.assertTrue(second["lastLookup"])
            self.assertEqual(
                second["after"], {"session": None, "stored": None, "whoami": ""}
            )

        return self.run_(body)

    def test_sessionNotifications(self) -> Deferred[Any]:
        """
        A stored session the server does not know is given up (onSessionLost,
        storage cleared) and the client connects anyway; a session the
        server closes is forgotten (onSessionClosed).
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const events = [];
                const url = new URL("/", location.href).href.replace("http", "ws");
                localStorage.setItem(url, JSON.stringify({session: "unknown-key"}));
                const c = new webwire.WebWireClient("/", {hooks: {
                    onSessionLost: (s, e) => events.push(["lost", s.key, e.kind]),
                    onSessionCreated: (s) => events.push(["created", s.info.user]),
                    onSessionClosed: () => events.push(["closed"]),
                    onConnected: () => events.push(["connected"]),
                }});
                await c.connect();
                const afterConnect = [c.status, c.session, localStorage.getItem(url)];
                await c.request("login", "bob");
                const stored = JSON.parse(localStorage.getItem(url)).session;
                const key = c.session.key;
                const logout = (await c.request("logout")).payload.length;
                return {events, afterConnect, stored: stored === key, logout,
                        after: [c.session, localStorage.getItem(url)]};
            }"""
            )
            self.assertEqual(
                result,
                {
                    "events": [
                        ["lost", "unknown-key", "sessionNotFound"],
                        ["connected"],
                        ["created", "bob"],
                        ["closed"],
                    ],
                    "afterConnect": ["connected", None, None],
                    "stored": True,
                    "logout": 0,
                    "after": [None, None],
                },
            )
            self.assertIn(
                "warning: webwire: the session could not be restored: "
                "the server does not know the session",
                browser.console,
            )

        return self.run_(body)

    def test_timeout(self) -> Deferred[Any]:
        """
        A request whose reply does not come in time fails with kind timeout
        (its own timeout, or the client's requestTimeout); the late reply is
        dropped and the connection keeps working.
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const kind = (p) => p.then(() => "resolved", (e) => e.kind);
                const c = new webwire.WebWireClient("/", {storage: null});
                await c.connect();
                const start = performance.now();
                const own = await kind(c.request("sleep", "5000", {timeout: 200}));
                const elapsed = performance.now() - start;
                const c2 = new webwire.WebWireClient(
                    "/", {storage: null, requestTimeout: 300});
                const byDefault = await kind(c2.request("sleep", "5000"));
                const after = (await c.request("echo", "still there")).text();
                return {own, elapsed, byDefault, after, status: c.status};
            }"""
            )
            self.assertEqual(result["own"], "timeout")
            self.assertEqual(result["byDefault"], "timeout")
            self.assertTrue(190 <= result["elapsed"] < 2000, result["elapsed"])
            self.assertEqual(
                (result["after"], result["status"]), ("still there", "connected")
            )

        return self.run_(body)

    def test_heartbeats(self) -> Deferred[Any]:
        """
        An idle client stays connected to a server with a read timeout of
        0.4 s, which drops a silent WebSocket: it sends a heartbeat after
        3/4 of the read timeout of silence, so about 5 in 1.5 s, not more.
        """

        def body(browser: Browser, page: Page) -> None:
            page.evaluate(
                """async () => {
                window.lost = [];
                window.client = new webwire.WebWireClient("/fast", {
                    storage: null, hooks: {onDisconnected: (e) => lost.push(e.message)},
                });
                await client.connect();
            }"""
            )
            [connection] = self.fromBrowser(lambda: self.fast.connections)
            result = page.evaluate(
                """async () => {
                const idle = new Promise((resolve) => setTimeout(resolve, 1500));
                const silent = new Promise((resolve) => {
                    const start = performance.now();
                    const ws = new WebSocket(client.url);
                    ws.onclose = () => resolve(performance.now() - start);
                });
                const [silentLasted] = await Promise.all([silent, idle]);
                return {
                    silentLasted,
                    heartbeats: client.heartbeatsSent,
                    readTimeout: client.acceptConf.readTimeout,
                    lost, status: client.status,
                    echo: (await client.request("echo", "awake")).text(),
                };
            }"""
            )
            self.assertEqual(result["readTimeout"], 400)
            self.assertTrue(300 <= result["silentLasted"] < 1500, result)
            self.assertEqual(result["lost"], [])
            self.assertEqual((result["status"], result["echo"]), ("connected", "awake"))
            self.assertTrue(3 <= result["heartbeats"] <= 7, result)
            self.assertEqual(
                self.fromBrowser(lambda: self.fast.connections), [connection]
            )

        return self.run_(body)

    def test_concurrent(self) -> Deferred[Any]:
        """
        200 requests made at once (before the client is connected) each get
        their own reply, whatever order the replies come in.
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const c = new webwire.WebWireClient("/", {storage: null});
                const encodings = ["utf8", "utf16", "binary"];
                const expected = (i) => (i % 2 ? String(i % 7) : `n${i}`);
                const calls = Array.from({length: 200}, (_, i) => i % 2
                    ? c.request("sleep", expected(i))
                    : c.request(i % 4 ? "echo" : "oddecho", expected(i),
                                {encoding: encodings[i % 3]}));
                const replies = await Promise.all(calls);
                return replies.map((r, i) => r.text() === expected(i));
            }"""
            )
            self.assertEqual(result, [True] * 200)

        return self.run_(body)

    def test_reconnect(self) -> Deferred[Any]:
        """
        When the connection drops, a waiting request fails at once with
        kind disconnected; the client reconnects with backoff once the
        server is back, restores its session, and only then sends the
        requests made meanwhile.
        """

        def body(browser: Browser, page: Page) -> None:
            key = page.evaluate(
                """async () => {
                window.events = [];
                const hooks = {};
                for (const name of [
                    "onConnected", "onDisconnected", "onSessionCreated", "onSessionLost"
                ]) {
                    hooks[name] = (arg) => events.push([name, arg?.key ?? arg?.kind]);
                }
                window.client = new webwire.WebWireClient("/", {hooks});
                const key = (await client.request("login", "ada")).text();
                window.sleeping = client.request("sleep", "20000").then(
                    () => "resolved", (e) => e.kind);
                await client.request("echo", "the sleep request was read");
                return key;
            }"""
            )
            self.fromBrowser(self.server.crash)
            page.wait_for_function(
                "() => events.some((e) => e[0] === 'onDisconnected')"
            )
            down = page.evaluate(
                """async () => {
                window.meanwhile = client.request("whoami");
                return [await sleeping, client.status];
            }"""
            )
            self.assertEqual(down[0], "disconnected")
            self.assertIn(down[1], ("connecting", "disconnected"))
            self.fromBrowser(self.server.start)
            result = page.evaluate(
                """async () => [(await meanwhile).text(), client.status, events]"""
            )
            self.assertEqual(
                result,
                [
                    key,
                    "connected",
                    [
                        ["onConnected", None],
                        ["onSessionCreated", key],
                        ["onDisconnected", "disconnected"],
                        ["onSessionCreated", key],
                        ["onConnected", None],
                    ],
                ],
            )

        return self.run_(body)

    def test_close(self) -> Deferred[Any]:
        """
        close() fails waiting requests with kind disconnected and stops
        reconnecting; the next call connects again.
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const disconnects = [];
                const c = new webwire.WebWireClient("/", {
                    storage: null,
                    hooks: {onDisconnected: (e) => disconnects.push(e.closeCode)},
                });
                await c.connect();
                const waiting = c.request("sleep", "10000").then(
                    () => "resolved", (e) => e.kind);
                await c.close();
                const closed = [await waiting, c.status, c.acceptConf];
                const again = (await c.request("echo", "again")).text();
                return {closed, disconnects, again, status: c.status};
            }"""
            )
            self.assertEqual(
                result,
                {
                    "closed": ["disconnected", "disabled", None],
                    "disconnects": [1000],
                    "again": "again",
                    "status": "connected",
                },
            )

        return self.run_(body)


class ScriptedServerProtocol(WebSocketServerProtocol):
    """
    Sends the AcceptConf given in the URL's C{conf} parameter (hex; the
    default one if absent), records every message it receives, and answers
    as the factory's C{respond} says.
    """

    factory: ScriptedServerFactory

    def onConnect(self, request: ConnectionRequest) -> None:
        self.acceptConf = h(request.params.get("conf", [DEFAULT_ACCEPT_CONF.hex()])[0])

    def onOpen(self) -> None:
        self.factory.connectionCount += 1
        self.sendMessage(self.acceptConf, isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.received.append(payload)
        for data, binary in respond(payload):
            self.sendMessage(data, isBinary=binary)


class ScriptedServerFactory(WebSocketServerFactory):
    protocol = ScriptedServerProtocol  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []
        self.connectionCount = 0


JUNK = [
    (b"", True),  # empty: dropped silently
    (h("C8"), True),  # unknown type
    (h("00 01 00 00 00 00 00 00 00 00 41"), True),  # error reply, code length 0
    (h("3F 00"), True),  # signal with neither name nor payload
    (h("41 02 67 6F"), True),  # UTF-16 signal without payload
    (b"a text message", False),
    (DEFAULT_ACCEPT_CONF, True),  # only valid as the first message
    (h("21"), True),  # a heartbeat: clients send those
    (h("BF FF FF FF FF FF FF FF FF 68 69"), True),  # nobody waits for this id
    (h("3F 02 67 6F"), True),  # valid: binary signal "go", no payload (Q20)
    (h("41 01 61 00") + "𝄞é".encode("utf-16-le"), True),  # UTF-16 signal "a"
]
"""What the scripted server sends on request C{junk}, before its reply."""


def respond(message: bytes) -> list[tuple[bytes, bool]]:
    """
    The scripted server's answer to C{message}: requests named C{k0} to
    C{k5} get a reply of that type, C{utf8}/C{utf16} a text reply,
    C{junk} the L{JUNK} and then an internal-error reply with extra bytes;
    any other request an empty binary reply.
    """
    if not message or message[0] not in (0x7F, 0x80, 0x81):
        return []
    identifier = message[1:9]
    name = message[10 : 10 + message[9]]
    if name == b"k0":
        return [(b"\x00" + identifier + b"\x09NOT_FOUNDno such item", True)]
    if name[:1] == b"k":
        return [(bytes([int(name[1:])]) + identifier, True)]
    if name == b"utf8":
        return [(b"\xc0" + identifier + "héllo".encode(), True)]
    if name == b"utf16":
        return [(b"\xc1" + identifier + b"\x00" + "𝄞é!".encode("utf-16-le"), True)]
    if name == b"junk":
        return [*JUNK, (b"\x02" + identifier + b"\xff\xff", True)]
    return [(b"\xbf" + identifier, True)]


class WireTests(BrowserTestCase):
    """
    webwire.js against a scripted WebSocket server at C{/raw}: the exact
    bytes it sends, how it reads every reply type and junk, and the checks
    of the server's AcceptConf.
    """

    def setUp(self) -> None:
        super().setUp()
        self.server = WebServer(self, self.build)

    def build(self) -> tuple[Resource, list[WebSocketServerFactory]]:
        self.factory = ScriptedServerFactory()
        root = Resource()
        root.putChild(b"test.html", testPage())
        root.putChild(
            b"webwire.js", File(clientScript().path, defaultType="text/javascript")
        )
        root.putChild(b"raw", WebSocketResource(self.factory))
        return root, [self.factory]

    def received(self) -> list[bytes]:
        """What the server received, heartbeats left out (from the browser)."""
        messages = self.fromBrowser(lambda: list(self.factory.received))
        return [m for m in messages if m != b"\x21"]

    def run_(self, body: Callable[[Browser, Page], Any]) -> Deferred[Any]:
        return self.inBrowser(
            lambda browser: body(browser, openTestPage(browser, self.server))
        )

    def test_bytesSent(self) -> Deferred[Any]:
        """
        Requests and signals are encoded exactly as the protocol's test
        vectors, identifiers counting from 1 as little-endian uint64.
        """

        def body(browser: Browser, page: Page) -> None:
            page.evaluate(
                """async () => {
                const c = new webwire.WebWireClient("/raw", {storage: null});
                await c.request("echo", "hi", {encoding: "binary"});
                await c.request("", "hello");
                await c.request("ping");
                await c.request("odd", "hi", {encoding: "utf16"});
                await c.request("ab", "hi", {encoding: "utf16"});
                await c.request("", "A", {encoding: "utf16"});
                await c.request("r", "", {encoding: "utf16"});
                await c.signal("evt", "x");
                await c.signal("", new Uint8Array([1, 2]));
                await c.signal("a", "hi", {encoding: "utf16"});
                await c.signal("go");
                await c.request("end");
                await c.close();
            }"""
            )
            self.assertEqual(
                self.received(),
                [
                    h("7F 01 00 00 00 00 00 00 00 04 65 63 68 6F 68 69"),  # T04
                    h("80 02 00 00 00 00 00 00 00 00 68 65 6C 6C 6F"),  # T05
                    h("7F 03 00 00 00 00 00 00 00 04 70 69 6E 67"),  # T06
                    h("81 04 00 00 00 00 00 00 00 03 6F 64 64 00 68 00 69 00"),  # T07
                    h("81 05 00 00 00 00 00 00 00 02 61 62 68 00 69 00"),  # T08
                    h("81 06 00 00 00 00 00 00 00 00 41 00"),  # T09
                    h("81 07 00 00 00 00 00 00 00 01 72 00"),  # T10
                    h("40 03 65 76 74 78"),  # T21
                    h("3F 00 01 02"),  # T22
                    h("41 01 61 00 68 00 69 00"),  # T23
                    h("3F 02 67 6F"),  # T24
                    h("7F 08 00 00 00 00 00 00 00 03 65 6E 64"),
                ],
            )

        return self.run_(body)

    def test_replyTypes(self) -> Deferred[Any]:
        """
        UTF-8 and UTF-16 replies decode properly (surrogate pairs included,
        unlike the original JS client); each special reply type becomes its
        own kind of error.
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const c = new webwire.WebWireClient("/raw", {storage: null});
                const u8 = await c.request("utf8");
                const u16 = await c.request("utf16");
                const errors = [];
                for (let i = 0; i <= 5; i++) {
                    try { await c.request(`k${i}`); errors.push("resolved"); }
                    catch (e) { errors.push([e.kind, e.code ?? null]); }
                }
                await c.close();
                return {
                    u8: [u8.encoding, u8.text()],
                    u16: [u16.encoding, u16.text()],
                    errors,
                };
            }"""
            )
            self.assertEqual(
                result,
                {
                    "u8": ["utf8", "héllo"],
                    "u16": ["utf16", "𝄞é!"],
                    "errors": [
                        ["request", "NOT_FOUND"],
                        ["shutdown", None],
                        ["internal", None],
                        ["sessionNotFound", None],
                        ["maxSessionConnections", None],
                        ["sessionsDisabled", None],
                    ],
                },
            )

        return self.run_(body)

    def test_junk(self) -> Deferred[Any]:
        """
        Empty, malformed, text and unexpected messages are dropped (with a
        warning, except empty ones), never thrown; valid messages among them
        still arrive and the connection stays.
        """

        def body(browser: Browser, page: Page) -> None:
            result = page.evaluate(
                """async () => {
                const signals = [];
                const c = new webwire.WebWireClient("/raw", {
                    storage: null,
                    hooks: {
                        onSignal: (s) => signals.push([s.name, s.encoding, s.text()]),
                    },
                });
                const junk = await c.request("junk").then(
                    () => "resolved", (e) => e.kind);
                const after = (await c.request("after")).encoding;
                return {junk, signals, after, status: c.status};
            }"""
            )
            self.assertEqual(
                result,
                {
                    "junk": "internal",
                    "signals": [["go", "binary", ""], ["a", "utf16", "𝄞é"]],
                    "after": "binary",
                    "status": "connected",
                },
            )
            warnings = browser.warnings()
            self.assertEqual(len(warnings), 7, warnings)
            self.assertEqual(sum("malformed" in w for w in warnings), 4, warnings)
            self.assertEqual(self.fromBrowser(lambda: self.factory.connectionCount), 1)

        return self.run_(body)

    def test_handshake(self) -> Deferred[Any]:
        """
        The client checks the server's AcceptConf as the Go client does: the
        first message's type, major version 2 (the minor is ignored), the
        sub-protocol and the message buffer size; a mismatch fails with kind
        handshake, and the client does not retry.
        """
        default = DEFAULT_ACCEPT_CONF.hex()
        cases = [
            (default, {}, "ok"),
            (h("17 02 07 60 EA 00 00 00 20 00 00").hex(), {}, "ok"),
            (h("17 03 00 60 EA 00 00 00 20 00 00").hex(), {}, "handshake"),
            (h("17 02 00 60 EA 00 00 00 10 00 00").hex(), {}, "handshake"),
            (
                h("17 02 00 60 EA 00 00 00 10 00 00").hex(),
                {"messageBufferSize": 4096},
                "ok",
            ),
            (h("17 02 00 B8 0B 00 00 00 20 00 00 63 68 61 74").hex(), {}, "handshake"),
            (
                h("17 02 00 B8 0B 00 00 00 20 00 00 63 68 61 74").hex(),
                {"subProtocol": "chat"},
                "ok",
            ),
            (default, {"subProtocol": "chat"}, "handshake"),
            (h("40 03 65 76 74 78").hex(), {}, "handshake"),
            (h("17 02 00 00 00 00 00 00 20 00 00").hex(), {}, "handshake"),
        ]

        def body(browser: Browser, page: Page) -> None:
            results = page.evaluate(
                """async (cases) => {
                const results = [];
                for (const [conf, options] of cases) {
                    const c = new webwire.WebWireClient(
                        `/raw?conf=${conf}`, {storage: null, ...options});
                    const outcome = await c.connect().then(() => "ok", (e) => e.kind);
                    results.push([outcome, c.status, c._loop === null]);
                    await c.close();
                }
                return results;
            }""",
                [[conf, options] for conf, options, _ in cases],
            )
            self.assertEqual(
                results,
                [
                    [outcome, "connected" if outcome == "ok" else "disconnected", True]
                    for _, _, outcome in cases
                ],
            )
            self.assertEqual(
                self.fromBrowser(lambda: self.factory.connectionCount), len(cases)
            )

        return self.run_(body)
