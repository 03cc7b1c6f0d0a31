"""Ranking metrics (MarT protocol): the gold answer's rank among scored candidates, Hits@k and MRR.

Ties: rank = 1 + number of candidates scored *strictly* higher than the gold, so ties count in the
gold's favour; Hits@k = mean(rank <= k) for k in 1, 3, 5, 10; MRR = mean(1 / rank).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

HITS = (1, 3, 5, 10)
TIE_RULE = "rank = 1 + #candidates scored strictly higher (ties count in the gold's favour)"


def gold_ranks(scores: torch.Tensor | np.ndarray, gold_pos: Sequence[int]) -> np.ndarray:
    """``scores [B, C]``, gold column per row -> rank = 1 + #candidates scored strictly higher
    (ties count in the gold's favour)."""
    s = torch.as_tensor(scores).float().cpu()
    g = torch.as_tensor(np.asarray(gold_pos, dtype=np.int64))
    gold = s[torch.arange(s.shape[0]), g]
    return (1 + (s > gold[:, None]).sum(1)).numpy().astype(np.int64)


def ranking_metrics(ranks: Sequence[int]) -> dict:
    """Hits@1/3/5/10, MRR and n over ``ranks`` (1-based)."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no ranks to score")
    out = {f"hits@{k}": float((r <= k).mean()) for k in HITS}
    out["mrr"] = float((1.0 / r).mean())
    out["n"] = int(r.size)
    return out
