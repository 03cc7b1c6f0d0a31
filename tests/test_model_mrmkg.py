"""The assembled MR-MKG on tiny random LLaMA, Gemma3 (causal) and T5 (seq2seq) models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrmkg.errors import InputError
from mrmkg.kg.subgraph import Subgraph
from mrmkg.model import MRMKG, MRMKGExample, count_trainable_parameters
from test_model_common import small_config, tiny_llm, toy_features, toy_kg, toy_subgraph

KINDS = ["llama", "gemma", "t5"]


def build(kind="llama", **cfg):
    kg = toy_kg()
    cfg.setdefault("entity_head", True)
    m = MRMKG(small_config(**cfg), tiny_llm(kind), toy_features(kg), entity_names=kg.entity_names,
              relation_names=kg.relation_names, report=False)
    return m, kg


def examples(kg, rng=None):
    rng = rng or np.random.default_rng(0)
    one = Subgraph.from_triples(kg, [], [], seeds=[4])  # a single node, no edges
    return [
        MRMKGExample("what is the cat [E0] ? the answer is", "fur", answer=2, subgraph=toy_subgraph(kg),
                     image_tokens=rng.random((3, 10), dtype=np.float32)),
        MRMKGExample("the dog", "pet", answer=3, subgraph=None, image_tokens=None),
        MRMKGExample("a red bird [R0] what color", "red blue red", answer=4, subgraph=one,
                     image_tokens=rng.random((1, 10), dtype=np.float32)),
        MRMKGExample("sun", "yes", answer=0, subgraph=toy_subgraph(kg, (4,), images_per_entity=2), image_tokens=None),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_trainable_module_and_no_frozen_weight(kind):
    m, kg = build(kind, align_weight=1.0)
    m.train()
    out = m(m.collate(examples(kg)))
    assert out.gen_loss is not None and out.rank_loss is not None and out.align_loss.item() > 0
    out.loss.backward()
    for name in ("graph_encoder", "knowledge_adapter", "visual_adapter", "entity_head"):
        mod = getattr(m, name)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters()), name
    assert m.graph_encoder.entity_proj.weight.grad.abs().sum() > 0
    assert m.graph_encoder.image_proj.weight.grad.abs().sum() > 0
    assert m.visual_adapter.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in m.lm.parameters())
    assert {id(p) for p in m.trainable_parameters()}.isdisjoint({id(p) for p in m.lm.parameters()})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", [{}, {"adapter_length": "nodes"}, {"knowledge_query": "image"},
                                     {"adapter_projections": True, "graph_encoder": "gat"}])
def test_padded_batch_equals_items_alone(kind, variant):
    m, kg = build(kind, **variant)
    m.eval()
    exs = examples(kg)
    batch = m.collate(exs)
    out = m(batch)
    scores = m.rank(batch)
    gen = m.generate(batch, max_new_tokens=4)
    for i, ex in enumerate(exs):
        single = m.collate([ex])
        o = m(single)
        torch.testing.assert_close(out.example_loss[i], o.example_loss[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.scores[i], o.scores[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(scores[i], m.rank(single)[0], rtol=1e-5, atol=1e-5)
        assert gen[i] == m.generate(single, max_new_tokens=4)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_no_graph_no_image_and_ablations(kind):
    m, kg = build(kind)
    m.eval()
    b = m.collate([MRMKGExample("the cat", "fur")])
    assert torch.isfinite(m(b).loss)
    for cfg in ({"use_kg": False}, {"use_image": False}, {"use_kg": False, "use_image": False},
                {"graph_encoder": "none"}, {"graph_encoder": "gcn"}):
        m2, _ = build(kind, **cfg)
        o = m2(m2.collate(examples(kg)))
        assert torch.isfinite(o.loss), cfg
    m3, _ = build(kind, use_kg=False, use_image=False)
    assert m3.graph_encoder is None and m3.visual_adapter is None


def test_knowledge_changes_the_output_and_ablation_ignores_it():
    m, kg = build("llama")
    m.eval()
    with_kg = m.collate([MRMKGExample("the cat", "fur", subgraph=toy_subgraph(kg))])
    without = m.collate([MRMKGExample("the cat", "fur")])
    assert not torch.allclose(m(with_kg).loss, m(without).loss)
    m2, _ = build("llama", use_kg=False, use_image=False)
    torch.testing.assert_close(m2(with_kg).loss, m2(without).loss)


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_tiny_overfit_drives_losses_down(kind):
    m, kg = build(kind, align_weight=0.5)
    exs = examples(kg)[:2]
    batch = m.collate(exs)
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=3e-2)
    m.train()
    first = None
    for _ in range(40):
        out = m(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else out.loss.item()
    assert out.loss.item() < 0.5 * first
    m.eval()
    assert m.rank(batch).argmax(1).tolist() == [2, 3]


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_is_bit_identical(kind, tmp_path):
    m, kg = build(kind, adapter_projections=True, pointer={"mode": "first", "loss_weight": 0.5})
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.1)
    m.train()
    batch = m.collate(examples(kg))
    m(batch).loss.backward()
    opt.step()
    m.eval()
    m.save_pretrained(tmp_path / "ckpt")
    saved = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert saved == {"model.safetensors", "mrmkg.json", "checksums.json"}  # the manifest, written last
    from safetensors.torch import load_file

    keys = set(load_file(str(tmp_path / "ckpt" / "model.safetensors")))
    assert {"graph_pointer.query.weight", "graph_pointer.feature.weight", "graph_pointer.prior.weight"} <= keys
    assert keys and not any(k.startswith(("lm.", "features.")) for k in keys)
    m2 = MRMKG.from_pretrained(tmp_path / "ckpt", llm=m.llm, features=m.features)
    m2.eval()
    assert torch.equal(m(batch).loss, m2(batch).loss)
    assert torch.equal(m.rank(batch), m2.rank(batch))
    assert m.generate(batch, 3) == m2.generate(batch, 3)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(InputError, match="not an MR-MKG checkpoint"):
        MRMKG.from_pretrained(tmp_path)
    m, kg = build("llama")
    m.save_pretrained(tmp_path / "c")
    with pytest.raises(InputError, match="features"):
        MRMKG.from_pretrained(tmp_path / "c", llm=m.llm)
    other = toy_features(kg, text_dim=6)
    with pytest.raises(InputError, match="text_dim"):
        MRMKG.from_pretrained(tmp_path / "c", llm=m.llm, features=other)
    renamed = type(m.llm)(m.llm.model, m.llm.tokenizer, m.llm.kind, "another-llm-of-the-same-width")
    with pytest.warns(UserWarning, match="trained on the frozen LLM .* running it on 'another-llm"):
        MRMKG.from_pretrained(tmp_path / "c", llm=renamed, features=m.features)


def test_older_checkpoint_format_is_refused_with_the_file_and_a_retrain_hint(tmp_path):
    import json

    m, kg = build("llama")
    m.save_pretrained(tmp_path / "c")
    meta = tmp_path / "c" / "mrmkg.json"
    d = json.loads(meta.read_text())
    assert d["format_version"] == 2 and d["config"]["pointer"] is None
    d["format_version"] = 1
    meta.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"format 1 is older .*'pointer' section.*retrain") as e:
        MRMKG.from_pretrained(tmp_path / "c", llm=m.llm, features=m.features)
    assert str(meta) in str(e.value)


def test_entity_tokens_start_at_mean_name_embedding():
    m, kg = build("llama")
    tok = m.llm.tokenizer
    emb = m.lm.get_input_embeddings()
    for i, name in enumerate(kg.entity_names):
        ids = torch.tensor(tok(name, add_special_tokens=False)["input_ids"])
        torch.testing.assert_close(m.entity_head.entity.weight[i], emb(ids).mean(0))
    ids = torch.tensor(tok("is a", add_special_tokens=False)["input_ids"])
    torch.testing.assert_close(m.entity_head.relation.weight[1], emb(ids).mean(0))


def test_bad_inputs_raise_input_error():
    m, kg = build("llama")
    with pytest.raises(InputError, match=r"\[E99\]"):
        m(m.collate([MRMKGExample("the [E99]", "fur")]))
    with pytest.raises(InputError, match="width"):
        m(m.collate([MRMKGExample("the", "fur", image_tokens=np.zeros((2, 7), np.float32))]))
    with pytest.raises(InputError, match="not among"):
        m.collate([MRMKGExample("the", answer=1)], candidates=[0, 2])
    bad = toy_subgraph(kg)
    bad.node_ref[0] = 99
    with pytest.raises(InputError, match="entity 99"):
        m(m.collate([MRMKGExample("the", "fur", subgraph=bad)]))
    m2, _ = build("llama", entity_head=False)
    with pytest.raises(InputError, match="entity head"):
        m2(m2.collate([MRMKGExample("the [E1]", "fur")]))


def test_candidate_subsets_shared_and_per_example():
    m, kg = build("llama")
    m.eval()
    exs = [MRMKGExample("the cat", answer=2), MRMKGExample("the dog", answer=3)]
    full = m.rank(m.collate(exs))
    sub = m.collate(exs, candidates=[3, 2])
    assert sub.answer_pos.tolist() == [1, 0]
    torch.testing.assert_close(m.rank(sub), full[:, [3, 2]])
    exs2 = [MRMKGExample("the cat", answer=2, candidates=np.array([2, 0])),
            MRMKGExample("the dog", answer=3, candidates=np.array([1, 3]))]
    torch.testing.assert_close(m.rank(m.collate(exs2)), torch.stack([full[0, [2, 0]], full[1, [1, 3]]]))
    rel = m.collate([MRMKGExample("the cat [R0]", answer=1)], rank_over="relation")
    assert m.rank(rel).shape == (1, kg.num_relations)


def test_bf16_runs():
    m, kg = build("llama", dtype="bf16")
    m.train()
    out = m(m.collate(examples(kg)))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.parametrize("kind,cfg", [("llama", {}), ("llama", {"pack_sequences": True}), ("gemma", {"pack_sequences": True}),
                                      ("t5", {})])
def test_gradient_checkpointing_recomputes_and_changes_nothing(kind, cfg):
    from transformers.modeling_layers import GradientCheckpointingLayer

    runs = []
    for gc in (False, True):
        m, kg = build(kind, gradient_checkpointing=gc, **cfg)
        m.train()
        first = next(mod for mod in m.lm.modules() if isinstance(mod, GradientCheckpointingLayer))
        calls = []
        part = next(mod for mod in first.modules() if mod is not first and not isinstance(mod, torch.nn.ModuleList))
        part.register_forward_pre_hook(lambda *a: calls.append(1))   # on entry: early stop can't skip it
        out = m(m.collate(examples(kg)))
        out.loss.backward()
        grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
        runs.append((out.loss, grads, len(calls)))
    (la, ga, ca), (lb, gb, cb) = runs
    assert (ca, cb) == (1, 2)                        # backward ran the first layer again
    torch.testing.assert_close(lb, la)               # and no dropout ran in the frozen LLM (T5's attention's)
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], rtol=1e-4, atol=1e-6, msg=n)


def test_same_seed_same_model_and_loss():
    kg = toy_kg()
    losses = []
    for _ in range(2):
        m, _ = build("llama", align_weight=1.0)
        m.train()
        losses.append(m(m.collate(examples(kg))).loss)
    assert torch.equal(losses[0], losses[1])


def test_weight_free_count_matches_built_model():
    m, kg = build("llama", adapter_projections=True)
    n = count_trainable_parameters(m.config, m.lm.config, text_dim=12, vision_dim=10,
                                   num_relations=kg.num_relations, num_entities=kg.num_entities)
    assert n["total"] == m.parameter_report()["trainable"]
    from transformers import T5Config

    xl = count_trainable_parameters(small_config(gnn_hidden=256, gnn_heads=4, gnn_num_blocks=8), T5Config(d_model=2048))
    assert xl["d"] == 2048 and xl["total"] > 0



def test_printed_parameter_report_shows_each_trained_part_and_the_share_of_the_llm():
    from rich.console import Console

    from mrmkg.model.params import format_count, print_parameter_report

    assert [format_count(n) for n in (999, 1_500, 77_000_000, 7_000_000_000)] == ["999", "1.50k", "77.00M", "7.00B"]
    m, _ = build("llama")
    console = Console(record=True, width=200)
    r = print_parameter_report(m, console=console)
    text = console.export_text()
    assert r == m.parameter_report()
    assert r["trainable"] == sum(p.numel() for p in m.trainable_parameters())
    for part, n in r["parts"].items():
        if n:
            assert part in text and format_count(n) in text
    assert "graph_pointer" not in text  # parts the config leaves out are not listed
    assert f"{r['percent_of_llm']:.2f}% of the LLM" in text and format_count(r["llm"]) in text

@pytest.mark.parametrize("length", ["text", "nodes"])
def test_knowledge_gate_starts_closed_then_learns(length):
    m, kg = build("llama", knowledge_gate=True, adapter_length=length)
    m.train()
    batch = m.collate(examples(kg))
    segments, _, _ = m.prefix(batch)
    k_out, k_mask = segments[0]  # H'_K comes first
    assert k_mask.any() and torch.count_nonzero(k_out) == 0  # fades in from nothing
    m(batch).loss.backward()
    assert m.knowledge_adapter.gate.grad is not None and m.knowledge_adapter.gate.grad.abs() > 0
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-2)
    opt.step()
    k_out, k_mask = m.prefix(batch)[0][0]
    assert m.knowledge_adapter.gate.abs() > 0 and k_out[k_mask].abs().sum() > 0
    ungated, _ = build("llama", adapter_length=length)
    assert ungated.knowledge_adapter.gate is None
