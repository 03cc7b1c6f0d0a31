"""On-disk embedding cache, keyed by encoder name and content hash.

``cached_encode(encoder, items)`` returns exactly what ``encoder.encode(items)`` would, but the
array is stored as ``<cache>/embeddings/<kind>/<sha256>.npy`` the first time and memory-mapped
from there afterwards, so rebuilding an index re-encodes nothing. The key covers the encoder's
``name``, the item kind and every item in order (for image files: the path *and* the file bytes,
so an edited image is re-encoded).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from mrmkg.fileio import atomic_write_bytes, sha256_file, sha256_texts
from mrmkg.paths import cache_dir


def content_key(encoder_name: str, items: Sequence[str], kind: str) -> str:
    if kind == "image":
        items = [f"{p}\0{sha256_file(p)}" for p in items]
    return sha256_texts(items, salt=f"{encoder_name}\0{kind}")


def cached_encode(encoder, items: Sequence[str], kind: str = "text", cache_root: str | Path | None = None,
                  progress: bool = False, per_item: bool = False, **encode_kwargs) -> np.ndarray:
    """``encoder.encode(items)`` through the cache. ``kind`` is ``"text"`` or ``"image"`` (paths).

    ``per_item``: one entry per item instead of one for the whole list; the missing items are
    encoded in one call. For query batches, whose make-up changes from call to call (a server's
    micro-batches): a list key would almost never hit. An item's vector is then the one computed in
    the batch that first missed it (batch shapes can change the last float bits).

    Returns float32 ``[len(items), encoder.dim]``.
    """
    items = list(items)
    if not items:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    if per_item and len(items) > 1:
        unique = list(dict.fromkeys(items))
        entries = {x: _entry(encoder, [x], kind, cache_root) for x in unique}
        found = {x: _load(entries[x], 1, encoder.dim) for x in unique}
        missing = [x for x, v in found.items() if v is None]
        if missing:
            fresh = np.ascontiguousarray(encoder.encode(missing, progress=progress, **encode_kwargs), dtype=np.float32)
            for x, v in zip(missing, fresh):
                found[x] = v[None, :]
                _store(entries[x], found[x])
        return np.concatenate([found[x] for x in items])
    path = _entry(encoder, items, kind, cache_root)
    arr = _load(path, len(items), encoder.dim)
    if arr is None:
        arr = np.ascontiguousarray(encoder.encode(items, progress=progress, **encode_kwargs), dtype=np.float32)
        _store(path, arr)
    return arr


def _entry(encoder, items: list, kind: str, cache_root) -> Path:
    root = Path(cache_root) if cache_root else cache_dir("embeddings")
    return root / kind / f"{content_key(encoder.name, items, kind)}.npy"


def _load(path: Path, n: int, dim: int) -> np.ndarray | None:
    """The cached ``[n, dim]`` array at ``path``, or None."""
    if path.is_file():
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.shape == (n, dim):
            return np.asarray(arr)
    return None


def _store(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
