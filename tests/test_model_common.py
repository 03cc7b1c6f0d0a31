"""Shared tiny fixtures for the model tests (tiny tokenizer, tiny random LLMs, a toy MMKG), plus
the config tests. Other tests/test_model_*.py files import the helpers from here."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mrmkg.encoders.base import LLMBundle
from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.subgraph import Subgraph
from mrmkg.model import KGFeatures, MRMKGConfig

WORDS = ("the a is to as of what cat dog animal pet has fur tail red blue color answer question "
         "yes no sun sky bird wing fish water lives in on image paris france capital city").split()


def tiny_tokenizer():
    """A word-level fast tokenizer (whitespace split) with <pad>=0, <s>=1, </s>=2, <unk>=3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>"] + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()  # joins tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def tiny_llm(kind: str = "llama", seed: int = 0) -> LLMBundle:
    """Tiny random LLaMA / Gemma3 (causal) or T5 (seq2seq) with the tiny tokenizer, fp32, eager attention."""
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, T5Config,
                              T5ForConditionalGeneration)

    tok = tiny_tokenizer()
    V = len(tok)
    torch.manual_seed(seed)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True,
                          initializer_range=0.3)  # std 0.02 makes a 32-wide LM output ~uniform logits
        model, k = LlamaForCausalLM(cfg), "causal"
    elif kind == "gemma":
        cfg = Gemma3TextConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                               max_position_embeddings=256, sliding_window=64, bos_token_id=1, eos_token_id=2,
                               pad_token_id=0, final_logit_softcapping=30.0, initializer_range=0.3)
        model, k = Gemma3ForCausalLM(cfg), "causal"
    elif kind == "t5":
        cfg = T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                       decoder_start_token_id=0, eos_token_id=2, pad_token_id=0, dropout_rate=0.1)
        model, k = T5ForConditionalGeneration(cfg), "seq2seq"
    else:
        raise ValueError(kind)
    model.config._attn_implementation = "eager"
    return LLMBundle(model.eval(), tok, k, f"tiny-{kind}")


def save_tiny_llm(kind: str, folder) -> str:
    """:func:`tiny_llm` saved as a model folder ``load_llm`` reads (a run's ``llm``); returns the path."""
    llm = tiny_llm(kind)
    llm.model.save_pretrained(folder)
    llm.tokenizer.save_pretrained(folder)
    return str(folder)


def toy_kg() -> MMKG:
    """cat/dog/fur/pet/red with images for cat and dog (2 each)."""
    ents = [("Q1", "cat", ""), ("Q2", "dog", ""), ("Q3", "fur", ""), ("Q4", "pet", ""), ("Q5", "red", "")]
    rels = [("P1", "has"), ("P2", "is a")]
    triples = [("Q1", "P1", "Q3"), ("Q2", "P1", "Q3"), ("Q1", "P2", "Q4"), ("Q2", "P2", "Q4"), ("Q3", "P1", "Q5")]
    images = [("Q1", "cat1.jpg"), ("Q1", "cat2.jpg"), ("Q2", "dog1.jpg"), ("Q2", "dog2.jpg")]
    return MMKG.from_records(ents, rels, triples, images)


def toy_features(kg: MMKG, text_dim: int = 12, vision_dim: int = 10, seed: int = 0) -> KGFeatures:
    return KGFeatures.random(kg.num_entities, kg.num_relations, kg.num_images, text_dim, vision_dim, seed=seed)


def toy_subgraph(kg: MMKG, triples=(0, 2, 1), images_per_entity: int = 1) -> Subgraph:
    tri = np.asarray(triples, dtype=np.int64)
    return Subgraph.from_triples(kg, tri, np.linspace(0.9, 0.5, len(tri)), images_per_entity=images_per_entity)


def small_config(**kw) -> MRMKGConfig:
    base = dict(llm="tiny", gnn_hidden=16, gnn_heads=2, gnn_relation_dim=8, gnn_num_blocks=4, dropout=0.0,
                dtype="fp32", align_weight=0.5, seed=0)
    base.update(kw)
    return MRMKGConfig(**base)


# ---------------------------------------------------------------------------- config tests
@pytest.mark.parametrize("pointer", [None, {}, {"mode": "first", "features": ["focus", "relation"], "scale": 30,
                                               "prior": False, "relation_at_eval": "odds"}])
def test_config_json_round_trip(tmp_path, pointer):
    cfg = small_config(adapter_length="nodes", knowledge_query="image", graph_encoder="gat", align_negatives="hardest",
                       pointer=pointer)
    cfg.save(tmp_path / "c.json")
    back = MRMKGConfig.load(tmp_path / "c.json")
    assert back == cfg
    assert MRMKGConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert (back.pointer is None) == (pointer is None)


def test_every_config_field_has_help():
    help = MRMKGConfig.help()
    assert all(help.values()) and "pointer" in help and "pointer.mode" in help


@pytest.mark.parametrize("bad, field", [({"graph_encoder": "gin"}, "graph_encoder"), ({"gnn_hidden": 30, "gnn_heads": 4}, "gnn_hidden"),
                                        ({"dropout": 1.5}, "dropout"), ({"adapter_length": "short"}, "adapter_length")])
def test_config_rejects_bad_values(bad, field):
    with pytest.raises(InputError, match=field):
        MRMKGConfig(**bad)


def test_config_load_names_file_and_field(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"gnn_layers": "two"}))
    with pytest.raises(InputError) as e:
        MRMKGConfig.load(p)
    assert str(p) in str(e.value) and "gnn_layers" in str(e.value)
    p.write_text(json.dumps({"nope": 1}))
    with pytest.raises(InputError, match="nope"):
        MRMKGConfig.load(p)
    p.write_text(json.dumps({"pointer": {"scale": "big"}}))
    with pytest.raises(InputError, match=r"field 'model\.pointer\.scale': expected a float, got 'big'") as e:
        MRMKGConfig.load(p)
    assert str(p) in str(e.value)
    p.write_text("{\n oops")
    with pytest.raises(InputError) as e:
        MRMKGConfig.load(p)
    assert e.value.line == 2


def test_features_from_index_arrays_are_frozen_and_not_saved():
    from types import SimpleNamespace

    idx = SimpleNamespace(entity_emb=np.ones((5, 4), np.float32), relation_emb=np.ones((3, 4), np.float32),
                          image_emb=np.zeros((0, 0), np.float32))
    f = KGFeatures.from_index(idx)
    assert (f.num_entities, f.num_relations, f.num_images, f.text_dim, f.image_of) == (5, 3, 0, 4, 2)
    assert f.state_dict() == {} and not list(f.parameters())
    with pytest.raises(ValueError, match="width"):
        KGFeatures(np.ones((2, 4)), np.ones((2, 5)))


def test_entity_scores_stay_fp32_under_bf16_autocast():
    """Ranking thousands of candidates in bf16 creates ties (which count in the gold's favour)."""
    from mrmkg.model.entity_head import EntityHead

    torch.manual_seed(0)
    head = EntityHead(num_entities=2000, num_relations=3, d=64)
    hidden = torch.randn(2, 64)
    cands = torch.arange(2000)
    ref = head.score(hidden, cands)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = head.score(hidden, cands)
        got_per_example = head.score(hidden, cands.expand(2, -1))
    assert got.dtype == torch.float32 and got_per_example.dtype == torch.float32
    assert torch.equal(got, ref)
    torch.testing.assert_close(got_per_example, ref)
    assert torch.unique(got[0]).numel() == 2000  # no ties


@pytest.mark.parametrize("reduce", ["mean", "first"])
def test_entity_tokens_start_from_their_names_embeddings(reduce):
    from mrmkg.model.entity_head import EntityHead

    tok = tiny_tokenizer()
    embed = torch.nn.Embedding(len(tok), 6)
    names = ["the red cat", "dog", "blue bird"]
    head = EntityHead(len(names), 1, 6)
    head.init_from_names(names, None, tok, embed, reduce=reduce)
    for row, name in enumerate(names):
        ids = tok(name, add_special_tokens=False)["input_ids"]
        assert len(ids) >= 1
        want = embed.weight[ids].mean(0) if reduce == "mean" else embed.weight[ids[0]]
        torch.testing.assert_close(head.entity.weight[row], want.detach())
