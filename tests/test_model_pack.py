"""Sequence packing (mrmkg.model.packing): the packed run equals the padded one."""
from __future__ import annotations

import pytest
import torch

from mrmkg.errors import InputError
from mrmkg.model.packing import PACKED, packed_attention
from test_model_mrmkg import build, examples


def _reference(q, k, v, window=None):
    """Causal (optionally windowed) attention of one example, GQA by repeating key/value heads."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    i = torch.arange(q.shape[2])
    d = i[:, None] - i[None, :]
    allowed = (d >= 0) & (d < window) if window else d >= 0
    w = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
    return (w @ v).transpose(1, 2)


@pytest.mark.parametrize("window", [None, 3, 100])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_packed_attention_attends_within_each_example_only(window, kv_heads):
    g = torch.Generator().manual_seed(0)
    lengths = [4, 1, 6, 2]
    T = sum(lengths)
    q = torch.randn(1, 4, T, 8, generator=g)
    k, v = torch.randn(2, 1, kv_heads, T, 8, generator=g)
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    out, weights = packed_attention(None, q, k, v, None, position_ids=pos, sliding_window=window)
    assert weights is None and out.shape == (1, T, 4, 8)
    a = 0
    for n in lengths:
        ref = _reference(q[:, :, a:a + n], k[:, :, a:a + n], v[:, :, a:a + n], window)
        torch.testing.assert_close(out[:, a:a + n], ref, rtol=1e-5, atol=1e-5)
        a += n


def test_packed_attention_refuses_what_it_cannot_do():
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(InputError, match="pack_sequences: false"):
        packed_attention(None, q, q, q, None)                       # no position ids
    with pytest.raises(InputError, match="soft-capping"):
        packed_attention(None, q, q, q, None, position_ids=torch.arange(3)[None], softcap=30.0)


def _shrink_window(m, window: int) -> None:
    """Make every sliding layer of a tiny Gemma 3 use ``window``, in both the padded and packed paths."""
    m.lm.config.sliding_window = window
    for mod in m.lm.modules():
        if getattr(mod, "sliding_window", None):
            mod.sliding_window = window


@pytest.mark.parametrize("kind,window", [("llama", None), ("gemma", None), ("gemma", 3)])
@pytest.mark.parametrize("variant", [{}, {"adapter_length": "nodes", "align_weight": 0.0}, {"gradient_checkpointing": True}])
def test_packed_equals_padded_losses_scores_and_gradients(kind, window, variant, monkeypatch):
    import mrmkg.model.packing as packing

    calls = []
    monkeypatch.setattr(packing, "packed_attention",
                        lambda *a, **k: calls.append(a[1].shape) or packed_attention(*a, **k))
    runs = []
    for pack in (False, True):
        m, kg = build(kind, pack_sequences=pack, **variant)
        if window:
            _shrink_window(m, window)
        m.train()
        batch = m.collate(examples(kg))
        out = m(batch)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        m.eval()
        runs.append((out, grads, m.rank(batch), m.generate(batch, max_new_tokens=4), m))
    (a, ga, ra, sa, _), (b, gb, rb, sb, m) = runs
    for name in ("loss", "gen_loss", "rank_loss", "example_loss", "scores"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=1e-4, atol=1e-5)
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], rtol=1e-4, atol=1e-5, msg=n)
    torch.testing.assert_close(rb, ra, rtol=1e-4, atol=1e-5)
    assert sb == sa                                  # generation keeps the padded, cached path
    assert calls and all(shape[0] == 1 for shape in calls)   # the packed attention ran, on one row
    assert m.lm.config._attn_implementation == "eager" != PACKED


def test_seq2seq_ignores_packing():
    m, kg = build("t5", pack_sequences=True)
    m.eval()
    ref, _ = build("t5")
    ref.eval()
    batch = m.collate(examples(kg))
    torch.testing.assert_close(m.rank(batch), ref.rank(batch))
