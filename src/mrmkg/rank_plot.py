"""Pictures of ranking evaluations: several runs on the same split file, read at a glance.

:func:`render_hits_curves` draws, side by side, each run's Hits@k for k = 1..``kmax`` (how often the gold
entity is in the top k) and each run's MRR with a 95 % interval (+- 1.96 standard errors of the mean
reciprocal rank over examples). The interval is per run; two runs on the same examples are correlated, so
their difference is better judged by a paired test (``research/mars/mars_paired.py``) than by overlapping bars.
Inputs are the 1-based ranks of the gold answer, e.g. the ``rank`` field of ``mrmkg eval``'s
``predictions.jsonl``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mrmkg.errors import InputError
from mrmkg.viz import picture_format, save_figure


def hits_at_k(ranks: Sequence[int], kmax: int = 10) -> np.ndarray:
    """Hits@1..Hits@kmax of 1-based ``ranks``: shape (kmax,), non-decreasing."""
    r = np.asarray(ranks)
    return np.array([(r <= k).mean() for k in range(1, kmax + 1)])


def mrr_interval(ranks: Sequence[int]) -> tuple[float, float]:
    """MRR and the half-width of its 95 % normal interval (1.96 standard errors of the mean)."""
    rr = 1.0 / np.asarray(ranks, dtype=np.float64)
    sd = rr.std(ddof=1) if rr.size > 1 else 0.0
    return float(rr.mean()), float(1.96 * sd / math.sqrt(rr.size))


def render_hits_curves(runs: Mapping[str, Sequence[int]], path: str | Path, title: str | None = None,
                       kmax: int = 10, dpi: int = 150) -> Path:
    """Draw Hits@k curves and MRR bars of ``runs`` (label -> ranks, in legend order) to ``path`` (PNG or SVG,
    written atomically) and return the path."""
    path = Path(path)
    fmt = picture_format(path)
    if not runs:
        raise InputError("no runs to draw", path=path)
    for label, ranks in runs.items():
        if len(ranks) == 0 or min(ranks) < 1:
            raise InputError(f"run {label!r}: expected one or more 1-based ranks", path=path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 1.6 + 0.55 * max(len(runs), 4)))
    FigureCanvasAgg(fig)
    ax_hits, ax_mrr = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ks = np.arange(1, kmax + 1)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for (label, ranks), c in zip(runs.items(), colors):
        ax_hits.plot(ks, hits_at_k(ranks, kmax), marker="o", ms=3, color=c, label=label)
    ax_hits.set(xlabel="k", ylabel="Hits@k", xticks=ks, title="gold entity in the top k")
    ax_hits.grid(alpha=0.3)
    # below the axes: curves of close runs cross everywhere inside them
    ax_hits.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    # the first run on top, as in the legend
    ys = np.arange(len(runs))[::-1]
    stats = [mrr_interval(r) for r in runs.values()]
    ax_mrr.barh(ys, [m for m, _ in stats], xerr=[h for _, h in stats], color=colors, alpha=0.8, capsize=3)
    for y, (m, h) in zip(ys, stats):
        ax_mrr.text(m + h + 0.005, y, f"{m:.3f}", va="center", fontsize=8)
    n = {len(r) for r in runs.values()}
    ax_mrr.set(yticks=ys, yticklabels=list(runs), xlabel="MRR, 95 % interval",
               title=f"MRR over {n.pop():,} examples" if len(n) == 1 else "MRR (runs differ in n)")
    ax_mrr.tick_params(axis="y", labelsize=8)
    ax_mrr.set_xlim(0, max(m + h for m, h in stats) * 1.15)
    ax_mrr.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, fmt, dpi)
