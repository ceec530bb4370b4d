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

A setting may also say what it accepts (`choices`, `range` such as '>= 1' or '[0, 1)'): `check_settings`
checks a dataclass instance against its declarations (type, choices, range) and `add_option_flags`
lists the settings of several option dataclasses (the model variants') as flags that write into one
`--flag KEY=VALUE` mapping.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from looplab.errors import LooplabError


def setting(default: Any, help: str, **flag: Any) -> Any:
    """A config field with its help text and flag details (flag, aliases, negate, append, choices,
    metavar, required, same_as: the default is another field's value), what it accepts (choices; range:
    '>= 1', '> 1' or an interval such as '[0, 1)'; see `check_settings`), cli=False for a setting that
    is recorded but never given by hand (no flag); other keys are for the declaring config to read."""
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
    return [f for f in dataclasses.fields(cls)
            if "help" in f.metadata and f.metadata.get("cli", True) and f.name not in set(skip)]


def flag_names(cls: type) -> list[str]:
    """The fields of `cls` given by flags."""
    return [f.name for f in _fields(cls, ())]


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


# --- what a setting accepts -------------------------------------------------------------------------
KIND_NAMES = {bool: "a bool (true or false)", int: "an int", float: "a float", str: "a str", Mapping: "a mapping"}


def bounds(text: str) -> tuple[float, bool, float, bool]:
    """(low, low included, high, high included) of a declared range: '>= 1', '> 1', '[0, 1)', '(0, inf)'."""
    if text[:1] in "[(" and text[-1:] in "])":
        low, high = text[1:-1].split(",")
        return float(low), text[0] == "[", float(high), text[-1] == "]"
    op, number = text.split()
    if op not in (">=", ">"):
        raise ValueError(f"a range is '>= N', '> N' or an interval such as '[0, 1)', got {text!r}")
    return float(number), op == ">=", math.inf, False


def accepted(cls: type, name: str) -> str:
    """What setting `name` of `cls` accepts, in words: 'an int >= 1', 'a float in [0, 1)', 'a str (allowed: a, b)'."""
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
    kind = _kind(cls, name)[0]
    if "choices" in meta:
        return f"{KIND_NAMES.get(kind, kind)} (allowed: {', '.join(map(str, meta['choices']))})"
    text = KIND_NAMES.get(kind, str(kind))
    if "range" in meta:
        text += f" in {meta['range']}" if meta["range"][0] in "[(" else f" {meta['range']}"
    return text


def _accepts(kind: Any, meta: Mapping[str, Any], value: Any) -> bool:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    typed = {bool: isinstance(value, bool), int: is_number and isinstance(value, int), float: is_number,
             str: isinstance(value, str), Mapping: isinstance(value, Mapping)}.get(kind, True)
    if not typed:
        return False
    if "choices" in meta and value not in meta["choices"]:
        return False
    if "range" in meta:
        low, low_in, high, high_in = bounds(meta["range"])
        return (low < value or (low_in and value == low)) and (value < high or (high_in and value == high))
    return True


def check_settings(obj: Any) -> None:
    """Every setting of the dataclass instance `obj` against its declaration: its type (an int is also a
    float, a bool is neither), choices and range. The first that fails is a one-line LooplabError
    naming the field, what it accepts and the value given."""
    cls = type(obj)
    for f in dataclasses.fields(cls):
        if "help" in f.metadata and not _accepts(_kind(cls, f.name)[0], f.metadata, getattr(obj, f.name)):
            raise LooplabError(f"{f.name} must be {accepted(cls, f.name)}, got {getattr(obj, f.name)!r}")


# --- settings of several option dataclasses as flags -------------------------------------------------
def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _default_text(cls: type, f: dataclasses.Field) -> str:
    value = _default(f)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _listed(cls: type, f: dataclasses.Field) -> bool:
    """Whether the metavar lists every value the setting accepts (a bool or a choice)."""
    return _kind(cls, f.name)[0] is bool or "choices" in f.metadata


def _metavar(cls: type, f: dataclasses.Field) -> str:
    if _listed(cls, f):
        return "{" + ",".join(map(str, f.metadata.get("choices", ("true", "false")))) + "}"
    return getattr(_kind(cls, f.name)[0], "__name__", "VALUE").upper()


def _pair_action(key: str) -> type[argparse.Action]:
    class Pair(argparse.Action):
        """`--<key> VALUE` appends KEY=VALUE to the mapping flag's list, as `--model_opt KEY=VALUE` does."""

        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), f"{key}={values}"])

    return Pair


def add_option_flags(p: argparse.ArgumentParser, owners: Mapping[str, type], *, dest: str,
                     title: str = "{} options", default_from: Mapping[str, str] | None = None) -> None:
    """One flag `--<field>` per setting of the option dataclasses in `owners` (owner name -> class), in
    one argument group per set of owners that share it ('ssm, ssm_mem options'). A given flag appends
    FIELD=VALUE to the list `dest` of a mapping flag (`--model_opt`), whose reading (`read_flags`) and
    checking (by whoever builds the options) it shares. `default_from` names where a field's default
    comes from instead of the declared one."""
    shared: dict[str, list[tuple[str, type, dataclasses.Field]]] = {}
    for owner, cls in owners.items():
        for f in _fields(cls, ()):
            shared.setdefault(f.name, []).append((owner, cls, f))
    groups: dict[tuple[str, ...], Any] = {}
    for name, decls in shared.items():
        names = tuple(owner for owner, _, _ in decls)
        if names not in groups:
            groups[names] = p.add_argument_group(title.format(", ".join(names)))
        _, cls, f = decls[0]
        default = (default_from or {}).get(name) or _per_owner(decls, _default_text)
        allowed = _per_owner(decls, lambda c, f: "" if _listed(c, f) else accepted(c, f.name))
        help_text = f"{_per_owner(decls, lambda c, f: f.metadata['help'])} ({allowed}{'; ' if allowed else ''}" \
                    f"default: {default})"
        groups[names].add_argument(f"--{name}", dest=dest, action=_pair_action(name), default=argparse.SUPPRESS,
                                   metavar=_metavar(cls, f), help=help_text.replace("%", "%%"))


def _per_owner(decls: list[tuple[str, type, dataclasses.Field]], text: Callable[[type, dataclasses.Field], str]) -> str:
    """text(cls, field) of each owner's declaration: once when they agree, else 'owner, owner: text; ...'."""
    owners: dict[str, list[str]] = {}
    for owner, cls, f in decls:
        owners.setdefault(text(cls, f), []).append(owner)
    if len(owners) == 1:
        return next(iter(owners))
    return "; ".join(f"{', '.join(names)}: {t}" for t, names in owners.items())
