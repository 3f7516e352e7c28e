"""
Tests for L{webwire.options}: every limit of L{ServerOptions}, and the
AcceptConf it advertises.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from webwire import wire
from webwire.options import ServerOptions

UINT32_MAX = 0xFFFFFFFF


class ValidationTests(SynchronousTestCase):
    """
    L{ServerOptions} refuses, with L{ValueError}, any value just outside a
    limit, and accepts the limit itself.
    """

    def assertRefused(self, **kwargs: Any) -> None:
        """C{ServerOptions(**kwargs)} raises L{ValueError}."""
        self.assertRaises(ValueError, ServerOptions, **kwargs)

    def assertAccepted(self, **kwargs: Any) -> ServerOptions:
        """C{ServerOptions(**kwargs)} keeps every value given."""
        options = ServerOptions(**kwargs)
        for name, value in kwargs.items():
            self.assertEqual(getattr(options, name), value)
        return options

    def test_defaults(self) -> None:
        """
        The defaults are the Go server's (60 s, 8192 bytes, no
        sub-protocol) and the documented ones.
        """
        options = ServerOptions()
        self.assertEqual(options.readTimeout, 60)
        self.assertEqual(options.messageBufferSize, 8192)
        self.assertIsNone(options.subProtocol)
        self.assertEqual(options.concurrency, 64)
        self.assertEqual(options.maxSendBuffer, 1024 * 1024)
        self.assertEqual(options.shutdownTimeout, 30)
        self.assertEqual(options.openHandshakeTimeout, 5)
        self.assertEqual(options.maxConnections, 0)

    def test_readTimeoutMinimum(self) -> None:
        """
        The read timeout is at least one millisecond: 0.001 s is accepted;
        0.0004 s (which rounds to 0 ms), 0 and negative values are refused.
        """
        self.assertAccepted(readTimeout=0.001)
        self.assertRefused(readTimeout=0.0004)
        self.assertRefused(readTimeout=0)
        self.assertRefused(readTimeout=-1)

    def test_readTimeoutMaximum(self) -> None:
        """
        The read timeout fits AcceptConf's 32-bit milliseconds: 2**32-1 ms
        is accepted, 2**32 ms refused.
        """
        self.assertAccepted(readTimeout=UINT32_MAX / 1000)
        self.assertRefused(readTimeout=(UINT32_MAX + 1) / 1000)

    def test_messageBufferSizeMinimum(self) -> None:
        """The message buffer size is at least 32 bytes."""
        self.assertAccepted(messageBufferSize=32)
        self.assertRefused(messageBufferSize=31)

    def test_messageBufferSizeMaximum(self) -> None:
        """The message buffer size fits AcceptConf's 32 bits."""
        self.assertAccepted(messageBufferSize=UINT32_MAX)
        self.assertRefused(messageBufferSize=UINT32_MAX + 1)

    def test_subProtocolFits(self) -> None:
        """
        The sub-protocol name, in UTF-8 bytes, must fit in AcceptConf
        within the message buffer size: 11 header bytes plus the name.
        """
        options = self.assertAccepted(messageBufferSize=32, subProtocol="x" * 21)
        self.assertEqual(len(options.acceptConf()), 32)
        self.assertRefused(messageBufferSize=32, subProtocol="x" * 22)
        # 11 two-byte characters: 22 bytes, although only 11 characters.
        self.assertRefused(messageBufferSize=32, subProtocol="é" * 11)
        self.assertAccepted(messageBufferSize=33, subProtocol="é" * 11)

    def test_concurrency(self) -> None:
        """
        The concurrency is at least 1, or C{None} for no limit.
        """
        self.assertAccepted(concurrency=1)
        self.assertAccepted(concurrency=None)
        self.assertRefused(concurrency=0)

    def test_maxSendBuffer(self) -> None:
        """The send buffer bound may be 0, not negative."""
        self.assertAccepted(maxSendBuffer=0)
        self.assertRefused(maxSendBuffer=-1)

    def test_shutdownTimeout(self) -> None:
        """
        The shutdown timeout may be 0 or C{None} (wait for ever), not
        negative.
        """
        self.assertAccepted(shutdownTimeout=0)
        self.assertAccepted(shutdownTimeout=None)
        self.assertRefused(shutdownTimeout=-0.001)

    def test_openHandshakeTimeout(self) -> None:
        """The opening handshake timeout must be positive."""
        self.assertAccepted(openHandshakeTimeout=0.001)
        self.assertRefused(openHandshakeTimeout=0)
        self.assertRefused(openHandshakeTimeout=-1)

    def test_closeTimeout(self) -> None:
        """The close timeout is a positive number of seconds."""
        self.assertAccepted(closeTimeout=0.001)
        self.assertRefused(closeTimeout=0)
        self.assertRefused(closeTimeout=float("inf"))

    def test_maxConnections(self) -> None:
        """The connection limit may be 0 (none), not negative."""
        self.assertAccepted(maxConnections=0)
        self.assertRefused(maxConnections=-1)

    def test_notANumber(self) -> None:
        """
        Times that are not finite numbers are refused with L{ValueError}
        like any other invalid value: an infinite read timeout, and NaN for
        the read, shutdown and opening handshake timeouts (NaN fails every
        comparison, so a bound check alone lets it through).
        """
        nan = float("nan")
        self.assertRefused(readTimeout=float("inf"))
        self.assertRefused(readTimeout=nan)
        self.assertRefused(shutdownTimeout=nan)
        self.assertRefused(openHandshakeTimeout=nan)

    def test_messages(self) -> None:
        """
        Each refusal names the option and the value refused.
        """
        cases: list[tuple[dict[str, Any], str]] = [
            ({"readTimeout": 0}, "readTimeout"),
            ({"messageBufferSize": 31}, "messageBufferSize"),
            ({"concurrency": 0}, "concurrency"),
            ({"maxSendBuffer": -1}, "maxSendBuffer"),
            ({"shutdownTimeout": -1}, "shutdownTimeout"),
            ({"openHandshakeTimeout": 0}, "openHandshakeTimeout"),
            ({"maxConnections": -1}, "maxConnections"),
        ]
        for kwargs, name in cases:
            error = self.assertRaises(ValueError, ServerOptions, **kwargs)
            self.assertIn(name, str(error))
            self.assertIn(str(next(iter(kwargs.values()))), str(error))

    def test_frozen(self) -> None:
        """Options cannot be changed once checked."""
        options = ServerOptions()
        self.assertRaises(
            dataclasses.FrozenInstanceError, setattr, options, "concurrency", 0
        )


class AcceptConfTests(SynchronousTestCase):
    """
    L{ServerOptions.acceptConf} encodes what the options advertise.
    """

    def test_defaults(self) -> None:
        """
        The defaults give the Go server's AcceptConf, byte for byte.
        """
        self.assertEqual(
            ServerOptions().acceptConf(),
            bytes.fromhex("17 02 00 60 EA 00 00 00 20 00 00"),
        )

    def test_configured(self) -> None:
        """
        A read timeout of 3 s and the sub-protocol C{chat} are advertised
        (test vector T02).
        """
        options = ServerOptions(readTimeout=3, subProtocol="chat")
        self.assertEqual(
            options.acceptConf(),
            bytes.fromhex("17 02 00 B8 0B 00 00 00 20 00 00 63 68 61 74"),
        )

    def test_parses(self) -> None:
        """
        The AcceptConf parses back to the configured values, with the read
        timeout in whole milliseconds.
        """
        options = ServerOptions(readTimeout=1.5, messageBufferSize=1024)
        self.assertEqual(wire.parse(options.acceptConf()), wire.AcceptConf(1500, 1024))

    def test_emptySubProtocol(self) -> None:
        """An empty sub-protocol name is advertised as none."""
        self.assertEqual(
            ServerOptions(subProtocol="").acceptConf(), ServerOptions().acceptConf()
        )

    def test_limits(self) -> None:
        """
        The extreme accepted values encode: 1 ms and 32 bytes, 2**32-1 ms
        and 2**32-1 bytes.
        """
        smallest = ServerOptions(readTimeout=0.001, messageBufferSize=32)
        self.assertEqual(
            smallest.acceptConf(), bytes.fromhex("17 02 00 01 00 00 00 20 00 00 00")
        )
        largest = ServerOptions(
            readTimeout=UINT32_MAX / 1000, messageBufferSize=UINT32_MAX
        )
        self.assertEqual(
            largest.acceptConf(), bytes.fromhex("17 02 00 FF FF FF FF FF FF FF FF")
        )
