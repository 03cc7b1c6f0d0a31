"""`mrmkg eval`: evaluate a trained checkpoint on a split file (see :mod:`mrmkg.evaluate`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def eval_command(
    task: str = typer.Option("mars", "--task", help="Task of the checkpoint; 'mars' ranks the 2,063 analogy entities."),
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="Run folder of `mrmkg train` (uses its final/), its final/ folder, or a model folder."),
    split_file: Path = typer.Option(
        ..., "--split-file", help="MARS JSON-Lines file to evaluate, any path (e.g. mars/dev.json or a test file); "
                                  "every example is scored, in file order."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder, replaced atomically: predictions.jsonl (id, gold, rank, top10, retrieved "
                           "triples with scores) and metrics.json (hits@1/3/5/10, mrr, n)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Examples per forward pass."),
    graph: Optional[str] = typer.Option(
        None, "--graph", help="Graph folder to use instead of the one recorded in the checkpoint's config "
                              "(e.g. when the run was trained on another machine)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    device: str = typer.Option("cpu", "--device", help="Where the model runs: cpu, cuda or cuda:N (scores are "
                                                        "the same up to float rounding)."),
) -> None:
    """Evaluate a checkpoint: rank = 1 + #candidates scored strictly higher (ties favour the gold),
    Hits@k = mean(rank <= k), MRR = mean(1/rank), unfiltered, over every example of the split file."""
    from mrmkg.errors import InputError

    if task != "mars":
        raise InputError(f"--task {task!r}: only 'mars' is evaluated by this command")
    from mrmkg.evaluate import evaluate_mars

    m = evaluate_mars(checkpoint, split_file, out, batch_size=batch_size, graph=graph, progress=progress,
                      device=device)
    typer.echo(" ".join(f"{k}={m[k]:.4f}" for k in ("hits@1", "hits@3", "hits@5", "hits@10", "mrr")) + f" n={m['n']}")
