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

On disk (``save``/``load``) a graph is a folder with ``graph.json`` (strings and metadata),
``graph.npz`` (integer arrays) and ``checksums.json`` (their sizes and SHA-256, written last;
:mod:`mrmkg.kg.manifest`); ``load`` verifies both against it and checks their content, and MarKG
still reloads in a few hundredths of a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json
from mrmkg.kg.manifest import (CHECKSUMS, DamagedArtifactError, check_index_manifest, read_json, require,
                               verify_checksums, warn_unverified, write_checksums)

IMAGE_OF = "image of"
IMAGE_OF_ID = "__image_of__"
FORMAT_VERSION = 1


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

    entity_ids: list[str]
    entity_names: list[str]
    entity_descriptions: list[str]
    relation_ids: list[str]  # the last one is always IMAGE_OF_ID
    relation_names: list[str]
    triples: np.ndarray  # int64 [T, 3] (head, relation, tail)
    image_paths: list[str] = field(default_factory=list)
    image_entity: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [I]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.triples = np.asarray(self.triples, dtype=np.int64).reshape(-1, 3)
        self.image_entity = np.asarray(self.image_entity, dtype=np.int64).reshape(-1)
        if not self.relation_ids or self.relation_ids[-1] != IMAGE_OF_ID:
            self.relation_ids = list(self.relation_ids) + [IMAGE_OF_ID]
            self.relation_names = list(self.relation_names) + [IMAGE_OF]
        E = len(self.entity_ids)
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

    def entity_index(self, entity_id: str) -> int:
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

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write ``graph.json`` and ``graph.npz`` into ``directory`` (each file atomically), then
        ``checksums.json`` (:mod:`mrmkg.kg.manifest`) last."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / ".graph.npz.tmp.npz"
        np.savez(tmp, triples=self.triples, image_entity=self.image_entity)
        tmp.replace(d / "graph.npz")
        atomic_write_json(
            d / "graph.json",
            {
                "format_version": FORMAT_VERSION,
                "meta": self.meta,
                "entity_ids": self.entity_ids,
                "entity_names": self.entity_names,
                "entity_descriptions": self.entity_descriptions,
                "relation_ids": self.relation_ids,
                "relation_names": self.relation_names,
                "image_paths": self.image_paths,
            },
            indent=None,
        )
        write_checksums(d, ["graph.json", "graph.npz"], kind="graph")

    @classmethod
    def load(cls, directory: str | Path) -> "MMKG":
        """Open a folder written by :meth:`save`, verifying it (:mod:`mrmkg.kg.manifest`).

        Checked: ``checksums.json`` (sizes and SHA-256 of both files; a folder without one loads with
        an :class:`~mrmkg.kg.manifest.UnverifiedArtifactWarning`), then the content: JSON types and
        required keys, one name and description per entity id, unique ids, integer arrays
        ``triples [T, 3]`` and ``image_entity [I]`` (``I`` = number of image paths) with every index in
        range. When the folder holds an index, its ``index/checksums.json`` sizes and its
        ``index/manifest.json`` structure are checked too (cheap; :meth:`KGIndex.load` checks the rest).
        Any mismatch raises :class:`~mrmkg.kg.manifest.DamagedArtifactError` (an ``InputError``).
        """
        d = Path(directory)
        if not (d / "graph.json").is_file() and not (d / "graph.npz").is_file() and not (d / CHECKSUMS).is_file():
            raise InputError("not a built graph folder (expected graph.json and graph.npz; "
                             "make one with `mrmkg kg build`)", path=d)
        if not verify_checksums(d, d, hashed=lambda name: True):
            warn_unverified(d, "graph folder")
        for name in ("graph.json", "graph.npz"):
            if not (d / name).is_file():
                raise DamagedArtifactError(d, name, "missing")
        j = read_json(d / "graph.json", d)
        if not isinstance(j, dict):
            raise DamagedArtifactError(d, "graph.json", f"a JSON {type(j).__name__}, expected an object")
        if j.get("format_version") != FORMAT_VERSION:
            raise InputError(f"graph format version {j.get('format_version')!r} is not {FORMAT_VERSION}; "
                             "rebuild it with `mrmkg kg build`", path=d / "graph.json")
        lists = {k: _string_list(d, j, k) for k in ("entity_ids", "entity_names", "entity_descriptions",
                                                     "relation_ids", "relation_names", "image_paths")}
        meta = _check_meta(d, j.get("meta", {}))
        E, R = len(lists["entity_ids"]), len(lists["relation_ids"])
        for k in ("entity_names", "entity_descriptions"):
            if len(lists[k]) != E:
                raise DamagedArtifactError(d, "graph.json", f"{len(lists[k])} {k} for {E} entity_ids")
        if len(lists["relation_names"]) != R:
            raise DamagedArtifactError(d, "graph.json", f"{len(lists['relation_names'])} relation_names for "
                                                        f"{R} relation_ids")
        if not R or lists["relation_ids"][-1] != IMAGE_OF_ID:
            raise DamagedArtifactError(d, "graph.json", f"relation_ids must end with the reserved {IMAGE_OF_ID!r}")
        for k in ("entity_ids", "relation_ids"):
            if len(set(lists[k])) != len(lists[k]):
                raise DamagedArtifactError(d, "graph.json", f"{k} has duplicates")
        triples, image_entity = _load_arrays(d)
        if triples.ndim != 2 or triples.shape[1] != 3:
            raise DamagedArtifactError(d, "graph.npz", f"triples has shape {list(triples.shape)}, expected [T, 3]")
        if image_entity.ndim != 1 or image_entity.shape[0] != len(lists["image_paths"]):
            raise DamagedArtifactError(d, "graph.npz", f"image_entity has shape {list(image_entity.shape)}, "
                                                       f"expected [{len(lists['image_paths'])}] (one per image path)")
        if triples.size and (triples.min() < 0 or triples[:, [0, 2]].max() >= E or triples[:, 1].max() >= R - 1):
            bad = (triples < 0).any(1) | (triples[:, [0, 2]] >= E).any(1) | (triples[:, 1] >= R - 1)
            row = int(np.flatnonzero(bad)[0])
            raise DamagedArtifactError(d, "graph.npz", f"triple {row} {triples[row].tolist()} is out of range "
                                                       f"({E} entities, {R - 1} relations)")
        if image_entity.size and (image_entity.min() < 0 or image_entity.max() >= E):
            raise DamagedArtifactError(d, "graph.npz", f"image_entity refers to an entity out of range ({E} entities)")
        if (d / "index").is_dir():
            _check_index_folder(d)
        return cls(triples=triples, image_entity=image_entity, meta=meta, **lists)


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
