"""MR-MKG subgraph retrieval (paper Appendix A.6; paper-notes §2).

For a query (text, image, or both):

1. **Seeds.** A text query is embedded by the index's text encoder and the top-``n`` triples by
   cosine are found in the triple index; their heads and tails are the seed entities ``E'``.
   An image query is embedded by the index's vision encoder and the ``image_k`` nearest entity
   images are found in the image index; their entities join the seeds. This needs no shared
   text-image space: images are only compared with images.
2. **Expansion.** All triples incident to a seed, in both directions (one hop; ``hops > 1``
   repeats the expansion from the newly reached entities), via the graph's CSR adjacency.
3. **Re-rank.** Every candidate triple is scored against the query and the top-``N`` are kept
   (ties broken by the smaller triple id, so results are deterministic).
4. The kept triples, the seeds and up to ``images_per_entity`` image nodes per entity form a
   :class:`~mrmkg.kg.subgraph.Subgraph` whose ``edge_score`` holds each triple's score.

Scores (``image_scoring`` chooses how an image query scores a triple):

* text query: ``s_t(τ) = cos(q_text, triple_emb[τ])``.
* image query, ``image_scoring="entity"`` (default; works for any pair of encoders):
  ``s_v(τ) = max(a(head), a(tail))`` where ``a(e) = max(0, max_i cos(q_image, image_emb[i]))``
  over the images ``i`` of entity ``e`` (0 for an entity without images). A triple is thus as
  relevant as its best-matching entity's picture.
* image query, ``image_scoring="shared"`` (text and image encoders share one space, e.g. both
  towers of one CLIP): ``s_v(τ) = cos(q_image, triple_emb[τ])`` and the image query also seeds
  through the triple index like a text query.
* both: ``(1 - image_weight) * s_t + image_weight * s_v``.

Nothing matched: with ``min_score`` set, first-stage hits and candidates scoring below it are
dropped. If no seed survives the result is ``Subgraph.empty(query)``; if seeds survive but no
candidate triple does, the result holds the seed nodes (and their images) and no triples.
Either way ``subgraph.triple_ids.size == 0``: callers that need triples (the CLI) report it as an
error. An empty query (no text, or only whitespace, and no image) raises :class:`InputError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.index import KGIndex, graph_key
from mrmkg.kg.subgraph import Subgraph

IMAGE_SCORING_CHOICES = ("entity", "shared")


@dataclass
class RetrievalConfig:
    """Parameters of A.6 retrieval. Paper: N = 10 or 20, one hop; n is not given (we use 10)."""

    n: int = field(default=10, metadata={"help": "first stage: top-n triples whose entities become seeds"})
    N: int = field(default=10, metadata={"help": "triples kept after re-ranking the expanded candidates"})
    hops: int = field(default=1, metadata={"help": "expansion hops from the seed entities (paper: 1)"})
    images_per_entity: int = field(default=1, metadata={
        "help": "image nodes attached to each subgraph entity (linked by 'image of'); 0 = none"})
    image_k: int = field(default=5, metadata={
        "help": "an image query adds the entities of its image_k nearest entity images to the seeds"})
    min_score: float | None = field(default=None, metadata={
        "help": "drop first-stage hits and candidate triples scoring below this (None = keep all)"})
    image_scoring: str = field(default="entity", metadata={
        "help": "how an image query scores triples: 'entity' (best image similarity of the triple's "
                "head/tail entity) or 'shared' (cosine to the triple text; needs one text-image space)"})
    image_weight: float = field(default=0.5, metadata={
        "help": "weight of the image score when a query has both text and image"})
    shortlist: int = field(default=2, metadata={
        "help": "compressed (ivfpq) index only: score the expanded candidates from their PQ codes and re-score "
                "only the best shortlist x N exactly against the stored vectors (10M synthetic triples: top-N "
                "agreement with the all-exact re-rank 0.87-0.89 / 0.995-0.996 / 1.000 at 1 / 2 / 4); 0 = every candidate exactly"})

    def __post_init__(self) -> None:
        for name in ("n", "N", "hops"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"RetrievalConfig.{name} must be >= 1, not {getattr(self, name)!r}")
        for name in ("images_per_entity", "image_k", "shortlist"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"RetrievalConfig.{name} must be >= 0, not {getattr(self, name)!r}")
        if self.image_scoring not in IMAGE_SCORING_CHOICES:
            raise InputError(f"RetrievalConfig.image_scoring must be one of {IMAGE_SCORING_CHOICES}, "
                             f"not {self.image_scoring!r}")
        if not 0.0 <= float(self.image_weight) <= 1.0:
            raise InputError(f"RetrievalConfig.image_weight must be in [0, 1], not {self.image_weight!r}")


def open_graph(directory: str | Path) -> tuple[MMKG, KGIndex]:
    """Load a built graph folder and its index, checking that the index belongs to the graph."""
    kg = MMKG.load(directory)
    index = KGIndex.load(directory)
    if index.manifest.get("graph_key") not in (None, graph_key(kg)):
        raise InputError("the index was built for a different graph; rebuild it with `mrmkg kg build`",
                         path=Path(directory) / "index")
    return kg, index


def _ranges(ptr: np.ndarray, idx: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR gather: (values, owner position in ``keys``) for all rows ``keys``, without a Python loop."""
    starts, lens = ptr[keys], ptr[keys + 1] - ptr[keys]
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    offs = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
    return idx[offs], np.repeat(np.arange(len(keys)), lens)


def expand(kg: MMKG, seeds: np.ndarray, hops: int = 1) -> np.ndarray:
    """Sorted unique ids of the triples within ``hops`` hops of ``seeds`` (both directions)."""
    seeds = np.unique(np.asarray(seeds, dtype=np.int64))
    cands = kg.incident_triples(seeds)
    visited, frontier = seeds, seeds
    for _ in range(hops - 1):
        ends = np.unique(kg.triples[cands][:, [0, 2]])
        frontier = np.setdiff1d(ends, visited, assume_unique=True)
        if frontier.size == 0:
            break
        visited = np.union1d(visited, frontier)
        cands = np.union1d(cands, kg.incident_triples(frontier))
    return cands


def top_n_sorted(ids: np.ndarray, scores: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``N`` best (id, score) pairs, score descending, ties by smaller id."""
    if ids.size > N:
        # keep everything tied with the N-th best score, so the id tie rule below stays exact
        kth = np.partition(scores, ids.size - N)[ids.size - N]
        keep = scores >= kth
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:N]
    return ids[order], scores[order]


def _first_seen_unique(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x.astype(np.int64)
    _, first = np.unique(x, return_index=True)
    return x[np.sort(first)].astype(np.int64)


class Retriever:
    """Retrieves A.6 subgraphs from ``kg`` with ``index`` (see the module docstring).

    Encoders default to the registry encoders named in ``index.manifest`` and are loaded on
    first use; passing encoders whose ``name`` differs from the ones the index was built with
    raises :class:`InputError` (their vectors would not be comparable).
    """

    def __init__(self, kg: MMKG, index: KGIndex, config: RetrievalConfig | None = None,
                 text_encoder=None, vision_encoder=None):
        if index.num_triples != kg.num_triples:
            raise InputError(f"index has {index.num_triples} triples but the graph has {kg.num_triples}; "
                             "rebuild the index")
        self.kg, self.index = kg, index
        self.config = config or RetrievalConfig()
        self._text_encoder, self._vision_encoder = text_encoder, vision_encoder
        if text_encoder is not None:
            self._check_encoder(text_encoder, "text")
        if vision_encoder is not None:
            self._check_encoder(vision_encoder, "vision")
        if self.config.image_scoring == "shared" and index.image_dim not in (0, index.text_dim):
            raise InputError(f"image_scoring='shared' needs one text-image space, but the index has text dim "
                             f"{index.text_dim} and image dim {index.image_dim}")

    # ------------------------------------------------------------------ encoders
    def _check_encoder(self, encoder, kind: str) -> None:
        want = self.index.manifest.get(f"{kind}_encoder_id")
        if want is not None and encoder.name != want:
            raise InputError(f"the index was built with {kind} encoder {want!r}, not {encoder.name!r}")

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from mrmkg.encoders.registry import get_text_encoder

            self._text_encoder = get_text_encoder(self.index.manifest["text_encoder"])
            self._check_encoder(self._text_encoder, "text")
        return self._text_encoder

    @property
    def vision_encoder(self):
        if self._vision_encoder is None:
            name = self.index.manifest.get("vision_encoder")
            if not name:
                raise InputError("this index was built without a vision encoder (the graph has no images), "
                                 "so it cannot answer an image query")
            from mrmkg.encoders.registry import get_vision_encoder

            self._vision_encoder = get_vision_encoder(name)
            self._check_encoder(self._vision_encoder, "vision")
        return self._vision_encoder

    # ------------------------------------------------------------------ public API
    def retrieve(self, text: str | None = None, image=None) -> Subgraph:
        """One query: ``text`` (str), ``image`` (path or PIL image), or both."""
        return self.retrieve_batch([text], [image])[0]

    def retrieve_batch(self, texts: Sequence[str | None] | None, images: Sequence | None = None) -> list[Subgraph]:
        """Many queries: text and image queries are each encoded in one call and searched in one
        FAISS call; ``texts[i]`` / ``images[i]`` may be None (or ``images`` None) for a missing part."""
        if texts is None and images is None:
            raise InputError("empty query batch: give texts, images, or both")
        B = len(texts) if texts is not None else len(images)
        texts = list(texts) if texts is not None else [None] * B
        images = list(images) if images is not None else [None] * B
        if len(texts) != len(images):
            raise InputError(f"{len(texts)} texts but {len(images)} images; give one of each per query "
                             "(None for a missing part)")
        texts = [t if (t is not None and str(t).strip()) else None for t in texts]
        for i, (t, im) in enumerate(zip(texts, images)):
            if t is None and im is None:
                raise InputError(f"empty query (#{i}): give a question text, an image, or both")
        ti = [i for i, t in enumerate(texts) if t is not None]
        vi = [i for i, im in enumerate(images) if im is not None]
        qt: list = [None] * B
        qv: list = [None] * B
        if ti:
            enc = self.text_encoder.encode([texts[i] for i in ti])
            for row, i in enumerate(ti):
                qt[i] = enc[row]
        if vi:
            enc = self.vision_encoder.encode([images[i] for i in vi])
            for row, i in enumerate(vi):
                qv[i] = enc[row]
        queries = []
        for t, im in zip(texts, images):
            parts = ([t] if t is not None else []) + ([f"[image: {_image_label(im)}]"] if im is not None else [])
            queries.append(" ".join(parts))
        return self.retrieve_vectors_batch(qt, qv, queries)

    def retrieve_vectors(self, text_vec: np.ndarray | None = None, image_vec: np.ndarray | None = None,
                         query: str = "") -> Subgraph:
        """One query from precomputed vectors: ``text_vec`` ``[d_t]`` and/or ``image_vec`` ``[d_v]``."""
        return self.retrieve_vectors_batch([text_vec], [image_vec], [query])[0]

    def retrieve_vectors_batch(self, text_vecs: Sequence[np.ndarray | None],
                               image_vecs: Sequence[np.ndarray | None] | None = None,
                               queries: Sequence[str] | None = None) -> list[Subgraph]:
        """Many queries from vectors (rows may be None); one FAISS call per modality."""
        B = len(text_vecs)
        image_vecs = list(image_vecs) if image_vecs is not None else [None] * B
        queries = list(queries) if queries is not None else [""] * B
        if len(image_vecs) != B or len(queries) != B:
            raise InputError("text_vecs, image_vecs and queries must have the same length")
        cfg, idx = self.config, self.index
        qt = [None if v is None else _unit(v, idx.text_dim, "text") for v in text_vecs]
        qv = [None if v is None else _unit(v, idx.image_dim, "image") for v in image_vecs]
        for i in range(B):
            if qt[i] is None and qv[i] is None:
                raise InputError(f"empty query (#{i}): give a text vector, an image vector, or both")

        # first stage, one FAISS call per modality
        ti = [i for i in range(B) if qt[i] is not None]
        vi = [i for i in range(B) if qv[i] is not None]
        hits_t: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        hits_vt: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        hits_vi: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if ti:
            s, ids = idx.search_triples(np.stack([qt[i] for i in ti]), cfg.n)
            hits_t = {i: (s[r], ids[r]) for r, i in enumerate(ti)}
        if vi:
            Q = np.stack([qv[i] for i in vi])
            if cfg.image_k > 0 and idx.num_images:
                s, ids = idx.search_images(Q, cfg.image_k)
                hits_vi = {i: (s[r], ids[r]) for r, i in enumerate(vi)}
            if cfg.image_scoring == "shared":
                s, ids = idx.search_triples(Q, cfg.n)
                hits_vt = {i: (s[r], ids[r]) for r, i in enumerate(vi)}
        return [self._assemble(qt[i], qv[i], hits_t.get(i), hits_vt.get(i), hits_vi.get(i), queries[i])
                for i in range(B)]

    # ------------------------------------------------------------------ internals
    def _assemble(self, qt, qv, hit_t, hit_vt, hit_vi, query: str) -> Subgraph:
        cfg, kg = self.config, self.kg
        seed_parts = []
        for hit in (hit_t, hit_vt):
            if hit is not None:
                s, ids = hit
                ok = ids >= 0  # FAISS pads with -1 when fewer than k results exist
                if cfg.min_score is not None:
                    ok &= s >= cfg.min_score
                seed_parts.append(kg.triples[ids[ok]][:, [0, 2]].reshape(-1))
        if hit_vi is not None:
            s, ids = hit_vi
            ok = ids >= 0
            if cfg.min_score is not None:
                ok &= s >= cfg.min_score
            seed_parts.append(kg.image_entity[ids[ok]])
        seeds = _first_seen_unique(np.concatenate(seed_parts)) if seed_parts else np.zeros(0, np.int64)
        if seeds.size == 0:
            return Subgraph.empty(query)

        cands = expand(kg, seeds, cfg.hops)
        cands = self._shortlist(cands, qt, qv)
        scores = self._score(cands, qt, qv)
        if cfg.min_score is not None:
            keep = scores >= cfg.min_score
            cands, scores = cands[keep], scores[keep]
        ids, scores = top_n_sorted(cands, scores, cfg.N)
        return Subgraph.from_triples(kg, ids, scores, seeds, query, cfg.images_per_entity)

    def _shortlist(self, cands: np.ndarray, qt, qv) -> np.ndarray:
        """On a compressed (IVF-PQ) index, the ``shortlist * N`` candidates with the best scores computed
        from their PQ codes, ascending ids; otherwise ``cands`` unchanged.

        Exact scores need each candidate's float row, read from disk for an out-of-core index (at 10M
        triples ~400 candidates a query, 30-200 us a row unless the page cache holds it); PQ codes are
        decoded from the memory-mapped inverted lists (~1.2 ms for 400). The shortlist is
        ranked by the same score as the final re-rank (text part from the codes), so the result differs
        from scoring every candidate exactly only when a triple's PQ error moves it from the exact top
        ``N`` to below the ``shortlist * N``-th PQ score (benchmarks/scale.py measures how often).
        """
        keep = self.config.shortlist * self.config.N
        if keep == 0 or cands.size <= keep or not self.index.compressed:
            return cands
        return np.sort(top_n_sorted(cands, self._score(cands, qt, qv, approx=True), keep)[0])

    def _score(self, cands: np.ndarray, qt, qv, approx: bool = False) -> np.ndarray:
        """Scores ``[len(cands)]`` float32 of candidate triples for the query (module docstring); with
        ``approx`` the triple-text cosines come from PQ codes (:meth:`KGIndex.pq_scores`)."""
        if cands.size == 0:
            return np.zeros(0, np.float32)
        cfg, idx = self.config, self.index
        if approx:
            def dot(q):
                return idx.pq_scores(cands, q)
        elif qt is not None or cfg.image_scoring == "shared":
            emb = idx.rows(idx.triple_emb, cands)  # gather from the memory-mapped file: [c, d_t]

            def dot(q):
                return emb @ q
        s_t = dot(qt) if qt is not None else None
        if qv is None:
            return s_t.astype(np.float32, copy=False)
        if cfg.image_scoring == "shared":
            s_v = dot(qv)
        else:
            s_v = self._entity_image_triple_scores(cands, qv)
        if s_t is None:
            return s_v.astype(np.float32, copy=False)
        w = float(cfg.image_weight)
        return ((1.0 - w) * s_t + w * s_v).astype(np.float32, copy=False)

    def _entity_image_triple_scores(self, cands: np.ndarray, qv: np.ndarray) -> np.ndarray:
        """``max(a(head), a(tail))`` per candidate triple, ``a(e)`` = best image cosine of entity e (>= 0)."""
        kg, idx = self.kg, self.index
        ht = kg.triples[cands][:, [0, 2]]
        ents, inv = np.unique(ht, return_inverse=True)
        a = np.zeros(len(ents), np.float32)
        if idx.num_images:
            imgs, owner = _ranges(kg.img_ptr, kg.img_idx, ents)
            if imgs.size:
                sims = idx.rows(idx.image_emb, imgs) @ qv
                np.maximum.at(a, owner, sims.astype(np.float32))
        return a[inv.reshape(ht.shape)].max(axis=1)


def _unit(v, dim: int, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim:
        raise InputError(f"{what} query vector has {v.shape[0]} dims; the index expects {dim}")
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _image_label(im) -> str:
    if isinstance(im, (str, Path)):
        return str(im)
    return type(im).__name__
