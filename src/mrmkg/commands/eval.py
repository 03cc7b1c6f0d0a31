"""`mrmkg eval CHECKPOINT`: evaluate a trained checkpoint of any task on a split (see :mod:`mrmkg.evaluate`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def eval_command(
    checkpoint: Path = typer.Argument(..., help="Run folder of `mrmkg train` (uses its final/), its final/ folder, "
                                                 "or a model folder."),
    split: Optional[str] = typer.Option(
        None, "--split", help="What to evaluate, as the checkpoint's task reads it: MARS: a split file (any path, "
                              "e.g. mars/dev.json); demo: dev or test; ScienceQA: a split name; stage 1: dev or all. "
                              "Default: the task's own evaluation split."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder, replaced atomically: predictions.jsonl, "
                                                       "metrics.json, eval_config.yaml."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Examples per forward pass."),
    graph: Optional[str] = typer.Option(
        None, "--graph", help="Graph folder to use instead of the one recorded in the checkpoint's config "
                              "(e.g. when the run was trained on another machine)."),
    device: str = typer.Option("cpu", "--device", help="Where the model runs: cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; only the metrics line."),
) -> None:
    """Evaluate a checkpoint: predictions and metrics of its task (MARS: Hits@1/3/5/10 and MRR over the
    2,063 candidates, unfiltered, rank = 1 + #candidates scored strictly higher; demo: accuracy per
    question type; ScienceQA: the official scorer's columns; stage 1: exact match)."""
    from mrmkg.evaluate import evaluate

    m = evaluate(checkpoint, split, out, batch_size=batch_size, graph=graph, progress=not quiet, device=device)
    if as_json:
        typer.echo(json.dumps(m, ensure_ascii=False))
        return
    shown = [k for k, v in m.items() if isinstance(v, float) and k not in ("seconds", "examples_per_s")]
    n = f" n={m['n']}" if "n" in m and not isinstance(m["n"], dict) else ""
    typer.echo(" ".join(f"{k}={m[k]:.4f}" for k in shown) + n)
