"""
A complete WebWire application in a few lines.

Run it (from the repository root, after ``pip install .``):

    twistd -n webwire --app examples.quickstart.makeApplication

then call it from any WebWire client, e.g. a request named ``greet`` with
payload ``Ada`` gets ``Hello, Ada!``; a signal named ``shout`` is sent back
in capitals to the client that sent it.
"""

from __future__ import annotations

from webwire import Application, IConnection, Request, RequestError, Signal


class Greeter(Application):
    """Answers ``greet`` requests and echoes ``shout`` signals in capitals."""

    def onRequest(self, connection: IConnection, request: Request) -> str:
        if request.name != "greet":
            raise RequestError("UNKNOWN_REQUEST", f"unknown request: {request.name}")
        name = request.text().strip()
        if not name:
            raise RequestError("BAD_REQUEST", "whom should I greet?")
        return f"Hello, {name}!"

    def onSignal(self, connection: IConnection, signal: Signal) -> None:
        if signal.name == "shout":
            connection.signal("shouted", signal.text().upper())


def makeApplication() -> Greeter:
    """What ``--app`` calls."""
    return Greeter()
