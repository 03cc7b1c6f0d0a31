"""Build a config dataclass from a JSON/YAML dict, checking each field's name and type.

Shared by ``MRMKGConfig`` and the configs of its optional sections (``PointerConfig``), whose fields
are annotated with the plain types below (as strings: the modules use ``from __future__ import annotations``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mrmkg.errors import InputError

#: annotation -> (accepted JSON types, description)
SIMPLE_TYPES = {"int": (int, "int"), "float": ((int, float), "float"), "bool": (bool, "bool"), "str": (str, "str"),
                "tuple[str, ...]": ((list, tuple), "a list of names")}


def check_value(section: str, name: str, annotation: str, value, path: str | Path | None = None):
    """``value`` as field ``section.name`` of type ``annotation`` wants it (lists become tuples);
    InputError naming the field otherwise."""
    want, what = SIMPLE_TYPES[annotation]
    ok = isinstance(value, want) and not (annotation in ("int", "float") and isinstance(value, bool))
    if ok and annotation == "tuple[str, ...]":
        ok = all(isinstance(v, str) for v in value)
        value = tuple(value)
    if not ok:
        raise InputError(f"{section}.{name} is {value!r}; expected {what}", path=path)
    return value


def fields_from_dict(cls, d: dict, section: str, path: str | Path | None = None, nested: dict | None = None):
    """An instance of dataclass ``cls`` with the fields of ``d`` (defaults for the rest), not yet
    validated. ``nested``: field name -> ``fn(value, path)`` for fields that are sections themselves."""
    if not isinstance(d, dict):
        raise InputError(f"{section} must be a mapping of fields, not {d!r}", path=path)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise InputError(f"unknown {section} config field(s) {unknown}; known: {sorted(known)}", path=path)
    obj = cls.__new__(cls)
    for name, f in known.items():
        if name not in d:
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        elif nested and name in nested:
            value = nested[name](d[name], path)
        else:
            value = check_value(section, name, f.type, d[name], path)
        setattr(obj, name, value)
    return obj


def field_help(cls) -> dict[str, str]:
    """Field name -> help text of dataclass ``cls``."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
