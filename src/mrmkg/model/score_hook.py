"""The one place where an optional module may change the core ranking: a *score hook*.

The core scorer (:meth:`mrmkg.model.mrmkg.MRMKG.rank_scores`) scores every candidate from the
answer slot with the entity head, ``head [B, C]``. A model built with a score hook (today the MARS
graph pointer, :mod:`mrmkg.model.extensions.pointer`, configured by ``MRMKGConfig.pointer``) then
hands it that ranking; the hook returns the final one and, in training, the ranking loss:

* ``hook(ranking, slot, batch, encoded) -> Ranking``: ``ranking.scores`` is what ``rank()``
  returns; ``ranking.state`` is whatever the hook's loss needs (None when it changed nothing);
* ``hook.loss(ranking, answer_pos) -> (rank_loss, aux)``: the task's ranking loss, and auxiliary
  losses ``{name: (weight, loss)}`` that the model adds to its total (and reports by name).

Without a hook, or when the hook leaves ``state`` None, the ranking loss is the cross-entropy of
``scores`` over the candidates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Ranking:
    """Candidate scores of one batch. ``scores [B, C]``: the ranking; ``head [B, C]``: the entity
    head's own scores; ``candidates [C] | [B, C]``: the token ids scored (the batch's, or every entity /
    relation token); ``state``: the score hook's data for its loss (None: no hook changed the scores)."""

    scores: torch.Tensor
    head: torch.Tensor
    candidates: torch.Tensor
    state: Any = None


class ScoreHook(nn.Module):
    """Base of modules that re-rank the entity head's candidates (see the module docstring)."""

    def forward(self, ranking: Ranking, slot: torch.Tensor, batch, encoded) -> Ranking:
        """``slot [B, d]`` the answer-slot hidden states; ``batch`` the ``MRMKGBatch``; ``encoded`` the
        model's :class:`~mrmkg.model.mrmkg.Encoded` (graph-encoder node states ``[N, h]`` and so on)."""
        raise NotImplementedError

    def loss(self, ranking: Ranking, answer_pos: torch.Tensor) -> tuple[torch.Tensor, dict[str, tuple[float, torch.Tensor]]]:
        """``(rank_loss, {name: (weight, loss)})`` for ``answer_pos [B]`` (-100 = no answer)."""
        raise NotImplementedError
