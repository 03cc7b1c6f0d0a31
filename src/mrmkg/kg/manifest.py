"""Artifacts that verify themselves: the checksum manifest of a graph folder and of its index.

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

import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json, sha256_file

CHECKSUMS = "checksums.json"
FORMAT_VERSION = 1


class DamagedArtifactError(InputError):
    """A built graph folder (or its index) does not match its manifest or holds invalid content."""

    def __init__(self, root: str | Path, file: str, what: str):
        self.root, self.file, self.what = str(root), file, what
        super().__init__(f"graph folder {root} is damaged: {file} ({what}); "
                         f"rebuild it with `mrmkg kg build SRC --out {root}`")
        self.path = str(Path(root) / file)


class UnverifiedArtifactWarning(UserWarning):
    """A folder written before checksum manifests existed: loaded, but its files cannot be verified."""


def verify_all() -> bool:
    """Hash every listed file, memory-mapped arrays included (``MRMKG_VERIFY_ALL=1``)."""
    return os.environ.get("MRMKG_VERIFY_ALL", "") not in ("", "0")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def write_checksums(folder: str | Path, names: list[str], kind: str) -> None:
    """Record size and SHA-256 of ``names`` (files in ``folder``) in ``folder/checksums.json``; call it last."""
    folder = Path(folder)
    files = {n: {"size": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in names}
    atomic_write_json(folder / CHECKSUMS, {"format_version": FORMAT_VERSION, "kind": kind, "files": files})


def read_json(path: Path, root: Path):
    """Parse a JSON file of a built folder; any problem is a :class:`DamagedArtifactError`."""
    rel = _rel(path, root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedArtifactError(root, rel, "missing") from None
    except OSError as e:
        raise DamagedArtifactError(root, rel, f"unreadable: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DamagedArtifactError(root, rel, f"not UTF-8 text at byte {e.start}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise DamagedArtifactError(root, rel, f"not valid JSON: {getattr(e, 'msg', e)}") from None
    except RecursionError:
        raise DamagedArtifactError(root, rel, "JSON nested too deeply") from None


def verify_checksums(folder: str | Path, root: str | Path, hashed: Callable[[str], bool],
                     full: bool | None = None) -> bool:
    """Check ``folder/checksums.json`` against the files; ``hashed(name)`` says whose SHA-256 to compare
    (all of them when ``full``, default: under ``MRMKG_VERIFY_ALL=1``). Returns False when the folder has
    no manifest (the caller warns), True when everything matches; raises :class:`DamagedArtifactError`
    otherwise."""
    folder, root = Path(folder), Path(root)
    path = folder / CHECKSUMS
    if not path.exists():
        return False
    rel = _rel(path, root)
    mf = read_json(path, root)
    files = mf.get("files") if isinstance(mf, dict) else None
    if not isinstance(mf, dict) or mf.get("format_version") != FORMAT_VERSION or not isinstance(files, dict):
        raise DamagedArtifactError(root, rel, f'expected {{"format_version": {FORMAT_VERSION}, "files": {{...}}}}')
    full = verify_all() if full is None else full
    for name, rec in files.items():
        if (not isinstance(rec, dict) or not isinstance(rec.get("size"), int) or not isinstance(rec.get("sha256"), str)
                or "/" in name or "\\" in name or name in ("", ".", "..")):
            raise DamagedArtifactError(root, rel, f"entry {name!r} is not {{size, sha256}} of a file in the folder")
        p = folder / name
        frel = _rel(p, root)
        if not p.is_file():
            raise DamagedArtifactError(root, frel, "missing")
        size = p.stat().st_size
        if size != rec["size"]:
            raise DamagedArtifactError(root, frel, f"{size} bytes, the manifest says {rec['size']}")
        if (full or hashed(name)) and sha256_file(p) != rec["sha256"]:
            raise DamagedArtifactError(root, frel, "content differs from the manifest (SHA-256 mismatch)")
    return True


def warn_unverified(folder: str | Path, what: str) -> None:
    warnings.warn(f"{what} {folder} has no {CHECKSUMS} (written before mrmkg verified its artifacts): its files "
                  f"are checked for structure only; rebuild it with `mrmkg kg build` to add one",
                  UnverifiedArtifactWarning, stacklevel=3)


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


def require(root: Path, rel: str, obj: dict, key: str, types: tuple, what: str | None = None):
    """``obj[key]`` with one of ``types``, or a :class:`DamagedArtifactError` naming the key."""
    if key not in obj:
        raise DamagedArtifactError(root, rel, f"no {key!r} key")
    v = obj[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        raise DamagedArtifactError(root, rel, f"{key!r} is {type(v).__name__}, expected {what or types[0].__name__}")
    return v


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
