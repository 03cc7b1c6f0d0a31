"""``mrmkg eval``: evaluate a trained checkpoint of any task on a split and write, atomically, into a folder:

* ``predictions.jsonl``: one line per example, in split order, as the checkpoint's task writes them
  (MARS: ``id``, ``gold``, ``rank``, ``top10`` [entity id, score], ``retrieved`` [triple id, score],
  ``memory``, ``copy``, ``mode``, ``sides``; the demo world: ``id``, ``type``, ``gold``, ``pred``,
  ``correct``, ``top3``, ``retrieved``; ScienceQA: ``pid``, ``prediction``, ``parse``, ``output``,
  ``answer``, ``retrieved``; stage-1 QA: ``id``, ``output``, ``target``, ``correct``);
* ``metrics.json``: the task's metrics computed from exactly those predictions (MARS: Hits@1/3/5/10,
  MRR, ``tie_rule``, ``image_sides``; demo: accuracy per question type; ScienceQA: the official
  columns; stage 1: exact match), plus ``checkpoint``, ``split``, ``seconds`` and ``examples_per_s``;
* ``eval_config.yaml``: what was run (the checkpoint, the split, the task settings, and where the frozen
  LLM ran: ``device``, ``llm_dtype``, ``device_map``).

Every prediction comes from :class:`mrmkg.pipeline.Pipeline`, the one prediction path. ``split`` is
what the task evaluates: a MARS split file (any path), the demo's ``dev``/``test``, a ScienceQA split
name, or ``dev`` (the held-out portion) for stage 1.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from mrmkg.fileio import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from mrmkg.metrics.ranking import ranking_metrics
from mrmkg.pipeline import Pipeline


def evaluate(checkpoint: str | Path, split: str | Path | None, out: str | Path, batch_size: int = 16,
             graph: str | None = None, progress: bool = True, device: str = "cpu", dtype: str | None = None) -> dict:
    """Evaluate ``checkpoint`` on ``split`` (None: the task's own evaluation split) and write
    predictions and metrics into ``out`` (see the module docstring). ``graph`` replaces the graph
    folder recorded in the checkpoint; ``device``: cpu, cuda, cuda:N or auto; ``dtype``: the frozen LLM's
    (bf16, fp16, fp32; None: the run's). Returns the metrics."""
    pipe = Pipeline.from_pretrained(checkpoint, device=device, graph=graph, dtype=dtype)
    return write_evaluation(pipe, split, out, batch_size=batch_size, progress=progress)


def write_evaluation(pipe: Pipeline, split, out: str | Path, batch_size: int = 16, progress: bool = True) -> dict:
    """Evaluate ``pipe``'s checkpoint on ``split`` and write the folder ``out`` (module docstring)."""
    checkpoint = pipe.checkpoint
    t0 = time.perf_counter()
    preds, metrics, recorded = pipe.task.evaluate_split(pipe, split, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    metrics.update({**recorded, "checkpoint": str(checkpoint), "seconds": round(seconds, 3),
                    "examples_per_s": round(len(preds) / max(seconds, 1e-9), 2)})
    with atomic_dir(out) as tmp:
        atomic_write_text(tmp / "predictions.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds))
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_text(tmp / "eval_config.yaml", yaml.safe_dump(
            {"checkpoint": str(checkpoint), "task": pipe.task.name, **recorded, "batch_size": batch_size,
             **_placement(pipe.model), "task_args": dict(pipe.train_config.task_args)}, sort_keys=False))
    return metrics


def _placement(model) -> dict:
    """Where and in which dtype the frozen LLM ran (``device``, ``llm_dtype``, ``device_map``), for eval_config.yaml."""
    cfg = getattr(model, "config", None)
    out = {"device": str(getattr(model, "device", "cpu"))}
    for name in ("llm_dtype", "device_map"):
        if hasattr(cfg, name):
            out[name] = getattr(cfg, name)
    return out


def read_predictions(eval_dir: str | Path) -> list[dict]:
    """The lines of ``eval_dir/predictions.jsonl`` (an ``mrmkg eval`` output folder), in file order; an
    InputError naming the file and line when it is missing or malformed."""
    return [obj for _, obj in read_jsonl(Path(eval_dir) / "predictions.jsonl", "predictions file")]


def metrics_from_predictions(path: str | Path) -> dict:
    """Recompute the ranking metrics from a ranking task's ``predictions.jsonl`` (to check a ``metrics.json``)."""
    return ranking_metrics([p["rank"] for _, p in read_jsonl(path, "predictions file")])
