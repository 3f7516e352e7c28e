"""
The chat page (webwire/static/chat.html and chat.js) in real headless
Chromium, served as C{twistd webwire} serves it (L{makeDemoRoot}): two
users chat, the page stays signed in across reloads and server restarts,
and user text is never taken for HTML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

from tests.browser import Browser, BrowserTestCase, WebServer, artifactsDirectory
from webwire.conformance import ConformanceApplication
from webwire.demo import ChatApplication, makeDemoRoot
from webwire.server import WebWireServerFactory
from webwire.sessions import MemorySessionManager

if TYPE_CHECKING:
    from playwright.sync_api import Page


def signIn(page: Page, name: str) -> None:
    """Sign in as C{name} on a freshly opened chat page."""
    from playwright.sync_api import expect

    expect(page.locator("#signin")).to_be_visible()
    page.fill("#name", name)
    page.click("#signin-button")
    expect(page.locator("#chat")).to_be_visible()
    expect(page.locator("#me-name")).to_have_text(name)


def say(page: Page, text: str) -> None:
    """Send C{text}; wait until the input is cleared (the server took it)."""
    from playwright.sync_api import expect

    page.fill("#text", text)
    page.press("#text", "Enter")
    expect(page.locator("#text")).to_have_value("")


def expectLastMessage(page: Page, user: str, text: str) -> None:
    """Wait until the newest message on C{page} is C{text} by C{user}."""
    from playwright.sync_api import expect

    last = page.locator("#messages .msg").last
    expect(last.locator(".text")).to_have_text(text)
    expect(last.locator(".who")).to_have_text(user)


def expectOnline(page: Page, *names: str) -> None:
    """Wait until C{page} shows exactly C{names} online."""
    from playwright.sync_api import expect

    expect(page.locator("#online li")).to_have_text(list(names))
    expect(page.locator("#online-count")).to_have_text(str(len(names)))


def expectStatus(page: Page, state: str) -> None:
    """Wait until the page's connection status is C{state}."""
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_have_attribute("data-state", state)


class ChatPageTests(BrowserTestCase):
    """
    The chat page at C{/}, the chat application at C{/chat}.
    """

    def setUp(self) -> None:
        super().setUp()
        # Kept across server restarts, as a persistent manager would be.
        self.chatSessions = MemorySessionManager()
        self.server = WebServer(self, self.build)

    def build(self) -> tuple[Resource, list[WebSocketServerFactory]]:
        self.chat = ChatApplication()
        conformance = WebWireServerFactory(
            ConformanceApplication(), sessionManager=MemorySessionManager()
        )
        chat = WebWireServerFactory(self.chat, sessionManager=self.chatSessions)
        return makeDemoRoot(conformance, chat), [conformance, chat]

    def openChat(self, browser: Browser, **contextOptions: Any) -> Page:
        """The chat page, in a new context (a user of its own)."""
        context = browser.newContext(**contextOptions)
        page = browser.newPage(self.server.url("/"), context)
        expectStatus(page, "connected")
        return page

    def test_conversation(self) -> Deferred[Any]:
        """
        Two users sign in and see each other online and each other's
        messages (their own marked as theirs); markup in messages stays
        text, line breaks stay; a reload keeps the user signed in and the
        tab's messages; signing out shows the
        sign-in form again, also after a reload, and the other user sees
        the change. Saves screenshots (wide and narrow) as artifacts.
        """
        from playwright.sync_api import expect

        artifacts = artifactsDirectory()

        def body(browser: Browser) -> None:
            ada = self.openChat(browser, viewport={"width": 1000, "height": 640})
            signIn(ada, "Ada")
            expectOnline(ada, "Ada")
            grace = self.openChat(browser, viewport={"width": 390, "height": 700})
            signIn(grace, "Grace")
            expectOnline(grace, "Ada", "Grace")
            expectOnline(ada, "Ada", "Grace")

            say(ada, "Hello Grace! Are you there?")
            expectLastMessage(grace, "Ada", "Hello Grace! Are you there?")
            expectLastMessage(ada, "Ada", "Hello Grace! Are you there?")
            expect(ada.locator("#messages .msg").last).to_have_class("msg mine")
            expect(grace.locator("#messages .msg").last).to_have_class("msg")

            markup = "Yes! Try <b>bold</b> & <img src=x onerror=alert(1)>"
            say(grace, markup)
            expectLastMessage(ada, "Grace", markup)
            self.assertEqual(ada.locator("#messages b, #messages img").count(), 0)
            ada.fill("#text", "Nice, it is just text.")
            ada.press("#text", "Shift+Enter")  # a new line, not sent
            expect(ada.locator("#text")).to_have_value("Nice, it is just text.\n")
            lines = "Nice, it is just text.\nAnd lines\n  keep their shape."
            say(ada, lines)
            expectLastMessage(grace, "Ada", lines)
            last = grace.locator("#messages .msg .text").last
            self.assertEqual(last.text_content(), lines)
            say(grace, "Let me reload my page…")
            expectLastMessage(ada, "Grace", "Let me reload my page…")

            key = grace.evaluate("() => chatClient.session.key")
            grace.reload()
            expectStatus(grace, "connected")
            expect(grace.locator("#chat")).to_be_visible()
            expect(grace.locator("#me-name")).to_have_text("Grace")
            self.assertEqual(grace.evaluate("() => chatClient.session.key"), key)
            expectOnline(grace, "Ada", "Grace")
            expectOnline(ada, "Ada", "Grace")
            # The tab's messages are still shown.
            expect(grace.locator("#messages .msg .text")).to_have_text(
                [
                    "Hello Grace! Are you there?",
                    markup,
                    lines,
                    "Let me reload my page…",
                ]
            )
            say(grace, "…and I am still signed in.")
            expectLastMessage(ada, "Grace", "…and I am still signed in.")
            expectLastMessage(grace, "Grace", "…and I am still signed in.")

            ada.screenshot(path=artifacts.child("chat.png").path)
            grace.screenshot(path=artifacts.child("chat-narrow.png").path)

            grace.click("#signout")
            expect(grace.locator("#signin")).to_be_visible()
            expect(grace.locator("#chat")).to_be_hidden()
            expectOnline(ada, "Ada")
            self.assertIsNone(
                grace.evaluate("() => localStorage.getItem(chatClient.url)")
            )
            grace.reload()
            expectStatus(grace, "connected")
            expect(grace.locator("#signin")).to_be_visible()
            self.assertEqual(self.fromBrowser(self.chat.online), ["Ada"])

        return self.inBrowser(body)

    def test_serverRestart(self) -> Deferred[Any]:
        """
        When the server stops, the page shows that it is reconnecting; once
        the server is back on the same port it reconnects, restores its
        session (same key, still signed in, online again) and chat goes on.
        """
        from playwright.sync_api import expect

        def body(browser: Browser) -> None:
            ada = self.openChat(browser)
            signIn(ada, "Ada")
            grace = self.openChat(browser)
            signIn(grace, "Grace")
            expectOnline(ada, "Ada", "Grace")
            key = ada.evaluate("() => chatClient.session.key")

            self.fromBrowser(self.server.stop)
            expectStatus(ada, "reconnecting")
            expect(ada.locator("#status")).to_have_text("Reconnecting…")
            expectStatus(grace, "reconnecting")

            self.fromBrowser(self.server.start)
            expectStatus(ada, "connected")
            expect(ada.locator("#status")).to_have_text("Connected")
            expectStatus(grace, "connected")
            expect(ada.locator("#chat")).to_be_visible()
            expect(ada.locator("#me-name")).to_have_text("Ada")
            self.assertEqual(ada.evaluate("() => chatClient.session.key"), key)
            expectOnline(ada, "Ada", "Grace")
            expectOnline(grace, "Ada", "Grace")

            say(ada, "We are back.")
            expectLastMessage(grace, "Ada", "We are back.")
            self.assertEqual(self.fromBrowser(self.chat.online), ["Ada", "Grace"])

        return self.inBrowser(body)
