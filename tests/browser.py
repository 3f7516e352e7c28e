"""
Test support for the browser tests: real headless Chromium, driven through
Playwright's sync API in a worker thread, against web servers running in
this process on the reactor.

A test hands a function to L{BrowserTestCase.inBrowser}; it runs in a
thread of the reactor's pool with a fresh L{Browser} (one Chromium, one new
context), while the reactor keeps serving. From that thread, server actions
go through L{BrowserTestCase.fromBrowser} (C{blockingCallFromThread}).

Without Playwright or Chromium the tests are skipped, unless the environment
variable C{WEBWIRE_REQUIRE_BROWSER} is set (as in CI): then they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorFromThreads,
    ITCPTransport,
)
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tests.helpers import portNumber
from webwire.server import WebWireServerFactory
from webwire.web import WebWireRoot, makeSite

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Page

T = TypeVar("T")

CHROMIUM = os.environ.get("WEBWIRE_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 20_000
"""How long Playwright's waits wait, well within the test timeout."""

REPOSITORY = FilePath(__file__).parent().parent()

TEST_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webwire.js test</title>
<link rel="icon" href="data:,">
<script type="module">
import * as webwire from "/webwire.js";
window.webwire = webwire;
</script></head><body></body></html>
"""
"""A page that imports the client and puts its exports at window.webwire."""


def skipReason() -> str | None:
    """Why browser tests cannot run here, or C{None} if they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def testPage() -> Data:
    """The test page as a resource (see L{TEST_PAGE})."""
    return Data(TEST_PAGE, "text/html; charset=utf-8")


def artifactsDirectory() -> FilePath[str]:
    """
    Where tests save artifacts such as screenshots:
    C{$WEBWIRE_ARTIFACTS}, relative to the repository root (default
    C{artifacts}); created if missing.
    """
    directory = REPOSITORY.preauthChild(
        os.environ.get("WEBWIRE_ARTIFACTS", "artifacts")
    )
    directory.makedirs(ignoreExistingDirectory=True)
    return directory


class Browser:
    """
    One headless Chromium with a fresh context, for one test. Use it from a
    single thread only (Playwright's sync API is bound to its thread).

    :ivar context: The context pages open in by default.
    :ivar pageErrors: Uncaught exceptions of every page, as text.
    :ivar console: Every console message of every page, C{"type: text"}.
    """

    def __init__(self) -> None:
        from playwright.sync_api import expect, sync_playwright

        expect.set_options(timeout=WAIT_MS)
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
            )
        except BaseException:
            self._playwright.stop()
            raise
        self.pageErrors: list[str] = []
        self.console: list[str] = []
        self.context = self.newContext()

    def newContext(self, **options: Any) -> BrowserContext:
        """A new context (its own storage and cookies), e.g. a second user."""
        context = self._browser.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        return context

    def newPage(self, url: str, context: BrowserContext | None = None) -> Page:
        """Open C{url} in a new page of C{context} (the default one if omitted)."""
        page = (context if context is not None else self.context).new_page()
        page.on("pageerror", lambda error: self.pageErrors.append(str(error)))
        page.on("console", self._consoleMessage)
        page.goto(url)
        return page

    def _consoleMessage(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def warnings(self) -> list[str]:
        """The console warnings so far."""
        return [m for m in self.console if m.startswith("warning: ")]

    def close(self) -> None:
        """Close Chromium and Playwright."""
        try:
            self._browser.close()
        finally:
            self._playwright.stop()


class _TrackingFactory(WrappingFactory):
    """Keeps track of open connections, and tells when they are all gone."""

    def __init__(self, wrappedFactory: Any) -> None:
        super().__init__(wrappedFactory)
        self._idle: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def closeAll(self) -> Deferred[None]:
        """Abort every connection; fire when all are closed."""
        d: Deferred[None] = Deferred()
        if not self.protocols:
            d.callback(None)
            return d
        self._idle.append(d)
        for wrapper in list(self.protocols):
            cast(
                ITCPTransport, cast(ProtocolWrapper, wrapper).transport
            ).abortConnection()
        return d


Build = Callable[[], tuple[Resource, Sequence[WebSocketServerFactory]]]


class WebServer:
    """
    A C{twisted.web} site on 127.0.0.1 that a test can stop and start
    again on the same port. Stopped (and all its connections closed) at the
    end of the test (running handlers are cancelled then).

    :ivar factories: The WebSocket factories of the running site: each
        WebWire one is shut down gracefully when the site stops.
    """

    def __init__(self, testCase: TestCase, build: Build) -> None:
        """
        :param build: Makes the site's root resource and its WebSocket
            factories; called on every start.
        """
        self._build = build
        self.portNumber = 0
        self._listening: IListeningPort | None = None
        self._tracking: _TrackingFactory | None = None
        self.root: Resource | None = None
        self.factories: Sequence[WebSocketServerFactory] = ()
        self.start()
        testCase.addCleanup(self.stop, False)

    def url(self, path: str = "/") -> str:
        """The http URL of C{path} on this site."""
        return f"http://127.0.0.1:{self.portNumber}{path}"

    def wsURL(self, path: str = "/") -> str:
        """The ws URL of C{path} on this site."""
        return f"ws://127.0.0.1:{self.portNumber}{path}"

    def start(self) -> None:
        """Listen (again, on the same port once one was picked)."""
        assert self._listening is None, "already listening"
        self.root, self.factories = self._build()
        site = (
            makeSite(self.root)
            if isinstance(self.root, WebWireRoot)
            else Site(self.root)
        )
        site.noisy = False
        self._tracking = _TrackingFactory(site)
        factory: Any = self._tracking  # a ServerFactory; its stubs do not say so
        self._listening = reactor.listenTCP(
            self.portNumber, factory, interface="127.0.0.1"
        )
        self.portNumber = portNumber(self._listening)

    def stop(self, graceful: bool = True) -> Deferred[None]:
        """
        Stop: shut the WebWire factories down (gracefully, or by cancelling
        their running handlers first), stop listening, and abort whatever
        connection is left (browsers keep HTTP connections alive).

        :returns: A Deferred that fires once every connection is closed.
        """
        return Deferred.fromCoroutine(self._stop(graceful))

    async def _stop(self, graceful: bool) -> None:
        listening, self._listening = self._listening, None
        if listening is None:
            return
        shutdowns = []
        for factory in self.factories:
            if isinstance(factory, WebWireServerFactory):
                shutdown = factory.shutdown()
                if not graceful:
                    factory.cancelHandlers()
                shutdowns.append(shutdown)
        await DeferredList(shutdowns)
        await maybeDeferred(listening.stopListening)
        assert self._tracking is not None
        await self._tracking.closeAll()

    def crash(self) -> Deferred[None]:
        """
        Stop as a crashing server would: stop listening and abort every
        connection, without any WebSocket close handshake.
        """
        return Deferred.fromCoroutine(self._crash())

    async def _crash(self) -> None:
        listening, self._listening = self._listening, None
        assert listening is not None and self._tracking is not None
        await maybeDeferred(listening.stopListening)
        await self._tracking.closeAll()
        for factory in self.factories:
            if isinstance(factory, WebWireServerFactory):
                factory.cancelHandlers()
                await factory.shutdown()


def _addConsole(error: Exception, console: list[str]) -> None:
    """Show the browser's console output in C{error}'s message."""
    if not console:
        return
    text = "browser console:\n  " + "\n  ".join(console)
    if error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]}\n\n{text}", *error.args[1:])
    else:
        error.add_note(text)


class BrowserTestCase(TestCase):
    """
    A test that drives Chromium: skipped if Playwright or Chromium is
    missing (see the module docstring).
    """

    timeout = 120

    def setUp(self) -> None:
        reason = skipReason()
        if reason is not None:
            if os.environ.get("WEBWIRE_REQUIRE_BROWSER"):
                self.fail(f"browser tests are required, but: {reason}")
            raise SkipTest(reason)

    def inBrowser(self, body: Callable[[Browser], T]) -> Deferred[T]:
        """
        Run C{body} with a fresh L{Browser} in a worker thread; the reactor
        keeps running meanwhile. Fails if a page had an uncaught exception;
        a failure shows the pages' console output.

        :returns: A Deferred that fires with what C{body} returns.
        """

        def run() -> T:
            browser = Browser()
            try:
                result = body(browser)
                if browser.pageErrors:
                    raise AssertionError(
                        f"uncaught errors in the page: {browser.pageErrors}"
                    )
                return result
            except Exception as e:
                _addConsole(e, browser.console)
                raise
            finally:
                browser.close()

        return deferToThread(run)

    def fromBrowser(self, f: Callable[..., Any], *args: Any) -> Any:
        """
        From the browser thread: call C{f} in the reactor thread and wait for
        its result (a Deferred's result if it returns one).
        """
        return blockingCallFromThread(cast(IReactorFromThreads, reactor), f, *args)
