"""The data order (:class:`EpochSampler`) and where a run stands in it (:class:`DataPosition`).

Examples are collated by the task on every rank (no DataLoader workers: the 2-core target machine
has nothing to spare, and it keeps the data position a step count).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["EpochSampler", "DataPosition"]


class EpochSampler:
    """Deterministic, resumable data order: epoch ``e`` is a permutation seeded by ``(seed, e)``.

    One optimizer step = ``grad_accum`` micro-batches; one micro-batch = ``batch_size`` examples
    per rank, i.e. ``batch_size * world`` consecutive entries of the permutation, of which rank
    ``r`` takes entries ``[r * batch_size, (r + 1) * batch_size)``.
    """

    def __init__(self, n: int, seed: int, batch_size: int, grad_accum: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.batch_size, self.grad_accum = n, seed, batch_size, grad_accum
        self.rank, self.world = rank, world
        self.examples_per_step = batch_size * world * grad_accum
        self.steps_per_epoch = n // self.examples_per_step

    def permutation(self, epoch: int) -> np.ndarray:
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.n, generator=g).numpy()

    def micro_batches(self, epoch: int, step: int) -> list[np.ndarray]:
        """This rank's example indices for each micro-batch of optimizer step ``step`` of ``epoch``."""
        perm = self.permutation(epoch)
        out = []
        for m in range(self.grad_accum):
            start = (step * self.grad_accum + m) * self.batch_size * self.world + self.rank * self.batch_size
            out.append(perm[start : start + self.batch_size])
        return out


class DataPosition:
    """Where a run stands: optimizer steps done (epoch and step in epoch follow from the count), the
    loss history, and the running sum of step losses since the last history record.

    ``state_dict()`` is the ``trainer_state.json`` of every checkpoint; ``load_state_dict`` puts a
    resumed run back exactly there.
    """

    def __init__(self, sampler: EpochSampler, total_steps: int):
        self.sampler, self.total_steps = sampler, total_steps
        self.global_step = 0
        self.history: list[dict] = []
        self.loss_acc, self.loss_n = 0.0, 0

    def micro_batches(self) -> list[np.ndarray]:
        """This rank's example indices for the next optimizer step."""
        return self.sampler.micro_batches(*divmod(self.global_step, self.sampler.steps_per_epoch))

    def step_done(self, loss: float, lr: float, log_every: int) -> None:
        """Count one optimizer step of mean loss ``loss``; every ``log_every`` steps (and at the last
        one) append the mean loss since the previous record to the history."""
        self.global_step += 1
        self.loss_acc, self.loss_n = self.loss_acc + loss, self.loss_n + 1
        if self.global_step % log_every == 0 or self.global_step == self.total_steps:
            self.history.append({"step": self.global_step, "loss": self.loss_acc / self.loss_n, "lr": lr})
            self.loss_acc, self.loss_n = 0.0, 0

    @property
    def last_loss(self) -> float | None:
        """The mean loss of the newest history record (None before the first)."""
        return self.history[-1]["loss"] if self.history else None

    def state_dict(self) -> dict:
        epoch, in_epoch = divmod(self.global_step, self.sampler.steps_per_epoch)
        return {"global_step": self.global_step, "epoch": epoch, "step_in_epoch": in_epoch,
                "samples": self.global_step * self.sampler.examples_per_step, "total_steps": self.total_steps,
                "steps_per_epoch": self.sampler.steps_per_epoch, "world_size": self.sampler.world,
                "history": self.history, "loss_acc": self.loss_acc, "loss_n": self.loss_n}

    def load_state_dict(self, state: dict) -> None:
        self.global_step, self.history = state["global_step"], state["history"]
        self.loss_acc, self.loss_n = state["loss_acc"], state["loss_n"]
