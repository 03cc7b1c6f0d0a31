"""The multimodal knowledge graph (MMKG) data model.

An :class:`MMKG` holds

* entities: a stable string id (e.g. a Wikidata Q-id), a name and a description;
* relations: a stable string id and a name;
* triples: an ``int64`` array ``[T, 3]`` of (head, relation, tail) *indices*;
* images: a list of image paths, each owned by one entity (the MMKG "image of" edge).

Entities are keyed by id, never by name (MarKG has 291 names shared by several ids).
Adjacency is kept as CSR arrays in both directions so that a graph of millions of triples
fits in memory and one-hop expansion is a slice, not a Python loop.

The image-to-entity edges are *not* stored as triples: every image node is linked to its
entity by the reserved relation :data:`IMAGE_OF`, whose index is ``kg.image_of`` (always the
last relation). Code that builds typed edges uses ``kg.num_relations`` (which counts it).

On disk (``save``/``load``) a graph is a folder in one of two layouts, each with ``checksums.json``
(sizes and SHA-256 of the other files, written last; :mod:`mrmkg.kg.manifest`):

* ``npz`` (format version 1, graphs up to :data:`MMAP_MIN_TRIPLES` triples by default): ``graph.json``
  (strings and metadata) and ``graph.npz`` (integer arrays). ``load`` verifies both and checks their
  content; MarKG reloads in a few hundredths of a second.
* ``mmap`` (format version 2, larger graphs): ``graph.json`` holds only metadata, relations and counts;
  every array is its own ``.npy`` file opened with ``np.load(mmap_mode="r")``: ``triples``,
  ``image_entity``, the CSR adjacency ``out_ptr/out_idx``, ``in_ptr/in_idx``, ``img_ptr/img_idx``, and
  the entity ids, names, descriptions and image paths as :class:`~mrmkg.kg.strings.StringTable` arrays
  (``<name>.utf8.npy`` + ``<name>.offsets.npy``, ids also ``entity_ids.order.npy`` for lookup by id).
  Loading reads headers and a few boundary values, not the graph: retrieval then pages in only the
  rows it touches. The ``.npy`` files are size- and header-checked but not hashed nor range-checked
  unless ``MRMKG_VERIFY_ALL=1`` (as for the index embeddings). The graph's content key
  (:func:`mrmkg.kg.index.graph_key`) is computed once at save and stored in ``graph.json``.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json, sha256_bytes, sha256_texts
from mrmkg.kg.manifest import (CHECKSUMS, DamagedArtifactError, check_index_manifest, load_npy, read_json, require,
                               verify_all, verify_checksums, warn_unverified, write_checksums)
from mrmkg.kg.strings import StringTable

IMAGE_OF = "image of"
IMAGE_OF_ID = "__image_of__"
NPZ_VERSION, MMAP_VERSION = 1, 2  # graph.json format_version of each layout
FORMAT_VERSION = MMAP_VERSION  # the newest version this reader understands (it reads both)
LAYOUT_CHOICES = ("auto", "npz", "mmap")
#: ``save(layout="auto")`` writes the mmap layout from this many triples on (MMKB, 812k, stays npz)
MMAP_MIN_TRIPLES = 2_000_000
_CSR_ARRAYS = ("out_ptr", "out_idx", "in_ptr", "in_idx", "img_ptr", "img_idx")
_STRING_LISTS = ("entity_ids", "entity_names", "entity_descriptions", "image_paths")
_NPZ_FILES = ("graph.json", "graph.npz")


def _mmap_files() -> list[str]:
    names = ["graph.json", "triples.npy", "image_entity.npy", *(f"{a}.npy" for a in _CSR_ARRAYS)]
    for s in _STRING_LISTS:
        names += [f"{s}.utf8.npy", f"{s}.offsets.npy"]
    return names + ["entity_ids.order.npy"]


def _csr(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group positions ``0..len(keys)-1`` by key: returns (ptr [n+1], idx [len(keys)])."""
    order = np.argsort(keys, kind="stable").astype(np.int64)
    counts = np.bincount(keys, minlength=n)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, order


@dataclass
class MMKG:
    """A multimodal knowledge graph. Build with :meth:`from_records` or a loader in ``kg.io``."""

    entity_ids: Sequence[str]  # a list, or a StringTable (mmap layout)
    entity_names: Sequence[str]
    entity_descriptions: Sequence[str]
    relation_ids: list[str]  # the last one is always IMAGE_OF_ID
    relation_names: list[str]
    triples: np.ndarray  # int64 [T, 3] (head, relation, tail)
    image_paths: Sequence[str] = field(default_factory=list)
    image_entity: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [I]
    meta: dict = field(default_factory=dict)
    #: precomputed CSR arrays (``_CSR_ARRAYS`` -> array) and ``key``, from ``load`` of the mmap layout; they
    #: are trusted as given (the loader checked them) and cleared after use, so ``replace`` recomputes them
    csr: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        pre, self.csr = self.csr, None
        if pre is None or not (isinstance(self.triples, np.ndarray) and self.triples.dtype == np.int64):
            self.triples = np.asarray(self.triples, dtype=np.int64).reshape(-1, 3)
            self.image_entity = np.asarray(self.image_entity, dtype=np.int64).reshape(-1)
        if not self.relation_ids or self.relation_ids[-1] != IMAGE_OF_ID:
            self.relation_ids = list(self.relation_ids) + [IMAGE_OF_ID]
            self.relation_names = list(self.relation_names) + [IMAGE_OF]
        E = len(self.entity_ids)
        self._key: str | None = None
        if pre is not None:  # memory-mapped adjacency: nothing is read here
            for name in _CSR_ARRAYS:
                setattr(self, name, pre[name])
            self._key = pre.get("key")
        else:
            if self.triples.size and (self.triples[:, [0, 2]].max() >= E or self.triples.min() < 0):
                raise ValueError("triple refers to an entity index out of range")
            if self.triples.size and self.triples[:, 1].max() >= self.image_of:
                raise ValueError("triple refers to a relation index out of range")
            self.out_ptr, self.out_idx = _csr(self.triples[:, 0], E)
            self.in_ptr, self.in_idx = _csr(self.triples[:, 2], E)
            self.img_ptr, self.img_idx = _csr(self.image_entity, E)
        self._entity_index: dict[str, int] | None = None
        self._relation_index: dict[str, int] | None = None

    # ------------------------------------------------------------------ sizes and lookups
    @property
    def num_entities(self) -> int:
        return len(self.entity_ids)

    @property
    def num_relations(self) -> int:
        """Number of relation types, including the reserved ``image of``."""
        return len(self.relation_ids)

    @property
    def image_of(self) -> int:
        """Index of the reserved ``image of`` relation (image node -> its entity)."""
        return len(self.relation_ids) - 1

    @property
    def num_triples(self) -> int:
        return int(self.triples.shape[0])

    @property
    def num_images(self) -> int:
        return len(self.image_paths)

    @property
    def memory_mapped(self) -> bool:
        """True when the arrays are memory maps of a graph folder (mmap layout), not in memory."""
        return isinstance(self.out_idx, np.memmap)

    def entity_index(self, entity_id: str) -> int:
        if isinstance(self.entity_ids, StringTable) and self.entity_ids.order is not None:
            i = self.entity_ids.find(entity_id)  # binary search: no dict of millions of ids
            if i < 0:
                raise KeyError(f"unknown entity id {entity_id!r}")
            return i
        if self._entity_index is None:
            self._entity_index = {e: i for i, e in enumerate(self.entity_ids)}
        try:
            return self._entity_index[entity_id]
        except KeyError:
            raise KeyError(f"unknown entity id {entity_id!r}") from None

    def has_entity(self, entity_id: str) -> bool:
        try:
            self.entity_index(entity_id)
            return True
        except KeyError:
            return False

    def relation_index(self, relation_id: str) -> int:
        if self._relation_index is None:
            self._relation_index = {r: i for i, r in enumerate(self.relation_ids)}
        try:
            return self._relation_index[relation_id]
        except KeyError:
            raise KeyError(f"unknown relation id {relation_id!r}") from None

    def out_triples(self, entity: int) -> np.ndarray:
        """Triple ids whose head is ``entity``."""
        return self.out_idx[self.out_ptr[entity] : self.out_ptr[entity + 1]]

    def in_triples(self, entity: int) -> np.ndarray:
        """Triple ids whose tail is ``entity``."""
        return self.in_idx[self.in_ptr[entity] : self.in_ptr[entity + 1]]

    def incident_triples(self, entities: np.ndarray) -> np.ndarray:
        """Unique ids of all triples touching any of ``entities`` (both directions), vectorised."""
        entities = np.asarray(entities, dtype=np.int64)
        if entities.size == 0:
            return np.zeros(0, dtype=np.int64)
        parts = []
        for ptr, idx in ((self.out_ptr, self.out_idx), (self.in_ptr, self.in_idx)):
            starts, ends = ptr[entities], ptr[entities + 1]
            lens = ends - starts
            total = int(lens.sum())
            if total == 0:
                continue
            # positions = concatenation of ranges [starts[i], ends[i]) without a Python loop
            offs = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
            parts.append(idx[offs])
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(parts))

    def images_of(self, entity: int) -> np.ndarray:
        """Image indices owned by ``entity``."""
        return self.img_idx[self.img_ptr[entity] : self.img_ptr[entity + 1]]

    # ------------------------------------------------------------------ image stand-ins
    @property
    def image_standin(self) -> str | None:
        """``"description"`` when the graph's images are text stand-ins (:meth:`with_image_standins`)."""
        return self.meta.get("image_standin")

    def with_image_standins(self, kind: str = "description") -> "MMKG":
        """A copy whose images are *text stand-ins*: one per entity, in entity order, replacing any
        real images (their features could not share one table with the stand-ins' text vectors).

        For graphs whose images are not obtainable (MarKG's 76,424 are not, here): the index embeds
        each stand-in with the *text* encoder from :meth:`image_standin_texts`, so every entity gets
        an image node and the paper's alignment loss (Eq. 6: an image node against its text entity)
        has anchors. The stand-in is the entity's description, a second view of the entity that is
        not its name (the entity node's text); an entity without a description gets its name.
        """
        if kind != "description":
            raise ValueError(f"image stand-in kind must be 'description', not {kind!r}")
        return replace(self, image_paths=[f"standin:{kind}:{e}" for e in self.entity_ids],
                       image_entity=np.arange(self.num_entities, dtype=np.int64),
                       meta={**self.meta, "image_standin": kind, "real_images_replaced": self.num_images})

    def image_standin_text(self, image: int) -> str:
        """The text a stand-in image is embedded from: its entity's description (or name)."""
        if self.image_standin is None:
            raise ValueError("this graph's images are real images, not text stand-ins")
        e = int(self.image_entity[image])
        return self.entity_descriptions[e] or self.entity_names[e]

    def image_standin_texts(self) -> list[str]:
        """:meth:`image_standin_text` of every image, in image order."""
        return [self.image_standin_text(i) for i in range(self.num_images)]

    def degree(self) -> np.ndarray:
        return (self.out_ptr[1:] - self.out_ptr[:-1]) + (self.in_ptr[1:] - self.in_ptr[:-1])

    def verbalise(self, triple_id: int) -> str:
        """``"head relation tail"`` with names: the text a triple is embedded and shown as."""
        h, r, t = self.triples[triple_id]
        return f"{self.entity_names[h]} {self.relation_names[r]} {self.entity_names[t]}"

    def verbalise_all(self) -> list[str]:
        n, r = self.entity_names, self.relation_names
        return [f"{n[h]} {r[rel]} {n[t]}" for h, rel, t in self.triples.tolist()]

    def entity_texts(self, with_description: bool = False) -> list[str]:
        """Entity text used for entity-node embeddings: the name, optionally ``name: description``."""
        if not with_description:
            return list(self.entity_names)
        return [f"{n}: {d}" if d else n for n, d in zip(self.entity_names, self.entity_descriptions)]

    def stats(self) -> dict:
        deg = self.degree()
        with_img = int((np.diff(self.img_ptr) > 0).sum())
        return {
            "entities": self.num_entities,
            "relations": self.num_relations - 1,
            "triples": self.num_triples,
            "images": self.num_images,
            "entities_with_images": with_img,
            "entities_in_triples": int((deg > 0).sum()),
            "relations_in_triples": int(np.unique(self.triples[:, 1]).size) if self.num_triples else 0,
            "mean_degree": float(deg[deg > 0].mean()) if (deg > 0).any() else 0.0,
            "max_degree": int(deg.max()) if deg.size else 0,
        }

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_records(
        cls,
        entities: list[tuple[str, str, str]],
        relations: list[tuple[str, str]],
        triples: list[tuple[str, str, str]],
        images: list[tuple[str, str]] = (),
        meta: dict | None = None,
    ) -> "MMKG":
        """Build from id-keyed records: entities (id, name, description), relations (id, name),
        triples (head id, relation id, tail id), images (entity id, path)."""
        eidx = {e[0]: i for i, e in enumerate(entities)}
        ridx = {r[0]: i for i, r in enumerate(relations)}
        if len(eidx) != len(entities):
            raise ValueError("duplicate entity ids")
        if len(ridx) != len(relations):
            raise ValueError("duplicate relation ids")
        arr = np.array([(eidx[h], ridx[r], eidx[t]) for h, r, t in triples], dtype=np.int64).reshape(-1, 3)
        return cls(
            entity_ids=[e[0] for e in entities],
            entity_names=[e[1] for e in entities],
            entity_descriptions=[e[2] for e in entities],
            relation_ids=[r[0] for r in relations],
            relation_names=[r[1] for r in relations],
            triples=arr,
            image_paths=[p for _, p in images],
            image_entity=np.array([eidx[e] for e, _ in images], dtype=np.int64),
            meta=dict(meta or {}),
        )

    # ------------------------------------------------------------------ content key
    def content_key(self) -> str:
        """Hash of everything an index depends on (names, triples, image paths); see ``kg.index.graph_key``.

        A graph loaded from the mmap layout returns the key stored at save time instead of reading
        the whole graph again; an in-memory graph computes it on every call (it may have been edited).
        """
        if self._key is not None:
            return self._key
        trip = np.ascontiguousarray(self.triples, dtype=np.int64)
        texts = itertools.chain(
            [str(trip.shape), sha256_bytes(trip.tobytes())], self.entity_names, self.entity_descriptions,
            self.relation_names, self.image_paths, (str(x) for x in np.asarray(self.image_entity).tolist()))
        return sha256_texts(texts, salt="mrmkg-graph")

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, layout: str = "auto") -> None:
        """Write the graph folder (module docstring): each file atomically, ``checksums.json`` last.

        ``layout``: ``"npz"`` (format 1: ``graph.json`` + ``graph.npz``), ``"mmap"`` (format 2: one ``.npy``
        file per array, opened as memory maps by :meth:`load`), or ``"auto"`` (mmap from
        :data:`MMAP_MIN_TRIPLES` triples on). Files of the other layout left in the folder are removed.
        """
        if layout not in LAYOUT_CHOICES:
            raise InputError(f"graph layout must be one of {LAYOUT_CHOICES}, not {layout!r}")
        if layout == "auto":
            layout = "mmap" if self.num_triples >= MMAP_MIN_TRIPLES else "npz"
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if layout == "mmap":
            names = self._save_mmap(d)
        else:
            tmp = d / ".graph.npz.tmp.npz"
            np.savez(tmp, triples=self.triples, image_entity=self.image_entity)
            tmp.replace(d / "graph.npz")
            atomic_write_json(
                d / "graph.json",
                {
                    "format_version": NPZ_VERSION,
                    "meta": self.meta,
                    "entity_ids": list(self.entity_ids),
                    "entity_names": list(self.entity_names),
                    "entity_descriptions": list(self.entity_descriptions),
                    "relation_ids": self.relation_ids,
                    "relation_names": self.relation_names,
                    "image_paths": list(self.image_paths),
                },
                indent=None,
            )
            names = list(_NPZ_FILES)
        for stale in set(_NPZ_FILES) | set(_mmap_files()):
            if stale not in names and (d / stale).is_file():
                (d / stale).unlink()
        write_checksums(d, names, kind="graph")

    def _save_mmap(self, d: Path) -> list[str]:
        arrays = {"triples": self.triples, "image_entity": self.image_entity,
                  **{name: getattr(self, name) for name in _CSR_ARRAYS}}
        for key in _STRING_LISTS:
            values = getattr(self, key)
            table = values if isinstance(values, StringTable) and (key != "entity_ids" or values.order is not None) \
                else StringTable.from_strings(values, with_order=key == "entity_ids")
            if key == "entity_ids" and len(set(table)) != len(table):
                raise ValueError("duplicate entity ids")
            arrays[f"{key}.utf8"], arrays[f"{key}.offsets"] = table.data, table.offsets
            if key == "entity_ids":
                arrays["entity_ids.order"] = table.order
        for name, arr in arrays.items():
            dtype = np.uint8 if name.endswith(".utf8") else np.int64
            tmp = d / f".{name}.tmp.npy"
            np.save(tmp, np.ascontiguousarray(arr, dtype=dtype), allow_pickle=False)
            os.replace(tmp, d / f"{name}.npy")
        atomic_write_json(d / "graph.json", {
            "format_version": MMAP_VERSION, "layout": "mmap", "meta": self.meta,
            "relation_ids": self.relation_ids, "relation_names": self.relation_names,
            "counts": {"entities": self.num_entities, "triples": self.num_triples, "images": self.num_images},
            "graph_key": self.content_key(),
        }, indent=None)
        return _mmap_files()

    @classmethod
    def load(cls, directory: str | Path) -> "MMKG":
        """Open a folder written by :meth:`save`, verifying it (:mod:`mrmkg.kg.manifest`).

        Checked: ``checksums.json`` (sizes of all files; SHA-256 of the files read in full, i.e. all of the
        npz layout and ``graph.json`` of the mmap layout; a folder without one loads with an
        :class:`~mrmkg.kg.manifest.UnverifiedArtifactWarning`), then the content: JSON types and
        required keys, one name and description per entity id, unique ids, integer arrays
        ``triples [T, 3]`` and ``image_entity [I]`` (``I`` = number of image paths) with every index in
        range. For the mmap layout the ``.npy`` headers, dtypes, shapes and the arrays' first and last
        values are checked; ranges, uniqueness and hashes only under ``MRMKG_VERIFY_ALL=1`` (they would
        read the whole graph). When the folder holds an index, its ``index/checksums.json`` sizes and its
        ``index/manifest.json`` structure are checked too (cheap; :meth:`KGIndex.load` checks the rest).
        Any mismatch raises :class:`~mrmkg.kg.manifest.DamagedArtifactError` (an ``InputError``).
        """
        d = Path(directory)
        if not (d / "graph.json").is_file() and not (d / "graph.npz").is_file() and not (d / CHECKSUMS).is_file():
            raise InputError("not a built graph folder (expected graph.json and graph.npz; "
                             "make one with `mrmkg kg build`)", path=d)
        if not verify_checksums(d, d, hashed=lambda name: not name.endswith(".npy")):
            warn_unverified(d, "graph folder")
        if not (d / "graph.json").is_file():
            raise DamagedArtifactError(d, "graph.json", "missing")
        j = read_json(d / "graph.json", d)
        if not isinstance(j, dict):
            raise DamagedArtifactError(d, "graph.json", f"a JSON {type(j).__name__}, expected an object")
        if j.get("format_version") == MMAP_VERSION:
            return cls._load_mmap(d, j)
        if j.get("format_version") != NPZ_VERSION:
            raise InputError(f"graph format version {j.get('format_version')!r} is not {NPZ_VERSION} or "
                             f"{MMAP_VERSION}; rebuild it with `mrmkg kg build`", path=d / "graph.json")
        if not (d / "graph.npz").is_file():
            raise DamagedArtifactError(d, "graph.npz", "missing")
        lists = {k: _string_list(d, j, k) for k in ("entity_ids", "entity_names", "entity_descriptions",
                                                     "relation_ids", "relation_names", "image_paths")}
        meta = _check_meta(d, j.get("meta", {}))
        E, R = len(lists["entity_ids"]), len(lists["relation_ids"])
        for k in ("entity_names", "entity_descriptions"):
            if len(lists[k]) != E:
                raise DamagedArtifactError(d, "graph.json", f"{len(lists[k])} {k} for {E} entity_ids")
        _check_relations(d, lists)
        if len(set(lists["entity_ids"])) != E:
            raise DamagedArtifactError(d, "graph.json", "entity_ids has duplicates")
        triples, image_entity = _load_arrays(d)
        _check_triples(d, "graph.npz", triples, image_entity, len(lists["image_paths"]), E, R)
        if (d / "index").is_dir():
            _check_index_folder(d)
        return cls(triples=triples, image_entity=image_entity, meta=meta, **lists)

    @classmethod
    def _load_mmap(cls, d: Path, j: dict) -> "MMKG":
        """The mmap layout (format 2): headers and boundary values only; see :meth:`load`."""
        if j.get("layout") != "mmap":
            raise DamagedArtifactError(d, "graph.json", f"format 2 with layout {j.get('layout')!r}, expected 'mmap'")
        lists = {k: _string_list(d, j, k) for k in ("relation_ids", "relation_names")}
        _check_relations(d, lists)
        meta = _check_meta(d, j.get("meta", {}))
        counts = require(d, "graph.json", j, "counts", (dict,), "an object")
        E, T, I = (require(d, "graph.json", counts, k, (int,), "a count") for k in ("entities", "triples", "images"))
        key = require(d, "graph.json", j, "graph_key", (str,))
        R = len(lists["relation_ids"])

        def arr(name: str, shape: tuple, dtype=np.int64) -> np.ndarray:
            a = load_npy(d / f"{name}.npy", d)  # header, dtype and exact byte length checked; memory-mapped
            if a.dtype != dtype or a.shape != shape:
                raise DamagedArtifactError(d, f"{name}.npy", f"{a.dtype} {list(a.shape)}, expected "
                                                             f"{np.dtype(dtype)} {list(shape)}")
            return a

        def ptr(name: str, total: int) -> np.ndarray:
            p = arr(name, (E + 1,))
            if int(p[0]) != 0 or int(p[-1]) != total:
                raise DamagedArtifactError(d, f"{name}.npy", f"runs from {int(p[0])} to {int(p[-1])}, expected 0 to "
                                                             f"{total}")
            return p

        triples = arr("triples", (T, 3))
        image_entity = arr("image_entity", (I,))
        csr = {"out_ptr": ptr("out_ptr", T), "out_idx": arr("out_idx", (T,)), "in_ptr": ptr("in_ptr", T),
               "in_idx": arr("in_idx", (T,)), "img_ptr": ptr("img_ptr", I), "img_idx": arr("img_idx", (I,)),
               "key": key}
        tables = {}
        for name, n in (("entity_ids", E), ("entity_names", E), ("entity_descriptions", E), ("image_paths", I)):
            offsets = arr(f"{name}.offsets", (n + 1,))
            data = load_npy(d / f"{name}.utf8.npy", d)
            if data.dtype != np.uint8 or data.ndim != 1 or int(offsets[0]) != 0 or int(offsets[-1]) != data.shape[0]:
                raise DamagedArtifactError(d, f"{name}.utf8.npy", f"{data.dtype} {list(data.shape)}, its offsets "
                                                                  f"run from {int(offsets[0])} to {int(offsets[-1])}")
            order = arr("entity_ids.order", (E,)) if name == "entity_ids" else None
            tables[name] = StringTable(data, offsets, order)
        if verify_all():  # everything the npz layout checks on every load
            _check_triples(d, "triples.npy", np.asarray(triples), np.asarray(image_entity), I, E, R)
            for name in _CSR_ARRAYS:
                a = np.asarray(csr[name])
                if (name.endswith("_ptr") and (np.diff(a) < 0).any()) or (
                        name.endswith("_idx") and a.size and (a.min() < 0 or a.max() >= (I if name == "img_idx" else T))):
                    raise DamagedArtifactError(d, f"{name}.npy", "out of range or not sorted")
            for name, t in tables.items():
                if (np.diff(np.asarray(t.offsets)) < 0).any():
                    raise DamagedArtifactError(d, f"{name}.offsets.npy", "offsets decrease")
                try:
                    decoded = list(t)
                except UnicodeDecodeError as e:
                    raise DamagedArtifactError(d, f"{name}.utf8.npy", f"not UTF-8: {e.reason}") from None
                if name == "entity_ids" and len(set(decoded)) != E:
                    raise DamagedArtifactError(d, "entity_ids.utf8.npy", "entity_ids has duplicates")
        if (d / "index").is_dir():
            _check_index_folder(d)
        return cls(triples=triples, image_entity=image_entity, meta=meta, csr=csr, **lists, **tables)


def _check_relations(d: Path, lists: dict) -> None:
    R = len(lists["relation_ids"])
    if len(lists["relation_names"]) != R:
        raise DamagedArtifactError(d, "graph.json", f"{len(lists['relation_names'])} relation_names for "
                                                    f"{R} relation_ids")
    if not R or lists["relation_ids"][-1] != IMAGE_OF_ID:
        raise DamagedArtifactError(d, "graph.json", f"relation_ids must end with the reserved {IMAGE_OF_ID!r}")
    if len(set(lists["relation_ids"])) != R:
        raise DamagedArtifactError(d, "graph.json", "relation_ids has duplicates")


def _check_triples(d: Path, rel: str, triples: np.ndarray, image_entity: np.ndarray, I: int, E: int, R: int) -> None:
    if triples.ndim != 2 or triples.shape[1] != 3:
        raise DamagedArtifactError(d, rel, f"triples has shape {list(triples.shape)}, expected [T, 3]")
    if image_entity.ndim != 1 or image_entity.shape[0] != I:
        raise DamagedArtifactError(d, rel, f"image_entity has shape {list(image_entity.shape)}, "
                                           f"expected [{I}] (one per image path)")
    if triples.size and (triples.min() < 0 or triples[:, [0, 2]].max() >= E or triples[:, 1].max() >= R - 1):
        bad = (triples < 0).any(1) | (triples[:, [0, 2]] >= E).any(1) | (triples[:, 1] >= R - 1)
        row = int(np.flatnonzero(bad)[0])
        raise DamagedArtifactError(d, rel, f"triple {row} {triples[row].tolist()} is out of range "
                                           f"({E} entities, {R - 1} relations)")
    if image_entity.size and (image_entity.min() < 0 or image_entity.max() >= E):
        raise DamagedArtifactError(d, rel, f"image_entity refers to an entity out of range ({E} entities)")


def _string_list(d: Path, j: dict, key: str) -> list[str]:
    v = require(d, "graph.json", j, key, (list,), "a list of strings")
    if not all(isinstance(x, str) for x in v):
        raise DamagedArtifactError(d, "graph.json", f"{key!r} holds a value that is not a string")
    return v


def _check_meta(d: Path, meta) -> dict:
    """``meta`` as ``kg stats`` and the tasks read it: an object, ``load`` an object of counts."""
    if not isinstance(meta, dict):
        raise DamagedArtifactError(d, "graph.json", f"'meta' is {type(meta).__name__}, expected an object")
    load = meta.get("load", {})
    if not isinstance(load, dict) or not isinstance(load.get("lines", {}), dict):
        raise DamagedArtifactError(d, "graph.json", "'meta.load' must be an object with a 'lines' object")
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in load.get("lines", {}).items()):
        raise DamagedArtifactError(d, "graph.json", "'meta.load.lines' must map file names to line counts")
    if meta.get("image_standin") not in (None, "description"):
        raise DamagedArtifactError(d, "graph.json", f"'meta.image_standin' is {meta.get('image_standin')!r}")
    return meta


def _load_arrays(d: Path) -> tuple[np.ndarray, np.ndarray]:
    """``triples`` and ``image_entity`` from ``graph.npz``: integer arrays, nothing pickled."""
    out = []
    try:
        with np.load(d / "graph.npz", allow_pickle=False) as arrays:
            for key in ("triples", "image_entity"):
                if key not in arrays.files:
                    raise DamagedArtifactError(d, "graph.npz", f"no {key!r} array")
                a = arrays[key]
                if a.dtype.kind not in "iu":
                    raise DamagedArtifactError(d, "graph.npz", f"{key} has dtype {a.dtype}, expected int64")
                out.append(a.astype(np.int64, copy=False))
    except DamagedArtifactError:
        raise
    except Exception as e:  # BadZipFile, ValueError, OSError, EOFError, zlib.error, ... from a damaged archive
        raise DamagedArtifactError(d, "graph.npz", f"not a readable .npz archive: {type(e).__name__}: {e}") from None
    return out[0], out[1]


def _check_index_folder(d: Path) -> None:
    """The cheap part of the index check, so that ``kg stats`` never reads a damaged index manifest."""
    idir = d / "index"
    if not verify_checksums(idir, d, hashed=lambda name: name == "manifest.json", full=False):
        if not (idir / "manifest.json").is_file():
            return  # an index folder without a manifest is not an index (KGIndex.load says so)
    check_index_manifest(read_json(idir / "manifest.json", d), d)
