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
                  progress: bool = False, **encode_kwargs) -> np.ndarray:
    """``encoder.encode(items)`` through the cache. ``kind`` is ``"text"`` or ``"image"`` (paths).

    Returns float32 ``[len(items), encoder.dim]``.
    """
    items = list(items)
    if not items:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    root = Path(cache_root) if cache_root else cache_dir("embeddings")
    path = root / kind / f"{content_key(encoder.name, items, kind)}.npy"
    if path.is_file():
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.shape == (len(items), encoder.dim):
            return np.asarray(arr)
    arr = np.ascontiguousarray(encoder.encode(items, progress=progress, **encode_kwargs), dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    return arr
