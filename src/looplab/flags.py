"""Command-line flags generated from the config dataclasses: a setting is declared once.

A config field declared with `setting(default, help, ...)` becomes the flag `--<field>` with that
help text, its type from the annotation and its default from the field. `add_flags` builds the
argparse arguments, `read_flags` turns the parsed namespace back into the dataclass's keyword
arguments, and `to_argv` writes a config as the flags that reproduce it (the ladder's record of
what each run corresponds to on the command line). Choices that come from a registry (variants,
suites, trackers) are passed in by the caller, so this module imports nothing from the package.

Kinds, from the annotation: bool (a switch, `negate` names its `--no_*` form when the default is
True), int, float, str, tuple[str | int | float, ...] (`--flag a b` or `--flag a,b`; `append`
makes it a repeatable flag taking one value each time), Mapping[str, Any] (a repeatable
`--flag KEY=VALUE`, values read as Python literals).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from looplab.errors import LooplabError


def setting(default: Any, help: str, **flag: Any) -> Any:
    """A config field with its help text and flag details (flag, aliases, negate, append, choices,
    metavar, required, same_as: the default is another field's value)."""
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata={"help": help, **flag})
    return dataclasses.field(default=default, metadata={"help": help, **flag})


def split_names(values: Sequence[str] | None) -> tuple[str, ...]:
    """Accept `--tasks a b`, `--tasks a,b` or a mix."""
    return tuple(n for v in values or () for n in v.split(",") if n)


def literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False}.get(text.lower(), text)


def parse_options(pairs: Sequence[str], flag: str = "--model_opt") -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise LooplabError(f"{flag} expects KEY=VALUE, got '{pair}'")
        key, value = pair.split("=", 1)
        out[key.strip()] = literal(value.strip())
    return out


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # resolves every annotation of the class: once per class


def _kind(cls: type, name: str) -> tuple[type, type | None]:
    """(kind, element type) of a field: bool, int, float, str, tuple (element type) or Mapping."""
    hint = _hints(cls)[name]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple, typing.get_args(hint)[0]
    if origin in (Mapping, dict):
        return Mapping, None
    return hint, None


def _fields(cls: type, skip: Iterable[str]) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata and f.name not in set(skip)]


def flag_name(f: dataclasses.Field) -> str:
    return "--" + f.metadata.get("flag", f.name)


def add_flags(p: argparse.ArgumentParser, cls: type, *, choices: Mapping[str, Iterable[str]] | None = None,
              skip: Iterable[str] = ()) -> None:
    """One argument per `setting` field of `cls`; `choices` adds registry names per field."""
    choices = choices or {}
    for f in _fields(cls, skip):
        m, (kind, _) = f.metadata, _kind(cls, f.name)
        names = [flag_name(f), *(f"--{a}" for a in m.get("aliases", ()))]
        kw: dict[str, Any] = {"dest": f.name, "help": m["help"].replace("%", "%%")}
        allowed = choices.get(f.name, m.get("choices"))
        if allowed is not None:
            kw["choices"] = list(allowed)
        if "metavar" in m:
            kw["metavar"] = m["metavar"]
        if kind is bool:
            if m.get("negate"):
                names = [f"--{m['negate']}"]
                kw.update(action="store_false", default=True)
            else:
                kw.update(action="store_true", default=False)
        elif kind is Mapping or m.get("append"):
            kw.update(action="append", default=[])
        elif kind is tuple:
            kw.update(nargs="+", default=None)
        else:
            kw.update(type=kind, default=None if "same_as" in m else f.default)
        if m.get("required"):
            kw["required"] = True
        p.add_argument(*names, **kw)


def _numbers(values: Sequence[str], elem: type, flag: str) -> tuple:
    names = split_names(values)
    try:
        return tuple(elem(n) for n in names)
    except ValueError:
        raise LooplabError(f"{flag} expects numbers such as 1,2,4, got {','.join(names)}") from None


def read_flags(cls: type, args: argparse.Namespace, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword arguments of `cls` given by parsed flags (fields without a flag keep their defaults)."""
    out: dict[str, Any] = {}
    for f in _fields(cls, skip):
        value, (kind, elem) = getattr(args, f.name), _kind(cls, f.name)
        if kind is Mapping:
            value = parse_options(value, flag_name(f))
        elif kind is tuple:
            if value is None:
                value = f.default
            elif elem is str:
                value = tuple(value) if f.metadata.get("append") else split_names(value)
            else:
                value = _numbers(value, elem, flag_name(f))
        out[f.name] = value
    for f in _fields(cls, skip):
        if "same_as" in f.metadata and out[f.name] is None:
            out[f.name] = out[f.metadata["same_as"]]
    return out


def to_argv(cfg: Any, *, skip: Iterable[str] = ()) -> list[str]:
    """The flags that reproduce `cfg` from the defaults (fields at their default are left out)."""
    argv: list[str] = []
    for f in _fields(type(cfg), skip):
        value, (kind, _) = getattr(cfg, f.name), _kind(type(cfg), f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value == default and "same_as" not in f.metadata:
            continue
        if "same_as" in f.metadata and value == getattr(cfg, f.metadata["same_as"]):
            continue
        if kind is bool:
            argv.append(f"--{f.metadata['negate']}" if f.metadata.get("negate") else flag_name(f))
        elif kind is Mapping:
            for k, v in value.items():
                argv += [flag_name(f), f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"]
        elif kind is tuple:
            if f.metadata.get("append"):
                for v in value:
                    argv += [flag_name(f), str(v)]
            else:
                argv += [flag_name(f), *(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
        else:
            argv += [flag_name(f), f"{value:g}" if isinstance(value, float) else str(value)]
    return argv
