"""MARS data files: the JSON-Lines splits and the candidate entity list, validated line by line.

A record ``{"example": [h, t], "question": q, "answer": a, "relation": r, "mode": m}`` asks: *h is to
t as q is to ?*. Modes (MarT): 0 = example pair as text, question as image; 1 = example pair as
images, question as text; 2 = example head as image, example tail as text, question as image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import read_jsonl

MODES = (0, 1, 2)
#: which of (example head, example tail, question) is shown as an image, per MarT mode
IMAGE_SIDES = {0: (False, False, True), 1: (True, True, False), 2: (True, False, True)}


@dataclass
class MarsRecord:
    """One MARS example; entity fields are graph indices, ``line`` its 1-based line in ``path``."""

    id: str
    head: int
    tail: int
    question: int
    answer: int | None  # None: a question of one's own (no gold)
    mode: int
    relation: str | None
    path: str
    line: int


def _entity(kg, value, path, line, name) -> int:
    if not isinstance(value, str) or not value:
        raise InputError(f"field '{name}': expected an entity id string, got {value!r}", path=path, line=line)
    try:
        return kg.entity_index(value)
    except KeyError:
        raise InputError(f"field '{name}': entity {value!r} is not in the graph", path=path, line=line) from None


def load_mars_split(path: str | Path, kg) -> list[MarsRecord]:
    """Read a MARS JSON-Lines split (any file of that format), validating every field.

    Raises InputError naming ``file:line`` and the field for: invalid JSON, a non-object line,
    missing/ill-typed ``example`` (two entity ids), ``question``, ``answer``, ``mode`` (0/1/2), or an
    entity id the graph does not have. Blank lines are skipped. The record id is ``<stem>-<line>``
    unless the record has an ``id`` field.
    """
    p = Path(path)
    out = []
    for ln, r in read_jsonl(p, "MARS split file", "one JSON object per line (a MARS record)"):
        for key in ("example", "question", "answer", "mode"):
            if key not in r:
                raise InputError(f"field '{key}' is missing", path=p, line=ln)
        ex = r["example"]
        if not isinstance(ex, list) or len(ex) != 2:
            raise InputError(f"field 'example': expected a list of two entity ids, got {ex!r}", path=p, line=ln)
        mode = r["mode"]
        if isinstance(mode, bool) or mode not in MODES:
            raise InputError(f"field 'mode': expected 0, 1 or 2, got {mode!r}", path=p, line=ln)
        rel = r.get("relation")
        if rel is not None and not isinstance(rel, str):
            raise InputError(f"field 'relation': expected a string, got {rel!r}", path=p, line=ln)
        out.append(MarsRecord(
            id=str(r.get("id", f"{p.stem}-{ln}")),
            head=_entity(kg, ex[0], p, ln, "example[0]"), tail=_entity(kg, ex[1], p, ln, "example[1]"),
            question=_entity(kg, r["question"], p, ln, "question"), answer=_entity(kg, r["answer"], p, ln, "answer"),
            mode=int(mode), relation=rel, path=str(p), line=ln))
    if not out:
        raise InputError("MARS split file has no examples", path=p)
    return out


def load_candidates(path: str | Path, kg) -> np.ndarray:
    """``analogy_entities.txt`` (one entity id per line) -> graph indices ``int64 [C]``."""
    p = Path(path)
    if not p.is_file():
        raise InputError("candidate entity file not found", path=p)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"bytes that are not UTF-8 at byte {e.start} (expected one entity id per line)", path=p,
                         line=data.count(b"\n", 0, e.start) + 1) from None
    ids, seen = [], set()
    for ln, raw in enumerate(text.split("\n"), 1):
        e = raw.strip()
        if not e:
            continue
        if e in seen:
            raise InputError(f"candidate {e!r} is listed twice", path=p, line=ln)
        seen.add(e)
        ids.append(_entity(kg, e, p, ln, "entity"))
    if not ids:
        raise InputError("candidate entity file is empty", path=p)
    return np.asarray(ids, dtype=np.int64)


def resolve_path(base: Path, name: str) -> Path:
    """``name`` as given when absolute or present, else relative to ``base``."""
    p = Path(name)
    return p if p.is_absolute() or p.exists() or not str(base) else base / p

