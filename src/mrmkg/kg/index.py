"""Embeddings of a multimodal KG and the FAISS indexes that search them.

A :class:`KGIndex` holds, for one built graph, four float32 L2-normalised arrays

* ``triple_emb``   ``[T, d_t]`` the verbalised triples ``"head relation tail"`` (text encoder)
* ``entity_emb``   ``[E, d_t]`` entity names (or ``"name: description"``, see ``entity_text``)
* ``relation_emb`` ``[R, d_t]`` relation names, ``R = kg.num_relations`` (includes ``image of``)
* ``image_emb``    ``[I, d_v]`` entity images (vision encoder); ``(0, d_v)`` or ``(0, 0)`` without images
  (for a graph with text stand-ins for images, ``MMKG.with_image_standins``: the text encoder, ``d_v = d_t``)

and two FAISS indexes over ``triple_emb`` and ``image_emb``. Vectors are normalised, so the
inner product is the cosine similarity. Below ``exact_max`` vectors an index is exact
(``IndexFlatIP``); above it is approximate: HNSW (``IndexHNSWFlat``, inner-product metric) up to
``hnsw_max`` vectors and IVF-Flat above (``approx="auto"``; or force one), or IVF-PQ
(``approx="ivfpq"``: an OPQ rotation, IVF lists and product-quantised codes of ``pq_m`` bytes per
vector, for graphs whose float vectors do not fit in memory; see below). HNSW is the default
because it keeps recall on real text embeddings: on MarKG with MiniLM (benchmarks/retrieval.py)
HNSW reaches recall@10 0.98 at efSearch 128, while IVF needs 64 of its 182 lists for 0.957.
IVF is there for builds that must be fast: on the loaded 2-core development machine adding 100k
384-d vectors to HNSW (M=32, efConstruction=64) took 79 s, IVF with 316 lists 10 s.

IVF-PQ (``benchmarks/scale.py``, 10M triples): HNSW and IVF-Flat keep every float vector in memory
(15 GB for 10M x 384); IVF-PQ keeps ``pq_m`` bytes per vector (48 by default: 480 MB). It is trained
on a sample (``ivf_train_per_list`` vectors per list) and filled in chunks of ``add_chunk`` rows read
from the (memory-mapped) embedding array, so the full matrix is never in memory; it is read back with
``faiss.IO_FLAG_MMAP``, so its inverted lists stay in the file and are paged in as queries visit them.
PQ distances are approximate; ``refine`` re-scores the ``refine * k`` best PQ hits exactly against the
memory-mapped float vectors (the rows of those few hits only) and keeps the top ``k``. The index keeps a
direct map (id -> list and offset), so :meth:`KGIndex.pq_scores` can score *any* triple from its code
without reading its float row: retrieval uses it to shortlist the expanded candidates of A.6.

Every embedding goes through :func:`mrmkg.encoders.cache.cached_encode`, so rebuilding an index
for an unchanged graph with the same encoders re-encodes nothing. On disk the index lives next
to the graph, in ``<graph dir>/index/``::

    manifest.json       encoder names and dims, counts, config, a key of graph + encoders + config
    checksums.json      size and SHA-256 of every other file, written last (mrmkg.kg.manifest)
    triple_emb.npy  entity_emb.npy  relation_emb.npy  image_emb.npy
    triples.faiss   images.faiss

The folder is written atomically (built under a temporary name, then renamed). ``load`` memory-maps
the ``.npy`` arrays, so opening MarKG's index costs milliseconds plus reading the FAISS files.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from mrmkg.encoders.cache import cached_encode
from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_json, contained_path, sha256_texts
from mrmkg.kg.manifest import (CHECKSUMS, INDEX_COUNTS, DamagedArtifactError, check_index_manifest, load_npy,
                               read_json, verify_checksums, warn_unverified, write_checksums)

INDEX_DIR = "index"
FORMAT_VERSION = 1
ENTITY_TEXT_CHOICES = ("name", "name+description")
APPROX_CHOICES = ("auto", "hnsw", "ivf", "ivfpq")
_IVFPQ_FIELDS = frozenset({"pq_m", "opq", "opq_niter", "refine", "add_chunk"})  # added with approx="ivfpq"
_ARRAYS = ("triple_emb", "entity_emb", "relation_emb", "image_emb")  # in INDEX_COUNTS order
_FAISS = ("triples.faiss", "images.faiss")


@dataclass
class IndexConfig:
    """How a KG is embedded and indexed. Stored in the index manifest."""

    text_encoder: str = field(default="minilm", metadata={
        "help": "text encoder registry name (mrmkg.encoders.registry.get_text_encoder) for triples, "
                "entities, relations and text queries"})
    vision_encoder: str | None = field(default="efficientnet-lite0", metadata={
        "help": "vision encoder registry name for entity images and image queries; None = ignore images"})
    entity_text: str = field(default="name", metadata={
        "help": "entity-node text: 'name' or 'name+description' (\"name: description\")"})
    exact_max: int = field(default=20_000, metadata={
        "help": "indexes with at most this many vectors use exact inner-product search (IndexFlatIP); "
                "larger ones use the approximate index chosen by `approx`"})
    approx: str = field(default="auto", metadata={
        "help": "approximate index above exact_max: 'hnsw' (IndexHNSWFlat), 'ivf' (IVF-Flat, flat coarse "
                "quantizer), 'auto' (HNSW up to hnsw_max vectors, IVF above) or 'ivfpq' (compressed: OPQ + "
                "IVF + product quantisation, pq_m bytes per vector, trained on a sample and filled in chunks, "
                "memory-mapped on load; for graphs whose float vectors do not fit in memory)"})
    hnsw_max: int = field(default=2_000_000, metadata={
        "help": "with approx='auto', the largest index built as HNSW (better recall on text embeddings; "
                "IVF builds ~10x faster and needs less memory)"})
    hnsw_m: int = field(default=32, metadata={"help": "HNSW graph degree M"})
    hnsw_ef_construction: int = field(default=64, metadata={"help": "HNSW efConstruction (build quality)"})
    hnsw_ef_search: int = field(default=128, metadata={
        "help": "HNSW efSearch (query-time beam); raised to k when a search asks for more than this"})
    ivf_nlist: int = field(default=0, metadata={"help": "IVF lists; 0 = sqrt(number of vectors)"})
    ivf_nprobe: int = field(default=16, metadata={"help": "IVF lists visited per query"})
    ivf_train_per_list: int = field(default=40, metadata={
        "help": "k-means training sample = this many vectors per list (caps IVF build time)"})
    pq_m: int = field(default=48, metadata={
        "help": "ivfpq: bytes per vector (sub-quantizers of 8 bits; must divide the dimension, e.g. 48 or "
                "96 for 384-d: more bytes, better recall, larger index)"})
    opq: bool = field(default=True, metadata={
        "help": "ivfpq: learn an OPQ rotation before quantising (better recall at the same code size)"})
    opq_niter: int = field(default=10, metadata={
        "help": "ivfpq: OPQ training iterations (faiss' default is 50; on the 1M synthetic benchmark 10 gave the "
                "same recall, 0.988 vs 0.989 with refine 4, in a fraction of the time)"})
    refine: int = field(default=1, metadata={
        "help": "ivfpq: fetch refine * k PQ hits and re-score them exactly against the stored float vectors "
                "(1 = PQ scores as they are)"})
    add_chunk: int = field(default=200_000, metadata={
        "help": "ivfpq: vectors added per step (bounds build memory: chunk x dim x 4 bytes)"})
    batch_size: int = field(default=64, metadata={"help": "text encoder batch size while building (image "
                                                           "encoders use their own best batch size)"})
    seed: int = field(default=0, metadata={"help": "seed of the IVF k-means (HNSW is deterministic)"})

    def __post_init__(self) -> None:
        if self.entity_text not in ENTITY_TEXT_CHOICES:
            raise InputError(f"IndexConfig.entity_text must be one of {ENTITY_TEXT_CHOICES}, not {self.entity_text!r}")
        if self.approx not in APPROX_CHOICES:
            raise InputError(f"IndexConfig.approx must be one of {APPROX_CHOICES}, not {self.approx!r}")
        for name in ("exact_max", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "batch_size",
                     "pq_m", "opq_niter", "refine", "add_chunk"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"IndexConfig.{name} must be >= 1, not {getattr(self, name)!r}")


def _normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (encoders promise it; re-doing it keeps IP == cosine for any encoder).

    A memory map (embeddings too large to copy) is returned as it is after checking a sample of rows.
    """
    if isinstance(x, np.memmap):
        if x.dtype != np.float32 or x.ndim != 2:
            raise ValueError(f"memory-mapped embeddings must be float32 [n, d], not {x.dtype} {list(x.shape)}")
        rows = np.unique(np.linspace(0, max(0, x.shape[0] - 1), min(x.shape[0], 1000)).astype(np.int64))
        if rows.size and np.abs(np.linalg.norm(x[rows], axis=1) - 1.0).max() > 1e-3:
            raise ValueError("memory-mapped embeddings must already be unit rows (they are not copied)")
        return x
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size:
        n = np.linalg.norm(x, axis=1, keepdims=True)
        if np.abs(n - 1.0).max() > 1e-4:  # cached arrays are read-only; copy only when needed
            x = x / np.maximum(n, 1e-12)
    return x


def _sample_rows(n: int, m: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n, m)`` distinct rows (all of them when ``m >= n``)."""
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def build_faiss(x: np.ndarray, config: IndexConfig, progress: bool = False, what: str = "vectors") -> faiss.Index:
    """An inner-product FAISS index over ``x`` ``[n, d]``: exact up to ``exact_max`` rows, else approximate.

    ``x`` may be a memory map: IVF-PQ reads only its training sample and one ``add_chunk`` of rows at a time.
    """
    n, d = x.shape
    if n > config.exact_max and config.approx == "ivfpq":
        return _build_ivfpq(x, config, progress, what)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if n <= config.exact_max:
        index = faiss.IndexFlatIP(d)
    elif config.approx == "hnsw" or (config.approx == "auto" and n <= config.hnsw_max):
        index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.hnsw.efSearch = config.hnsw_ef_search
    else:
        nlist = config.ivf_nlist or max(1, int(np.sqrt(n)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        index.cp.niter = 10
        # k-means on a sample: a few dozen points per list is enough for coarse cells
        m = config.ivf_train_per_list * nlist
        rng = np.random.default_rng(config.seed)
        sample = x if n <= m else x[np.sort(rng.choice(n, m, replace=False))]
        index.train(sample)
        index.nprobe = config.ivf_nprobe
    if n:
        index.add(x)
    return index


def _build_ivfpq(x: np.ndarray, config: IndexConfig, progress: bool, what: str) -> faiss.Index:
    """OPQ + IVF + PQ (``faiss.index_factory``), trained on a sample, filled ``add_chunk`` rows at a time."""
    n, d = x.shape
    if d % config.pq_m:
        raise InputError(f"IndexConfig.pq_m={config.pq_m} must divide the embedding dimension {d}")
    nlist = config.ivf_nlist or max(1, int(np.sqrt(n)))
    key = f"{'OPQ%d,' % config.pq_m if config.opq else ''}IVF{nlist},PQ{config.pq_m}x8"
    index = faiss.index_factory(d, key, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.seed = config.seed
    ivf.cp.niter = 10
    ivf.do_polysemous_training = False  # the factory turns it on; it took 180 of 181 s training 20k vectors
    if config.opq:
        faiss.downcast_VectorTransform(index.chain.at(0)).niter = config.opq_niter
    # k-means needs a few dozen points per list; each 256-centroid PQ codebook needs a few thousand
    m = max(config.ivf_train_per_list * nlist, 256 * 40)
    sample = np.ascontiguousarray(x[_sample_rows(n, m, config.seed)], dtype=np.float32)
    t0 = time.perf_counter()
    if progress:
        print(f"training {key} on {len(sample):,} of {n:,} {what}", flush=True)
    index.train(sample)
    del sample
    if progress:
        print(f"trained in {time.perf_counter() - t0:.1f} s", flush=True)
    from tqdm.auto import tqdm

    step = config.add_chunk
    with tqdm(total=n, desc=f"adding {what}", unit="vec", unit_scale=True, disable=not progress) as bar:
        for s in range(0, n, step):
            chunk = _rows(x, s, min(n, s + step))
            index.add(chunk)
            bar.update(len(chunk))
    ivf.nprobe = config.ivf_nprobe
    # id -> (list, offset), written with the index: lets KGIndex.pq_scores decode any vector's code
    ivf.make_direct_map()
    return index


def _rows(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``x[start:stop]`` as a float32 array; a memory map of a file is *read* (not paged into this process's
    mapping, which would keep every chunk resident until the kernel reclaims it)."""
    src = _whole_npy_file(x) if isinstance(x, np.memmap) else None
    if src is None:
        return np.ascontiguousarray(x[start:stop], dtype=np.float32)
    out = np.empty((stop - start, x.shape[1]), np.float32)
    with open(src, "rb") as f:
        f.seek(x.offset + start * x.shape[1] * 4)
        f.readinto(memoryview(out).cast("B"))
    return out


def _set_search_params(index: faiss.Index, config: IndexConfig) -> None:
    """Query-time parameters are not all persisted by faiss.write_index; re-apply them after loading."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = config.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = config.ivf_nprobe
    elif isinstance(index, faiss.IndexPreTransform):  # OPQ + IVF-PQ
        faiss.extract_index_ivf(index).nprobe = config.ivf_nprobe
    if isinstance(index, (faiss.IndexIVF, faiss.IndexPreTransform)):
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        lists = faiss.downcast_InvertedLists(ivf.invlists)
        if isinstance(lists, faiss.OnDiskInvertedLists):  # read with IO_FLAG_MMAP
            # its default starts 32 prefetch threads per search call: 5x slower for one query (2.9 vs 0.6 ms)
            lists.prefetch_nthread = 0
        if isinstance(ivf, faiss.IndexIVFPQ) and ivf.direct_map.type == faiss.DirectMap.NoMap:
            ivf.make_direct_map()  # written before builds kept one (KGIndex.pq_scores)


def _search(index: faiss.Index, q: np.ndarray, k: int, dim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    q = np.ascontiguousarray(q, dtype=np.float32)
    if q.ndim == 1:
        q = q[None]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"{what} queries must be [B, {dim}], got {list(q.shape)}")
    k = min(int(k), index.ntotal)
    if k <= 0:
        return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
    if isinstance(index, faiss.IndexHNSW) and k > index.hnsw.efSearch:
        # a beam narrower than k cannot return k good results; per-call params keep this thread-safe
        scores, ids = index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=k))
    else:
        scores, ids = index.search(q, k)
    return scores, ids.astype(np.int64, copy=False)


def graph_key(kg) -> str:
    """Content key of everything an index depends on in a graph (names, triples, image paths):
    :meth:`MMKG.content_key` (stored in a memory-mapped graph folder, so no load reads the whole graph)."""
    return kg.content_key()


def _is_pq(index: faiss.Index) -> bool:
    """True for an IVF-PQ index (bare or behind an OPQ rotation)."""
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(faiss.extract_index_ivf(index))
    return isinstance(index, faiss.IndexIVFPQ)


def resolve_image_path(path: str, directory: str | Path | None, allow_outside_paths: bool = False) -> str:
    """Image paths in a graph are absolute (as the loaders store them) or relative to the graph folder
    (to the cwd without one).

    Absolute paths are the graph's own, checked when it was built (:mod:`mrmkg.kg.io`), and used as
    they are. A relative path comes from data next to the graph (e.g. kg-qa records) and must stay
    inside ``directory`` (:func:`mrmkg.fileio.contained_path`: ``..`` and symlinks leading out are
    refused) unless ``allow_outside_paths``.
    """
    p = Path(path)
    if p.is_absolute():
        return str(p)
    root = Path(directory) if directory is not None else Path.cwd()
    contained_path(p, root, allow_outside=allow_outside_paths, source=root)
    return str(Path(directory) / p) if directory is not None else str(p)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` as float32 ``.npy``; a memory map of a whole ``.npy`` file of that type is hard-linked
    (no copy of a 15 GB matrix; the files are never written in place), copied when linking fails."""
    src = _whole_npy_file(arr)
    if src is not None:
        try:
            os.link(src, path)
            return
        except OSError:
            shutil.copyfile(src, path)
            return
    np.save(path, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)


def _whole_npy_file(arr) -> str | None:
    """The file of ``arr`` when it is a read-only memory map of a complete float32 ``.npy`` file."""
    if not isinstance(arr, np.memmap) or arr.dtype != np.float32 or not arr.flags.c_contiguous \
            or arr.flags.writeable or getattr(arr, "filename", None) is None:
        return None
    try:
        with open(arr.filename, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (OSError, ValueError):
        return None
    if fortran or dtype != np.float32 or tuple(shape) != arr.shape or arr.offset != offset:
        return None
    return arr.filename


class KGIndex:
    """Embeddings and FAISS indexes of one MMKG; see the module docstring for shapes and layout.

    Build with :meth:`build`, open with :meth:`load`. ``manifest`` records the encoder registry
    names and ids (``text_encoder`` / ``text_encoder_id``, ``vision_encoder`` / ``vision_encoder_id``),
    dims, counts, the config and ``key``.
    """

    def __init__(self, triple_emb, entity_emb, relation_emb, image_emb, triple_index, image_index,
                 config: IndexConfig, manifest: dict, directory: Path | None = None):
        self.triple_emb, self.entity_emb = triple_emb, entity_emb
        self.relation_emb, self.image_emb = relation_emb, image_emb
        self.triple_index, self.image_index = triple_index, image_index
        self.config, self.manifest, self.directory = config, manifest, directory

    # ------------------------------------------------------------------ properties
    @property
    def text_dim(self) -> int:
        return int(self.triple_emb.shape[1])

    @property
    def image_dim(self) -> int:
        return int(self.image_emb.shape[1])

    @property
    def num_triples(self) -> int:
        return int(self.triple_emb.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.image_emb.shape[0])

    @property
    def exact(self) -> bool:
        """True when triple search is exact (flat index)."""
        return isinstance(self.triple_index, faiss.IndexFlat)

    def __repr__(self) -> str:
        kind = type(self.triple_index).__name__
        return (f"KGIndex(triples={self.num_triples}, entities={self.entity_emb.shape[0]}, "
                f"relations={self.relation_emb.shape[0]}, images={self.num_images}, d_t={self.text_dim}, "
                f"d_v={self.image_dim}, triple_index={kind})")

    # ------------------------------------------------------------------ search
    def search_triples(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` triples by cosine. ``q`` float32 ``[B, d_t]`` (normalised) -> (scores ``[B, k']``,
        ids ``[B, k']``), ``k' = min(k, T)``, best first."""
        return self._search(self.triple_index, self.triple_emb, q, k, self.text_dim, "triple")

    def search_images(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` entity images by cosine. ``q`` ``[B, d_v]`` -> (scores ``[B, k']``, image ids ``[B, k']``)."""
        if self.num_images == 0:
            q = np.atleast_2d(q)
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        return self._search(self.image_index, self.image_emb, q, k, self.image_dim, "image")

    def _search(self, index, emb, q, k: int, dim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """``_search``, then for a PQ index with ``config.refine > 1``: the ``refine * k`` best PQ hits
        re-scored exactly with their rows of ``emb`` (a gather of a few rows from the memory map), top ``k``
        kept (ties by smaller id)."""
        r = int(self.config.refine)
        if r <= 1 or not _is_pq(index):
            return _search(index, q, k, dim, what)
        scores, ids = _search(index, q, k * r, dim, what)
        q = np.atleast_2d(np.asarray(q, dtype=np.float32))
        kk = min(int(k), index.ntotal)
        out_s = np.full((q.shape[0], kk), -np.inf, np.float32)
        out_i = np.full((q.shape[0], kk), -1, np.int64)
        for b in range(q.shape[0]):
            cand = ids[b][ids[b] >= 0]
            rows = np.sort(cand)  # ascending rows: the memory map is read in file order
            exact = self.rows(emb, rows) @ q[b]
            order = np.lexsort((rows, -exact))[:kk]
            out_s[b, :order.size], out_i[b, :order.size] = exact[order], rows[order]
        return out_s, out_i

    @property
    def compressed(self) -> bool:
        """True when triple search is IVF-PQ: :meth:`pq_scores` works and float rows live on disk."""
        return _is_pq(self.triple_index)

    def pq_scores(self, ids: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Approximate ``triple_emb[ids] @ q`` ``[len(ids)]`` from the triples' PQ codes (:attr:`compressed`
        indexes only).

        The codes are decoded through the index's direct map (``reconstruct_batch``: coarse centroid plus
        PQ residual, in the OPQ-rotated space) and compared with the rotated query; an orthogonal rotation
        keeps inner products. No float row is read: at 10M triples 400 triples cost ~1.2 ms, where reading
        their rows from the 15 GB file costs 30-200 us each unless the page cache holds them.
        """
        index = self.triple_index
        if not _is_pq(index):
            raise ValueError(f"pq_scores needs an IVF-PQ triple index, not {type(index).__name__}")
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32).reshape(1, -1))
        if isinstance(index, faiss.IndexPreTransform):
            for i in range(index.chain.size()):
                q = faiss.downcast_VectorTransform(index.chain.at(i)).apply(q)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.size == 0:
            return np.zeros(0, np.float32)
        return (ivf.reconstruct_batch(ids) @ q[0]).astype(np.float32, copy=False)

    def rows(self, emb: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``emb[ids]`` as an in-memory float32 array (``emb`` one of this index's embedding arrays).

        For an out-of-core index (``approx="ivfpq"``) the rows of a memory-mapped file are *read*
        (``os.preadv``, consecutive rows in one call), not faulted in through the map: the kernel maps up
        to 64 KB around every faulted row (fault-around), and those mapped page-cache pages count in this
        process's RSS; at 10M triples 1,000 queries mapped all 15 GB of the file (RssFile 15.3 GB, RssAnon
        53 MB). Reading costs ~4 us a row from the page cache, ~100 us from this VM's disk, and leaves the pages
        in the shared page cache only.
        """
        ids = np.asarray(ids, dtype=np.int64)
        src = _whole_npy_file(emb) if self.config.approx == "ivfpq" else None
        if src is None or ids.size == 0:
            return np.asarray(emb[ids], dtype=np.float32)
        d = emb.shape[1]
        if ids.min() < 0 or ids.max() >= emb.shape[0]:
            raise IndexError(f"row ids out of range [0, {emb.shape[0]})")
        order = np.argsort(ids, kind="stable")
        sid = ids[order]
        out = np.empty((ids.size, d), np.float32)
        row = 4 * d
        # runs of consecutive row ids: one read each
        breaks = np.flatnonzero(np.diff(sid) != 1) + 1
        starts = np.concatenate([[0], breaks]).tolist()
        ends = np.concatenate([breaks, [sid.size]]).tolist()
        sorted_out = out if np.array_equal(order, np.arange(ids.size)) else np.empty_like(out)
        sbuf = memoryview(sorted_out).cast("B")
        fd = os.open(src, os.O_RDONLY)
        try:
            if len(starts) > 1 and hasattr(os, "posix_fadvise"):
                # ask for every run first: the kernel reads them concurrently, then the reads below wait
                # on pages already in flight (10M triples, 40 rows not in the page cache: 6.5 -> 4.3 ms)
                for a, b in zip(starts, ends):
                    os.posix_fadvise(fd, emb.offset + int(sid[a]) * row, (b - a) * row, os.POSIX_FADV_WILLNEED)
            for a, b in zip(starts, ends):
                want = (b - a) * row
                if os.preadv(fd, [sbuf[a * row:b * row]], emb.offset + int(sid[a]) * row) != want:
                    raise OSError(f"short read from {src}")
        finally:
            os.close(fd)
        if sorted_out is not out:
            out[order] = sorted_out
        return out

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, kg, config: IndexConfig | None = None, directory: str | Path | None = None,
              text_encoder=None, vision_encoder=None, progress: bool = True,
              cache_root: str | Path | None = None, force: bool = False) -> "KGIndex":
        """Embed ``kg`` and build its FAISS indexes; write them to ``<directory>/index/`` when given.

        ``text_encoder`` / ``vision_encoder`` default to the registry encoders named in ``config``;
        the vision encoder is only loaded when the graph has images. If ``<directory>/index/``
        already holds an index with the same key (same graph, encoder ids and config), it is
        loaded instead of rebuilt (``force=True`` rebuilds); otherwise every embedding comes from
        the on-disk embedding cache when present, so only FAISS construction is repeated.
        """
        config = config or IndexConfig()
        t0 = time.perf_counter()
        if text_encoder is None:
            from mrmkg.encoders.registry import get_text_encoder

            text_encoder = get_text_encoder(config.text_encoder)
        standin = kg.image_standin
        if standin is not None:  # text stand-ins for images: embedded by the text encoder, no vision encoder
            vision_encoder = None
        use_images = standin is None and kg.num_images > 0 and (vision_encoder is not None or config.vision_encoder)
        if vision_encoder is None and use_images:
            from mrmkg.encoders.registry import get_vision_encoder

            vision_encoder = get_vision_encoder(config.vision_encoder)
        key = sha256_texts([graph_key(kg), text_encoder.name,
                            vision_encoder.name if (vision_encoder is not None and use_images) else "",
                            json.dumps(asdict(config), sort_keys=True)], salt="mrmkg-index")
        if directory is not None and not force:
            mf = Path(directory) / INDEX_DIR / "manifest.json"
            if mf.is_file():
                try:
                    old = json.loads(mf.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    old = {}
                if isinstance(old, dict) and old.get("key") == key and old.get("format_version") == FORMAT_VERSION:
                    try:
                        return cls.load(directory)
                    except DamagedArtifactError:
                        pass  # a damaged index with the right key: build it again

        def enc(encoder, items, kind, what):
            if progress and items:
                print(f"embedding {len(items)} {what} with {encoder.name}", flush=True)
            batch = {"batch_size": config.batch_size} if kind == "text" else {}  # images: the encoder's own
            return _normalise(cached_encode(encoder, items, kind=kind, cache_root=cache_root, progress=progress,
                                            **batch))

        triple_emb = enc(text_encoder, kg.verbalise_all(), "text", "triples")
        entity_emb = enc(text_encoder, kg.entity_texts(config.entity_text == "name+description"), "text", "entities")
        relation_emb = enc(text_encoder, list(kg.relation_names), "text", "relations")
        if standin is not None:
            image_emb = enc(text_encoder, kg.image_standin_texts(), "text", f"image stand-ins ({standin})")
        elif use_images:
            paths = [resolve_image_path(p, directory) for p in kg.image_paths]
            image_emb = enc(vision_encoder, paths, "image", "entity images")
        elif vision_encoder is not None:
            image_emb = np.zeros((0, vision_encoder.dim), np.float32)
        else:
            image_emb = np.zeros((0, 0), np.float32)
        if triple_emb.shape[0] != kg.num_triples or relation_emb.shape[0] != kg.num_relations:
            raise RuntimeError("encoder returned the wrong number of rows")

        t1 = time.perf_counter()
        triple_index = build_faiss(triple_emb, config, progress, "triples")
        image_index = build_faiss(image_emb, config, progress, "images") if image_emb.shape[1] else faiss.IndexFlatIP(1)
        manifest = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "graph_key": graph_key(kg),
            "text_encoder": config.text_encoder,
            "text_encoder_id": text_encoder.name,
            "text_dim": int(triple_emb.shape[1]),
            "vision_encoder": config.vision_encoder if use_images or vision_encoder is not None else None,
            "vision_encoder_id": vision_encoder.name if vision_encoder is not None else None,
            "image_dim": int(image_emb.shape[1]),
            "image_standin": standin,
            "counts": {"triples": int(triple_emb.shape[0]), "entities": int(entity_emb.shape[0]),
                       "relations": int(relation_emb.shape[0]), "images": int(image_emb.shape[0])},
            "triple_index": type(triple_index).__name__,
            "image_index": type(image_index).__name__,
            "config": asdict(config),
            "seconds": {"embed": round(t1 - t0, 3), "faiss": round(time.perf_counter() - t1, 3)},
        }
        index = cls(triple_emb, entity_emb, relation_emb, image_emb, triple_index, image_index,
                    config, manifest, Path(directory) if directory is not None else None)
        if directory is not None:
            index.save(directory)
        return index

    @classmethod
    def from_arrays(cls, triple_emb: np.ndarray, entity_emb: np.ndarray, relation_emb: np.ndarray,
                    image_emb: np.ndarray | None = None, config: IndexConfig | None = None,
                    text_encoder_id: str = "precomputed", vision_encoder_id: str | None = None,
                    kg=None, progress: bool = False) -> "KGIndex":
        """An index over precomputed embeddings (rows are re-normalised); nothing is encoded or written.

        Used by benchmarks (synthetic embeddings) and by callers that embed with their own tools. The
        arrays may be memory maps of ``.npy`` files (already unit rows; they are neither copied nor read
        whole: ``approx="ivfpq"`` trains on a sample and adds in chunks, and :meth:`save` hard-links them).
        ``kg``: the graph the rows belong to, recorded as ``graph_key`` (checked by ``open_graph``).
        """
        config = config or IndexConfig()
        triple_emb, entity_emb, relation_emb = (_normalise(a) for a in (triple_emb, entity_emb, relation_emb))
        image_emb = np.zeros((0, 0), np.float32) if image_emb is None else _normalise(image_emb)
        t0 = time.perf_counter()
        triple_index = build_faiss(triple_emb, config, progress, "triples")
        image_index = build_faiss(image_emb, config, progress, "images") if image_emb.shape[1] else faiss.IndexFlatIP(1)
        manifest = {
            "format_version": FORMAT_VERSION, "key": None, "graph_key": graph_key(kg) if kg is not None else None,
            "text_encoder": None, "text_encoder_id": text_encoder_id, "text_dim": int(triple_emb.shape[1]),
            "vision_encoder": None, "vision_encoder_id": vision_encoder_id, "image_dim": int(image_emb.shape[1]),
            "counts": {"triples": int(triple_emb.shape[0]), "entities": int(entity_emb.shape[0]),
                       "relations": int(relation_emb.shape[0]), "images": int(image_emb.shape[0])},
            "triple_index": type(triple_index).__name__, "image_index": type(image_index).__name__,
            "config": asdict(config), "seconds": {"faiss": round(time.perf_counter() - t0, 3)},
        }
        return cls(triple_emb, entity_emb, relation_emb, image_emb, triple_index, image_index, config, manifest)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/index/`` atomically, ``checksums.json`` last; returns that folder."""
        target = Path(directory) / INDEX_DIR
        with atomic_dir(target) as tmp:
            _save_npy(tmp / "triple_emb.npy", self.triple_emb)
            _save_npy(tmp / "entity_emb.npy", self.entity_emb)
            _save_npy(tmp / "relation_emb.npy", self.relation_emb)
            _save_npy(tmp / "image_emb.npy", self.image_emb)
            faiss.write_index(self.triple_index, str(tmp / "triples.faiss"))
            faiss.write_index(self.image_index, str(tmp / "images.faiss"))
            atomic_write_json(tmp / "manifest.json", self.manifest)
            write_checksums(tmp, [*(f"{n}.npy" for n in _ARRAYS), *_FAISS, "manifest.json"], kind="index")
        self.directory = Path(directory)
        return target

    @classmethod
    def load(cls, directory: str | Path) -> "KGIndex":
        """Open ``<directory>/index/`` (``directory`` may also be the index folder itself), verifying it.

        ``checksums.json`` (:mod:`mrmkg.kg.manifest`): every file's size; the SHA-256 of the files read
        in full (``manifest.json`` and the FAISS files, which native code parses); the memory-mapped
        ``.npy`` arrays are not hashed unless ``MRMKG_VERIFY_ALL=1`` (that would read 100 MB for MarKG
        and about double the load time) but their headers must parse and their byte length match.
        Then the content: manifest keys and types, a config with exactly the :class:`IndexConfig`
        fields, float32 arrays ``[count, dim]`` as the manifest says, FAISS indexes of the same
        dimension and size. Any mismatch raises :class:`~mrmkg.kg.manifest.DamagedArtifactError`.
        Arrays are memory-mapped read-only; FAISS indexes are read into memory.
        """
        d = Path(directory)
        idir = d if (d / "manifest.json").is_file() and d.name == INDEX_DIR else d / INDEX_DIR
        root = idir.parent
        if not idir.is_dir() or not ((idir / "manifest.json").exists() or (idir / CHECKSUMS).exists()):
            raise InputError("no index found (expected index/manifest.json; build one with `mrmkg kg build`)",
                             path=d)
        if not verify_checksums(idir, root, hashed=lambda name: not name.endswith(".npy")):
            warn_unverified(idir, "index folder")
        rel = f"{INDEX_DIR}/manifest.json"
        manifest = read_json(idir / "manifest.json", root)
        if isinstance(manifest, dict) and manifest.get("format_version") != FORMAT_VERSION:
            raise InputError(f"index format version {manifest.get('format_version')!r} is not {FORMAT_VERSION}; "
                             "rebuild it with `mrmkg kg build`", path=idir / "manifest.json")
        check_index_manifest(manifest, root, rel)
        fields = set(IndexConfig.__dataclass_fields__)
        if isinstance(manifest.get("config"), dict) and _IVFPQ_FIELDS & (fields - set(manifest["config"])):
            # an index written before approx="ivfpq" existed: those fields only act on ivfpq, so their
            # defaults describe it exactly (any other missing or unknown key is still damage)
            manifest["config"] = {**{k: IndexConfig.__dataclass_fields__[k].default
                                     for k in _IVFPQ_FIELDS}, **manifest["config"]}
        if set(manifest["config"]) != fields:
            extra, missing = set(manifest["config"]) - fields, fields - set(manifest["config"])
            raise DamagedArtifactError(root, rel, "config " + "; ".join(
                x for x in (f"has unknown key(s) {', '.join(sorted(extra))}" if extra else "",
                            f"lacks key(s) {', '.join(sorted(missing))}" if missing else "") if x))
        try:
            config = IndexConfig(**manifest["config"])
        except (InputError, TypeError, ValueError) as e:
            raise DamagedArtifactError(root, rel, f"invalid config: {e}") from None
        counts = manifest["counts"]
        dims = {"triple_emb": manifest["text_dim"], "entity_emb": manifest["text_dim"],
                "relation_emb": manifest["text_dim"], "image_emb": manifest["image_dim"]}
        arrays = {}
        for name, key in zip(_ARRAYS, INDEX_COUNTS):
            a = load_npy(idir / f"{name}.npy", root)
            want = [counts[key], dims[name]]
            if a.dtype != np.float32 or list(a.shape) != want:
                raise DamagedArtifactError(root, f"{INDEX_DIR}/{name}.npy", f"{a.dtype} {list(a.shape)}, the "
                                           f"manifest says float32 {want}")
            arrays[name] = a
        faiss_indexes = []
        for fname, n, dim in (("triples.faiss", counts["triples"], manifest["text_dim"]),
                              ("images.faiss", counts["images"], manifest["image_dim"] or 1)):
            p, frel = idir / fname, f"{INDEX_DIR}/{fname}"
            if not p.is_file():
                raise DamagedArtifactError(root, frel, "missing")
            try:
                # IVF-PQ: the inverted lists stay in the file (read-only map), paged in as queries visit them
                index = faiss.read_index(str(p), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) \
                    if config.approx == "ivfpq" and n > config.exact_max else faiss.read_index(str(p))
            except Exception as e:  # faiss raises RuntimeError with its C++ message; keep its last line
                why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                raise DamagedArtifactError(root, frel, f"not a readable FAISS index: {why}") from None
            if index.d != dim or index.ntotal != n:
                raise DamagedArtifactError(root, frel, f"{index.ntotal} vectors of dimension {index.d}, the manifest "
                                           f"says {n} of dimension {dim}")
            _set_search_params(index, config)
            faiss_indexes.append(index)
        return cls(arrays["triple_emb"], arrays["entity_emb"], arrays["relation_emb"], arrays["image_emb"],
                   faiss_indexes[0], faiss_indexes[1], config, manifest, root)
