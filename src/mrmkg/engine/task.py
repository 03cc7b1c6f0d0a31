"""What the engine trains: a :class:`Task` (registered by name in :mod:`mrmkg.tasks.registry`), and
the :class:`Objective` module through which the engine calls its model and loss."""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

__all__ = ["Task", "Objective"]


@runtime_checkable
class Task(Protocol):
    """What the engine trains. ``from_config(args, config)`` builds one from ``task_args``.

    A task may also define ``loss(model, batch) -> Tensor`` (a scalar); without it the loss is
    ``model(batch).loss``.
    """

    def build_model(self) -> torch.nn.Module:
        """A fresh model (called right after seeding, identically on every rank). The parameters to
        train are those with ``requires_grad``; ``save_pretrained(dir)``, when the model has it,
        writes ``final/model``."""

    def train_examples(self) -> Sequence[Any]:
        """The training examples (indexable, fixed order)."""

    def collate(self, examples: list[Any]) -> Any:
        """A batch for the model (moved to the device by ``accelerate.utils.send_to_device``)."""

    def evaluate(self, model: torch.nn.Module, batch_size: int) -> dict[str, float]:
        """Metrics on the task's dev split (main process only)."""


class Objective(torch.nn.Module):
    """The task's model and its loss as one module whose output is the loss tensor.

    DDP needs this: with ``find_unused_parameters`` it walks the autograd graph from the tensors it
    finds in the output, and it cannot see inside an arbitrary output object (every parameter would
    be marked unused, then ready twice).
    """

    def __init__(self, model: torch.nn.Module, loss: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch) -> torch.Tensor:
        """The scalar training loss of ``batch``."""
        if self.loss is None:
            return self.model(batch).loss
        return self.loss(self.model, batch)
