"""The training loop on the toy task: it learns, the same seed gives the same run, evaluation
during training, the summary table, accumulation, schedule, optimizer kernels, bf16, a task's own
loss, setups it refuses, and DDP with two CPU processes."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from engine_toy import ToyTask, cli_env, final_weights, toy_config
from mrmkg.engine import train
from mrmkg.errors import InputError


def test_train_learns_and_is_deterministic(tmp_path):
    opt = {"lr": 0.2, "warmup_steps": 2}
    r1 = train(toy_config(tmp_path / "a", epochs=4, optim=opt))
    r2 = train(toy_config(tmp_path / "b", epochs=4, optim=opt))
    r3 = train(toy_config(tmp_path / "c", epochs=4, optim=opt, seed=1))
    assert r1.global_step == 4 * (96 // 8)
    # the toy problem is learnable: well above chance (1/3), loss below ln 3
    assert r1.metrics["accuracy"] > 0.55 and r1.metrics["loss"] < 0.95
    assert r1.history[0]["loss"] > r1.history[-1]["loss"]
    assert r1.metrics == r2.metrics and r1.history == r2.history
    w1, w2, w3 = final_weights(r1.output_dir), final_weights(r2.output_dir), final_weights(r3.output_dir)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not torch.equal(w1["head.weight"], w3["head.weight"])
    assert json.loads((r1.output_dir / "metrics.json").read_text()) == r1.metrics


def test_progress_periodic_eval_and_summary_table(tmp_path, capsys):
    r = train(toy_config(tmp_path, epochs=2, eval_every=6, progress=True))  # 12 steps per epoch, 24 in all
    evals = [h for h in r.history if "eval" in h]
    assert [h["step"] for h in evals] == [6, 12, 18]  # the final evaluation is the run's metrics, not history
    assert all(set(h["eval"]) == {"accuracy", "loss"} for h in evals)
    err = capsys.readouterr().err
    assert "train toy" in err and "samples_s=" in err  # the bar, with loss and throughput
    assert "training summary" in err and "samples_per_s" in err and "accuracy" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 24 and summary["metrics"] == r.metrics and summary["final_loss"] == r.final_loss
    # evaluating in the middle leaves the run where it would be without it (the toy eval draws no random numbers)
    quiet = train(toy_config(tmp_path / "quiet", epochs=2))
    assert quiet.metrics == r.metrics


@pytest.mark.parametrize("over,needle", [
    ({"task": "no_such_task"}, "unknown task 'no_such_task'; expected one of demo, demo_stage1"),
    ({"task": "json:loads"}, "unknown task 'json:loads'"),  # a config names a task; it never imports a module
    ({"batch_size": 97}, "96 training examples are fewer than one optimizer step"),
    ({"grad_accum": 13}, "(batch_size 8 x processes 1 x grad_accum 13)"),
    ({"optim": {"scheduler": "sawtooth"}}, "field 'optim.scheduler'"),
    ({"seed": -1}, "seed: must be >= 0, got -1"),
])
def test_engine_refuses_setups_it_cannot_run(tmp_path, over, needle):
    with pytest.raises(InputError) as e:
        train(toy_config(tmp_path, **over))
    assert needle in str(e.value)
    assert not (tmp_path / "run" / "final").exists()


def test_grad_accum_matches_large_batch(tmp_path):
    big = train(toy_config(tmp_path / "big", batch_size=8, grad_accum=1, task_args={"dropout": 0.0}))
    acc = train(toy_config(tmp_path / "acc", batch_size=4, grad_accum=2, task_args={"dropout": 0.0}))
    assert big.global_step == acc.global_step
    wb, wa = final_weights(big.output_dir), final_weights(acc.output_dir)
    for k in wb:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)


def test_warmup_and_weight_decay_groups(tmp_path):
    r = train(toy_config(tmp_path, epochs=1, log_every=1, optim={"lr": 0.1, "warmup_steps": 4, "scheduler": "linear"}))
    lrs = [h["lr"] for h in r.history if "lr" in h]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[-1] < lrs[3]


def test_fused_adamw_matches_the_default_kernel(tmp_path):
    ref = train(toy_config(tmp_path / "ref", task_args={"dropout": 0.0}))
    fused = train(toy_config(tmp_path / "fused", task_args={"dropout": 0.0},
                             optim={"lr": 0.05, "warmup_steps": 2, "fused": True}))
    wr, wf = final_weights(ref.output_dir), final_weights(fused.output_dir)
    for k in wr:
        torch.testing.assert_close(wf[k], wr[k], rtol=1e-4, atol=1e-6)
    state = torch.load(fused.output_dir / "checkpoints" / f"step-{fused.global_step:08d}" / "optimizer.bin",
                       weights_only=True)
    assert state["param_groups"][0]["fused"] is True


def test_bf16_autocast_runs(tmp_path):
    r = train(toy_config(tmp_path, epochs=1, precision="bf16"))
    assert np.isfinite(r.final_loss)


class _OwnLossTask(ToyTask):
    """The toy task computing its loss itself (Task.loss) instead of reading ``model(batch).loss``."""

    calls = 0

    def loss(self, model, batch):
        _OwnLossTask.calls += 1
        x, y = batch
        return F.cross_entropy(model.head(model.drop(model.frozen(x))).float(), y)


def test_a_task_may_define_its_loss(tmp_path):
    ref = train(toy_config(tmp_path / "ref", epochs=1))
    own = train(toy_config(tmp_path / "own", epochs=1), task=_OwnLossTask())
    assert _OwnLossTask.calls == own.global_step == 12
    assert own.history == ref.history and own.metrics == ref.metrics  # the same loss, so the same run


def test_ddp_two_cpu_processes_hold_identical_weights_and_resume_exactly(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"task": "toy", "batch_size": 4, "epochs": 1, "max_steps": 4,
                                   "precision": "fp32", "progress": False, "output_dir": str(tmp_path / "ddp"),
                                   "checkpoint_every": 2, "keep_checkpoints": 5, "optim": {"lr": 0.05}}))

    def launch(*args):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # `--cpu` makes this accelerate version start a single process; `--multi_gpu` on a machine
        # without GPUs starts K torchrun processes that join over gloo, and Accelerator(cpu=True) keeps
        # them on the CPU. GPUs are hidden: on a one-GPU machine rank 1 would look for cuda:1 (seen on an H200).
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--num_cpu_threads_per_process", "1", "--main_process_port", str(port),
               "-m", "mrmkg", "train", "--config", str(cfg), *args]
        res = subprocess.run(cmd, env=dict(cli_env(), CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True,
                             timeout=180, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        return res

    launch()
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    digests = summary["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    # each rank saw its own half of every global batch (ranks without DDP sync would diverge)
    state = json.loads((tmp_path / "ddp" / "final" / "trainer_state.json").read_text())
    assert state["samples"] == 4 * 4 * 2
    # every checkpoint holds every rank's random states, written into the one folder
    for step in (2, 4):
        ck = tmp_path / "ddp" / "checkpoints" / f"step-{step:08d}"
        assert {"random_states_0.pkl", "random_states_1.pkl", "model.safetensors"} <= {p.name for p in ck.iterdir()}
    # two processes resume from step 2 to the same weights and history
    shutil.copytree(tmp_path / "ddp" / "checkpoints" / "step-00000002", tmp_path / "part" / "checkpoints" / "step-00000002")
    assert "resumed from" in launch("-o", str(tmp_path / "part"), "--resume").stdout
    assert json.loads((tmp_path / "part" / "summary.json").read_text())["weights_sha256"] == digests
    assert json.loads((tmp_path / "part" / "final" / "trainer_state.json").read_text())["history"] == state["history"]
