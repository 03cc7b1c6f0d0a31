"""Dataclass configs from YAML files with ``--set a.b=value`` overrides, validated field by field.

Every config in mrmkg is a dataclass whose fields carry their help text in
``field(metadata={"help": ...})``. This module turns YAML (and command-line overrides) into such
dataclasses and reports every problem as :class:`~mrmkg.errors.InputError` naming the file, the
line (when the value came from a file) and the dotted field, e.g.::

    configs/mars.yaml:7: field 'optim.lr': expected a float, got 'fast'

Supported field types: ``int``, ``float``, ``bool``, ``str``, ``X | None``, ``Literal[...]``,
``list``/``tuple`` (of a supported type), ``dict`` (free-form, validated by whoever consumes it)
and nested dataclasses.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mrmkg.errors import InputError

__all__ = ["from_dict", "to_dict", "load_yaml", "apply_overrides", "parse_override", "field_help"]


def _yaml_lines(text: str) -> dict[str, int]:
    """Map dotted key paths of a YAML mapping to their 1-based line numbers."""
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    walk(root, "")
    return lines


class Source:
    """Where values came from: a file (with a line per dotted key) and/or command-line overrides."""

    def __init__(self, path: str | Path | None = None, lines: dict[str, int] | None = None):
        self.path = None if path is None else str(path)
        self.lines = lines or {}
        self.overridden: set[str] = set()

    def error(self, key: str, message: str) -> InputError:
        if key in self.overridden:
            return InputError(f"--set {key}: {message}")
        return InputError(f"field '{key}': {message}", path=self.path, line=self.lines.get(key))


def load_yaml(path: str | Path) -> tuple[dict, Source]:
    """Read a YAML mapping; returns (dict, Source). Missing file / bad YAML -> InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError("config file not found", path=p)
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(e, 'problem', e)}", path=p,
                         line=None if mark is None else mark.line + 1) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of config fields at the top level, got {type(data).__name__}", path=p)
    return data, Source(p, _yaml_lines(text))


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


def _coerce(value, tp, key: str, src: Source):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, src)
            except InputError as e:
                errors.append(e.reason)
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
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]", src) for i, v in enumerate(value)]
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
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise src.error(key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise src.error(key, f"expected a float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise src.error(key, f"expected a string, got {value!r}")
    return value


def from_dict(cls, data: dict | None, source: Source | None = None, prefix: str = ""):
    """Build dataclass ``cls`` from ``data``; unknown or ill-typed fields raise InputError."""
    src = source or Source()
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        key = prefix + unknown[0]
        raise src.error(key, f"unknown field; {cls.__name__} has: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.init and f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], prefix + f.name, src)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        if isinstance(e, InputError):
            raise
        raise InputError(f"{prefix.rstrip('.') or cls.__name__}: {e}", path=src.path) from None


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
