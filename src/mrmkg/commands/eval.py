"""`mrmkg eval CHECKPOINT`: evaluate a trained checkpoint of any task on a split (see :mod:`mrmkg.evaluate`)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from mrmkg.commands.options import Checkpoint, Device, Dtype, GraphOverride, Json, Out, Quiet, check_out_dir


def eval_command(
    checkpoint: Checkpoint,
    out: Out,
    split: Optional[str] = typer.Option(
        None, "--split", help="what to evaluate, as the checkpoint's task reads it: MARS: a split file (any path, "
                              "e.g. mars/dev.json); demo: dev or test; ScienceQA: a split name; qa: train, dev or test; stage 1: "
                              "dev or all (default: the task's own evaluation split)"),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="examples per forward pass"),
    graph: GraphOverride = None,
    device: Device = "cpu",
    dtype: Dtype = None,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate a checkpoint: predictions and metrics of its task (MARS: Hits@1/3/5/10 and MRR over the
    2,063 candidates, unfiltered, MarT's rule: the gold's place after a stable sort by score; demo: accuracy per
    question type; ScienceQA: the official scorer's columns; stage 1: exact match). Writes into -o/--out,
    replaced atomically: predictions.jsonl, metrics.json, eval_config.yaml."""
    check_out_dir(out, marker="eval_config.yaml", what="an evaluation folder")
    from mrmkg.evaluate import evaluate

    m = evaluate(checkpoint, split, out, batch_size=batch_size, graph=None if graph is None else str(graph),
                 progress=not (quiet or as_json), device=device, dtype=dtype)
    if as_json:
        typer.echo(json.dumps(m, ensure_ascii=False))
        return
    shown = [k for k, v in m.items() if isinstance(v, float) and k not in ("seconds", "examples_per_s")]
    n = f" n={m['n']}" if "n" in m and not isinstance(m["n"], dict) else ""
    typer.echo(" ".join(f"{k}={m[k]:.4f}" for k in shown) + n)
