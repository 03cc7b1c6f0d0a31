"""ScienceQA and stage-1 examples go through the real MR-MKG model (tiny random causal and seq2seq
LLMs): collate, forward (generation + alignment loss) and generate, and the generated answer goes
through the strict parser and the scorer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrmkg.kg.subgraph import Subgraph
from mrmkg.model import MRMKG, KGFeatures
from mrmkg.tasks.kgqa import data as kg_qa
from mrmkg.tasks.scienceqa import data as sqa
from mrmkg.tasks.scienceqa import score as S
from mrmkg.tasks.kgqa.vg import VGConfig, build_vg
from sqa_fixture import scienceqa_root
from test_model_common import small_config, tiny_llm

FIX = Path(__file__).parent / "fixtures"
VDIM = 10


class _Vision:
    name, dim, num_tokens = "fake-vision", VDIM, 3

    def encode_tokens(self, images, batch_size=32, progress=False):
        rng = np.random.default_rng(len(images))
        return rng.random((len(images), 3, VDIM), dtype=np.float32)


class _Retriever:
    """Answers every query with the first VG instance's scene graph (any subgraph of the graph will do)."""

    def __init__(self, sg: Subgraph):
        self.sg = sg

    def retrieve_batch(self, texts, images=None):
        return [self.sg for _ in texts]


@pytest.fixture(scope="module")
def vg(tmp_path_factory):
    return build_vg(FIX / "vg", tmp_path_factory.mktemp("vg") / "out", images_dir=FIX / "vg" / "images",
                    config=VGConfig())


def _model(kind, kg):
    feats = KGFeatures.random(kg.num_entities, kg.num_relations, kg.num_images, 12, VDIM, seed=0)
    return MRMKG(small_config(align_weight=0.5), tiny_llm(kind), feats, report=False)


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_stage1_vg_examples_train_step(kind, vg):
    torch.manual_seed(0)
    m = _model(kind, vg.kg)
    ex = kg_qa.to_examples(vg.records, vision_encoder=_Vision())
    assert all(e.image_tokens.shape == (3, VDIM) for e in ex)
    m.train()
    out = m(m.collate(ex))
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    # VG subgraphs carry crops linked by "image of": the alignment loss is active
    assert out.align_loss is not None and torch.isfinite(out.align_loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.trainable_parameters())


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_scienceqa_examples_forward_generate_parse_score(kind, vg):
    torch.manual_seed(0)
    data = sqa.load_scienceqa(scienceqa_root())
    probs = data.split("test")[:4]
    m = _model(kind, vg.kg)
    cfg = sqa.ScienceQAPromptConfig(format="QCM-A")
    ex = sqa.make_examples(probs, cfg, retriever=_Retriever(vg.records[0].subgraph), vision_encoder=_Vision())
    m.train()
    assert torch.isfinite(m(m.collate(ex)).loss)
    m.eval()
    inf = sqa.make_examples(probs, cfg, retriever=_Retriever(vg.records[0].subgraph), vision_encoder=_Vision(),
                            with_target=False)
    with torch.no_grad():
        texts = m.generate(m.collate(inf), max_new_tokens=4)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    preds, rep = sqa.resolve_predictions({p.pid: t for p, t in zip(probs, texts)}, data.problems)
    # a random tiny model cannot write "The answer is (X)." (its vocabulary lacks the words): every
    # answer is reported unparseable and scored wrong, never guessed
    assert rep.total == 4 and rep.unparsed == 4 and all(v is None for v in preds.values())
    s = S.score(data.problems, preds)
    assert s.accuracy["Average"] == 0.0 and s.unparsed == 4
