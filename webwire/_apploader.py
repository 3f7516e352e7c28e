# -*- test-case-name: tests.test_tap -*-
"""
Finding the application C{--app} names, the way C{uvicorn} and
C{gunicorn} do: C{module.attr} or C{module:attr}, with modules looked up in
C{--app-dir} (the current directory by default) before the installed
packages. Every failure is one line that says what was tried.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from twisted.python import usage

from webwire.interfaces import IWebWireServer

__all__ = ["addAppDirectory", "findObject", "loadApplication"]


def addAppDirectory(directory: str) -> str:
    """
    Put C{directory} first on C{sys.path} (once), so that C{--app} finds the
    modules in it.

    :param directory: A directory, relative to the current one or absolute.
    :returns: Its absolute path.
    :raises usage.UsageError: If it is not a directory.
    """
    path = os.path.abspath(directory)
    if not os.path.isdir(path):
        raise usage.UsageError(f"--app-dir {directory}: not a directory")
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


def _firstLine(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _import(option: str, moduleName: str) -> ModuleType | None:
    """
    Import a module; C{None} if it (or a package above it) does not exist.

    :raises usage.UsageError: If importing it raised.
    """
    try:
        return importlib.import_module(moduleName)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if moduleName == missing or moduleName.startswith(missing + "."):
            return None
        raise usage.UsageError(
            f"{option}: importing {moduleName} raised {_firstLine(e)}"
        ) from None
    except Exception as e:
        raise usage.UsageError(
            f"{option}: importing {moduleName} raised {_firstLine(e)}"
        ) from None


def _attribute(option: str, module: ModuleType, path: list[str]) -> Any:
    found: Any = module
    where = module.__name__
    for part in path:
        try:
            found = getattr(found, part)
        except AttributeError:
            raise usage.UsageError(
                f"{option}: {where} has no attribute {part!r}"
            ) from None
        where = f"{where}.{part}"
    return found


def findObject(name: str, appDir: str = ".", option: str = "--app") -> Any:
    """
    Find the object C{name} refers to.

    :param name: C{package.module.attr} (the longest importable module
        prefix is the module) or C{package.module:attr.attr}.
    :param appDir: The directory searched before the installed packages.
    :param option: The option named in errors.
    :raises usage.UsageError: One line: the module was not found (and where
        it was looked for), the attribute is missing, or importing raised
        (with the exception's first line).
    """
    where = f"{option} {name}"
    if ":" in name:
        moduleName, _, attr = name.partition(":")
        attrs = attr.split(".") if attr else []
        if not moduleName or not attr or not all(attrs):
            raise usage.UsageError(f"{where}: expected module:attribute")
        module = _import(where, moduleName)
        if module is None:
            raise usage.UsageError(
                f"{where}: no module named {moduleName!r} "
                f"(looked in {os.path.abspath(appDir)} and the installed packages)"
            )
        return _attribute(where, module, attrs)
    parts = name.split(".")
    if not all(parts):
        raise usage.UsageError(f"{where}: not a dotted name")
    found: ModuleType | None = None
    split = 0
    for split in range(1, len(parts) + 1):
        module = _import(where, ".".join(parts[:split]))
        if module is None:
            split -= 1
            break
        found = module
    if found is None:
        raise usage.UsageError(
            f"{where}: no module named {parts[0]!r} "
            f"(looked in {os.path.abspath(appDir)} and the installed packages)"
        )
    return _attribute(where, found, parts[split:])


def loadApplication(name: str, appDir: str = ".") -> IWebWireServer:
    """
    Find the application a name refers to.

    :param name: See L{findObject}: an object that provides
        L{IWebWireServer}, or a callable that returns one when called without
        arguments.
    :param appDir: The directory searched before the installed packages
        (put on C{sys.path} by L{addAppDirectory}).
    :raises usage.UsageError: If it cannot be found, fails, or does not
        provide L{IWebWireServer}.
    """
    found = findObject(name, appDir)
    if IWebWireServer.providedBy(found):
        return found
    if not callable(found):
        raise usage.UsageError(
            f"--app {name}: neither a WebWire application nor a callable"
        )
    try:
        application = found()
    except Exception as e:
        raise usage.UsageError(
            f"--app {name}: calling it failed ({_firstLine(e)})"
        ) from None
    if not IWebWireServer.providedBy(application):
        raise usage.UsageError(
            f"--app {name}: returned {application!r}, which does not provide "
            "IWebWireServer"
        )
    return application
