"""Resumable checkpoints (accelerate's ``save_state`` / ``load_state``) and the run's ``final/`` folder.

A run folder holds::

    checkpoints/step-XXXXXXXX/     every checkpoint_every steps and at the end; the newest keep_checkpoints
        model.safetensors          the trainable parameters only, by the task model's names
        optimizer.bin              optimizer state  } accelerate's torch.save pickles, read back with
        scheduler.bin              scheduler state  } weights_only=True
        random_states_<rank>.pkl   each rank's python / numpy / torch (/ cuda) RNG states (the same)
        trainer_state.json         the data position (DataPosition.state_dict)
        train_config.yaml
        checksums.json             written last: each file's size and SHA-256 (mrmkg.manifest)
    final/
        model/                     model.save_pretrained() (with its own checksums.json), when the model has it; else
        trainable.safetensors      the trainable parameters
        train_config.yaml, trainer_state.json, metrics.json
        checksums.json             written last, kind "final": the files above (not model/'s); checked by
                                   mrmkg.pipeline.resolve_checkpoint, i.e. whenever the run is loaded

A checkpoint folder is built under a temporary name and renamed when complete
(:func:`mrmkg.fileio.atomic_dir`), so a run killed at any moment leaves only complete ones.

``--resume`` verifies the checkpoint before anything is restored: every file against
``checksums.json`` (size and SHA-256), ``trainer_state.json``'s keys and types, the weights'
safetensors header against the model's trainable parameters (names, shapes, dtypes), the optimizer
and scheduler files as ``weights_only`` pickles. Any problem is a
:class:`~mrmkg.manifest.DamagedCheckpointError` ("checkpoint X is damaged: FILE (what); ...", exit 2);
a checkpoint from before manifests resumes with an ``UnverifiedArtifactWarning``.

The data position is written and read here as JSON rather than registered with accelerate's
``register_for_checkpointing``: accelerate (1.15) reads registered objects back with
``torch.load(weights_only=False)``, i.e. it would unpickle whatever a checkpoint folder holds.
"""
from __future__ import annotations

import contextlib
import math
import pickle
import re
import shutil
from functools import partial
from pathlib import Path

import torch
import yaml

from mrmkg.engine.config import TrainConfig
from mrmkg.engine.data import DataPosition
from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_json, atomic_write_text, sha256_bytes
from mrmkg.manifest import (CHECKSUMS, DamagedCheckpointError, check_tensors, read_json, require, safetensors_header,
                            verify_checksums, warn_unverified, write_checksums)
from mrmkg.yamlconfig import to_dict

__all__ = ["latest_checkpoint", "trainable_state", "load_trainable_state", "weights_digest", "save_trainable_only",
           "save_checkpoint", "verify_checkpoint", "restore_checkpoint", "prune_checkpoints", "write_final"]

_STEP_DIR = re.compile(r"^step-(\d+)$")
WEIGHTS = "model.safetensors"  # accelerate's name (SAFE_WEIGHTS_NAME) for a checkpoint's model file
TRAINER_STATE = "trainer_state.json"
#: what to do about a damaged step checkpoint (the run folder may hold an earlier, intact one)
_RESUME_REMEDY = ("delete that folder to resume from the checkpoint before it, or start again with --overwrite")

#: the DamagedCheckpointError of a step checkpoint (its remedy names --resume's options)
_damaged = partial(DamagedCheckpointError, remedy=_RESUME_REMEDY)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete step checkpoint under ``<output_dir>/checkpoints`` (or None)."""
    d = Path(output_dir) / "checkpoints"
    if not d.is_dir():
        return None
    best = None
    for p in d.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "trainer_state.json").is_file():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), p)
    return None if best is None else best[1]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the trainable parameters (detached contiguous copies, fp32 as trained)."""
    return {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``state`` (read from ``path``) into the model's trainable parameters; the names and
    shapes must be exactly the trainable set."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state))
    wrong = sorted(n for n, t in state.items() if n not in params or params[n].shape != t.shape)
    if missing or wrong:
        raise InputError(f"checkpoint does not match the model: missing {missing[:5]}, "
                         f"unexpected or mis-shaped {wrong[:5]}", path=path)
    with torch.no_grad():
        for name, t in state.items():
            params[name].copy_(t.to(params[name].dtype))


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the trainable parameters' names and fp32 values (equal on every DDP rank)."""
    h = []
    for n, p in model.named_parameters():
        if p.requires_grad:
            h.append(n.encode() + p.detach().float().cpu().contiguous().numpy().tobytes())
    return sha256_bytes(b"".join(h))


def save_trainable_only(accelerator, model: torch.nn.Module) -> None:
    """Make ``accelerator.save_state`` write, and ``load_state`` read, only ``model``'s trainable
    parameters (by ``model``'s own names): left alone, accelerate writes the whole state dict,
    frozen LLM included (hundreds of MB a checkpoint), and loads it back strictly."""
    from safetensors.torch import load_file

    def save(models, weights, output_dir):
        weights[:] = [trainable_state(model)]

    def load(models, input_dir):
        root = Path(input_dir)
        path = root / WEIGHTS
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        err = _damaged
        check_tensors(safetensors_header(path, root, err), params, root, WEIGHTS, err)  # before a byte is read
        load_trainable_state(model, load_file(str(path)), path)
        models.clear()  # loaded: accelerate must not load them again

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def save_checkpoint(accelerator, output_dir: Path, state: dict, config: TrainConfig) -> None:
    """Write ``checkpoints/step-<global_step>`` atomically (every rank adds its RNG states), then
    drop all but the newest ``keep_checkpoints``."""
    from accelerate.utils import broadcast_object_list

    main = accelerator.is_main_process
    path = output_dir / "checkpoints" / f"step-{state['global_step']:08d}"
    with (atomic_dir(path) if main else contextlib.nullcontext()) as tmp:
        where = [str(tmp)]
        if accelerator.num_processes > 1:
            broadcast_object_list(where)  # the main process's temporary folder, for every rank
        accelerator.save_state(where[0])
        if main:
            atomic_write_json(tmp / TRAINER_STATE, state)
            atomic_write_text(tmp / "train_config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
        accelerator.wait_for_everyone()  # every rank's files are in before the manifest and the rename
        if main:
            write_checksums(tmp, [p.name for p in Path(tmp).iterdir() if p.is_file() and p.name != CHECKSUMS],
                            kind="checkpoint")
    if main:
        prune_checkpoints(output_dir, config.keep_checkpoints)


def verify_checkpoint(checkpoint: Path) -> dict:
    """The checked ``trainer_state.json`` of a step checkpoint: the folder against its manifest (every
    file hashed: a checkpoint holds the trainable weights and their optimizer state only), then the
    state's keys and types. A checkpoint without a manifest (older mrmkg) is checked for structure,
    with a warning."""
    checkpoint = Path(checkpoint)
    err = _damaged
    if not verify_checksums(checkpoint, checkpoint, hashed=lambda name: True, kind="checkpoint", error=err):
        warn_unverified(checkpoint, "checkpoint", "it resumes unverified")
    state = read_json(checkpoint / TRAINER_STATE, checkpoint, err)
    if not isinstance(state, dict):
        raise err(checkpoint, TRAINER_STATE, f"a JSON {type(state).__name__}, expected an object")
    for key in ("global_step", "world_size", "loss_n"):
        if require(checkpoint, TRAINER_STATE, state, key, (int,), "an integer", error=err) < 0:
            raise err(checkpoint, TRAINER_STATE, f"{key!r} is negative")
    loss = require(checkpoint, TRAINER_STATE, state, "loss_acc", (int, float), "a number", error=err)
    if not math.isfinite(loss):
        raise err(checkpoint, TRAINER_STATE, f"'loss_acc' is {loss}, expected a finite number")
    history = require(checkpoint, TRAINER_STATE, state, "history", (list,), "a list of records", error=err)
    if not all(isinstance(h, dict) and isinstance(h.get("loss"), (int, float)) for h in history):
        raise err(checkpoint, TRAINER_STATE, "'history' holds a record that is not {step, loss, lr}")
    return state


def restore_checkpoint(accelerator, checkpoint: Path, position: DataPosition) -> None:
    """Put the run back where ``checkpoint`` was written: weights, optimizer, schedule, every rank's
    RNG states, data position; everything verified first (:func:`verify_checkpoint`, the weights'
    header against the model in the load hook of :func:`save_trainable_only`)."""
    from accelerate.utils import load
    from accelerate.utils.constants import OPTIMIZER_NAME, RNG_STATE_NAME, SCHEDULER_NAME

    state = verify_checkpoint(checkpoint)
    if state["world_size"] != accelerator.num_processes:
        raise InputError(f"checkpoint was written by {state['world_size']} processes, this run has "
                         f"{accelerator.num_processes}; the data position would not match", path=checkpoint)
    if not (checkpoint / WEIGHTS).is_file():
        raise InputError(f"no {WEIGHTS}: a checkpoint of an older mrmkg, which cannot be resumed; start again "
                         "(--overwrite), or from its weights (init_from)", path=checkpoint)
    # accelerate reads these with weights_only=True too, but its error would not name the file
    for name in (f"{OPTIMIZER_NAME}.bin", f"{SCHEDULER_NAME}.bin"):
        try:
            torch.load(checkpoint / name, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise _damaged(checkpoint, name, "missing") from None
        except Exception as e:  # UnpicklingError (refused by weights_only), EOFError, RuntimeError (bad zip), ...
            why = " ".join(str(e).split())[:300]
            raise _damaged(checkpoint, name, f"not a weights_only torch file: {type(e).__name__}: "
                                                         f"{why}") from None
    try:
        accelerator.load_state(str(checkpoint))
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as e:  # e.g. optimizer groups that differ
        raise InputError(f"this run cannot continue from it: {type(e).__name__}: {' '.join(str(e).split())[:300]}",
                         path=checkpoint) from None
    # accelerate only logs when it cannot restore the random states; an exact resume must stop instead
    rng_file = checkpoint / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    try:
        restored = torch.equal(load(rng_file)["torch_manual_seed"], torch.get_rng_state())
    except (OSError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError):
        restored = False
    if not restored:
        raise InputError("random states missing or unreadable: the run cannot continue exactly", path=rng_file)
    position.load_state_dict(state)


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    d = output_dir / "checkpoints"
    steps = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_DIR.match(p.name)))
    for _, p in steps[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def write_final(folder: Path, model: torch.nn.Module, config: TrainConfig, state: dict, metrics: dict) -> None:
    """``final/``: the trained weights once (``model/`` by ``save_pretrained``, else
    ``trainable.safetensors``), the config, the trainer state and the metrics, and last its
    ``checksums.json`` (kind ``final``) over its own files: ``train_config.yaml`` rebuilds the task
    whenever the run is loaded, so it is verified like the weights (``model/`` has its own manifest)."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        names = ["train_config.yaml", "trainer_state.json", "metrics.json"]
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp / "model")
        else:
            save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
            names.append("trainable.safetensors")
        atomic_write_text(tmp / "train_config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
        atomic_write_json(tmp / "trainer_state.json", state)
        atomic_write_json(tmp / "metrics.json", metrics)
        write_checksums(tmp, names, kind="final")
