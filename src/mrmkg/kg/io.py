"""Loaders that turn graph files into an :class:`~mrmkg.kg.graph.MMKG`, with validation.

Eight formats, one validation core (:class:`_GraphBuilder`). Three are here:

* **MarKG folder** (:func:`load_markg`), as released with MKG_Analogy::

      entity2text.txt        Qid<TAB>name
      entity2textlong.txt    Qid<TAB>description          (optional)
      relation2text.txt      id<TAB>name
      relation2textlong.txt  id<TAB>long description      (optional; kept in meta)
      wiki_tuple_ids.txt     head Qid<TAB>relation id<TAB>tail Qid
      images/<Qid>/<file>    images of entity Qid         (optional; or ``images_dir=``)

* **Generic TSV** (:func:`load_tsv`): one or more triple files ``head<TAB>relation<TAB>tail``
  (``order="htr"`` for files that put the relation last), an entity file
  ``id<TAB>name[<TAB>description]``, a relation file ``id<TAB>name`` and an optional image list
  ``entity id<TAB>image path``. Entity and relation files are optional: without them every id
  is its own name (FB15K-style graphs whose triples use Freebase mids). Relative image paths
  are resolved against the image list's folder.

* **JSON Lines** (:func:`load_jsonl`): one JSON object per line, discriminated by ``"type"``::

      {"type": "entity",   "id": "Q1", "name": "universe", "description": "...", "images": ["u.jpg"]}
      {"type": "relation", "id": "P31", "name": "instance of"}
      {"type": "triple",   "head": "Q1", "relation": "P31", "tail": "Q2"}
      {"type": "image",    "entity": "Q1", "path": "img/q1.jpg"}

  ``description`` and ``images`` are optional; records may come in any order (a triple may
  precede its entities); any other key is an error, so typos do not pass silently. Relative
  image paths are resolved against the JSONL file's folder.

The formats of the field are in :mod:`mrmkg.kg.formats`, one module each, built on the same core:
N-Triples and Turtle (``nt``, ``ttl``; rdflib), MMKB / MKGformer folders (``mmkb``: FB15K-IMG,
WN18-IMG, the paper's graph), OpenKE (``openke``) and PyKEEN labelled TSV (``pykeen``).

Validation (every failure is an :class:`~mrmkg.errors.InputError` naming file, line and what
was expected): files that are missing, empty or not UTF-8; missing or extra columns; empty ids
or names; duplicate entity or relation ids; ids used in triples or image lists that are not
defined; image files that are missing, truncated or not images. Blank lines are ignored; a
UTF-8 byte-order mark and CRLF line ends are accepted.

Choices where users may want to go on instead of stopping (:class:`LoadOptions`):

* ``unknown_ids``: ``"error"`` (default), ``"skip"`` (drop the triple / image, counted) or
  ``"add"`` (create the entity or relation with its id as name, counted).
* ``duplicate_triples``: ``"drop"`` (default: keep the first occurrence, counted), ``"keep"``
  or ``"error"``. MarKG's ``wiki_tuple_ids.txt`` has 33,307 lines but 33,301 distinct triples;
  the 6 repeats carry no information and would double-weight those facts in retrieval, so
  they are dropped and reported as ``meta["load"]["duplicate_triples"] == 6``.
* ``bad_images``: ``"error"`` (default) or ``"skip"`` (counted).

Self-loops (head == tail; MarKG has 75) are kept: they are real Wikidata statements.
Triple ids are positions in the de-duplicated file order, so the same files always give the
same ids. Image paths are stored absolute, so a saved graph can be used from any folder.

Paths stay inside their data: an image path read from a file must resolve (symlinks followed) inside
that file's folder (TSV image list, JSONL file) or the images folder (MarKG); absolute paths, ``..``
escapes and symlinks leading out are refused with file:line before anything is opened, with a message
that does not tell whether the outside file exists, unless ``allow_outside_paths=True``
(``mrmkg kg build --allow-outside-paths``).

Every loader records what it did in ``kg.meta["load"]`` (format, source, counts of lines,
duplicates, skips and additions), which ``mrmkg kg stats`` prints.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import contained_path, parse_json
from mrmkg.kg.graph import IMAGE_OF_ID, MMKG

FORMATS = ("markg", "tsv", "jsonl", "nt", "ttl", "mmkb", "openke", "pykeen")
_TSV_TRIPLE_NAMES = ("triples.tsv", "triples.txt")
_TSV_SPLIT_NAMES = ("train.txt", "valid.txt", "test.txt")


@dataclass
class LoadOptions:
    """What a loader does with input that is well-formed but incomplete or redundant."""

    unknown_ids: str = field(default="error", metadata={
        "help": "ids in triples/images that the entity or relation file does not define: "
                "'error' stops, 'skip' drops the record (counted), 'add' creates it named by its id (counted)"})
    duplicate_triples: str = field(default="drop", metadata={
        "help": "repeated (head, relation, tail) lines: 'drop' keeps the first (counted), 'keep', or 'error'"})
    bad_images: str = field(default="error", metadata={
        "help": "image files that are missing, truncated or not images: 'error' stops, 'skip' drops them (counted)"})
    allow_outside_paths: bool = field(default=False, metadata={
        "help": "accept image paths that lead outside their data folder (absolute paths, '..', symlinks "
                "pointing elsewhere); refused by default so that a data file cannot reach other files on disk"})
    check_images: bool = field(default=True, metadata={
        "help": "decode every image once while loading, so bad files are found here with their file and line "
                "rather than halfway through encoding"})
    images_per_entity: int = field(default=0, metadata={
        "help": "keep at most this many images of each entity, the first ones in file/folder order (0 = all); "
                "MMKB ships up to 25 per search engine per entity, and every kept image is encoded", "ge": 0})

    def __post_init__(self) -> None:
        for name, allowed in (("unknown_ids", ("error", "skip", "add")),
                              ("duplicate_triples", ("drop", "keep", "error")),
                              ("bad_images", ("error", "skip"))):
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if isinstance(self.images_per_entity, bool) or not isinstance(self.images_per_entity, int) \
                or self.images_per_entity < 0:
            raise InputError(f"images_per_entity must be an integer >= 0 (0 = all), not {self.images_per_entity!r}")


# ---------------------------------------------------------------------------------- reading
def _read_text(path: str | Path, what: str) -> str:
    """The whole of a UTF-8 text file (a byte-order mark dropped); a byte that is not UTF-8 is an
    :class:`InputError` naming its line and column. ``what`` describes the expected content."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"file not found (expected {what})", path=p)
    data = p.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputError(f"byte 0x{data[e.start]:02x} at column {col} is not valid UTF-8 "
                         f"(files must be UTF-8 encoded)", path=p, line=line) from None


def _read_lines(path: str | Path, what: str) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 text file as ``(1-based line number, text)``.

    ``what`` describes the expected content for error messages (e.g. ``"id<TAB>name lines"``).
    """
    text = _read_text(path, what)
    # split on "\n" only: str.splitlines would also split inside names on \x1c, \u2028, ...
    lines = [(i + 1, s[:-1] if s.endswith("\r") else s) for i, s in enumerate(text.split("\n"))]
    lines = [(i, s) for i, s in lines if s.strip()]
    if not lines:
        raise InputError(f"file is empty (expected {what})", path=path)
    return lines


def _split_row(path, lineno: int, s: str, min_cols: int, max_cols: int, what: str) -> list[str]:
    """One tab-separated line as ``min_cols..max_cols`` fields stripped of spaces, the first non-empty."""
    cols = [c.strip() for c in s.split("\t")]
    if not min_cols <= len(cols) <= max_cols:
        n = f"{min_cols}" if min_cols == max_cols else f"{min_cols} to {max_cols}"
        kind = "missing" if len(cols) < min_cols else "extra"
        hint = " (is the file tab-separated?)" if len(cols) == 1 else ""
        raise InputError(f"{kind} columns: found {len(cols)}, expected {n} ({what}){hint}",
                         path=path, line=lineno)
    if not cols[0]:
        raise InputError(f"empty id in column 1 (expected {what})", path=path, line=lineno)
    return cols


def _read_table(path: str | Path, min_cols: int, max_cols: int, what: str) -> list[tuple[int, list[str]]]:
    """Tab-separated rows with ``min_cols..max_cols`` columns, fields stripped of spaces."""
    return [(lineno, _split_row(path, lineno, s, min_cols, max_cols, what)) for lineno, s in _read_lines(path, what)]


def _read_id_values(path: str | Path, what: str, key=None) -> dict[str, tuple[str, int]]:
    """``id<TAB>value`` lines as ``{id: (value, line)}``; a repeated id is an error naming both lines.
    ``key`` maps an id as written to its canonical form (e.g. ``m.0abc`` to ``/m/0abc``)."""
    out: dict[str, tuple[str, int]] = {}
    for lineno, c in _read_table(path, 2, 2, what):
        k = key(c[0]) if key is not None else c[0]
        if k in out:
            raise InputError(f"duplicate id {c[0]!r} (first at {_where(path, out[k][1])}); ids must be unique",
                             path=path, line=lineno)
        out[k] = (c[1], lineno)
    return out


def _where(path, line) -> str:
    return f"{path}:{line}" if line is not None else str(path)


# ---------------------------------------------------------------------------------- images
def _image_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or ``None`` when it decodes completely."""
    if not path.is_file():
        return "image file not found"
    try:
        from mrmkg.encoders.images import load_image  # engineer ENC's loader: one definition of "an image"
    except ImportError:
        load_image = None
    try:
        if load_image is not None:
            load_image(path)
        else:
            from PIL import Image

            with Image.open(path) as im:  # verify() checks structure, load() catches truncation
                im.verify()
            with Image.open(path) as im:
                im.load()
    except InputError as e:
        return e.reason
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        return f"not a readable image ({type(e).__name__}: {e})"
    return None


def _list_image_folder(images_dir: Path) -> list[tuple[str, Path]]:
    """``images/<entity id>/<file>`` -> [(entity id, file)], sorted; hidden files are ignored."""
    out = []
    for sub in sorted(images_dir.iterdir()):
        if sub.name.startswith("."):
            continue
        if not sub.is_dir():
            raise InputError("expected only one folder per entity here (images/<entity id>/<image file>), "
                             f"found the file {sub.name!r}", path=images_dir)
        for f in sorted(sub.iterdir()):
            if not f.name.startswith("."):
                out.append((sub.name, f))
    return out


# ---------------------------------------------------------------------------------- builder
#: a triple in each format whose triples are not ``head<TAB>relation<TAB>tail`` lines
_TRIPLE_FORMS = {
    "jsonl": 'lines {"type": "triple", "head": ID, "relation": ID, "tail": ID}',
    "nt": "RDF triples <subject IRI> <predicate IRI> <object IRI> (literals and blank nodes are not graph triples)",
    "ttl": "RDF triples between IRIs (literals and blank nodes are not graph triples)",
}

class _GraphBuilder:
    """Accumulates id-keyed records from any format, applies :class:`LoadOptions`, and builds the
    MMKG with integer arrays (one dict lookup per id, no per-triple objects)."""

    def __init__(self, options: LoadOptions, fmt: str, source: str):
        self.opt = options
        self.ent_ids: list[str] = []
        self.ent_names: list[str] = []
        self.ent_desc: list[str] = []
        self.eidx: dict[str, int] = {}
        self.ewhere: list[str] = []
        self.rel_ids: list[str] = []
        self.rel_names: list[str] = []
        self.ridx: dict[str, int] = {}
        self.rwhere: list[str] = []
        self.desc_where: dict[int, str] = {}
        # triples kept as columns per source file; resolved to indices in build()
        self.chunks: list[tuple[str, list[int], list[str], list[str], list[str]]] = []
        self.images: list[tuple[str, str, str, int | None, Path]] = []  # (entity id, path, source, line, root)
        self.meta: dict = {}
        self.rel_desc: dict[str, str] | None = None  # relation id -> long description, when a file gives them
        # where ids are defined, for messages about ids that are not ("the entity file", "any triple", ...)
        self.entities_from, self.relations_from = "the entity file", "the relation file"
        # what a triple looks like in this format, for the message when none is left
        self.triple_form = _TRIPLE_FORMS.get(fmt, "head<TAB>relation<TAB>tail lines")
        self.report: dict = {"format": fmt, "source": source, "lines": {}, "duplicate_triples": 0,
                             "skipped_triples_unknown_id": 0, "skipped_images_unknown_id": 0,
                             "skipped_descriptions_unknown_id": 0, "added_entities": 0, "added_relations": 0,
                             "skipped_bad_images": 0, "skipped_images_over_cap": 0, "self_loops": 0, "options": asdict(options)}

    # -- definitions
    def add_entity(self, eid: str, name: str, desc: str, path, line) -> None:
        if not name:
            raise InputError(f"empty name for entity {eid!r} (expected id<TAB>name)", path=path, line=line)
        if eid in self.eidx:
            raise InputError(f"duplicate entity id {eid!r} (first defined at {self.ewhere[self.eidx[eid]]}); "
                             "entity ids must be unique", path=path, line=line)
        self.eidx[eid] = len(self.ent_ids)
        self.ent_ids.append(eid)
        self.ent_names.append(name)
        self.ent_desc.append(desc)
        self.ewhere.append(_where(path, line))

    def add_relation(self, rid: str, name: str, path, line) -> None:
        if not name:
            raise InputError(f"empty name for relation {rid!r} (expected id<TAB>name)", path=path, line=line)
        if rid == IMAGE_OF_ID:
            raise InputError(f"relation id {IMAGE_OF_ID!r} is reserved for the built-in 'image of' relation",
                             path=path, line=line)
        if rid in self.ridx:
            raise InputError(f"duplicate relation id {rid!r} (first defined at {self.rwhere[self.ridx[rid]]}); "
                             "relation ids must be unique", path=path, line=line)
        self.ridx[rid] = len(self.rel_ids)
        self.rel_ids.append(rid)
        self.rel_names.append(name)
        self.rwhere.append(_where(path, line))

    def set_description(self, eid: str, desc: str, path, line) -> None:
        i = self.eidx.get(eid)
        if i is None:
            if self.opt.unknown_ids == "error":
                raise InputError(f"entity id {eid!r} has a description but is not in {self.entities_from} "
                                 "(use unknown_ids='skip' or 'add' to go on)", path=path, line=line)
            if self.opt.unknown_ids == "skip":
                self.report["skipped_descriptions_unknown_id"] += 1
                return
            i = self._auto_entity(eid, path, line)
        if i in self.desc_where:
            raise InputError(f"duplicate id {eid!r}: its description is already given at {self.desc_where[i]}",
                             path=path, line=line)
        self.ent_desc[i] = desc
        self.desc_where[i] = _where(path, line)

    def add_triples(self, path, lines: list[int], heads: list[str], rels: list[str], tails: list[str]) -> None:
        self.chunks.append((str(path), lines, heads, rels, tails))
        self.report["lines"][str(path)] = self.report["lines"].get(str(path), 0) + len(lines)

    def define_from_triples(self, entity_name=None, relation_name=None) -> None:
        """Define the ids of the triples added so far that are not yet defined, in order of first
        appearance (so the same files always give the same indices), for formats whose triples are
        the only definition of their ids. ``entity_name(id)`` / ``relation_name(id)`` give the name
        (``str`` names an id by itself); ``None`` leaves that kind alone (an entity file defines it)."""
        for path, _, h, r, t in self.chunks:
            if entity_name is not None:
                for x in (e for pair in zip(h, t) for e in pair):
                    if x not in self.eidx:
                        self.add_entity(x, entity_name(x) or x, "", path, None)
            if relation_name is not None:
                for x in r:
                    if x not in self.ridx:
                        self.add_relation(x, relation_name(x) or x, path, None)

    def add_image(self, eid: str, image_path: str | Path, path, line, root: str | Path) -> None:
        """An image of ``eid``; ``image_path`` as read from the data (relative to ``root``), which it must
        not leave (:func:`mrmkg.fileio.contained_path`) unless ``allow_outside_paths``."""
        self.images.append((eid, str(image_path), str(path), line, Path(root)))

    # -- resolution
    def _auto_entity(self, eid: str, path, line) -> int:
        self.add_entity(eid, eid, "", path, line)
        self.report["added_entities"] += 1
        return self.eidx[eid]

    def _auto_relation(self, rid: str, path, line) -> int:
        self.add_relation(rid, rid, path, line)
        self.report["added_relations"] += 1
        return self.ridx[rid]

    def _resolve(self, ids: list[str], table: dict[str, int]) -> np.ndarray:
        get = table.get
        return np.fromiter((get(x, -1) for x in ids), dtype=np.int64, count=len(ids))

    def _resolve_chunk(self, path, lines, heads, rels, tails) -> tuple[np.ndarray, np.ndarray]:
        """Integer triples [t, 3] of one file and their line numbers, unknown ids handled."""
        cols = [self._resolve(heads, self.eidx), self._resolve(rels, self.ridx), self._resolve(tails, self.eidx)]
        lines_arr = np.asarray(lines, dtype=np.int64)
        bad = (cols[0] < 0) | (cols[1] < 0) | (cols[2] < 0)
        if bad.any():
            policy = self.opt.unknown_ids
            if policy == "error":
                j = int(np.flatnonzero(bad)[0])
                for c, (ids, kind, table) in enumerate(((heads, "head entity", self.eidx), (rels, "relation", self.ridx),
                                                        (tails, "tail entity", self.eidx))):
                    if cols[c][j] < 0:
                        source = self.relations_from if kind == "relation" else self.entities_from
                        raise InputError(f"{kind} id {ids[j]!r} is not in {source} "
                                         f"({int(bad.sum())} triple(s) in this file have unknown ids; "
                                         "use unknown_ids='skip' or 'add' to go on)", path=path, line=lines[j])
            if policy == "skip":
                self.report["skipped_triples_unknown_id"] += int(bad.sum())
                keep = ~bad
                cols = [c[keep] for c in cols]
                lines_arr = lines_arr[keep]
            else:  # add, in file order so that new ids are deterministic
                for j in np.flatnonzero(bad).tolist():
                    for c, ids in ((0, heads), (2, tails)):
                        if cols[c][j] < 0:
                            cols[c][j] = self.eidx.get(ids[j], -1)
                            if cols[c][j] < 0:
                                cols[c][j] = self._auto_entity(ids[j], path, lines[j])
                    if cols[1][j] < 0:
                        cols[1][j] = self.ridx.get(rels[j], -1)
                        if cols[1][j] < 0:
                            cols[1][j] = self._auto_relation(rels[j], path, lines[j])
        return np.stack(cols, axis=1).reshape(-1, 3), lines_arr

    def _dedupe(self, triples: np.ndarray, where: list[tuple[str, int]]) -> np.ndarray:
        if triples.shape[0] == 0 or self.opt.duplicate_triples == "keep":
            return triples
        _, first, inverse = np.unique(triples, axis=0, return_index=True, return_inverse=True)
        n_dup = triples.shape[0] - first.size
        if n_dup == 0:
            return triples
        if self.opt.duplicate_triples == "error":
            inverse = inverse.reshape(-1)
            j = int(np.flatnonzero(first[inverse] != np.arange(triples.shape[0]))[0])
            p0, l0 = where[int(first[inverse[j]])]
            p1, l1 = where[j]
            raise InputError(f"duplicate triple (first at {p0}:{l0}); "
                             "use duplicate_triples='drop' to keep only the first", path=p1, line=l1)
        self.report["duplicate_triples"] = int(n_dup)
        return triples[np.sort(first)]  # first occurrences, in file order

    def _resolve_images(self) -> tuple[list[str], list[int]]:
        from tqdm.auto import tqdm

        paths, owners, kept = [], [], {}
        cap = self.opt.images_per_entity
        # decoding tens of thousands of images takes minutes: show progress for big lists only
        for eid, img, src, line, root in tqdm(self.images, desc="check images", unit="img",
                                        disable=len(self.images) < 1000 or not self.opt.check_images):
            i = self.eidx.get(eid)
            if i is None:
                if self.opt.unknown_ids == "error":
                    raise InputError(f"image {img} belongs to entity id {eid!r}, which is not in {self.entities_from} "
                                     "(use unknown_ids='skip' or 'add' to go on)", path=src, line=line)
                if self.opt.unknown_ids == "skip":
                    self.report["skipped_images_unknown_id"] += 1
                    continue
                i = self._auto_entity(eid, src, line)
            if cap and kept.get(i, 0) >= cap:
                self.report["skipped_images_over_cap"] += 1
                continue
            p = contained_path(img, root, allow_outside=self.opt.allow_outside_paths, source=src, line=line)
            problem = _image_problem(p) if self.opt.check_images else (None if p.is_file() else "image file not found")
            if problem is not None:
                if self.opt.bad_images == "error":
                    raise InputError(f"{problem}: {p} (use bad_images='skip' to go on without it)",
                                     path=src, line=line)
                self.report["skipped_bad_images"] += 1
                continue
            paths.append(str(p.resolve()))
            owners.append(i)
            kept[i] = kept.get(i, 0) + 1
        return paths, owners

    def build(self) -> MMKG:
        parts, where_parts = [], []
        for path, lines, h, r, t in self.chunks:
            tri, ln = self._resolve_chunk(path, lines, h, r, t)
            parts.append(tri)
            where_parts.append((path, ln))
        triples = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
        if self.opt.duplicate_triples == "error" and triples.shape[0]:
            where = [(p, int(x)) for p, ln in where_parts for x in ln]
        else:
            where = []
        triples = self._dedupe(triples, where)
        if triples.shape[0] == 0:
            src = self.chunks[0][0] if self.chunks else self.report["source"]
            raise InputError(f"no triples left to build a graph from (expected {self.triple_form})", path=src)
        image_paths, image_owner = self._resolve_images()
        self.report["self_loops"] = int((triples[:, 0] == triples[:, 2]).sum())
        self.report["triples"] = int(triples.shape[0])
        meta = dict(self.meta)
        if self.rel_desc is not None:
            # MMKG has no relation-description field; keep them in meta (aligned with relation_ids,
            # "" for the reserved "image of" and relations without one) for prompts and display
            meta["relation_descriptions"] = [self.rel_desc.get(r, "") for r in self.rel_ids] + [""]
        meta["load"] = self.report
        return MMKG(entity_ids=self.ent_ids, entity_names=self.ent_names, entity_descriptions=self.ent_desc,
                    relation_ids=self.rel_ids, relation_names=self.rel_names, triples=triples,
                    image_paths=image_paths, image_entity=np.asarray(image_owner, dtype=np.int64), meta=meta)


def _options(options: LoadOptions | None, kw: dict) -> LoadOptions:
    if options is not None and kw:
        raise TypeError("pass either options= or individual option keywords, not both")
    if options is not None:
        return options
    unknown = set(kw) - set(LoadOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown load option(s): {', '.join(sorted(unknown))}")
    return LoadOptions(**kw)


def _add_triple_file(b: _GraphBuilder, path: Path, order: str = "hrt", rows=None) -> None:
    """Tab-separated triples of ``path`` (or its ``rows`` already read) in column ``order``."""
    if rows is None:
        rows = _read_table(path, 3, 3, "head<TAB>relation<TAB>tail" if order == "hrt" else "head<TAB>tail<TAB>relation")
    ri, ti = (1, 2) if order == "hrt" else (2, 1)
    for lineno, c in rows:
        if not c[ri] or not c[ti]:
            raise InputError("empty field (expected head<TAB>relation<TAB>tail with non-empty ids)",
                             path=path, line=lineno)
    b.add_triples(path, [ln for ln, _ in rows], [c[0] for _, c in rows], [c[ri] for _, c in rows],
                  [c[ti] for _, c in rows])


# ---------------------------------------------------------------------------------- loaders
def load_markg(folder: str | Path, images_dir: str | Path | None = None, options: LoadOptions | None = None,
               **kw) -> MMKG:
    """Load a MarKG folder (see the module docstring for the files).

    Images are attached from ``images_dir`` when given, else from ``<folder>/images`` when it
    exists; each sub-folder is named by an entity id and every (non-hidden) file in it is one
    image of that entity. Keywords are :class:`LoadOptions` fields.
    """
    opt = _options(options, kw)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder (expected a MarKG folder with entity2text.txt, relation2text.txt "
                         "and wiki_tuple_ids.txt)", path=folder)
    b = _GraphBuilder(opt, "markg", str(folder.resolve()))
    for lineno, c in _read_table(folder / "entity2text.txt", 2, 2, "Qid<TAB>name"):
        b.add_entity(c[0], c[1], "", folder / "entity2text.txt", lineno)
    long_path = folder / "entity2textlong.txt"
    if long_path.exists():
        for lineno, c in _read_table(long_path, 2, 2, "Qid<TAB>description"):
            b.set_description(c[0], c[1], long_path, lineno)
    for lineno, c in _read_table(folder / "relation2text.txt", 2, 2, "relation id<TAB>name"):
        b.add_relation(c[0], c[1], folder / "relation2text.txt", lineno)
    rel_long = folder / "relation2textlong.txt"
    if rel_long.exists():
        desc: dict[str, str] = {}
        for lineno, c in _read_table(rel_long, 2, 2, "relation id<TAB>long description"):
            if c[0] not in b.ridx:
                raise InputError(f"relation id {c[0]!r} is not in relation2text.txt", path=rel_long, line=lineno)
            if c[0] in desc:
                raise InputError(f"duplicate relation id {c[0]!r}", path=rel_long, line=lineno)
            desc[c[0]] = c[1]
        b.rel_desc = desc
    _add_triple_file(b, folder / "wiki_tuple_ids.txt")
    img_root = Path(images_dir) if images_dir is not None else folder / "images"
    if images_dir is not None and not img_root.is_dir():
        raise InputError("image folder not found (expected <entity id>/<image file> sub-folders)", path=img_root)
    if img_root.is_dir():
        for eid, f in _list_image_folder(img_root):
            b.add_image(eid, f, img_root / eid, None, img_root)
        b.report["images_dir"] = str(img_root.resolve())
    return b.build()


def load_tsv(triples: str | Path | Sequence[str | Path], entities: str | Path | None = None,
             relations: str | Path | None = None, images: str | Path | None = None, order: str = "hrt",
             options: LoadOptions | None = None, **kw) -> MMKG:
    """Load a graph from tab-separated files.

    Args:
        triples: one triple file or several (e.g. FB15K's train/valid/test), concatenated in order.
        entities: ``id<TAB>name[<TAB>description]`` lines, or ``None`` (every entity named by its id).
        relations: ``id<TAB>name`` lines, or ``None`` (every relation named by its id).
        images: ``entity id<TAB>image path`` lines; relative paths are relative to this file's folder.
        order: ``"hrt"`` (head, relation, tail) or ``"htr"`` (head, tail, relation) columns.
        options / **kw: :class:`LoadOptions`.

    Without an entity (relation) file, ids that first occur in triples are added in order of
    first appearance, named by their id; they are not counted as "added" in the report.
    """
    opt = _options(options, kw)
    if order not in ("hrt", "htr"):
        raise InputError(f"order must be 'hrt' or 'htr', not {order!r}")
    files = [Path(triples)] if isinstance(triples, (str, Path)) else [Path(t) for t in triples]
    if not files:
        raise InputError("no triple file given (expected head<TAB>relation<TAB>tail files)")
    b = _GraphBuilder(opt, "tsv", ", ".join(str(f.resolve()) for f in files))
    if entities is not None:
        for lineno, c in _read_table(entities, 2, 3, "id<TAB>name[<TAB>description]"):
            b.add_entity(c[0], c[1], c[2] if len(c) > 2 else "", entities, lineno)
    if relations is not None:
        for lineno, c in _read_table(relations, 2, 2, "id<TAB>name"):
            b.add_relation(c[0], c[1], relations, lineno)
    for f in files:
        _add_triple_file(b, f, order)
    # without an entity (relation) file, ids are their own names
    b.define_from_triples(str if entities is None else None, str if relations is None else None)
    if images is not None:
        _add_image_list(b, images)
    return b.build()


def _add_image_list(b: _GraphBuilder, images: str | Path) -> None:
    """``entity id<TAB>image path`` lines; relative paths are relative to the list's folder."""
    images = Path(images)
    for lineno, c in _read_table(images, 2, 2, "entity id<TAB>image path"):
        if not c[1]:
            raise InputError("empty image path (expected entity id<TAB>image path)", path=images, line=lineno)
        b.add_image(c[0], c[1], images, lineno, images.parent)


_JSONL_FIELDS = {
    "entity": ({"id", "name"}, {"description", "images"}),
    "relation": ({"id", "name"}, set()),
    "triple": ({"head", "relation", "tail"}, set()),
    "image": ({"entity", "path"}, set()),
}


def load_jsonl(path: str | Path, options: LoadOptions | None = None, **kw) -> MMKG:
    """Load a graph from JSON Lines (record types in the module docstring)."""
    opt = _options(options, kw)
    path = Path(path)
    b = _GraphBuilder(opt, "jsonl", str(path.resolve()))
    t_lines, heads, rels, tails = [], [], [], []
    expected = 'one JSON object per line with "type": entity, relation, triple or image'
    for lineno, s in _read_lines(path, expected):
        rec = parse_json(s, path, lineno, expected)
        if not isinstance(rec, dict):
            raise InputError(f"expected a JSON object, found {type(rec).__name__}", path=path, line=lineno)
        kind = rec.get("type")
        if kind not in _JSONL_FIELDS:
            raise InputError(f'"type" is {kind!r}; expected one of entity, relation, triple, image',
                             path=path, line=lineno)
        required, optional = _JSONL_FIELDS[kind]
        keys = set(rec) - {"type"}
        if required - keys:
            raise InputError(f"{kind} record is missing field(s) {', '.join(sorted(required - keys))} "
                             f"(expected {', '.join(sorted(required))})", path=path, line=lineno)
        if keys - required - optional:
            raise InputError(f"{kind} record has unknown field(s) {', '.join(sorted(keys - required - optional))} "
                             f"(allowed: {', '.join(sorted(required | optional))})", path=path, line=lineno)
        for k in keys - {"images"}:
            if not isinstance(rec[k], str):
                raise InputError(f'field "{k}" must be a string, found {type(rec[k]).__name__}',
                                 path=path, line=lineno)
            rec[k] = rec[k].strip()
            if not rec[k] and k != "description":
                raise InputError(f'field "{k}" is empty', path=path, line=lineno)
        if kind == "entity":
            b.add_entity(rec["id"], rec["name"], rec.get("description", ""), path, lineno)
            imgs = rec.get("images", [])
            if not isinstance(imgs, list) or not all(isinstance(x, str) and x.strip() for x in imgs):
                raise InputError('field "images" must be a list of image paths', path=path, line=lineno)
            for x in imgs:
                b.add_image(rec["id"], x.strip(), path, lineno, path.parent)
        elif kind == "relation":
            b.add_relation(rec["id"], rec["name"], path, lineno)
        elif kind == "triple":
            t_lines.append(lineno)
            heads.append(rec["head"])
            rels.append(rec["relation"])
            tails.append(rec["tail"])
        else:
            b.add_image(rec["entity"], rec["path"], path, lineno, path.parent)
    b.add_triples(path, t_lines, heads, rels, tails)
    return b.build()


def _tsv_folder_files(folder: Path) -> dict:
    """Conventional file names inside a TSV graph folder."""
    trip = [folder / n for n in _TSV_TRIPLE_NAMES if (folder / n).is_file()][:1]
    if not trip:
        trip = [folder / n for n in _TSV_SPLIT_NAMES if (folder / n).is_file()]
    if not trip:
        raise InputError(f"no triple file found (expected {' or '.join(_TSV_TRIPLE_NAMES)}, "
                         f"or {', '.join(_TSV_SPLIT_NAMES)})", path=folder)

    def first(*names):
        return next((folder / n for n in names if (folder / n).is_file()), None)

    return {"triples": trip, "entities": first("entities.tsv", "entities.txt"),
            "relations": first("relations.tsv", "relations.txt"), "images": first("images.tsv", "images.txt")}


def detect_format(src: str | Path) -> str:
    """The format of ``src`` where its names say so unambiguously.

    Files: ``*.nt`` -> ``nt``, ``*.ttl`` -> ``ttl``, ``*.jsonl``/``*.json``/``*.ndjson`` -> ``jsonl``.
    Folders: ``wiki_tuple_ids.txt`` -> ``markg``; ``entity2id.txt`` with ``train2id.txt`` -> ``openke``;
    ``*_EntityTriples.txt``, ``freebase_mtr100_mte100-train.txt`` or ``train.tsv`` with
    ``entity2text.txt`` (MMKB / MKGformer) -> ``mmkb``. Anything else
    is ``tsv`` (a PyKEEN file reads the same as a TSV one, so ``pykeen`` is only ever asked for).
    """
    p = Path(src)
    if p.is_dir():
        if (p / "wiki_tuple_ids.txt").exists():
            return "markg"
        if (p / "entity2id.txt").is_file() and (p / "train2id.txt").is_file():
            return "openke"
        from mrmkg.kg.formats.mmkb import looks_like_mmkb

        return "mmkb" if looks_like_mmkb(p) else "tsv"
    suffix = p.suffix.lower()
    if suffix in (".nt", ".ttl"):
        return suffix[1:]
    return "jsonl" if suffix in (".jsonl", ".json", ".ndjson") else "tsv"


# which of load_graph's extra inputs each format reads
_ACCEPTS = {"markg": {"images_dir"}, "tsv": {"entities", "relations", "images", "order"}, "jsonl": set(),
            "nt": {"images"}, "ttl": {"images"}, "mmkb": {"images_dir"}, "openke": {"images_dir", "images"},
            "pykeen": {"images", "order"}}


def load_graph(src: str | Path, format: str = "auto", options: LoadOptions | None = None, *,
               images_dir: str | Path | None = None, entities: str | Path | None = None,
               relations: str | Path | None = None, images: str | Path | None = None,
               order: str = "hrt", **kw) -> MMKG:
    """Load ``src`` in ``format`` (one of :data:`FORMATS` or ``auto``: :func:`detect_format`).

    For ``tsv``, ``src`` is a triple file (with ``entities``/``relations``/``images`` given
    separately) or a folder holding ``triples.tsv`` (or ``train.txt``/``valid.txt``/``test.txt``)
    and optionally ``entities.tsv``, ``relations.tsv`` and ``images.tsv`` (``.txt`` also works);
    explicit arguments override the folder's files. ``images_dir`` (a folder of
    ``<entity id>/<image file>``) applies to ``markg``, ``mmkb`` and ``openke``; ``images`` (an
    ``entity id<TAB>image path`` list) to ``tsv``, ``nt``, ``ttl``, ``openke`` and ``pykeen``;
    ``order`` to ``tsv`` and ``pykeen``. The other formats are in :mod:`mrmkg.kg.formats`.
    """
    opt = _options(options, kw)
    src = Path(src)
    if not src.exists():
        raise InputError("graph source not found", path=src)
    if format == "auto":
        format = detect_format(src)
    if format not in FORMATS:
        raise InputError(f"unknown graph format {format!r}; expected one of {', '.join(FORMATS)}")
    given = {k for k, v in (("images_dir", images_dir), ("entities", entities), ("relations", relations),
                            ("images", images), ("order", None if order == "hrt" else order)) if v is not None}
    for k in sorted(given - _ACCEPTS[format]):
        users = [f for f, a in _ACCEPTS.items() if k in a]
        what = {"images_dir": "an images folder (--images)", "images": "an image list (--image-list)",
                "entities": "an entity file", "relations": "a relation file", "order": "a column order"}[k]
        raise InputError(f"{what} applies to --format {'/'.join(users)}, not {format}")
    wants_file = format in ("jsonl", "nt", "ttl")
    if wants_file and src.is_dir():
        raise InputError(f"expected a .{format} file, found a folder", path=src)
    if format == "markg":
        return load_markg(src, images_dir=images_dir, options=opt)
    if format == "jsonl":
        return load_jsonl(src, options=opt)
    if format in ("nt", "ttl"):
        from mrmkg.kg.formats.rdf import load_rdf

        return load_rdf(src, format, images=images, options=opt)
    if format == "mmkb":
        from mrmkg.kg.formats.mmkb import load_mmkb

        return load_mmkb(src, images_dir=images_dir, options=opt)
    if format == "openke":
        from mrmkg.kg.formats.openke import load_openke

        return load_openke(src, images_dir=images_dir, images=images, options=opt)
    if format == "pykeen":
        from mrmkg.kg.formats.pykeen import load_pykeen

        return load_pykeen(src, images=images, order=order, options=opt)
    if src.is_dir():
        files = _tsv_folder_files(src)
        return load_tsv(files["triples"], entities or files["entities"], relations or files["relations"],
                        images or files["images"], order=order, options=opt)
    return load_tsv(src, entities, relations, images, order=order, options=opt)
