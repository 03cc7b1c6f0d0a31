"""Artifacts that verify themselves: the checksum manifest (``checksums.json``) of a folder mrmkg wrote.

Graph folders and their indexes (:mod:`mrmkg.kg.manifest`), model folders (``MRMKG.save_pretrained``)
and training checkpoints and a run's ``final/`` (:mod:`mrmkg.engine.checkpoint`) write, *last*, after every other file::

    {"format_version": 1, "kind": "graph" | "index" | "model" | "checkpoint" | "final",
     "files": {"graph.json": {"size": 891234, "sha256": "..."}, ...}}

so a folder whose writer was interrupted, or whose files were later truncated, replaced or deleted,
does not match it. On load (:func:`verify_checksums`) every listed file must exist with its recorded
size, and the SHA-256 of the files the caller names (``hashed``) must match; every mismatch is listed.

Independently of the manifest, loaders check the content (JSON types and keys, array and tensor
shapes and dtypes, id ranges). Every problem raises a :class:`DamagedArtifactError` (an
:class:`~mrmkg.errors.InputError`): "<artifact> X is damaged: FILE (what is wrong); <what to do>".
Folders written before manifests existed load with an :class:`UnverifiedArtifactWarning`.

The manifest proves a file is the one its writer recorded, not that the writer was honest: a stranger
can write a matching manifest, so content checks stay, and native parsers (FAISS) still see only
files that passed them.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json, sha256_file

CHECKSUMS = "checksums.json"
FORMAT_VERSION = 1


class DamagedArtifactError(InputError):
    """A folder mrmkg built does not match its manifest or holds invalid content.

    ``artifact`` and ``remedy`` say what the folder is and how to get a good one; this base class
    speaks of graph folders (the first artifacts that verified themselves), :class:`DamagedCheckpointError`
    of checkpoints. ``problems``: every ``(file, what)`` found (``file``/``what``: the first)."""

    artifact = "graph folder"

    def __init__(self, root: str | Path, file: str, what: str, problems: list[tuple[str, str]] | None = None,
                 remedy: str | None = None):
        self.root, self.file, self.what = str(root), file, what
        self.problems = problems or [(file, what)]
        listed = "; ".join(f"{f} ({w})" for f, w in self.problems)
        super().__init__(f"{self.artifact} {root} is damaged: {listed}; {remedy or self.remedy()}")
        self.path = str(Path(root) / file)

    def remedy(self) -> str:
        return f"rebuild it with `mrmkg kg build SRC --out {self.root}`"


class DamagedCheckpointError(DamagedArtifactError):
    """A model folder (``save_pretrained``) or a training checkpoint that is not what its writer wrote."""

    artifact = "checkpoint"

    def remedy(self) -> str:
        return "train it again (`mrmkg train`) or use another checkpoint"


class UnverifiedArtifactWarning(UserWarning):
    """A folder written before checksum manifests existed: loaded, but its files cannot be verified."""


def verify_all() -> bool:
    """Hash every listed file, memory-mapped arrays included (``MRMKG_VERIFY_ALL=1``)."""
    return os.environ.get("MRMKG_VERIFY_ALL", "") not in ("", "0")


def rel(path: Path, root: Path) -> str:
    """``path`` as error messages name it: relative to the artifact's root."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def write_checksums(folder: str | Path, names: Iterable[str], kind: str) -> None:
    """Record size and SHA-256 of ``names`` (files in ``folder``) in ``folder/checksums.json``; call it last."""
    folder = Path(folder)
    files = {n: {"size": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in sorted(names)}
    atomic_write_json(folder / CHECKSUMS, {"format_version": FORMAT_VERSION, "kind": kind, "files": files})


def read_json(path: Path, root: Path, error: type[DamagedArtifactError] = DamagedArtifactError):
    """Parse a JSON file of a built folder; any problem is an ``error`` naming the file."""
    name = rel(path, root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(root, name, "missing") from None
    except OSError as e:
        raise error(root, name, f"unreadable: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(root, name, f"not UTF-8 text at byte {e.start}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise error(root, name, f"not valid JSON: {getattr(e, 'msg', e)}") from None
    except RecursionError:
        raise error(root, name, "JSON nested too deeply") from None


def verify_checksums(folder: str | Path, root: str | Path, hashed: Callable[[str], bool],
                     full: bool | None = None, kind: str | None = None,
                     error: type[DamagedArtifactError] = DamagedArtifactError) -> bool:
    """Check ``folder/checksums.json`` against the files; ``hashed(name)`` says whose SHA-256 to compare
    (all of them when ``full``, default: under ``MRMKG_VERIFY_ALL=1``); ``kind``, when given, must be the
    manifest's. Returns False when the folder has no manifest (the caller warns), True when everything
    matches; raises ``error`` listing every mismatch otherwise."""
    folder, root = Path(folder), Path(root)
    path = folder / CHECKSUMS
    if not path.exists():
        return False
    mrel = rel(path, root)
    mf = read_json(path, root, error)
    files = mf.get("files") if isinstance(mf, dict) else None
    if not isinstance(mf, dict) or mf.get("format_version") != FORMAT_VERSION or not isinstance(files, dict):
        raise error(root, mrel, f'expected {{"format_version": {FORMAT_VERSION}, "files": {{...}}}}')
    if kind is not None and mf.get("kind") != kind:
        raise error(root, mrel, f"the manifest of a {mf.get('kind')!r} folder, expected {kind!r}")
    full = verify_all() if full is None else full
    problems: list[tuple[str, str]] = []
    for name, rec in files.items():
        if (not isinstance(rec, dict) or not isinstance(rec.get("size"), int) or not isinstance(rec.get("sha256"), str)
                or "/" in name or "\\" in name or name in ("", ".", "..")):
            raise error(root, mrel, f"entry {name!r} is not {{size, sha256}} of a file in the folder")
        p = folder / name
        frel = rel(p, root)
        if not p.is_file():
            problems.append((frel, "missing"))
            continue
        size = p.stat().st_size
        if size != rec["size"]:
            problems.append((frel, f"{size} bytes, the manifest says {rec['size']}"))
        elif (full or hashed(name)) and sha256_file(p) != rec["sha256"]:
            problems.append((frel, "content differs from the manifest (SHA-256 mismatch)"))
    if problems:
        raise error(root, *problems[0], problems=problems)
    return True


def warn_unverified(folder: str | Path, what: str, remedy: str = "rebuild it with `mrmkg kg build` to add one") -> None:
    """Warn that ``folder`` (a ``what``) has no manifest: it loads, checked for structure only."""
    warnings.warn(f"{what} {folder} has no {CHECKSUMS} (written before mrmkg verified its artifacts): its files "
                  f"are checked for structure only; {remedy}", UnverifiedArtifactWarning, stacklevel=3)


def require(root: Path, name: str, obj: dict, key: str, types: tuple, what: str | None = None,
            error: type[DamagedArtifactError] = DamagedArtifactError):
    """``obj[key]`` with one of ``types``, or an ``error`` naming the key (``name``: the file)."""
    if key not in obj:
        raise error(root, name, f"no {key!r} key")
    v = obj[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        raise error(root, name, f"{key!r} is {type(v).__name__}, expected {what or types[0].__name__}")
    return v


#: safetensors' dtype names of the torch dtypes trainable parameters use
SAFETENSORS_DTYPES = {"torch.float32": "F32", "torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float64": "F64"}


def safetensors_header(path: Path, root: Path, error: type[DamagedArtifactError] = DamagedArtifactError
                       ) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of a safetensors file whose header parses and whose tensors cover the
    file exactly (a truncated or padded file is damaged); reads the header only."""
    from safetensors import SafetensorError, safe_open

    name = rel(path, root)
    if not path.is_file():
        raise error(root, name, "missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise error(root, name, f"not a valid safetensors file: {e}") from None


def check_tensors(header: dict[str, tuple[tuple[int, ...], str]], expected: dict, root: Path, name: str,
                  error: type[DamagedArtifactError] = DamagedArtifactError) -> None:
    """The tensors of a safetensors ``header`` are exactly ``expected`` (``{name: parameter}``): the same
    names, shapes and dtypes."""
    missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or extra:
        raise error(root, name, f"the tensors are not the model's trainable parameters: missing {missing[:5]}"
                                f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                                f"{' ...' if len(extra) > 5 else ''}")
    for k, p in expected.items():
        shape, dtype = header[k]
        if shape != tuple(p.shape):
            raise error(root, name, f"{k} has shape {list(shape)}, the model's is {list(p.shape)}")
        want = SAFETENSORS_DTYPES.get(str(p.dtype), str(p.dtype))
        if dtype != want:
            raise error(root, name, f"{k} has dtype {dtype}, the model's is {want}")
