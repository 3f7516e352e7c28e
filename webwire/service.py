# -*- test-case-name: tests.test_tap -*-
"""
L{WebWireService}: a WebWire server as a Twisted service, for twistd or for
an application that already has a service hierarchy.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web.server import Site

from webwire._listening import describeListenFailure
from webwire._reactor import IWebWireReactor
from webwire.server import WebWireServerFactory

__all__ = ["WebWireService"]


class WebWireService(MultiService):
    """
    Listens with one L{WebWireServerFactory} on every endpoint given, and
    shuts down gracefully when stopped.

    Attach it to an application with C{setServiceParent(application)}.
    Stopping it first runs L{WebWireServerFactory.shutdown} (new handshakes
    refused with 503, running handlers finish, connections closed), then
    stops listening; the Deferred returned by L{stopService} fires when all
    of that is done, so twistd waits for it on SIGTERM.

    Whatever holds connections or timers is a service, and this one runs
    them: each factory's application, session manager and cluster that
    provides C{IService} (an L{webwire.gateway.HTTPGateway}, an expiry
    sweep, a L{webwire.sessions.redis.RedisSessionManager}, a
    L{webwire.cluster.redis.RedisCluster}), and the C{helpers} given, are
    started before listening and stopped after the drain (a Redis pool is
    disconnected then).

    :ivar factory: The server factory.
    """

    def __init__(
        self,
        factory: WebWireServerFactory,
        endpoints: Iterable[str | IStreamServerEndpoint],
        reactor: IWebWireReactor | None = None,
        *,
        site: Site | None = None,
        moreFactories: Iterable[WebWireServerFactory] = (),
        helpers: Iterable[IService] = (),
    ) -> None:
        """
        :param factory: The server factory to listen with.
        :param endpoints: Server endpoint descriptions (strports syntax),
            e.g. C{"tcp:8080"} or
            C{"ssl:8443:privateKey=key.pem:certKey=cert.pem"}, or endpoints
            (e.g. L{webwire.workers.InheritedEndpoint}, for a socket this
            process inherited).
        :param reactor: The reactor to listen with; the global one if
            omitted.
        :param site: Listen with this C{twisted.web} site instead, whose
            resources hand WebSocket upgrades to C{factory} (see
            L{webwire.web.WebWireRoot}).
        :param moreFactories: Further factories served by C{site} (on other
            paths), shut down with C{factory}.
        :param helpers: Further services the server needs, started before
            it listens and stopped after its drain.
        :raises ValueError: If no endpoint is given or one cannot be parsed.
        """
        super().__init__()
        self.factory = factory
        self.factories = [factory, *moreFactories]
        descriptions = list(endpoints)
        if not descriptions:
            raise ValueError("WebWireService needs at least one endpoint")
        for helper in _helpersOf(self.factories, helpers):
            if helper.parent is None:
                # Started first, stopped last (after the drain).
                helper.setServiceParent(self)
        self._descriptions: dict[int, str] = {}
        for description in descriptions:
            kwargs = {} if reactor is None else {"reactor": reactor}
            listener = site if site is not None else factory
            if isinstance(description, str):
                listening = strports.service(description, listener, **kwargs)
                self._descriptions[id(listening)] = description
            else:
                listening = StreamServerEndpointService(description, listener)
            listening.setServiceParent(self)

    def privilegedStartService(self) -> None:
        """
        Start listening (and the children's privileged start).

        :raises webwire._listening.ListenFailed: If an endpoint given as a
            description cannot listen (say, its port is in use): one line
            naming the endpoint and why.
        """
        Service.privilegedStartService(self)
        for child in self:
            try:
                child.privilegedStartService()
            except Exception as e:
                description = self._descriptions.get(id(child))
                if description is None:
                    raise
                raise describeListenFailure(description, e) from e

    def stopService(self) -> Deferred[None]:
        """
        Shut the server (every factory) down gracefully, then stop
        listening.

        :returns: A Deferred that fires when both are done.
        """
        shutdown = gatherResults([f.shutdown() for f in self.factories])
        shutdown.addCallback(lambda _: MultiService.stopService(self))
        return shutdown.addCallback(lambda _: None)


def _helpersOf(
    factories: Iterable[WebWireServerFactory], more: Iterable[IService]
) -> list[IService]:
    """
    The services C{factories} need run, each once: their applications,
    session managers and clusters that provide C{IService}, then C{more}.
    """
    found: dict[int, IService] = {}
    for factory in factories:
        for part in (factory.application, factory.sessionManager, factory.cluster):
            if part is not None and IService.providedBy(part):
                found.setdefault(id(part), IService(part))
    for helper in more:
        found.setdefault(id(helper), helper)
    return list(found.values())
