"""PyKEEN-style labelled triples, as ``TriplesFactory.from_path`` reads them.

One or more tab-separated files of ``head<TAB>relation<TAB>tail`` labels (``order="htr"`` for
head-tail-relation, PyKEEN's ``column_remapping=(0, 2, 1)``). PyKEEN reads them with
``np.loadtxt(delimiter="\\t", comments="@Comment@ Head Relation Tail")``, so lines starting with
``@Comment@`` are comments; a first line that is a header (``head relation tail``, ``subject
predicate object``, ``h r t``, ``source relation target`` in any case) is skipped too. A folder holds
``triples.tsv`` (or ``.txt``), or ``train``/``valid``/``test`` (also ``training``/``validation``/
``testing``, PyKEEN's own dataset names) with ``.tsv`` or ``.txt``. Labels are the ids; an entity's
name is its label (``brazil``, ``/m/027rn``), a relation's name its words (``capital_of`` -> ``capital
of``, ``/people/person/nationality`` -> ``people person nationality``) so that the text encoder reads
them as text. Images come from an optional ``entity<TAB>image path`` list.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mrmkg.errors import InputError
from mrmkg.kg.formats.mmkb import readable
from mrmkg.kg.io import (LoadOptions, _add_image_list, _add_triple_file, _GraphBuilder, _options, _read_lines,
                         _split_row)

COMMENT = "@Comment@"
HEADERS = ({"head", "relation", "tail"}, {"subject", "predicate", "object"}, {"h", "r", "t"},
           {"source", "relation", "target"}, {"head_label", "relation_label", "tail_label"})
FOLDER_FILES = (("triples",), ("train", "valid", "test"), ("training", "validation", "testing"))


def folder_files(folder: Path) -> list[Path]:
    for names in FOLDER_FILES:
        for ext in (".tsv", ".txt"):
            if (folder / (names[0] + ext)).is_file():
                return [folder / (n + ext) for n in names if (folder / (n + ext)).is_file()]
    raise InputError("no triple file found (expected triples.tsv, or train.tsv/valid.tsv/test.tsv; "
                     ".txt also works)", path=folder)


def read_rows(path: Path, order: str = "hrt") -> list[tuple[int, list[str]]]:
    what = "head<TAB>relation<TAB>tail" if order == "hrt" else "head<TAB>tail<TAB>relation"
    rows = []
    for lineno, s in _read_lines(path, f"{what} label lines"):
        if s.startswith(COMMENT):
            continue
        if not rows and {c.strip().lower() for c in s.split("\t")} in HEADERS:
            continue
        rows.append((lineno, _split_row(path, lineno, s, 3, 3, what)))
    if not rows:
        raise InputError(f"no triples in the file (expected {what} label lines)", path=path)
    return rows


def load_pykeen(src: str | Path | Sequence[str | Path], images: str | Path | None = None, order: str = "hrt",
                options: LoadOptions | None = None, **kw):
    """Load labelled triples: a file, a list of files (concatenated in order) or a folder (see above).
    Keywords are :class:`LoadOptions` fields."""
    opt = _options(options, kw)
    if order not in ("hrt", "htr"):
        raise InputError(f"order must be 'hrt' or 'htr', not {order!r}")
    if isinstance(src, (str, Path)):
        src = Path(src)
        files = folder_files(src) if src.is_dir() else [src]
    else:
        files = [Path(f) for f in src]
    if not files:
        raise InputError("no triple file given (expected head<TAB>relation<TAB>tail files)")
    b = _GraphBuilder(opt, "pykeen", ", ".join(str(f.resolve()) for f in files))
    b.entities_from, b.relations_from = "any triple", "any triple"
    for f in files:
        _add_triple_file(b, f, order, rows=read_rows(f, order))
    b.define_from_triples(str, readable)
    if images is not None:
        _add_image_list(b, images)
    return b.build()
