"""Evaluation during training (into the history) and the run's summary (summary.json and the table)."""
from __future__ import annotations

import resource

import torch

from mrmkg.engine.config import TrainConfig
from mrmkg.engine.data import DataPosition
from mrmkg.engine.task import Task

__all__ = ["evaluate_into_history", "numeric_metrics", "peak_rss_mb", "make_summary", "print_summary"]

#: the summary's quantities shown in the table, in order (the task's metrics follow)
TABLE_ROWS = ("seed", "processes", "steps", "epochs", "samples_trained_now", "seconds", "samples_per_s",
              "peak_rss_mb", "final_loss")


def evaluate_into_history(accelerator, task: Task, model: torch.nn.Module, objective: torch.nn.Module,
                          position: DataPosition, config: TrainConfig) -> None:
    """Evaluate ``model`` on the main process, append ``{"step", "eval"}`` to the history, and put
    ``objective`` (the module being trained) back in training mode; the other ranks wait."""
    if accelerator.is_main_process:
        metrics = task.evaluate(model, config.eval_batch_size)
        position.history.append({"step": position.global_step, "eval": metrics})
        accelerator.log(numeric_metrics(metrics, "eval/"), step=position.global_step)
        objective.train()
    accelerator.wait_for_everyone()


def numeric_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a (nested) metrics dict, flattened to ``prefix + "a/b"`` keys, for a tracker
    (strings, booleans and None are left out: trackers plot scalars)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(numeric_metrics(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_summary(config: TrainConfig, position: DataPosition, world: int, samples: int, seconds: float,
                 rss: list[float], metrics: dict, digests: list[str], init: dict | None) -> dict:
    """summary.json: what ran, how fast, the final loss and metrics, every rank's weights digest
    and, when the run started from ``init_from``, what that loaded."""
    return {
        "task": config.task, "seed": config.seed, "processes": world, "steps": position.global_step,
        "epochs": round(position.global_step / position.sampler.steps_per_epoch, 3), "samples_trained_now": samples,
        "seconds": round(seconds, 3), "samples_per_s": round(samples / max(seconds, 1e-9), 3),
        "peak_rss_mb": round(max(rss), 1), "final_loss": position.last_loss,
        "metrics": metrics, "weights_sha256": digests, "init_from": init,
    }


def print_summary(summary: dict) -> None:
    """The summary as a table on stderr."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"training summary ({summary['task']})", show_header=True)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k in TABLE_ROWS:
        v = summary[k]
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    for k, v in (summary.get("metrics") or {}).items():
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console(stderr=True).print(t)
