"""Where mrmkg keeps caches and where it looks for the shared real data."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$MRMKG_CACHE`` or ``~/.cache/mrmkg``, created on demand; ``parts`` are sub-folders."""
    root = Path(os.environ.get("MRMKG_CACHE") or Path.home() / ".cache" / "mrmkg")
    p = root.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def shared_data_dir() -> Path | None:
    """The real data folder (``$MRMKG_DATA`` or ``../shared/data`` beside the checkout), if present."""
    env = os.environ.get("MRMKG_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" for p in here.parents[:5]]
    candidates.append(Path.cwd().parent / "shared" / "data")
    for c in candidates:
        if (c / "markg").is_dir() or (c / "mars").is_dir():
            return c
    return None
