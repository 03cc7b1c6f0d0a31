"""Questions of one's own for the ``qa`` task: JSON Lines files or a ``datasets`` dataset saved on disk.

One question per record (JSON object, or dataset row)::

    {"id": "q1", "question": "What does this creature eat?", "image": "pics/vrosk.png", "answer": "Plumb"}
    {"id": "q2", "question": "Which colour is Plumb?", "choices": ["red", "blue", "green"], "answer": "blue"}
    {"id": "q3", "question": "Describe Plumb in one word.", "answer": "juicy", "kind": "text"}

* ``id`` (string or integer, unique over all splits), ``question`` (non-empty text) and ``answer``
  (text) are required;
* ``choices`` (optional, >= 2 distinct non-empty strings): a multiple-choice question, whose
  ``answer`` must be one of the choices, written out;
* ``image`` (optional): a picture, relative to the data folder (the JSONL file's folder, or the
  dataset folder). Absolute paths and paths that leave the data folder (``..``, or a symlink
  pointing outside) are refused unless ``allow_outside_paths``;
* ``kind`` (optional): ``choice``, ``entity`` or ``text``. Without it a question with choices is
  ``choice``; else ``entity`` when the answer is a graph entity (its id, or its exact name), else
  ``text`` (``QATaskConfig.answer_kind`` can make every such question ``entity`` or ``text``).
  An ``entity`` question whose answer is not in the graph is an error;
* ``split`` (``train``, ``dev`` or ``test``): required in a single file or dataset; in a folder of
  ``train.jsonl`` / ``dev.jsonl`` / ``test.jsonl`` the file names the split.

Where the questions come from (``QATaskConfig.data``): a ``.jsonl`` file; a folder with
``train.jsonl`` (and ``dev.jsonl``, ``test.jsonl``); or a folder written by ``datasets``'
``save_to_disk`` (a ``DatasetDict`` whose split names are train / dev (or validation) / test, or one
``Dataset`` with a ``split`` column). Every problem is an :class:`~mrmkg.errors.InputError` naming
the file and line (a dataset: its folder and row).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mrmkg.errors import InputError
from mrmkg.fileio import read_jsonl

SPLITS = ("train", "dev", "test")
KINDS = ("choice", "entity", "text")
FIELDS = ("id", "question", "answer", "choices", "image", "kind", "split")
_DATASET_SPLITS = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "test": "test"}


@dataclass
class QARecord:
    """One validated question. ``entity``: the graph index of an entity answer (else None);
    ``image``: the picture's resolved absolute path (or None); ``where``: ``file:line``."""

    id: str
    question: str
    answer: str | None  # None: a question of one's own (`mrmkg ask`)
    kind: str
    split: str
    choices: list[str] | None = None
    image: str | None = None
    entity: int | None = None
    where: str = ""

    @property
    def gold_choice(self) -> int | None:
        return None if self.choices is None else self.choices.index(self.answer)


def find_entity(kg, text: str) -> int | None:
    """Graph index of the entity whose id, or else whose exact name, is ``text`` (None: none);
    InputError when several entities share the name."""
    s = text.strip()
    if kg.has_entity(s):
        return kg.entity_index(s)
    hits = [i for i, n in enumerate(kg.entity_names) if n == s]
    if len(hits) > 1:
        ids = ", ".join(kg.entity_ids[i] for i in hits[:5])
        raise InputError(f"answer {s!r} names {len(hits)} entities ({ids}); give the entity id instead")
    return hits[0] if hits else None


def safe_image(value: str, base: Path, allow_outside: bool) -> str:
    """The absolute, symlink-resolved path of picture ``value`` (relative to ``base``); InputError
    for a missing file, or (unless ``allow_outside``) an absolute path or one leaving ``base``."""
    p = Path(value)
    if not allow_outside:
        if p.is_absolute():
            raise InputError(f"image {value!r}: an absolute path; give it relative to the data folder {base} "
                             "(or set task_args.allow_outside_paths)")
        if ".." in p.parts:
            raise InputError(f"image {value!r}: '..' leaves the data folder {base} "
                             "(set task_args.allow_outside_paths to allow it)")
    full = (base / p).resolve()
    if not allow_outside and not full.is_relative_to(base.resolve()):
        raise InputError(f"image {value!r}: resolves to {full}, outside the data folder {base} (a symlink?); "
                         "set task_args.allow_outside_paths to allow it")
    if not full.is_file():
        raise InputError(f"image {value!r} not found (looked for {full})")
    return str(full)


class _Checker:
    """Validates records one by one (see the module docstring) and remembers the ids seen."""

    def __init__(self, kg, base: Path, answer_kind: str, allow_outside: bool):
        self.kg, self.base, self.answer_kind, self.allow_outside = kg, base, answer_kind, allow_outside
        self.seen: dict[str, str] = {}

    def record(self, rec: dict, where: str, split: str | None) -> QARecord:
        extra = sorted(set(rec) - set(FIELDS))
        if extra:
            raise InputError(f"unknown field(s) {', '.join(map(repr, extra))}; a question has the fields "
                             f"{', '.join(FIELDS)}")
        for name in ("id", "question", "answer"):
            if rec.get(name) is None:
                raise InputError(f"missing field {name!r} (every question needs id, question and answer)")
        qid = rec["id"]
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not str(qid).strip():
            raise InputError(f"field 'id': expected a non-empty string or an integer, found {json.dumps(qid)}")
        qid = str(qid)
        if qid in self.seen:
            raise InputError(f"duplicate id {qid!r} (first at {self.seen[qid]})")
        for name in ("question", "answer"):
            if not isinstance(rec[name], str) or not rec[name].strip():
                raise InputError(f"field {name!r}: expected non-empty text, found {json.dumps(rec[name])}")
        rec_split = rec.get("split")
        if rec_split is not None:
            if rec_split not in SPLITS:
                raise InputError(f"field 'split': expected one of {', '.join(SPLITS)}, found {json.dumps(rec_split)}")
            if split is not None and rec_split != split:
                raise InputError(f"field 'split' is {rec_split!r} in the {split!r} file")
        split = split or rec_split
        if split is None:
            raise InputError("missing field 'split' (train, dev or test): required when one file holds every split")
        choices = rec.get("choices")
        if choices is not None:
            if (not isinstance(choices, list) or len(choices) < 2
                    or not all(isinstance(c, str) and c.strip() for c in choices)):
                raise InputError(f"field 'choices': expected a list of at least two non-empty strings, "
                                 f"found {json.dumps(choices)}")
            if len(set(choices)) != len(choices):
                raise InputError(f"field 'choices': repeated option in {json.dumps(choices)}")
        kind = rec.get("kind")
        if kind is not None and kind not in KINDS:
            raise InputError(f"field 'kind': expected one of {', '.join(KINDS)}, found {json.dumps(kind)}")
        answer = rec["answer"]
        if choices is not None or kind == "choice":
            if choices is None:
                raise InputError("kind 'choice' without 'choices'")
            if kind not in (None, "choice"):
                raise InputError(f"kind {kind!r} with 'choices': a question with choices is a 'choice' question")
            if answer not in choices:
                raise InputError(f"answer {answer!r} is not among the choices {json.dumps(choices)}")
            kind = "choice"
        entity = None
        if kind in (None, "entity"):
            entity = find_entity(self.kg, answer)
            want = kind or (self.answer_kind if self.answer_kind != "auto" else None)
            if want == "entity" and entity is None:
                raise InputError(f"answer {answer!r} is not an entity of the graph (neither an id nor an exact name)")
            if want == "text":
                entity = None
            kind = want or ("entity" if entity is not None else "text")
        image = rec.get("image")
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                raise InputError(f"field 'image': expected a path, found {json.dumps(image)}")
            image = safe_image(image, self.base, self.allow_outside)
        self.seen[qid] = where
        return QARecord(id=qid, question=rec["question"].strip(), answer=answer, kind=kind, split=split,
                        choices=None if choices is None else list(choices), image=image, entity=entity, where=where)


def _with_place(check: _Checker, rec: dict, path: Path, line: int, split: str | None) -> QARecord:
    try:
        return check.record(rec, f"{path}:{line}", split)
    except InputError as e:
        if e.path is not None:
            raise
        raise InputError(e.reason, path=path, line=line) from None


def load_questions(data: str | Path, kg, answer_kind: str = "auto", allow_outside: bool = False
                   ) -> dict[str, list[QARecord]]:
    """The questions of ``data`` (module docstring) by split (every split present, maybe empty),
    validated against the graph ``kg``."""
    p = Path(data)
    if not p.exists():
        raise InputError("questions not found (expected a .jsonl file, a folder of train/dev/test.jsonl or a "
                         "folder saved by datasets)", path=p)
    out: dict[str, list[QARecord]] = {s: [] for s in SPLITS}
    if p.is_file():
        check = _Checker(kg, p.parent, answer_kind, allow_outside)
        for ln, rec in read_jsonl(p, "questions file", "one question object per line"):
            r = _with_place(check, rec, p, ln, None)
            out[r.split].append(r)
        return out
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        return _load_dataset(p, kg, answer_kind, allow_outside)
    files = {s: p / f"{s}.jsonl" for s in SPLITS if (p / f"{s}.jsonl").is_file()}
    if "train" not in files:
        raise InputError("no train.jsonl in the questions folder (nor a dataset saved by datasets)", path=p)
    check = _Checker(kg, p, answer_kind, allow_outside)
    for split, f in files.items():
        for ln, rec in read_jsonl(f, f"{split} questions file", "one question object per line"):
            out[split].append(_with_place(check, rec, f, ln, split))
    return out


def _load_dataset(p: Path, kg, answer_kind: str, allow_outside: bool) -> dict[str, list[QARecord]]:
    """A ``datasets`` folder (``save_to_disk``): rows are checked like JSONL lines, named by row."""
    try:
        import datasets
    except ImportError:
        raise InputError("this is a folder saved by `datasets`; reading it needs the package: pip install datasets",
                         path=p) from None
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # a broken folder: datasets raises many kinds
        raise InputError(f"not a readable dataset folder ({type(e).__name__}: {e})", path=p) from None
    out: dict[str, list[QARecord]] = {s: [] for s in SPLITS}
    check = _Checker(kg, p, answer_kind, allow_outside)
    parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
    for name, part in parts:
        split = None
        if name is not None:
            split = _DATASET_SPLITS.get(name)
            if split is None:
                raise InputError(f"dataset split {name!r}: expected train, dev (or validation) and test", path=p)
        for row, rec in enumerate(part, 1):
            rec = {k: v for k, v in rec.items() if v is not None}  # absent optional columns are None in a table
            r = _with_place(check, rec, p / (name or "") if name else p, row, split)
            out[r.split].append(r)
    return out
