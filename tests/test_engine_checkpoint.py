"""Checkpoints and final/: what they hold (the trainable weights once, never the frozen ones), a run
folder that needs --resume or --overwrite, and the exact resume of a run killed with SIGKILL."""
from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from engine_toy import cli_env, final_weights, toy_config
from mrmkg.engine import latest_checkpoint, load_train_config, train
from mrmkg.errors import InputError


def _files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("model,weights", [("plain", "model/model.safetensors"), ("bare", "trainable.safetensors")])
def test_checkpoint_and_final_hold_the_trainable_weights_once(tmp_path, model, weights):
    r = train(toy_config(tmp_path, epochs=1, checkpoint_every=4, keep_checkpoints=2, task_args={"model": model}))
    assert sorted(p.name for p in (r.output_dir / "checkpoints").iterdir()) == ["step-00000008", "step-00000012"]
    ck = r.output_dir / "checkpoints" / "step-00000012"
    assert _files(ck) == {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl",
                          "trainer_state.json", "train_config.yaml"}
    assert set(load_file(str(ck / "model.safetensors"))) == {"head.weight", "head.bias"}  # nothing frozen
    assert _files(r.output_dir / "final") == {weights, "train_config.yaml", "trainer_state.json", "metrics.json"}
    w = final_weights(r.output_dir)
    assert set(w) == {"head.weight", "head.bias"}
    assert all(torch.equal(w[k], t) for k, t in load_file(str(ck / "model.safetensors")).items())
    assert json.loads((ck / "trainer_state.json").read_text())["weights_sha256"] == r.weights_sha256


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    cfg = toy_config(tmp_path, epochs=1)
    train(cfg)
    with pytest.raises(InputError, match="--resume"):
        train(cfg)
    r = train(cfg, resume=True)  # already finished: nothing left to do, same result
    assert r.samples == 0
    train(cfg, overwrite=True)


def test_resume_refuses_a_checkpoint_of_another_world_size_or_layout(tmp_path):
    cfg = toy_config(tmp_path, epochs=1)
    train(cfg)
    ck = latest_checkpoint(tmp_path / "run")
    state = json.loads((ck / "trainer_state.json").read_text())
    (ck / "trainer_state.json").write_text(json.dumps({**state, "world_size": 2}))
    with pytest.raises(InputError, match="written by 2 processes, this run has 1"):
        train(cfg, resume=True)
    (ck / "trainer_state.json").write_text(json.dumps(state))
    (ck / "model.safetensors").rename(ck / "trainable.safetensors")  # as checkpoints were before accelerate's layout
    with pytest.raises(InputError, match="cannot be resumed"):
        train(cfg, resume=True)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


def test_resume_never_unpickles_code(tmp_path, capsys):
    """accelerate reads the optimizer, scheduler and random states with weights_only=True: a
    checkpoint file that would run code when unpickled is refused."""
    cfg = toy_config(tmp_path, epochs=1)
    train(cfg)
    ck = latest_checkpoint(tmp_path / "run")
    state = torch.load(ck / "scheduler.bin", weights_only=True)
    (ck / "scheduler.bin").write_bytes(pickle.dumps({**state, "payload": _Payload()}, protocol=2))
    capsys.readouterr()
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        train(cfg, resume=True)
    assert "unpickled" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"not a pickle", pickle.dumps({"step": 3}, protocol=2)])
def test_resume_stops_when_random_states_cannot_be_restored(tmp_path, content):
    """accelerate skips random states it cannot read (it only logs it); the engine stops."""
    cfg = toy_config(tmp_path, epochs=1)
    train(cfg)
    ck = latest_checkpoint(tmp_path / "run")
    (ck / "random_states_0.pkl").write_bytes(content)
    with pytest.raises(InputError, match="random states missing or unreadable"):
        train(cfg, resume=True)


def test_resume_after_sigkill_is_exact(tmp_path):
    """Kill a run (SIGKILL) after its second checkpoint, resume it: same weights and metrics as a
    run that was never interrupted."""
    sets = ["--set", "checkpoint_every=3", "--set", "epochs=3", "--set", "task_args.delay=0.05",
            "--set", "keep_checkpoints=5"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"task": "toy", "batch_size": 8, "precision": "bf16",
                                   "progress": False, "optim": {"lr": 0.05, "warmup_steps": 2}}))
    cmd = [sys.executable, "-m", "mrmkg", "train", "--config", str(cfg), *sets]
    # the uninterrupted reference runs in-process (1 torch thread, like the subprocesses)
    train(load_train_config(cfg, [s for s in sets if s != "--set"], output_dir=str(tmp_path / "ref")))

    run = tmp_path / "killed"
    p = subprocess.Popen(cmd + ["-o", str(run)], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        ck = latest_checkpoint(run)
        if ck is not None and ck.name >= "step-00000006":
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (run / "final").exists(), "the run finished before it could be killed"
    killed_at = json.loads((latest_checkpoint(run) / "trainer_state.json").read_text())["global_step"]
    assert 6 <= killed_at < 36

    res = subprocess.run(cmd + ["-o", str(run), "--resume"], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout
    wr, wk = final_weights(tmp_path / "ref"), final_weights(run)
    assert all(torch.equal(wr[k], wk[k]) for k in wr)
    mr = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    mk = json.loads((run / "metrics.json").read_text())
    assert mr == mk
    hr = json.loads((tmp_path / "ref" / "final" / "trainer_state.json").read_text())["history"]
    hk = json.loads((run / "final" / "trainer_state.json").read_text())["history"]
    assert hr == hk
