"""The same model and training engine on a CUDA GPU: results equal the CPU's up to float rounding.

Skipped where no GPU is visible (CI, the 2-core development machines); run on a GPU machine with
``pytest -q tests/test_cuda.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_model_mrmkg import build, examples
from test_train import ToyTask, _cfg, _weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _full_fp32_matmuls():
    # TF32 products would differ from the CPU's by ~1e-3, more than rounding
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _run(kind: str, device: str, **cfg):
    from mrmkg.train import to_device

    m, kg = build(kind, **cfg)
    m.to(device).train()
    batch = to_device(m.collate(examples(kg)), torch.device(device))
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
    cfg = {"align_weight": 0.0, **cfg}      # alignment samples its anchors with a per-device generator
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
    from mrmkg.train import train

    _DeviceProbe.seen = set()
    runs = [train(_cfg(tmp_path / name, cpu=False, epochs=4, precision=precision,
                       optim={"lr": 0.2, "warmup_steps": 2}), task=_DeviceProbe())
            for name in ("a", "b")]
    assert _DeviceProbe.seen == {"cuda"}
    assert runs[0].metrics["accuracy"] > 0.55 and np.isfinite(runs[0].final_loss)
    wa, wb = _weights(runs[0].output_dir), _weights(runs[1].output_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert runs[0].metrics == runs[1].metrics
