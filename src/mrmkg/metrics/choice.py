"""Accuracy over closed-set answers, overall and per question type."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy_by_type(preds: Sequence[dict], types: Sequence[str]) -> dict:
    """``{"<type>": acc, ..., "overall": acc, "n": {...}}`` from predictions with ``type`` and
    ``correct``; only the types present are listed; ``overall`` is the micro average."""
    out, n = {}, {}
    for t in types:
        c = [p["correct"] for p in preds if p["type"] == t]
        if c:
            out[t] = float(np.mean(c))
            n[t] = len(c)
    out["overall"] = float(np.mean([p["correct"] for p in preds])) if preds else float("nan")
    n["overall"] = len(preds)
    out["n"] = n
    return out
