"""MR-MKG on the real SmolLM2-135M (slow: loads the converted weights through engineer ENC's
``load_llm``; the first call converts the GGUF, about a minute)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrmkg.model import MRMKG, MRMKGExample
from test_model_common import small_config, toy_features, toy_kg, toy_subgraph

pytestmark = [pytest.mark.slow, pytest.mark.weights("smollm2-135m")]


@pytest.fixture(scope="module")
def smollm2():
    from mrmkg.encoders.registry import load_llm

    return load_llm("smollm2-135m", progress=False)


def test_smollm2_gradients_padding_and_round_trip(smollm2, tmp_path):
    kg = toy_kg()
    m = MRMKG(small_config(llm="smollm2-135m", entity_head=True, align_weight=1.0), smollm2, toy_features(kg),
              entity_names=kg.entity_names, relation_names=kg.relation_names, report=False)
    rng = np.random.default_rng(0)
    exs = [MRMKGExample("Which animal has fur? [E0] or [E4]. Answer:", " fur", answer=0, subgraph=toy_subgraph(kg),
                        image_tokens=rng.random((2, 10), dtype=np.float32)),
           MRMKGExample("The capital of France is", " Paris", answer=1)]
    batch = m.collate(exs)
    m.train()
    out = m(batch)
    out.loss.backward()
    for name in ("graph_encoder", "knowledge_adapter", "visual_adapter", "entity_head"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(m, name).parameters()), name
    assert all(p.grad is None for p in m.lm.parameters())
    m.eval()
    out = m(batch)
    gen = m.generate(batch, max_new_tokens=3)
    for i, ex in enumerate(exs):
        one = m.collate([ex])
        torch.testing.assert_close(out.example_loss[i], m(one).example_loss[0], rtol=1e-4, atol=1e-4)
        assert gen[i] == m.generate(one, max_new_tokens=3)[0]
    m.save_pretrained(tmp_path / "c")
    m2 = MRMKG.from_pretrained(tmp_path / "c", llm=smollm2, features=m.features)
    assert torch.equal(m.rank(batch), m2.rank(batch))
