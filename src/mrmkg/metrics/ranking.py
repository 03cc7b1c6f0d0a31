"""Ranking metrics (MarT protocol): the gold answer's rank among scored candidates, Hits@k and MRR.

Ties follow MarT's evaluation (``MarT/lit_models/transformer.py`` in zjunlp/MKG_Analogy, ``_eval``):
the candidates are sorted by score, descending, and the gold's rank is its 1-based position in that
order. MarT calls ``torch.sort`` without ``stable=True``, which leaves the order of tied candidates to
the sort kernel; we use the *stable* descending sort, so a tie is broken by candidate column: rank =
1 + #candidates scored strictly higher + #candidates scored equal that come before the gold's column.
A tie can therefore only cost the gold, never help it, and the same scores always give the same rank.
``ranking_metrics(..., tied=...)`` reports how many golds had a tie (``"tied"``), so a run where ties
matter says so.

Scores must be finite or ``-inf`` (``-inf`` marks candidates masked out as not allowed; a masked gold
ranks after every allowed candidate): a NaN or ``+inf`` anywhere in a row raises
:class:`NonFiniteScoreError` naming the example (a diverged model would otherwise be scored as perfect).

Hits@k = mean(rank <= k) for k in 1, 3, 5, 10; MRR = mean(1 / rank).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mrmkg.errors import InputError

HITS = (1, 3, 5, 10)
TIE_RULE = ("rank = position of the gold after a stable descending sort of the scores (MarT's rule, "
            "ties broken by candidate order: 1 + #strictly higher + #equal before the gold)")


class NonFiniteScoreError(InputError):
    """A row of scores holds NaN or +inf: the model diverged."""

    def __init__(self, message: str, row: int, example_id: str | None = None):
        self.row, self.example_id = row, example_id
        super().__init__(message)


def gold_ranks(scores: torch.Tensor | np.ndarray, gold_pos: Sequence[int], ids: Sequence[str] | None = None,
               return_ties: bool = False):
    """``scores [B, C]``, the gold column of each row -> ranks ``int64 [B]`` (1-based), MarT's tie rule
    (module docstring): 1 + #candidates scored strictly higher + #candidates scored equal in an earlier
    column, i.e. the gold's position after a stable descending sort.

    ``ids`` (``B`` example ids) name the example in errors; without them the row index does.
    ``return_ties=True`` also returns ``tied bool [B]``: the gold shares its score with another candidate.

    Raises:
        NonFiniteScoreError: a row holds NaN or ``+inf`` (``-inf`` marks a masked candidate and is allowed).
    """
    s = torch.as_tensor(scores).float().cpu()
    g = torch.as_tensor(np.asarray(gold_pos, dtype=np.int64)).reshape(-1)
    if s.ndim != 2 or g.shape[0] != s.shape[0]:
        raise ValueError(f"scores must be [B, C] with one gold column per row, got {list(s.shape)} and {g.shape[0]}")
    rows = torch.arange(s.shape[0])
    gold = s[rows, g]
    bad = torch.isnan(s).any(1) | torch.isposinf(s).any(1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        name = f"example {ids[i]!r} (row {i})" if ids is not None else f"row {i}"
        what = "NaN" if bool(torch.isnan(s[i]).any()) else "+inf"
        raise NonFiniteScoreError(f"{name}: the model's scores contain {what} ({int(bad.sum())} of {s.shape[0]} "
                                  "rows are not finite); the model has diverged or the checkpoint is damaged",
                                  row=i, example_id=None if ids is None else str(ids[i]))
    higher = (s > gold[:, None]).sum(1)
    equal = s == gold[:, None]
    before = torch.arange(s.shape[1])[None, :] < g[:, None]
    ranks = (1 + higher + (equal & before).sum(1)).numpy().astype(np.int64)
    if return_ties:
        return ranks, (equal.sum(1) > 1).numpy()
    return ranks


def ranking_metrics(ranks: Sequence[int], tied: Sequence[bool] | None = None) -> dict:
    """Hits@1/3/5/10, MRR and n over ``ranks`` (1-based); with ``tied`` (one flag per rank, from
    :func:`gold_ranks` ``return_ties=True``) also ``"tied"``: how many golds shared their score."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no ranks to score")
    out = {f"hits@{k}": float((r <= k).mean()) for k in HITS}
    out["mrr"] = float((1.0 / r).mean())
    out["n"] = int(r.size)
    if tied is not None:
        t = np.asarray(tied, dtype=bool).reshape(-1)
        if t.size != r.size:
            raise ValueError(f"tied has {t.size} flags for {r.size} ranks")
        out["tied"] = int(t.sum())
    return out
