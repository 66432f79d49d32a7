"""Settings declared once: a field of a resource (or of :class:`resources.settings.ServiceSettings`)
is a typed attribute with a docstring, and everything else is derived from it.

``option()`` adds what the command line needs beyond the type (a legacy flag name, aliases, a
metavar, whether it is a path) to a pydantic field; :func:`option_specs` reads a model's fields
back as :class:`OptionSpec` records, from which ``dsa110-stream`` builds its parser and the
settings file its validation messages. Plain pydantic, no Dagster.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing
from dataclasses import dataclass
from functools import cache

from pydantic import Field
from pydantic_core import PydanticUndefined


def option(default=PydanticUndefined, *, flag: str | None = None, aliases: tuple[str, ...] = (),
           metavar: str | None = None, path: bool = False, required: bool = False):
    """A field with command-line details: ``flag`` replaces the default ``--field-name``,
    ``aliases`` are extra flags, ``path`` marks a filesystem path (made absolute when read from
    the command line). ``required`` fields have no default."""
    extra = {"flag": flag, "aliases": list(aliases), "metavar": metavar, "path": path}
    if required:
        return Field(json_schema_extra=extra)
    return Field(default, json_schema_extra=extra)


@dataclass(frozen=True)
class OptionSpec:
    """One setting as the command line and the settings file see it."""

    section: str
    name: str
    flag: str
    aliases: tuple[str, ...]
    type: type
    default: object
    required: bool
    choices: tuple[str, ...] | None
    help: str
    metavar: str | None
    path: bool

    @property
    def dest(self) -> str:
        return f"{self.section}.{self.name}"


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of ``cls`` and its bases (the string right after a field), joined
    into one line each."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ in ("builtins", "typing") or klass.__module__.startswith(("pydantic", "dagster")):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def option_specs(section: str, model: type) -> list[OptionSpec]:
    """Every field of ``model`` (a pydantic model class) as an :class:`OptionSpec`."""
    docs = field_docs(model)
    specs = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        annotation = info.annotation
        choices = None
        if typing.get_origin(annotation) is typing.Literal:
            choices = tuple(typing.get_args(annotation))
            annotation = type(choices[0])
        specs.append(OptionSpec(
            section=section, name=name, flag=extra.get("flag") or "--" + name.replace("_", "-"),
            aliases=tuple(extra.get("aliases") or ()), type=annotation,
            default=None if info.is_required() else info.default, required=info.is_required(),
            choices=choices, help=docs.get(name, ""), metavar=extra.get("metavar"), path=bool(extra.get("path")),
        ))
    return specs
