"""
How an application's tests use L{webwire.testing}: the echo server of
C{examples/echo.py}, tested without sockets.

Run them (from the repository root, after ``pip install .``):

    python -m twisted.trial examples.test_echo
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from examples.echo import Echo
from webwire import Application, Encoding, IConnection, Request, ServerOptions, wire
from webwire.testing import connectedPair


class EchoTests(SynchronousTestCase):
    def test_echo(self) -> None:
        """The echo server answers with the request's payload."""
        pair = connectedPair(Echo(), ServerOptions(sessions=False))
        reply = self.successResultOf(pair.request("echo", b"hello"))
        self.assertEqual(reply, wire.Reply(reply.identifier, b"hello", Encoding.BINARY))

    def test_encodingKept(self) -> None:
        """A UTF-8 request gets a UTF-8 reply."""
        pair = connectedPair(Echo(), ServerOptions(sessions=False))
        reply = self.successResultOf(
            pair.request("echo", b"caf\xc3\xa9", Encoding.UTF8)
        )
        assert isinstance(reply, wire.Reply)
        self.assertEqual(reply.text(), "café")


class Later(Application):
    """Answers each request when the test says so."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[bytes]] = []

    def onRequest(self, connection: IConnection, request: Request) -> Deferred[bytes]:
        self.waiting.append(Deferred())
        return self.waiting[-1]


class SlowHandlerTests(SynchronousTestCase):
    def test_answerAfterTheHandler(self) -> None:
        """
        A reply from a handler's Deferred arrives once the test moves the
        bytes.
        """
        application = Later()
        pair = connectedPair(application)
        reply = pair.request("later")
        self.assertNoResult(reply)
        application.waiting[0].callback(b"done")
        pair.flush()
        answer = self.successResultOf(reply)
        assert isinstance(answer, wire.Reply)
        self.assertEqual(answer.payload, b"done")
