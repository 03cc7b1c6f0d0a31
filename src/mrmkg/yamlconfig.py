"""Dataclass configs from YAML files with ``--set a.b=value`` overrides, validated field by field.

Every config in mrmkg is a dataclass whose fields carry their help text in
``field(metadata={"help": ...})``. This module turns YAML (and command-line overrides) into such
dataclasses and reports every problem as :class:`~mrmkg.errors.InputError` naming the file, the
line (when the value came from a file) and the dotted field, e.g.::

    configs/mars.yaml:7: field 'optim.lr': expected a float, got 'fast'

A config may build on others: ``base: FILE`` (or a list of files, applied in order; paths relative to the
including file) at its top level loads those first and overlays this file on them: mappings merge key by
key, every other value (lists too) replaces. So a variant is a few lines (``configs/base/`` holds what the
shipped configs share). ``--set`` overrides apply last. An error about a value names the file and line
where that value was written, base file or overlay.

Config files are data: read with ``yaml.safe_load``'s rules (no python tags), at most
:data:`MAX_CONFIG_BYTES`, UTF-8; YAML aliases (``*name``) are refused, so that a small file cannot
expand into millions of keys.

Supported field types: ``int``, ``float``, ``bool``, ``str``, ``X | None``, ``Literal[...]``,
``list``/``tuple`` (of a supported type; ``tuple[float, float]`` has exactly two items), ``dict``
(free-form, validated by whoever consumes it) and nested dataclasses. Floats must be finite, and a
field's metadata may bound it (``ge``/``gt``/``le``/``lt``): see :func:`from_dict`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mrmkg.errors import InputError

__all__ = ["from_dict", "to_dict", "load_yaml", "apply_overrides", "parse_override", "field_help", "Source",
           "MAX_CONFIG_BYTES"]

MAX_CONFIG_BYTES = 1 << 20
"""A config file holds settings, not data: larger files are refused before they are parsed (the shipped ones
are under 4 KB)."""


# ---------------------------------------------------------------------------------- reading one file
class _AliasRefused(Exception):
    """Raised by :class:`_ConfigLoader` at an alias; :func:`_read_mapping` names the file."""

    def __init__(self, line: int):
        self.line = line


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data, no python tags) that refuses aliases (``*name``, ``<<: *name``).

    An alias repeats a node, so a 900-byte file of nine levels of nine aliases stands for 9**9 values that
    whatever walks the config pays for (an "alias bomb"); configs share settings through ``base:`` instead.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)


def _node_lines(root, path: str) -> dict[str, tuple[str, int]]:
    """Map the dotted key paths of a composed YAML node (``a.b``, list items ``a.b[0]``) to (path, 1-based line)."""
    out: dict[str, tuple[str, int]] = {}

    def walk(node, key: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                sub = f"{key}.{k.value}" if key else str(k.value)
                out[sub] = (path, k.start_mark.line + 1)
                walk(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                sub = f"{key}[{i}]"
                out[sub] = (path, v.start_mark.line + 1)
                walk(v, sub)

    walk(root, "")
    return out


def _read_mapping(p: Path) -> tuple[dict, dict[str, tuple[str, int]]]:
    """One YAML file as (mapping, {dotted key: (file, line)}), with ``yaml.safe_load``'s semantics.

    Refused with InputError naming the file (and line): missing, over :data:`MAX_CONFIG_BYTES`, not UTF-8,
    not YAML, an alias, nesting deeper than Python's recursion limit, a top level that is not a mapping.
    """
    if not p.is_file():
        raise InputError("config file not found", path=p)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise InputError(f"cannot read the config file: {e.strerror}", path=p) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise InputError(f"config file larger than {MAX_CONFIG_BYTES:,} bytes; a config holds settings, not data",
                         path=p)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})", path=p,
                         line=raw.count(b"\n", 0, e.start) + 1) from None
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
        where = {} if node is None else _node_lines(node, str(p))
    except _AliasRefused as e:
        raise InputError("YAML aliases (*name) are not allowed in config files; share settings with a "
                         "'base:' file instead", path=p, line=e.line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(e, 'problem', e)}", path=p,
                         line=None if mark is None else mark.line + 1) from None
    except RecursionError:
        raise InputError("not a config: nested too deeply", path=p) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of config fields at the top level, got {type(data).__name__}", path=p)
    return data, where


# ---------------------------------------------------------------------------------- base: composition
def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merge key by key (recursively); any other value, a list
    included, replaces. Neither input is modified."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolve(p: Path, chain: tuple[Path, ...], done: dict) -> tuple[dict, dict[str, tuple[str, int]]]:
    """File ``p`` with its ``base:`` files merged under it (recursively), and where each dotted key was written.

    ``chain`` holds the files being resolved (to report a cycle); ``done`` the files already resolved
    (each file is read once, however many configs of a chain share it).
    """
    real = p.resolve()
    if real in done:
        return done[real]
    data, where = _read_mapping(p)
    merged: dict = {}
    merged_where: dict[str, tuple[str, int]] = {}
    if "base" in data:
        line = where["base"][1]
        names = data.pop("base")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise InputError(f"'base' must be a file name or a list of file names (relative to this file), "
                             f"got {names!r}", path=p, line=line)
        for name in names:
            bp = p.parent / name
            if not bp.is_file():
                raise InputError(f"base file {name!r} not found (looked for {bp})", path=p, line=line)
            if bp.resolve() in chain + (real,):
                cycle = " -> ".join(str(c) for c in chain + (real, bp.resolve()))
                raise InputError(f"base files form a cycle: {cycle}", path=p, line=line)
            bdata, bwhere = _resolve(bp, chain + (real,), done)
            merged = _merge(merged, bdata)
            merged_where.update(bwhere)
        where = {k: v for k, v in where.items() if k != "base" and not k.startswith(("base.", "base["))}
    merged = _merge(merged, data)
    merged_where.update(where)  # later files win; entries a replaced value left behind are dropped by load_yaml
    done[real] = (merged, merged_where)
    return merged, merged_where


def _dotted_keys(data, key: str = "", out: set | None = None) -> set[str]:
    """Every dotted key path present in ``data`` (the same spelling as :func:`_node_lines`)."""
    out = set() if out is None else out
    if isinstance(data, dict):
        for k, v in data.items():
            sub = f"{key}.{k}" if key else str(k)
            out.add(sub)
            _dotted_keys(v, sub, out)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            sub = f"{key}[{i}]"
            out.add(sub)
            _dotted_keys(v, sub, out)
    return out


class Source:
    """Where values came from: a (file, line) per dotted key, and the keys set on the command line.

    ``path`` is the file the user named; a value written in one of its ``base:`` files is reported with
    that file's name and line. ``lines`` (dotted key -> line in ``path``) is the one-file shorthand.
    """

    def __init__(self, path: str | Path | None = None, lines: dict[str, int] | None = None,
                 where: dict[str, tuple[str, int]] | None = None):
        self.path = None if path is None else str(path)
        self.where: dict[str, tuple[str, int]] = {k: (self.path, v) for k, v in (lines or {}).items()}
        self.where.update(where or {})
        self.overridden: set[str] = set()

    @staticmethod
    def _parents(key: str):
        """``a.b[0].c`` -> ``a.b[0].c``, ``a.b[0]``, ``a.b``, ``a``."""
        while key:
            yield key
            cut = max(key.rfind("."), key.rfind("["))
            key = key[:cut] if cut > 0 else ""

    def location(self, key: str) -> tuple[str | None, int | None]:
        """(file, line) where ``key`` (or the nearest section holding it) was written; (path, None) if unknown."""
        for k in self._parents(key):
            if k in self.where:
                return self.where[k]
        return self.path, None

    def error(self, key: str, message: str) -> InputError:
        if any(k in self.overridden for k in self._parents(key)):
            return InputError(f"--set {key}: {message}")
        path, line = self.location(key)
        return InputError(f"field '{key}': {message}", path=path, line=line)


def load_yaml(path: str | Path) -> tuple[dict, Source]:
    """Read a YAML config, with its ``base:`` files merged under it; returns (dict, Source).

    ``base: FILE`` (or a list, applied in order) at the top level names files, relative to this one,
    whose settings this file overlays: mappings merge key by key, every other value (lists too) replaces.
    Chains are allowed. The ``base`` key itself is not part of the result. Missing file, bad YAML,
    an alias, a missing base or a cycle of bases -> InputError naming the file and line.
    """
    p = Path(path)
    data, where = _resolve(p, (), {})
    try:
        data = copy.deepcopy(data)  # bases are shared between the configs that include them; callers may edit this
        present = _dotted_keys(data)
    except RecursionError:
        raise InputError("not a config: nested too deeply", path=p) from None
    return data, Source(p, where={k: v for k, v in where.items() if k in present})


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", yaml-parsed value)``; ``value`` may be any YAML scalar or list."""
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected KEY=VALUE, e.g. --set optim.lr=1e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise InputError(f"--set {text!r}: empty field name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict, overrides: list[str], source: Source | None = None) -> dict:
    """Apply ``--set`` overrides to a nested dict (in place) and return it."""
    for text in overrides or []:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise InputError(f"--set {key}: '{part}' is not a section")
            node = nxt
        node[parts[-1]] = value
        if source is not None:
            source.overridden.add(key)
    return data


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp, key: str, src: Source, meta):
    """``value`` as type ``tp`` (field metadata ``meta``: see :func:`from_dict`), or src.error(key, ...)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            if dataclasses.is_dataclass(a) and isinstance(value, dict):  # a section: report its own field's error
                return _coerce(value, a, key, src, meta)
            try:
                return _coerce(value, a, key, src, meta)
            except InputError as e:
                if getattr(e, "out_of_bounds", False):  # the type fits, the value does not: say why
                    raise
        raise src.error(key, f"expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise src.error(key, f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise src.error(key, f"expected a section (mapping) of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, src, prefix=key + ".")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise src.error(key, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[float, float]: exactly that many
            if len(value) != len(args):
                raise src.error(key, f"expected a list of {len(args)} values, got {len(value)}: {value!r}")
            inner = list(args)
        else:
            inner = [args[0] if args else Any] * len(value)
        out = [_coerce(v, t, f"{key}[{i}]", src, meta) for i, (v, t) in enumerate(zip(value, inner))]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise src.error(key, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise src.error(key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _in_range(value, key, src, meta)
        if isinstance(value, float) and value.is_integer():
            return _in_range(int(value), key, src, meta)
        raise src.error(key, f"expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise src.error(key, f"expected a float, got {value!r}")
        if not math.isfinite(number) and not meta.get("allow_nonfinite", False):
            error = src.error(key, f"expected a finite number, got {value!r}")
            error.out_of_bounds = True
            raise error
        return _in_range(number, key, src, meta)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise src.error(key, f"expected a string, got {value!r}")
    return value


_BOUNDS = (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
           ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b))


def _in_range(number, key: str, src: Source, meta):
    """``number`` if it meets the field's bounds (metadata ``ge``/``gt``/``le``/``lt``), else src.error."""
    for name, sign, ok in _BOUNDS:
        if name in meta and not (math.isnan(number) or ok(number, meta[name])):
            error = src.error(key, f"must be {sign} {meta[name]}, got {number!r}")
            error.out_of_bounds = True
            raise error
    return number


def check_bounds(obj, prefix: str = "") -> None:
    """Check the numbers of dataclass ``obj`` as :func:`from_dict` does (finite floats, metadata bounds
    ``ge``/``gt``/``le``/``lt``): for ``__post_init__``, so a config built in code (a command's options,
    a library call) is held to the same bounds as one read from YAML. InputError naming the field."""
    src = Source()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value) and not f.metadata.get("allow_nonfinite", False):
            raise src.error(prefix + f.name, f"expected a finite number, got {value!r}")
        _in_range(value, prefix + f.name, src, f.metadata)


def from_dict(cls, data: dict | None, source: Source | None = None, prefix: str = ""):
    """Build dataclass ``cls`` from ``data``; unknown or ill-typed fields raise InputError.

    Numbers are checked as they are read, before anything uses them: a ``float`` must be finite (unless the
    field's metadata has ``allow_nonfinite=True``); a fixed-length tuple (``tuple[float, float]``) must have
    that many items; and a field's metadata may bound it: ``ge``/``gt``/``le``/``lt`` (>=, >, <=, <; for a
    list or tuple, every item), e.g. ``field(default=1e-4, metadata={"help": ..., "ge": 0})``.
    """
    src = source or Source()
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        key = prefix + str(unknown[0])
        raise src.error(key, f"unknown field; {cls.__name__} has: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.init and f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], prefix + f.name, src, f.metadata)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        if isinstance(e, InputError) and (e.path is not None or src.path is None):
            raise
        if isinstance(e, InputError):  # the dataclass knows the field, the source knows the file and line
            raise src.error(prefix.rstrip(".") or cls.__name__, e.reason) from None
        if prefix:
            raise src.error(prefix.rstrip("."), str(e)) from None
        raise InputError(f"{cls.__name__}: {e}", path=src.path) from None


def to_dict(obj) -> dict:
    """A dataclass as plain YAML/JSON-ready data (tuples become lists)."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(obj)


def field_help(cls, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted name, help, default) for every field of ``cls`` (nested dataclasses flattened)."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(default):
            out += field_help(type(default), prefix + f.name + ".")
        else:
            out.append((prefix + f.name, f.metadata.get("help", ""), default))
    return out
