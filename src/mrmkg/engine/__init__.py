"""The training engine: one loop for stage 1 (MarKG pretraining) and stage 2 (a task), on accelerate.

What it trains is a *task* (:class:`~mrmkg.engine.task.Task`, named in a config and found in
:mod:`mrmkg.tasks.registry`): it builds the model, lists the training examples, collates them into
batches, evaluates, and may define its loss (else ``model(batch).loss``). The parameters trained
are those with ``requires_grad``; ``save_pretrained(dir)``, when the model has it, writes the
final weights.

Guarantees, and how they are kept:

* **Same seed, same result.** The model is built right after seeding; the data order of epoch
  ``e`` is a permutation drawn from its own generator seeded with ``(seed, e)``, independent of
  every other random draw; the training RNGs (python, numpy, torch) are seeded with
  ``seed + rank``.
* **Exact resume.** A checkpoint (every ``checkpoint_every`` optimizer steps and at the end) holds
  the trainable weights, the optimizer and scheduler states, every rank's RNG states and the data
  position (accelerate's ``save_state`` plus ``trainer_state.json``; layout in
  :mod:`mrmkg.engine.checkpoint`). It is written whole or not at all, so a run killed at any
  moment (SIGKILL included) leaves only complete checkpoints, and ``resume=True`` continues from
  the newest one as if nothing had happened: same weights, same losses, same metrics (bit for bit
  on CPU with the same thread count).
* **DDP.** The same entry point runs under ``accelerate launch --num_processes K``. Each optimizer
  step consumes ``batch_size * K * grad_accum`` examples of the epoch permutation; rank ``r`` takes
  its slice of each global micro-batch. An epoch's incomplete last optimizer step is dropped
  (``drop_last``) so every step sees the same number of examples.

Modules: :mod:`~mrmkg.engine.config` (TrainConfig), :mod:`~mrmkg.engine.task` (the Task protocol),
:mod:`~mrmkg.engine.data` (data order and position), :mod:`~mrmkg.engine.optim`,
:mod:`~mrmkg.engine.checkpoint`, :mod:`~mrmkg.engine.init_from`, :mod:`~mrmkg.engine.evaluate`
(evaluation during training, summary), :mod:`~mrmkg.engine.loop` (:func:`train`).

The names below are imported on first use, so that reading a config (``mrmkg train --help``,
``--list-fields``) does not import torch.
"""
from __future__ import annotations

import importlib

#: public name -> the engine module defining it
_EXPORTS = {
    "OptimConfig": "config", "TrainConfig": "config", "load_train_config": "config",
    "Task": "task",
    "EpochSampler": "data",
    "build_optimizer": "optim",
    "latest_checkpoint": "checkpoint",
    "load_init": "init_from",
    "TrainResult": "loop", "train": "loop",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
