"""Evaluate a trained checkpoint on any split file and write ``predictions.jsonl`` + ``metrics.json``.

``evaluate_mars(checkpoint, split_file, out)`` loads the run's task settings from the checkpoint's
``train_config.yaml`` (graph folder, prompt variant, stand-ins, retrieval), the trainable weights
with ``MRMKG.from_pretrained``, ranks the candidates for every example of the split file (in file
order) and writes, atomically:

* ``predictions.jsonl``: one line per example: ``id``, ``gold``, ``rank``, ``top10`` as
  ``[entity id, score]`` pairs, ``retrieved`` as ``[triple id, score]`` pairs, ``memory`` as
  ``[partner id, relation id, count]`` (the analogy memory's edges), ``copy`` (the example tail
  when the question is the example head and it is a node, else null), ``mode`` and
  ``sides`` (how each of example head, example tail and question was given: ``text``, ``image`` or
  ``standin:<kind>``).
* ``metrics.json``: ``hits@1``, ``hits@3``, ``hits@5``, ``hits@10``, ``mrr``, ``n`` -- computed from
  exactly the ranks written to ``predictions.jsonl`` -- plus ``split_file``, ``checkpoint``,
  ``image_sides`` (the representation counts), ``tie_rule``, ``seconds`` and ``examples_per_s``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from mrmkg.malloc import tune_malloc

TIE_RULE = "rank = 1 + #candidates scored strictly higher (ties count in the gold's favour)"


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """``(model folder, train_config.yaml)`` for a run folder, its ``final/`` or a model folder."""
    p = Path(path)
    for cand in (p, p / "final"):
        if (cand / "model" / "mrmkg.json").is_file() and (cand / "train_config.yaml").is_file():
            return cand / "model", cand / "train_config.yaml"
    if (p / "mrmkg.json").is_file() and (p.parent / "train_config.yaml").is_file():
        return p, p.parent / "train_config.yaml"
    raise InputError("not a trained checkpoint: expected a run folder, its final/ folder or a model folder "
                     "written by `mrmkg train` (model/mrmkg.json and train_config.yaml)", path=p)


def open_mars_checkpoint(checkpoint: str | Path, graph: str | None = None):
    """``(task, model folder, task_args)`` of a MARS run: its ``MarsTask`` rebuilt from the run's
    ``train_config.yaml`` (``graph`` replaces the graph folder), not yet the model."""
    from mrmkg.tasks.mars import MarsTask
    from mrmkg.engine import load_train_config

    model_dir, cfg_path = resolve_checkpoint(checkpoint)
    cfg = load_train_config(cfg_path)
    if cfg.task != "mars":
        raise InputError(f"this checkpoint was trained on task {cfg.task!r}, not 'mars'", path=cfg_path)
    args = dict(cfg.task_args)
    if graph:
        args["graph"] = graph
    return MarsTask.from_config(args, cfg), model_dir, args


def evaluate_mars(checkpoint: str | Path, split_file: str | Path, out: str | Path, batch_size: int = 16,
                  graph: str | None = None, progress: bool = True, device: str = "cpu") -> dict:
    """Evaluate a MARS checkpoint on ``split_file``; write predictions and metrics into ``out``.
    ``device``: where the model runs ("cpu", "cuda", "cuda:1", ...). Keeps freed memory in the process
    (:func:`mrmkg.malloc.tune_malloc`, glibc), as training does."""
    from mrmkg.tasks.mars import describe_sides, load_mars_split, ranking_metrics

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device!r}: no CUDA GPU is visible")
    task, model_dir, args = open_mars_checkpoint(checkpoint, graph)
    records = load_mars_split(split_file, task.kg)
    model = task.load_model(model_dir).to(dev)
    tune_malloc()
    t0 = time.perf_counter()
    preds = task.predict(model, records, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    metrics = ranking_metrics([p["rank"] for p in preds])
    metrics.update({"split_file": str(split_file), "checkpoint": str(checkpoint), "image_sides": describe_sides(preds),
                    "tie_rule": TIE_RULE, "seconds": round(seconds, 3),
                    "examples_per_s": round(len(preds) / max(seconds, 1e-9), 2)})
    with atomic_dir(out) as tmp:
        atomic_write_text(tmp / "predictions.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds))
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_text(tmp / "eval_config.yaml", yaml.safe_dump(
            {"checkpoint": str(checkpoint), "split_file": str(split_file), "batch_size": batch_size,
             "task_args": args}, sort_keys=False))
    return metrics


def read_predictions(eval_dir: str | Path) -> list[dict]:
    """The lines of ``eval_dir/predictions.jsonl`` (an ``evaluate_mars`` output folder), in file order; an
    InputError naming the file and line when it is missing or malformed."""
    return [obj for _, obj in read_jsonl(Path(eval_dir) / "predictions.jsonl", "predictions file")]


def metrics_from_predictions(path: str | Path) -> dict:
    """Recompute the ranking metrics from a ``predictions.jsonl`` (to check a ``metrics.json``)."""
    from mrmkg.tasks.mars import ranking_metrics

    return ranking_metrics([p["rank"] for _, p in read_jsonl(path, "predictions file")])
