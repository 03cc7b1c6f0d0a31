"""Graph folders and indexes that verify themselves (the shared machinery: :mod:`mrmkg.manifest`).

``MMKG.save`` and ``KGIndex.save`` write ``checksums.json`` *last*, after every other file::

    {"format_version": 1, "kind": "graph" | "index",
     "files": {"graph.json": {"size": 891234, "sha256": "..."}, ...}}

so a folder whose writer was interrupted, or whose files were later truncated, replaced or deleted,
does not match it. On load (:func:`verify_checksums`) every listed file must exist with its recorded
size; its SHA-256 is checked for the files the loader reads in full anyway (``graph.json``,
``graph.npz``, the index ``manifest.json`` and the FAISS files, which native code parses and so must
be intact before they are read). The memory-mapped ``.npy`` embeddings are size-checked and their
headers validated (dtype, shape, exact byte length) but not hashed by default: hashing them would
read MarKG's 70 MB of embeddings that a memory map otherwise never touches, which about doubles
opening its index. Measured on MarKG (2 shared cores, three runs each): before manifests the index
opened in 0.08-0.16 s; with the default checks 0.11-0.23 s (hashing the 60 MB HNSW file); hashing
every file (``MRMKG_VERIFY_ALL=1``) 0.37-0.41 s. ``graph.json``/``graph.npz`` stay at 0.02-0.06 s.

Independently of the manifest, loaders check the content: JSON types and required keys, array
shapes, dtypes and id ranges, name counts. Every mismatch raises :class:`DamagedArtifactError`
(an :class:`~mrmkg.errors.InputError`): "graph folder X is damaged: FILE (what is wrong); rebuild it
with `mrmkg kg build SRC --out X`". Folders written before manifests existed load with an
:class:`UnverifiedArtifactWarning` naming the folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# the machinery every self-verifying artifact shares (graph folders were the first; checkpoints use it too)
from mrmkg.manifest import (CHECKSUMS, FORMAT_VERSION, DamagedArtifactError, UnverifiedArtifactWarning,  # noqa: F401
                            read_json, rel as _rel, require, verify_all, verify_checksums, warn_unverified,
                            write_checksums)


def load_npy(path: Path, root: Path, mmap: bool = True) -> np.ndarray:
    """A ``.npy`` array whose header parses, with no pickled objects and exactly the bytes its header
    promises (a truncated or padded file is damaged); memory-mapped read-only when ``mmap``."""
    rel = _rel(path, root)
    if not path.is_file():
        raise DamagedArtifactError(root, rel, "missing")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy version {version}")
            offset = f.tell()
        if dtype.hasobject:
            raise ValueError("holds Python objects")
        expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = path.stat().st_size
        if size != expected:
            raise ValueError(f"{size} bytes where its header {tuple(shape)} {dtype} needs {expected}")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except DamagedArtifactError:
        raise
    except Exception as e:  # numpy raises ValueError, OSError, SyntaxError, EOFError, ... on bad headers
        raise DamagedArtifactError(root, rel, f"not a valid .npy array: {e}") from None


_INDEX_KEYS = {  # key -> allowed types, of the index manifest.json that KGIndex.load and `kg stats` read
    "format_version": (int,), "key": (str, type(None)), "graph_key": (str, type(None)),
    "text_encoder": (str, type(None)), "text_encoder_id": (str,), "text_dim": (int,),
    "vision_encoder": (str, type(None)), "vision_encoder_id": (str, type(None)), "image_dim": (int,),
    "counts": (dict,), "triple_index": (str,), "image_index": (str,), "config": (dict,),
}
INDEX_COUNTS = ("triples", "entities", "relations", "images")


def check_index_manifest(mf, root: Path, rel: str = "index/manifest.json") -> dict:
    """The index ``manifest.json`` object with its keys of the right types and non-negative counts."""
    if not isinstance(mf, dict):
        raise DamagedArtifactError(root, rel, f"a JSON {type(mf).__name__}, expected an object")
    for key, types in _INDEX_KEYS.items():
        require(root, rel, mf, key, types, " or ".join("null" if t is type(None) else t.__name__ for t in types))
    for key in ("text_dim", "image_dim"):
        if mf[key] < 0:
            raise DamagedArtifactError(root, rel, f"{key!r} is negative")
    counts = mf["counts"]
    for key in INDEX_COUNTS:
        n = require(root, rel, counts, key, (int,), "a count")
        if n < 0:
            raise DamagedArtifactError(root, rel, f"counts.{key} is negative")
    return mf
