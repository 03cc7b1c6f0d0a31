"""Experiment tracking (``TrainConfig.log_with``): TensorBoard event files in RUN/logs/ that hold the
run's own loss history and evaluation metrics, none with ``log_with=none``, and the same training
either way."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine_toy import ToyTask, final_weights, toy_config
from mrmkg.engine import train
from mrmkg.errors import InputError


def _events(run: Path) -> list[Path]:
    return sorted((run / "logs").rglob("events.out.tfevents.*")) if (run / "logs").is_dir() else []


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for f in _events(run):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_tensorboard_events_hold_the_run_history(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = toy_config(tmp_path, log_every=2, eval_every=6, log_with="tensorboard")
    res = train(cfg, ToyTask())
    run = Path(cfg.output_dir)
    assert _events(run), "no TensorBoard event file under RUN/logs/"
    sc = _scalars(run)
    losses = [h for h in res.history if "loss" in h]
    assert [s for s, _ in sc["train/loss"]] == [h["step"] for h in losses]
    assert [v for _, v in sc["train/loss"]] == pytest.approx([h["loss"] for h in losses], rel=1e-6)  # float32 on disk
    assert [v for _, v in sc["train/lr"]] == pytest.approx([h["lr"] for h in losses], rel=1e-6)
    assert len(sc["train/samples_per_s"]) == len(losses) and all(v > 0 for _, v in sc["train/samples_per_s"])
    evals = [h for h in res.history if "eval" in h]
    assert evals  # eval_every=6 over 24 steps
    steps = [s for s, _ in sc["eval/accuracy"]]
    assert steps == [h["step"] for h in evals] + [res.global_step]  # periodic evaluations, then the final one
    assert sc["eval/accuracy"][-1][1] == pytest.approx(res.metrics["accuracy"], rel=1e-6)


def test_log_with_none_writes_no_events_and_training_is_the_same(tmp_path):
    pytest.importorskip("tensorboard")
    on = train(toy_config(tmp_path / "on", log_every=3, log_with="tensorboard"), ToyTask())
    off = train(toy_config(tmp_path / "off", log_every=3, log_with="none"), ToyTask())
    assert _events(on.output_dir) and not _events(off.output_dir)
    assert not (Path(off.output_dir) / "logs").exists()
    assert on.history == off.history and on.metrics == off.metrics  # same losses and metrics, exactly
    a, b = final_weights(on.output_dir), final_weights(off.output_dir)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_auto_is_tensorboard_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = toy_config(tmp_path, epochs=1)
    assert cfg.log_with == "auto"
    train(cfg, ToyTask())
    assert _events(Path(cfg.output_dir))


def test_a_tracker_that_is_not_installed_is_refused(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(InputError, match="log_with.*'wandb' is not installed"):
        train(toy_config(tmp_path, log_with="wandb"), ToyTask())


def test_log_with_rejects_unknown_names(tmp_path):
    with pytest.raises(InputError, match="log_with"):
        toy_config(tmp_path, log_with="neptune")
