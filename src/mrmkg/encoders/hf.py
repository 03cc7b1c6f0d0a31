"""Helpers shared by the Hugging Face backed encoders: resolving an id-or-folder, giving it a
stable identity for cache keys, and loading a CLIP model with friendly errors.

Identity matters because ``encoder.name`` keys the on-disk embedding cache: two different local
folders (say ``./clip`` fine-tuned twice) must never share cached vectors, so a folder's identity
includes a hash of its config and weight files, not just its path.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from mrmkg.errors import InputError

# Files whose bytes decide what a folder computes. Tokenizer/processor files matter too: a changed
# vocabulary or normalisation changes the vectors.
_IDENTITY_GLOBS = ("config.json", "*.safetensors", "*.bin", "*.gguf", "tokenizer.json", "vocab.json",
                   "merges.txt", "vocab.txt", "preprocessor_config.json", "tokenizer_config.json")


def is_local(id_or_folder: str | os.PathLike) -> bool:
    """True when ``id_or_folder`` names an existing local directory (else it is a hub id)."""
    return Path(id_or_folder).expanduser().is_dir()


@lru_cache(maxsize=64)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    # Keyed by (path, size, mtime_ns) so that re-creating an encoder in the same process does not
    # re-read gigabytes of weights, while an edited file still gets a new hash.
    h = hashlib.sha256()
    for path, _, _ in files:
        h.update(Path(path).name.encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def folder_hash(folder: str | os.PathLike, n: int = 12) -> str:
    """First ``n`` hex digits of a sha256 over the folder's config, weight and tokenizer files."""
    folder = Path(folder).expanduser().resolve()
    files = sorted({p for g in _IDENTITY_GLOBS for p in folder.glob(g) if p.is_file()})
    if not files:
        raise InputError("model folder has no config.json or weight files", path=folder)
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(key)[:n]


def hub_revision(model_id: str) -> str | None:
    """The commit of ``model_id``'s snapshot in the local Hugging Face cache, if it is there."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # malformed id, no hub library: no revision to report
        return None
    # .../models--org--name/snapshots/<commit>/config.json
    return Path(cached).parent.name if isinstance(cached, str) else None


def identity(prefix: str, id_or_folder: str | os.PathLike) -> str:
    """A cache-key name: ``"<prefix>:<folder name>@<hash12>"`` for a folder;
    ``"<prefix>:<hub id>@<commit12>"`` for a hub id in the local HF cache (so an updated hub model
    gets a new key), ``"<prefix>:<hub id>"`` when its snapshot is not cached yet."""
    if is_local(id_or_folder):
        p = Path(id_or_folder).expanduser().resolve()
        return f"{prefix}:{p.name}@{folder_hash(p)}"
    rev = hub_revision(str(id_or_folder))
    return f"{prefix}:{id_or_folder}@{rev[:12]}" if rev else f"{prefix}:{id_or_folder}"


def resolve(id_or_folder: str | os.PathLike) -> str:
    """A string ``from_pretrained`` accepts: an absolute folder path, or the hub id unchanged."""
    if is_local(id_or_folder):
        return str(Path(id_or_folder).expanduser().resolve())
    s = str(id_or_folder)
    if s.startswith((".", "/", "~")) or os.sep in s and s.count("/") != 1:
        # Looks like a path, not "org/name": say so instead of a confusing hub error.
        raise InputError("model folder not found", path=s)
    return s


def load_clip(id_or_folder: str | os.PathLike):
    """``CLIPModel`` (frozen, eval, float32, CPU) from a hub id (must be in the local HF cache when
    offline) or a folder written by ``save_pretrained``."""
    from transformers import CLIPModel

    src = resolve(id_or_folder)
    try:
        model = CLIPModel.from_pretrained(src, dtype="float32")
    except OSError as e:
        raise InputError(f"cannot load a CLIP model from {src!r}: {e}. Give a local folder written by "
                         "save_pretrained, or a hub id already in the Hugging Face cache", path=src) from None
    model.eval().requires_grad_(False)
    return model
