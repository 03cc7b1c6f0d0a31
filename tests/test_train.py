"""The training engine on a tiny task: config loading, determinism, accumulation, exact resume after
SIGKILL, and DDP with two CPU processes. The toy task lives here and is imported by subprocesses as
``toy``, a plugin task registered by tests/mrmkg_test_tasks-0.0.dist-info (PYTHONPATH=tests)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from mrmkg.cli import main as cli_main
from mrmkg.errors import InputError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


class ToyModel(torch.nn.Module):
    """A frozen random projection (like the frozen LLM) and a trainable classifier with dropout."""

    def __init__(self, d: int, classes: int, dropout: float):
        super().__init__()
        self.frozen = torch.nn.Linear(d, d)
        self.frozen.requires_grad_(False)
        self.drop = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(d, classes)

    def forward(self, batch):
        x, y = batch
        logits = self.head(self.drop(self.frozen(x)))
        return SimpleNamespace(loss=F.cross_entropy(logits.float(), y))

    def save_pretrained(self, directory):
        from safetensors.torch import save_file

        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(Path(directory) / "model.safetensors"))


class ToyTask:
    """Linearly separable-ish 3-class data; ``delay`` slows collate so a kill lands mid-run."""

    def __init__(self, n: int = 96, d: int = 8, classes: int = 3, dropout: float = 0.1, delay: float = 0.0):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, d, generator=g)
        w = torch.randn(d, classes, generator=g)
        self.y = (self.x @ w).argmax(-1)
        self.d, self.classes, self.dropout, self.delay = d, classes, dropout, delay

    @classmethod
    def from_config(cls, args, config):
        return cls(**args)

    def build_model(self):
        return ToyModel(self.d, self.classes, self.dropout)

    def train_examples(self):
        return list(range(len(self.y)))

    def collate(self, examples):
        if self.delay:
            time.sleep(self.delay)
        idx = torch.tensor(examples)
        return self.x[idx], self.y[idx]

    def evaluate(self, model, batch_size):
        model.eval()
        with torch.no_grad():
            logits = model.head(model.frozen(self.x))
            loss = F.cross_entropy(logits, self.y).item()
        return {"accuracy": float((logits.argmax(-1) == self.y).float().mean()), "loss": loss}


def _cfg(tmp_path, **over):
    from mrmkg.train import load_train_config

    base = {"task": "toy", "output_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 8,
            "precision": "fp32", "progress": False, "optim": {"lr": 0.05, "warmup_steps": 2}}
    sets = []
    for k, v in over.items():
        sets.append(f"{k}={json.dumps(v)}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(base))
    return load_train_config(p, sets)


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "trainable.safetensors"))


@pytest.fixture(autouse=True)
def _toy_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


# ---------------------------------------------------------------------------------- config
def test_config_yaml_and_overrides(tmp_path):
    from mrmkg.train import load_train_config

    p = tmp_path / "c.yaml"
    p.write_text("task: mars\nseed: 3\noptim:\n  lr: 2e-5\n  scheduler: cosine\nmodel:\n  n_triples: 10\n")
    cfg = load_train_config(p, ["optim.lr=0.001", "model.n_triples=20", "task_args.prompt=kg_text"])
    assert cfg.seed == 3 and cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.scheduler == "cosine"
    assert cfg.optim.weight_decay == 0.01  # the paper's default survives
    assert cfg.model == {"n_triples": 20} and cfg.task_args == {"prompt": "kg_text"}


@pytest.mark.parametrize("text,line,needle", [
    ("seed: 1\noptim:\n  lr: fast\n", 3, "optim.lr"),
    ("seed: 1\nbatchsize: 4\n", 2, "unknown field"),
    ("precision: fp16\n", 1, "'bf16', 'fp32'"),
    ("epochs: 0\n", 1, "field 'epochs': must be >= 1, got 0"),
])
def test_config_errors_name_file_line_field(tmp_path, text, line, needle):
    from mrmkg.train import load_train_config

    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_train_config(p)
    assert str(p) in str(e.value) and needle in str(e.value)
    assert e.value.line == line


def test_cli_bad_config_exits_2(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  warmup_steps: many\n")
    assert cli_main(["train", "--config", str(p)]) == 2
    assert f"{p}:2" in capsys.readouterr().err
    assert cli_main(["train", "--set", "nonsense"]) == 2
    assert cli_main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_cli_help_lists_fields(capsys):
    assert cli_main(["train", "--list-fields"]) == 0
    out = capsys.readouterr().out
    for name in ("optim.lr", "optim.weight_decay", "grad_accum", "checkpoint_every", "precision", "init_from"):
        assert name in out


# ---------------------------------------------------------------------------------- engine
def test_sampler_shards_and_is_seeded():
    from mrmkg.train import EpochSampler

    a = [EpochSampler(40, 7, 4, 2, rank=r, world=2) for r in range(2)]
    assert a[0].steps_per_epoch == 40 // 16
    step = [np.concatenate(s.micro_batches(1, 1)) for s in a]
    assert not set(step[0]) & set(step[1])  # ranks never share an example within a step
    assert np.array_equal(EpochSampler(40, 7, 4, 2).permutation(3), EpochSampler(40, 7, 4, 2).permutation(3))
    assert not np.array_equal(EpochSampler(40, 7, 4, 2).permutation(0), EpochSampler(40, 7, 4, 2).permutation(1))
    # every example of an epoch is used at most once, across steps and ranks
    seen = np.concatenate([np.concatenate(s.micro_batches(0, k)) for s in a for k in range(a[0].steps_per_epoch)])
    assert len(seen) == len(set(seen.tolist())) == 32


def test_train_learns_and_is_deterministic(tmp_path):
    from mrmkg.train import train

    opt = {"lr": 0.2, "warmup_steps": 2}
    r1 = train(_cfg(tmp_path / "a", epochs=4, optim=opt))
    r2 = train(_cfg(tmp_path / "b", epochs=4, optim=opt))
    r3 = train(_cfg(tmp_path / "c", epochs=4, optim=opt, seed=1))
    assert r1.global_step == 4 * (96 // 8)
    # the toy problem is learnable: well above chance (1/3), loss below ln 3
    assert r1.metrics["accuracy"] > 0.55 and r1.metrics["loss"] < 0.95
    assert r1.history[0]["loss"] > r1.history[-1]["loss"]
    assert r1.metrics == r2.metrics and r1.history == r2.history
    w1, w2, w3 = _weights(r1.output_dir), _weights(r2.output_dir), _weights(r3.output_dir)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not torch.equal(w1["head.weight"], w3["head.weight"])
    assert set(w1) == {"head.weight", "head.bias"}  # frozen parameters are not saved
    assert (r1.output_dir / "final" / "model" / "model.safetensors").is_file()
    assert json.loads((r1.output_dir / "metrics.json").read_text()) == r1.metrics



def test_progress_periodic_eval_and_summary_table(tmp_path, capsys):
    from mrmkg.train import train

    r = train(_cfg(tmp_path, epochs=2, eval_every=6, progress=True))  # 12 steps per epoch, 24 in all
    evals = [h for h in r.history if "eval" in h]
    assert [h["step"] for h in evals] == [6, 12, 18]  # the final evaluation is the run's metrics, not history
    assert all(set(h["eval"]) == {"accuracy", "loss"} for h in evals)
    err = capsys.readouterr().err
    assert "train toy" in err and "samples_s=" in err  # the bar, with loss and throughput
    assert "training summary" in err and "samples_per_s" in err and "accuracy" in err
    # evaluating in the middle leaves the run where it would be without it (the toy eval draws no random numbers)
    quiet = train(_cfg(tmp_path / "quiet", epochs=2))
    assert quiet.metrics == r.metrics


@pytest.mark.parametrize("over,needle", [
    ({"task": "no_such_task"}, "unknown task 'no_such_task'; expected one of demo, demo_stage1"),
    ({"task": "json:loads"}, "unknown task 'json:loads'"),  # a config names a task; it never imports a module
    ({"batch_size": 97}, "96 training examples are fewer than one optimizer step"),
    ({"grad_accum": 13}, "(batch_size 8 x processes 1 x grad_accum 13)"),
    ({"optim": {"scheduler": "sawtooth"}}, "field 'optim.scheduler'"),
])
def test_engine_refuses_setups_it_cannot_run(tmp_path, over, needle):
    from mrmkg.train import train

    with pytest.raises(InputError) as e:
        train(_cfg(tmp_path, **over))
    assert needle in str(e.value)
    assert not (tmp_path / "run" / "final").exists()

def test_grad_accum_matches_large_batch(tmp_path):
    from mrmkg.train import train

    big = train(_cfg(tmp_path / "big", batch_size=8, grad_accum=1, task_args={"dropout": 0.0}))
    acc = train(_cfg(tmp_path / "acc", batch_size=4, grad_accum=2, task_args={"dropout": 0.0}))
    assert big.global_step == acc.global_step
    wb, wa = _weights(big.output_dir), _weights(acc.output_dir)
    for k in wb:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)


def test_warmup_and_weight_decay_groups(tmp_path):
    from mrmkg.train import train

    r = train(_cfg(tmp_path, epochs=1, log_every=1, optim={"lr": 0.1, "warmup_steps": 4, "scheduler": "linear"}))
    lrs = [h["lr"] for h in r.history if "lr" in h]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[-1] < lrs[3]


def test_fused_adamw_matches_the_default_kernel(tmp_path):
    from mrmkg.train import train

    ref = train(_cfg(tmp_path / "ref", task_args={"dropout": 0.0}))
    fused = train(_cfg(tmp_path / "fused", task_args={"dropout": 0.0}, optim={"lr": 0.05, "warmup_steps": 2,
                                                                              "fused": True}))
    wr, wf = _weights(ref.output_dir), _weights(fused.output_dir)
    for k in wr:
        torch.testing.assert_close(wf[k], wr[k], rtol=1e-4, atol=1e-6)
    blob = torch.load(fused.output_dir / "checkpoints" / f"step-{fused.global_step:08d}" / "optimizer.pt",
                      weights_only=True)
    assert blob["optimizer"]["param_groups"][0]["fused"] is True


def test_bf16_autocast_runs(tmp_path):
    from mrmkg.train import train

    r = train(_cfg(tmp_path, epochs=1, precision="bf16"))
    assert np.isfinite(r.final_loss)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    from mrmkg.train import train

    cfg = _cfg(tmp_path, epochs=1)
    train(cfg)
    with pytest.raises(InputError, match="--resume"):
        train(cfg)
    r = train(cfg, resume=True)  # already finished: nothing left to do, same result
    assert r.samples == 0
    train(cfg, overwrite=True)


def test_init_from_loads_matching_weights(tmp_path):
    from mrmkg.train import train

    a = train(_cfg(tmp_path / "a", epochs=1))
    b = train(_cfg(tmp_path / "b", epochs=1, max_steps=1, optim={"lr": 1e-12, "warmup_steps": 0},
                   init_from=str(a.output_dir)))
    wa, wb = _weights(a.output_dir), _weights(b.output_dir)
    torch.testing.assert_close(wa["head.weight"], wb["head.weight"], rtol=0, atol=1e-6)
    torch.testing.assert_close(wa["head.bias"], wb["head.bias"], rtol=0, atol=1e-6)


def test_init_skip_keeps_the_init_of_the_named_tensors(tmp_path, capsys):
    from mrmkg.train import train

    tiny = {"epochs": 1, "max_steps": 1, "optim": {"lr": 1e-12, "warmup_steps": 0}}
    a = train(_cfg(tmp_path / "a", epochs=1))
    fresh = train(_cfg(tmp_path / "fresh", **tiny))
    capsys.readouterr()
    b = train(_cfg(tmp_path / "b", **tiny, init_from=str(a.output_dir), init_skip=["head.bias"]))
    assert "loaded 1 tensors, kept init for 1 (excluded by init_skip: 1)" in capsys.readouterr().out
    wa, wb, wf = _weights(a.output_dir), _weights(b.output_dir), _weights(fresh.output_dir)
    torch.testing.assert_close(wb["head.weight"], wa["head.weight"], rtol=0, atol=1e-6)
    torch.testing.assert_close(wb["head.bias"], wf["head.bias"], rtol=0, atol=1e-6)
    assert not torch.allclose(wb["head.bias"], wa["head.bias"], atol=1e-3)


def _cli_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO / "src")]))
    return env


def test_resume_after_sigkill_is_exact(tmp_path):
    """Kill a run (SIGKILL) after its second checkpoint, resume it: same weights and metrics as a
    run that was never interrupted."""
    from mrmkg.train import latest_checkpoint

    sets = ["--set", "checkpoint_every=3", "--set", "epochs=3", "--set", "task_args.delay=0.05",
            "--set", "keep_checkpoints=5"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"task": "toy", "batch_size": 8, "precision": "bf16",
                                   "progress": False, "optim": {"lr": 0.05, "warmup_steps": 2}}))
    cmd = [sys.executable, "-m", "mrmkg", "train", "--config", str(cfg), *sets]
    # the uninterrupted reference runs in-process (1 torch thread, like the subprocesses)
    from mrmkg.train import load_train_config, train

    train(load_train_config(cfg, [s for s in sets if s != "--set"], output_dir=str(tmp_path / "ref")))

    run = tmp_path / "killed"
    p = subprocess.Popen(cmd + ["-o", str(run)], env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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

    res = subprocess.run(cmd + ["-o", str(run), "--resume"], env=_cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout
    wr, wk = _weights(tmp_path / "ref"), _weights(run)
    assert all(torch.equal(wr[k], wk[k]) for k in wr)
    mr = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    mk = json.loads((run / "metrics.json").read_text())
    assert mr == mk
    hr = json.loads((tmp_path / "ref" / "final" / "trainer_state.json").read_text())["history"]
    hk = json.loads((run / "final" / "trainer_state.json").read_text())["history"]
    assert hr == hk


def test_ddp_two_cpu_processes_hold_identical_weights(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"task": "toy", "batch_size": 4, "epochs": 1, "max_steps": 4,
                                   "precision": "fp32", "progress": False, "output_dir": str(tmp_path / "ddp"),
                                   "optim": {"lr": 0.05}}))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # `--cpu` makes this accelerate version start a single process; `--multi_gpu` on a machine
    # without GPUs starts K torchrun processes that join over gloo, and Accelerator(cpu=True) keeps
    # them on the CPU. GPUs are hidden: on a one-GPU machine rank 1 would look for cuda:1 (seen on an H200).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--num_cpu_threads_per_process", "1", "--main_process_port", str(port),
           "-m", "mrmkg", "train", "--config", str(cfg)]
    res = subprocess.run(cmd, env=dict(_cli_env(), CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True,
                         timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    digests = summary["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    # each rank saw its own half of every global batch (ranks without DDP sync would diverge)
    state = json.loads((tmp_path / "ddp" / "final" / "trainer_state.json").read_text())
    assert state["samples"] == 4 * 4 * 2
