"""
The server of C{python -m benchmarks.metricscost}: what C{twistd -n webwire
--sessions memory --metrics tcp:0:interface=127.0.0.1} serves, made by the
same C{makeService}, in a process whose metrics are switched on and off by
commands, so that one process (one memory layout) is measured both ways.

Run as C{python -m benchmarks._meteredserver PORT}: it listens on
127.0.0.1:PORT, says C{listening PORT}, and obeys commands on its standard
input, one a line, until it closes:

  - C{metrics on}: connections accepted from now on report to the
    L{webwire.metrics.ServerMetrics} that C{--metrics} made;
  - C{metrics off}: to nothing, as without C{--metrics};

answering each with the same line. The metrics port is served either way.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.stdio import StandardIO
from twisted.internet.task import react

from benchmarks._common import logWarnings
from benchmarks._processes import Control
from webwire.metrics import NULL_OBSERVER
from webwire.tap import Options, makeService


async def serve(reactor: Any, port: int) -> None:
    config = Options()
    config.parseOptions(
        [
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--sessions",
            "memory",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        ]
    )
    service: Any = makeService(config, reactor)
    factory = service.factory
    metrics = factory.observer
    service.privilegedStartService()
    service.startService()
    control = Control()
    StandardIO(control, reactor=reactor)
    control.say(f"listening {port}")
    while (line := await control.nextLine()) is not None:
        if line in ("metrics on", "metrics off"):
            factory.observer = metrics if line == "metrics on" else NULL_OBSERVER
            control.say(line)
    await service.stopService()
    await control.close()


if __name__ == "__main__":
    logWarnings()
    react(serve, (int(sys.argv[1]),))
