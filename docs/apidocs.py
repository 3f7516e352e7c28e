"""
pydoctor, taught this project's docstrings: epytext markup (C{...},
L{...}) with reST-style fields (C{:param x:}, C{:returns:}, C{:raises E:},
C{:ivar x:}), as the style guide asks. Before the docstrings are parsed as
epytext, each field line is turned into its epytext form (C{@param x:}).

Used through C{[tool.pydoctor]} in pyproject.toml: run C{python -m pydoctor}
from the repository root.
"""

from __future__ import annotations

import re
from typing import Any

from pydoctor import extensions, model

_FIELD = re.compile(
    r"^(?P<indent>[ \t]*):(?P<tag>param|type|ivar|cvar|var|keyword|raises|raise|"
    r"returns|return|rtype|see|note|since|deprecated)\b(?P<rest>[^:\n]*):",
    re.MULTILINE,
)


def epytextFields(docstring: str) -> str:
    """C{docstring} with its reST-style fields written as epytext fields."""
    return _FIELD.sub(r"\g<indent>@\g<tag>\g<rest>:", docstring)


class _EpytextFields(
    extensions.ClassMixin,
    extensions.ModuleMixin,
    extensions.PackageMixin,
    extensions.FunctionMixin,
    extensions.AttributeMixin,
):
    """Converts each docstring as it is read, before anything parses it."""

    docstring: str | None

    def _setDocstringValue(self, doc: str, lineno: int) -> None:
        super()._setDocstringValue(epytextFields(doc), lineno)  # type: ignore[misc]


def setup_pydoctor_extension(r: extensions.ExtRegistrar) -> None:
    r.register_mixin(_EpytextFields)


class WebWireSystem(model.System):
    """pydoctor's system, with the field conversion above."""

    custom_extensions: list[str] = ["docs.apidocs"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
