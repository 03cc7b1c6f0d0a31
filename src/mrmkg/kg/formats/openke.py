"""OpenKE benchmark folders (thunlp/OpenKE ``benchmarks/FB15K237``, ``WN18RR``, ...).

Files (whitespace-separated, as OpenKE's reader scans them)::

    entity2id.txt     first line: the number of entities; then  entity<TAB>integer id
    relation2id.txt   first line: the number of relations; then relation<TAB>integer id
    train2id.txt      first line: the number of triples; then   head id  tail id  relation id   (h t r order)
    valid2id.txt, test2id.txt   the same (optional; added to the graph after train2id.txt)
    entity2text.txt, relation2text.txt   id<TAB>name (optional; otherwise an entity is named by its id, a
                                         relation by its words: /film/film/genre -> film film genre)
    images/<entity>/<file>               (optional; or an image list, entity<TAB>path)

Validation beyond the common one: the count line must be one integer and must equal the number of
records that follow; ids must be integers in ``0..count-1``, each given once (so they cover the
range, which OpenKE's training code assumes); an entity (relation) string must not be given two ids.
Entity and relation indices of the built graph are the OpenKE ids, so embeddings trained with OpenKE
line up with them.
"""
from __future__ import annotations

from pathlib import Path

from mrmkg.errors import InputError
from mrmkg.kg.formats.mmkb import add_image_folder, readable
from mrmkg.kg.io import LoadOptions, _add_image_list, _GraphBuilder, _options, _read_id_values, _read_lines, _where

SPLIT_FILES = ("train2id.txt", "valid2id.txt", "test2id.txt")


def _counted(path: Path, what: str, width: int) -> list[tuple[int, list[str]]]:
    """Records of ``width`` whitespace-separated fields after a count line that must match them."""
    lines = _read_lines(path, f"a count line, then {what} lines")
    (cl, count_text), rows = lines[0], lines[1:]
    try:
        count = int(count_text.strip())
    except ValueError:
        raise InputError(f"first line {count_text.strip()[:40]!r} is not a count (OpenKE files start with the "
                         f"number of records, then {what} lines)", path=path, line=cl) from None
    if count != len(rows):
        raise InputError(f"the count line says {count} record(s) but {len(rows)} follow", path=path, line=cl)
    out = []
    for lineno, s in rows:
        cols = s.split()
        if len(cols) != width:
            raise InputError(f"found {len(cols)} field(s), expected {width} ({what})", path=path, line=lineno)
        out.append((lineno, cols))
    return out


def _int(x: str, path, lineno, what: str) -> int:
    try:
        return int(x)
    except ValueError:
        raise InputError(f"{what} {x!r} is not an integer id", path=path, line=lineno) from None


def _id_file(path: Path, kind: str) -> list[tuple[str, int]]:
    """``[(string, line)]`` ordered by integer id, each id once in ``0..n-1``."""
    rows = _counted(path, f"{kind}<TAB>integer id", 2)
    by_id: dict[int, tuple[str, int]] = {}
    for lineno, (name, num) in rows:
        i = _int(num, path, lineno, f"{kind} id")
        if not 0 <= i < len(rows):
            raise InputError(f"{kind} id {i} is out of range (ids run from 0 to {len(rows) - 1}, the count line minus one)",
                             path=path, line=lineno)
        if i in by_id:
            raise InputError(f"duplicate {kind} id {i} (first at {_where(path, by_id[i][1])}); ids must be unique",
                             path=path, line=lineno)
        by_id[i] = (name, lineno)
    return [by_id[i] for i in range(len(rows))]


def load_openke(folder: str | Path, images_dir: str | Path | None = None, images: str | Path | None = None,
                options: LoadOptions | None = None, **kw):
    """Load an OpenKE folder (files in the module docstring). Keywords are :class:`LoadOptions` fields."""
    opt = _options(options, kw)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder (expected an OpenKE folder with entity2id.txt, relation2id.txt and "
                         "train2id.txt)", path=folder)
    b = _GraphBuilder(opt, "openke", str(folder.resolve()))
    b.entities_from, b.relations_from = "entity2id.txt", "relation2id.txt"
    ent_path, rel_path = folder / "entity2id.txt", folder / "relation2id.txt"
    ents, rels = _id_file(ent_path, "entity"), _id_file(rel_path, "relation")
    names = _read_id_values(folder / "entity2text.txt", "entity<TAB>name") if (folder / "entity2text.txt").is_file() else {}
    rel_names = (_read_id_values(folder / "relation2text.txt", "relation<TAB>name")
                 if (folder / "relation2text.txt").is_file() else {})
    for e, line in ents:
        b.add_entity(e, names[e][0] if e in names else e, "", ent_path, line)
    for r, line in rels:
        b.add_relation(r, rel_names[r][0] if r in rel_names else readable(r), rel_path, line)
    b.report["unused_names"] = sum(1 for e in names if e not in b.eidx) + sum(1 for r in rel_names if r not in b.ridx)

    if not (folder / SPLIT_FILES[0]).is_file():
        raise InputError("file not found (expected a count line, then head tail relation id lines)",
                         path=folder / SPLIT_FILES[0])
    for f in (folder / n for n in SPLIT_FILES if (folder / n).is_file()):
        lines, heads, rs, tails = [], [], [], []
        for lineno, (h, t, r) in _counted(f, "head id  tail id  relation id", 3):
            hi, ti, ri = (_int(x, f, lineno, w) for x, w in ((h, "head id"), (t, "tail id"), (r, "relation id")))
            # an id outside the range becomes a string no OpenKE entity can have (they hold no spaces),
            # so the builder reports it as unknown (or skips / adds it, as unknown_ids says)
            heads.append(ents[hi][0] if 0 <= hi < len(ents) else f"{hi} (out of range)")
            tails.append(ents[ti][0] if 0 <= ti < len(ents) else f"{ti} (out of range)")
            rs.append(rels[ri][0] if 0 <= ri < len(rels) else f"{ri} (out of range)")
            lines.append(lineno)
        b.add_triples(f, lines, heads, rs, tails)

    img_root = Path(images_dir) if images_dir is not None else folder / "images"
    if images_dir is not None and not img_root.is_dir():
        raise InputError("image folder not found (expected <entity>/<image file> sub-folders)", path=img_root)
    if img_root.is_dir():
        add_image_folder(b, img_root)
    if images is not None:
        _add_image_list(b, images)
    return b.build()
