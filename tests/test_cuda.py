"""The same model and training engine on a CUDA GPU: results equal the CPU's up to float rounding.

Skipped where no GPU is visible (CI, the 2-core development machines); run on a GPU machine with
``pytest -q tests/test_cuda.py``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_toy import ToyTask, final_weights as _weights, toy_config as _cfg
from test_mars import DEV, _train_cfg, world  # noqa: F401 (world: the tiny MARS fixture)
from test_model_mrmkg import build, examples

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _full_fp32_matmuls():
    # TF32 products would differ from the CPU's by ~1e-3, more than rounding
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _run(kind: str, device: str, **cfg):
    from accelerate.utils import send_to_device

    m, kg = build(kind, **cfg)
    m.to(device).train()
    batch = send_to_device(m.collate(examples(kg)), torch.device(device))
    out = m(batch)
    out.loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in m.named_parameters() if p.grad is not None}
    m.eval()
    return out, grads, m.rank(batch).cpu(), m.generate(batch, max_new_tokens=4)


@pytest.mark.parametrize("kind,cfg", [
    ("llama", {}), ("llama", {"pack_sequences": True}), ("gemma", {"pack_sequences": True}),
    ("t5", {}), ("llama", {"adapter_length": "nodes", "graph_encoder": "gat"}),
])
def test_model_on_cuda_matches_cpu(kind, cfg):
    (a, ga, ra, sa), (b, gb, rb, sb) = _run(kind, "cpu", **cfg), _run(kind, "cuda", **cfg)
    assert b.loss.device.type == "cuda"
    torch.testing.assert_close(b.loss.cpu(), a.loss, rtol=1e-4, atol=1e-5)
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], rtol=1e-3, atol=1e-5, msg=n)
    torch.testing.assert_close(rb, ra, rtol=1e-4, atol=1e-4)
    assert sb == sa


def test_alignment_and_bf16_autocast_run_on_cuda():
    out, grads, scores, _ = _run("llama", "cuda", dtype="bf16", align_weight=0.5)
    assert torch.isfinite(out.loss) and out.align_loss is not None and torch.isfinite(scores).all()
    assert all(torch.isfinite(g).all() for g in grads.values())


class _DeviceProbe(ToyTask):
    """The toy task, recording the device of every training batch its model sees."""

    seen: set = set()

    def build_model(self):
        model = super().build_model()
        forward = model.forward

        def probe(batch):
            _DeviceProbe.seen.add(batch[0].device.type)
            return forward(batch)

        model.forward = probe
        return model

    def evaluate(self, model, batch_size):
        host = self.x, self.y
        self.x, self.y = (t.to(next(model.parameters()).device) for t in host)
        try:
            return super().evaluate(model, batch_size)
        finally:
            self.x, self.y = host


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_engine_runs_on_cuda_and_is_deterministic(tmp_path, precision):
    from mrmkg.engine import train

    _DeviceProbe.seen = set()
    runs = [train(_cfg(tmp_path / name, cpu=False, epochs=4, precision=precision,
                       optim={"lr": 0.2, "warmup_steps": 2}), task=_DeviceProbe())
            for name in ("a", "b")]
    assert _DeviceProbe.seen == {"cuda"}
    assert runs[0].metrics["accuracy"] > 0.55 and np.isfinite(runs[0].final_loss)
    wa, wb = _weights(runs[0].output_dir), _weights(runs[1].output_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert runs[0].metrics == runs[1].metrics


def test_resume_on_cuda_is_exact(tmp_path):
    from mrmkg.engine import train

    cfg = {"cpu": False, "checkpoint_every": 5, "keep_checkpoints": 100}     # dropout draws from the CUDA RNG
    full = train(_cfg(tmp_path / "full", **cfg), task=_DeviceProbe())
    step = "step-00000010"
    shutil.copytree(full.output_dir / "checkpoints" / step, tmp_path / "part" / "run" / "checkpoints" / step)
    resumed = train(_cfg(tmp_path / "part", **cfg), task=_DeviceProbe(), resume=True)
    assert resumed.global_step == full.global_step > 10
    wf, wr = _weights(full.output_dir), _weights(resumed.output_dir)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert resumed.metrics == full.metrics


def test_mars_trains_on_cuda_and_evaluates_anywhere(world, tmp_path):
    from mrmkg.evaluate import evaluate
    from mrmkg.engine import load_train_config, train

    res = train(load_train_config(_train_cfg(world, tmp_path / "run", memory=True, pointer=True, cpu=False)))
    assert res.metrics["n"] == len(DEV) and np.isfinite(res.final_loss)
    split = Path(world["mars"]) / "dev.json"
    preds = {}
    for device in ("cpu", "cuda"):
        m = evaluate(tmp_path / "run", split, tmp_path / device, batch_size=2, progress=False, device=device)
        assert m["hits@1"] == pytest.approx(res.metrics["hits@1"]) and m["mrr"] == pytest.approx(res.metrics["mrr"])
        preds[device] = [json.loads(x) for x in (tmp_path / device / "predictions.jsonl").read_text().splitlines()]
    for a, b in zip(preds["cpu"], preds["cuda"]):
        assert a["rank"] == b["rank"] and [c for c, _ in a["top10"]] == [c for c, _ in b["top10"]]
        np.testing.assert_allclose([s for _, s in b["top10"]], [s for _, s in a["top10"]], rtol=1e-4, atol=1e-4)


def test_one_process_switches_between_cpu_and_cuda(tmp_path):
    from mrmkg.engine import train

    for i, cpu in enumerate((True, False, True)):
        _DeviceProbe.seen = set()
        train(_cfg(tmp_path / str(i), cpu=cpu, epochs=1), task=_DeviceProbe())
        assert _DeviceProbe.seen == {"cpu" if cpu else "cuda"}
