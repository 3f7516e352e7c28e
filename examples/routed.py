"""
A WebWire application built from a Router and middleware.

Run it (from the repository root, after ``pip install .``):

    twistd -n webwire --app examples.routed.makeApplication

Requests:

  - ``greet`` with a name (UTF-8) answers ``Hello, <name>!``;
  - ``kv.set`` with ``key=value`` stores a value for this connection,
    ``kv.get`` with a key answers it (``NOT_FOUND`` if there is none;
    ``BAD_REQUEST`` for a ``kv.set`` without ``=``);
  - anything else: ``UNKNOWN_REQUEST``.

Every request is access-logged, limited to 5 per second per client (bursts
of 10; beyond: ``RATE_LIMITED``) and to 5 seconds (``TIMEOUT``). A signal
``ping`` is answered with a signal ``pong``.
"""

from __future__ import annotations

import weakref

from twisted.internet.interfaces import IReactorTime

from webwire import IConnection, Request, Signal
from webwire.errors import RequestError
from webwire.middleware import accessLog, mapErrors, rateLimit, timeout
from webwire.router import Router


def makeApplication(clock: IReactorTime | None = None) -> Router:
    """
    What ``--app`` calls.

    :param clock: For the rate limit, timeout and access log; the global
        reactor if omitted.
    """
    router = Router()
    router.use(accessLog(clock=clock))
    router.use(rateLimit(rate=5, burst=10, clock=clock))
    router.use(timeout(5, clock=clock))
    router.use(mapErrors({ValueError: "BAD_REQUEST", KeyError: ("NOT_FOUND", "")}))

    @router.request("greet")
    def greet(connection: IConnection, request: Request) -> str:
        name = request.text().strip()
        if not name:
            raise RequestError("BAD_REQUEST", "whom should I greet?")
        return f"Hello, {name}!"

    @router.signal("ping")
    def ping(connection: IConnection, signal: Signal) -> None:
        connection.signal("pong", signal.payload)

    router.mount("kv.", makeStore())
    return router


def makeStore() -> Router:
    """A key-value store per connection: requests ``set`` and ``get``."""
    store = Router()
    values: weakref.WeakKeyDictionary[IConnection, dict[str, str]] = (
        weakref.WeakKeyDictionary()
    )

    @store.connected
    def connected(connection: IConnection) -> None:
        values[connection] = {}

    @store.request("set")
    def set(connection: IConnection, request: Request) -> None:
        key, separator, value = request.text().partition("=")
        if not separator:
            raise ValueError("expected key=value")
        values[connection][key] = value

    @store.request("get")
    def get(connection: IConnection, request: Request) -> str:
        return values[connection][request.text()]

    return store
