"""
The examples run and do what their docstrings say, over loopback.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from examples import quickstart
from tests.helpers import LoopbackServer, h, ident
from webwire import wire


class QuickstartTests(TestCase):
    """
    C{examples/quickstart.py}.
    """

    timeout = 20

    async def test_greet(self) -> None:
        """
        C{greet} answers with a greeting in UTF-8, and errors for an empty
        name or an unknown request.
        """
        server = LoopbackServer(self, quickstart.makeApplication())
        client = await server.connectAccepted()
        greet = wire.encodeRequest(ident(1), "greet", b"Ada", wire.Encoding.UTF8)
        self.assertEqual(
            await client.roundTrip(greet), h("C0") + ident(1) + b"Hello, Ada!"
        )
        empty = wire.encodeRequest(ident(2), "greet", b" ", wire.Encoding.UTF8)
        reply = wire.parse(await client.roundTrip(empty))
        self.assertEqual(
            reply, wire.ErrorReply(ident(2), "BAD_REQUEST", "whom should I greet?")
        )
        other = wire.encodeRequest(ident(3), "other", b"", wire.Encoding.UTF8)
        reply = wire.parse(await client.roundTrip(other))
        self.assertEqual(reply.code, "UNKNOWN_REQUEST")  # type: ignore[union-attr]

    async def test_shout(self) -> None:
        """A C{shout} signal comes back as C{shouted}, in capitals."""
        server = LoopbackServer(self, quickstart.makeApplication())
        client = await server.connectAccepted()
        client.send(wire.encodeSignal("shout", b"hey", wire.Encoding.UTF8))
        self.assertEqual(await client.message(1), h("40 07") + b"shouted" + b"HEY")
