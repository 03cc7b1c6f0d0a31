"""Checkpoints and final/: what they hold (the trainable weights once, never the frozen ones, and a
manifest written last), a run folder that needs --resume or --overwrite, damaged checkpoints refused
with one line naming the file (issue 25), and the exact resume of a run killed with SIGKILL."""
from __future__ import annotations

import contextlib
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
from mrmkg.cli import main
from mrmkg.errors import InputError
from mrmkg.manifest import DamagedCheckpointError, UnverifiedArtifactWarning


def _files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("model,weights", [("plain", "model/model.safetensors"), ("bare", "trainable.safetensors")])
def test_checkpoint_and_final_hold_the_trainable_weights_once(tmp_path, model, weights):
    r = train(toy_config(tmp_path, epochs=1, checkpoint_every=4, keep_checkpoints=2, task_args={"model": model}))
    assert sorted(p.name for p in (r.output_dir / "checkpoints").iterdir()) == ["step-00000008", "step-00000012"]
    ck = r.output_dir / "checkpoints" / "step-00000012"
    assert _files(ck) == {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl",
                          "trainer_state.json", "train_config.yaml", "checksums.json"}
    manifest = json.loads((ck / "checksums.json").read_text())
    assert manifest["kind"] == "checkpoint" and set(manifest["files"]) == _files(ck) - {"checksums.json"}
    assert set(load_file(str(ck / "model.safetensors"))) == {"head.weight", "head.bias"}  # nothing frozen
    final = r.output_dir / "final"
    assert _files(final) == {weights, "train_config.yaml", "trainer_state.json", "metrics.json", "checksums.json"}
    manifest = json.loads((final / "checksums.json").read_text())  # final/'s own files; model/ has its own
    assert manifest["kind"] == "final" and set(manifest["files"]) == {f for f in _files(final) if "/" not in f} - {
        "checksums.json"}
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
    with pytest.raises(DamagedCheckpointError, match=r"trainer_state.json \(\d+ bytes, the manifest says"):
        train(cfg, resume=True)  # an edited file no longer matches the manifest...
    (ck / "checksums.json").unlink()
    with pytest.warns(UnverifiedArtifactWarning), pytest.raises(InputError, match="written by 2 processes, this run has 1"):
        train(cfg, resume=True)  # ...and without one, its content is checked
    (ck / "trainer_state.json").write_text(json.dumps(state))
    (ck / "model.safetensors").rename(ck / "trainable.safetensors")  # as checkpoints were before accelerate's layout
    with pytest.warns(UnverifiedArtifactWarning), pytest.raises(InputError, match="cannot be resumed"):
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
    (ck / "checksums.json").unlink()  # as a checkpoint of an older mrmkg: only the content checks stand
    capsys.readouterr()
    with pytest.warns(UnverifiedArtifactWarning), \
            pytest.raises(DamagedCheckpointError, match=r"scheduler.bin \(not a weights_only torch file: Unpickling"):
        train(cfg, resume=True)
    assert "unpickled" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"not a pickle", pickle.dumps({"step": 3}, protocol=2)])
def test_resume_stops_when_random_states_cannot_be_restored(tmp_path, content):
    """accelerate skips random states it cannot read (it only logs it); the engine stops."""
    cfg = toy_config(tmp_path, epochs=1)
    train(cfg)
    ck = latest_checkpoint(tmp_path / "run")
    (ck / "random_states_0.pkl").write_bytes(content)
    with pytest.raises(DamagedCheckpointError, match=r"random_states_0.pkl \(\d+ bytes, the manifest says"):
        train(cfg, resume=True)
    (ck / "checksums.json").unlink()
    with pytest.warns(UnverifiedArtifactWarning), pytest.raises(InputError, match="random states missing or unreadable"):
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


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished toy run (two checkpoints kept) to copy and damage."""
    tmp = tmp_path_factory.mktemp("trained")
    train(toy_config(tmp, epochs=1, checkpoint_every=6, keep_checkpoints=2))
    return tmp


def _damage_newest(src, tmp_path, damage, manifest: bool):
    """A copy of ``src`` (config and run) whose newest checkpoint had ``damage(folder)`` done to it."""
    import shutil

    shutil.copytree(src, tmp_path / "t")
    cfg = tmp_path / "t" / "cfg.yaml"
    cfg.write_text(cfg.read_text().replace(str(src), str(tmp_path / "t")))
    ck = latest_checkpoint(tmp_path / "t" / "run")
    if not manifest:
        (ck / "checksums.json").unlink()
    damage(ck)
    return cfg, ck


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "no-manifest"])
@pytest.mark.parametrize("damage,file,reason", [
    (lambda ck: (ck / "trainer_state.json").write_text("{}"), "trainer_state.json", "no 'global_step' key"),
    (lambda ck: (ck / "trainer_state.json").write_text("[1, 2]"), "trainer_state.json", "a JSON list, expected an object"),
    (lambda ck: (ck / "trainer_state.json").write_bytes(b"\xff\xfe"), "trainer_state.json", "not UTF-8"),
    (lambda ck: (ck / "model.safetensors").write_bytes(b"garbage " * 64), "model.safetensors",
     "not a valid safetensors file"),
    (lambda ck: _truncate(ck / "model.safetensors"), "model.safetensors", "not a valid safetensors file"),
    (lambda ck: __import__("safetensors.torch").torch.save_file({"head.weight": torch.zeros(2, 2)},
                                                              str(ck / "model.safetensors")),
     "model.safetensors", "not the model's trainable parameters: missing ['head.bias']"),
    (lambda ck: __import__("safetensors.torch").torch.save_file(
        {"head.weight": torch.zeros(3, 8, dtype=torch.float16), "head.bias": torch.zeros(3)},
        str(ck / "model.safetensors")), "model.safetensors", "head.weight has dtype F16, the model's is F32"),
    (lambda ck: _truncate(ck / "optimizer.bin"), "optimizer.bin", "not a weights_only torch file"),
    (lambda ck: (ck / "scheduler.bin").unlink(), "scheduler.bin", "missing"),
])
def test_train_resume_from_a_damaged_checkpoint_is_one_line_exit_2(trained_run, tmp_path, capsys, damage, file,
                                                                  reason, manifest):
    """Issue 25: `train --resume` over a damaged newest checkpoint -> exit 2, one line naming the
    checkpoint, the file and what is wrong (the manifest's size/hash, or without one the content)."""
    cfg, ck = _damage_newest(trained_run, tmp_path, damage, manifest)
    capsys.readouterr()
    with contextlib.nullcontext() if manifest else pytest.warns(UnverifiedArtifactWarning):
        rc = main(["train", "-c", str(cfg), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: checkpoint {ck} is damaged: {file} ("), err
    if manifest and file != "scheduler.bin":
        assert "the manifest says" in err or "SHA-256 mismatch" in err, err
    else:
        assert reason in err, err
    assert "delete that folder to resume from the checkpoint before it" in err


def test_resume_after_deleting_a_damaged_checkpoint_uses_the_one_before(trained_run, tmp_path, capsys):
    """What the message advises works: the damaged newest checkpoint deleted, --resume continues
    from the previous one and finishes."""
    import shutil

    cfg, ck = _damage_newest(trained_run, tmp_path, lambda ck: _truncate(ck / "model.safetensors"), True)
    shutil.rmtree(ck)
    shutil.rmtree(ck.parent.parent / "final")
    assert main(["train", "-c", str(cfg), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out and (ck.parent.parent / "final").is_dir()
