"""``init_from``: start a run from another run's trained weights, matched by name and shape.

The source is a run folder (its ``final/``, else its newest checkpoint), its ``final/``, a model
folder (``save_pretrained`` output) or a checkpoint folder. Every tensor of the source must find
its place in the model (``init_skip`` leaves name prefixes out); the model's trainable tensors that
the source lacks keep their init and are reported by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from mrmkg.engine.checkpoint import latest_checkpoint
from mrmkg.errors import InputError
from mrmkg.manifest import DamagedCheckpointError, safetensors_header, verify_checksums

__all__ = ["InitReport", "find_weights", "load_init"]

#: weight files, in the order they are looked for: a checkpoint's or save_pretrained's, then the
#: trainable.safetensors of a final/ folder whose model has no save_pretrained
WEIGHT_FILES = ("model.safetensors", "trainable.safetensors")


@dataclass
class InitReport:
    """What :func:`load_init` did: model names loaded, trainable model names left at their init,
    source names left out by ``init_skip``."""

    file: Path
    loaded: list[str]
    kept_init: list[str]
    excluded: list[str]

    def line(self) -> str:
        first = ", ".join(self.kept_init[:5]) + (", ..." if len(self.kept_init) > 5 else "")
        return (f"init_from {self.file}: loaded {len(self.loaded)} tensors, kept init for {len(self.kept_init)} "
                f"(excluded by init_skip: {len(self.excluded)})" + (f": {first}" if self.kept_init else ""))

    def summary(self) -> dict:
        return {"file": str(self.file), "loaded": len(self.loaded), "kept_init": len(self.kept_init),
                "kept_init_names": self.kept_init[:5], "excluded": len(self.excluded)}


def find_weights(src: str | Path) -> Path:
    """The weights file that ``init_from: src`` names (see the module docstring)."""
    src = Path(src)
    for folder in (src, src / "model", src / "final" / "model", src / "final", latest_checkpoint(src)):
        for name in WEIGHT_FILES:
            if folder is not None and (folder / name).is_file():
                return folder / name
    raise InputError(f"field 'init_from': no {' or '.join(WEIGHT_FILES)} in this folder, its model/, its final/ "
                     "or its checkpoints/", path=src)


class InitFromDamagedError(DamagedCheckpointError):
    """The weights ``init_from`` names are not what their writer wrote (manifest or safetensors header)."""

    def remedy(self) -> str:
        return "point field 'init_from' at another run, or train that one again"


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``file``, checked first against its folder's manifest (when it has one: size and
    SHA-256) and its safetensors header, so a damaged file is named instead of failing inside safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = file.parent
    verify_checksums(folder, folder, hashed=lambda n: n == file.name, error=InitFromDamagedError)
    safetensors_header(file, folder, InitFromDamagedError)
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as e:  # passed the header check, but the data is unreadable
        raise InitFromDamagedError(folder, file.name, f"not a valid safetensors file: {e}") from None


def _as_model_names(names: list[str], model: torch.nn.Module) -> dict[str, str]:
    """Each source name as the model spells it. A wrapper model's ``save_pretrained`` writes its
    inner model's names (``graph_encoder.x``) while its own are ``mrmkg.graph_encoder.x``, and a
    plain model may start from a wrapper's checkpoint: add, or strip, the one leading component that
    makes the most names match (none, when that matches as many)."""
    params = dict(model.named_parameters())
    heads = sorted({n.split(".", 1)[0] + "." for n in [*params, *names] if "." in n})
    spellings = [lambda n: n]
    for h in heads:
        spellings += [lambda n, h=h: h + n, lambda n, h=h: n.removeprefix(h)]
    best = max(spellings, key=lambda f: sum(f(n) in params for n in names))
    return {n: best(n) for n in names}


def load_init(model: torch.nn.Module, src: str | Path, skip: Sequence[str] = ()) -> InitReport:
    """Copy the weights ``init_from: src`` names into ``model``, except names starting with a prefix
    in ``skip`` (source or model spelling). InputError (naming the file) when a prefix in ``skip``
    matches nothing, when the source has a tensor the model lacks or shapes differently, or when
    nothing is left to load."""
    file = find_weights(src)
    state = _read_weights(file)
    name = _as_model_names(list(state), model)
    skip = tuple(skip)
    unused = [s for s in skip if not any(n.startswith(s) or name[n].startswith(s) for n in state)]
    if unused:
        raise InputError(f"field 'init_skip': {unused} match no tensor of this file", path=file)
    excluded = [n for n in state if n.startswith(skip) or name[n].startswith(skip)]
    load = {n: t for n, t in state.items() if n not in excluded}
    params = dict(model.named_parameters())
    unknown = [n for n in load if name[n] not in params]
    misshaped = [f"{n} {tuple(t.shape)} (model: {tuple(params[name[n]].shape)})"
                 for n, t in load.items() if name[n] in params and params[name[n]].shape != t.shape]
    if unknown or misshaped:
        problems = ([f"{len(unknown)} tensors the model does not have ({', '.join(unknown[:5])})"] if unknown else []) \
            + ([f"{len(misshaped)} of another shape ({', '.join(misshaped[:5])})"] if misshaped else [])
        raise InputError(f"field 'init_from': {'; '.join(problems)}; init_skip can leave them out", path=file)
    if not load:
        why = f"init_skip excludes all {len(excluded)} tensors" if excluded else "the file holds no tensors"
        raise InputError(f"field 'init_from': nothing to load ({why})", path=file)
    with torch.no_grad():
        for n, t in load.items():
            params[name[n]].copy_(t.to(params[name[n]].dtype))
    loaded = {name[n] for n in load}
    kept_init = [n for n, p in params.items() if p.requires_grad and n not in loaded]
    return InitReport(file, sorted(loaded), kept_init, excluded)
