# -*- test-case-name: tests.test_listening -*-
"""
C{--listen} endpoints checked before anything listens, and failures to
listen told in one line: what a user needs instead of a traceback.
"""

from __future__ import annotations

from twisted.internet import endpoints
from twisted.internet.error import CannotListenError, VerifyError
from twisted.python import usage

from webwire._reactor import IWebWireReactor

__all__ = ["ListenFailed", "checkEndpoint", "describeListenFailure"]


class ListenFailed(Exception):
    """
    An endpoint could not listen; C{str()} is one line naming it and why.
    """


def _pemProblem(path: str, marker: str, what: str) -> str | None:
    """Why C{path} is no PEM file with a C{marker} block, or C{None}."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        return f"cannot read {what} {path}: {e.strerror or e}"
    if b"-----BEGIN " not in data or marker.encode("ascii") not in data:
        return f"{what} {path} is not a PEM file with a {marker.lower()}"
    return None


def _tlsProblem(description: str) -> str | None:
    """
    For an C{ssl:} description: which key or certificate file is missing or
    not PEM, or C{None}.
    """
    try:
        args, kwargs = endpoints._parse(description)
    except Exception:
        return None
    if not args or args[0] != "ssl":
        return None
    key = kwargs.get("privateKey", "server.pem")
    cert = kwargs.get("certKey", key)
    problem = _pemProblem(key, "PRIVATE KEY", "privateKey")
    if problem is not None and "privateKey" not in kwargs:
        problem += " (no privateKey= given: the default is server.pem)"
    if problem is None:
        problem = _pemProblem(cert, "CERTIFICATE", "certKey")
    if problem is None:
        try:
            endpoints.serverFromString(None, description)
        except VerifyError:
            return f"privateKey {key} does not match certKey {cert}"
        except Exception:
            return None
    return problem


def _firstLine(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def checkEndpoint(
    description: str,
    reactor: IWebWireReactor | None = None,
    option: str = "--listen",
) -> None:
    """
    Parse a server endpoint description the way C{--listen} will use it,
    loading its TLS key and certificate, without listening.

    :param description: A server endpoint string, e.g. C{tcp:8080}.
    :param reactor: The reactor the endpoint is made for (only stored).
    :param option: The option that gave it, for the error.
    :raises usage.UsageError: One line naming C{option}, the description
        and the problem: an unknown endpoint type, a port that is not a
        number from 0 to 65535, a missing or unreadable key or certificate,
        one that is not PEM, or a key that does not match its certificate.
    """
    where = f"{option} {description}"
    problem = _tlsProblem(description)
    if problem is not None:
        raise usage.UsageError(f"{where}: {problem}")
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except ValueError as e:
        text = _firstLine(e)
        if text.startswith("invalid literal for int()"):
            text = "the port must be a number from 0 to 65535"
        raise usage.UsageError(f"{where}: {text}") from None
    except OSError as e:
        name = f" {e.filename}" if e.filename else ""
        raise usage.UsageError(f"{where}: cannot read{name}: {e.strerror}") from None
    except Exception as e:
        # OpenSSL's errors and Twisted's VerifyError (a key that does not
        # match its certificate).
        raise usage.UsageError(f"{where}: {_firstLine(e)}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(
            f"{where}: the port must be a number from 0 to 65535, not {port}"
        )


def describeListenFailure(description: str, error: BaseException) -> ListenFailed:
    """
    The one-line failure for an endpoint that could not start listening.

    :param description: The endpoint description.
    :param error: What listening raised, e.g. a C{CannotListenError}.
    """
    if isinstance(error, CannotListenError):
        reason = error.socketError
        if isinstance(reason, OSError) and reason.strerror:
            why = reason.strerror.lower()
        elif isinstance(reason, BaseException):
            why = _firstLine(reason)
        else:
            why = str(reason)
        address = f"{error.interface or 'any'}:{error.port}"
        return ListenFailed(
            f"--listen {description}: cannot listen on {address}: {why}"
        )
    return ListenFailed(f"--listen {description}: cannot listen: {_firstLine(error)}")
