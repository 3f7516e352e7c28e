# -*- test-case-name: tests.test_cli -*-
"""
The arguments of the C{webwire} command: its parser, help texts and the
checks argparse cannot make.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Final

from webwire import wire
from webwire._version import __version__

__all__ = ["buildParser"]

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
  webwire restore ws://localhost:8080/ -- KEY
  webwire signal ws://localhost:8080/ echo-signal hi
  webwire listen wss://example.org/ --session KEY --ca-certificates ca.pem
  (put -- before a PAYLOAD or KEY that may start with "-", as session
  keys may; --session KEY takes any key)

"""


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


def _joinSessionValues(argv: Sequence[str]) -> list[str]:
    """
    C{--session KEY} as C{--session=KEY}: a session key may begin with
    C{-} (base64url), which argparse would take for an option. Arguments
    after C{--} are left alone.
    """
    joined: list[str] = []
    rest = iter(argv)
    for arg in rest:
        if arg == "--":
            joined.append(arg)
            joined.extend(rest)
            break
        value = next(rest, None) if arg == "--session" else None
        joined.append(arg if value is None else f"--session={value}")
    return joined


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    if argv is None:
        argv = sys.argv[1:]
    args = buildParser().parse_args(_joinSessionValues(argv))
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
