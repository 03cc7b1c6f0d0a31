"""Run a frozen causal LLM on a batch without padding ("sequence packing").

A MARS batch of 8 prompts is ~34 positions wide but holds ~29 real tokens per example: 17% of the
LLM's matrix products are spent on padding. :func:`packed_hidden` lays the real tokens of the batch
end to end in one row ``[1, T, d]`` with position ids that restart at every example, and runs the
LLM with :func:`packed_attention`, which attends within each example only (one causal
``scaled_dot_product_attention`` per example, so attention costs what it costs on the padded batch
rather than ``T^2``). The output equals the padded run's up to float rounding (tests/test_model_pack.py).

The attention is installed for the duration of one call by switching the model config's
``_attn_implementation`` to a name registered with transformers' ``AttentionInterface`` (and a mask
function that builds no mask, since the segments carry the structure). That works for every
architecture whose attention layers dispatch through ``ALL_ATTENTION_FUNCTIONS`` and pass
``position_ids`` down (Llama, Gemma 3, Qwen2, Mistral, ... in transformers 5); others raise.
Not thread-safe: two threads sharing one LLM must not pack at the same time.

With activation checkpointing the switch must hold again when backward recomputes a layer, long after
:func:`packed_hidden` has switched back: :func:`recompute_with_forward_attention` gives
``torch.utils.checkpoint`` a context that restores, for each recomputation, the attention implementation
its forward ran with.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from mrmkg.errors import InputError

PACKED = "mrmkg_packed"


def _lengths(position_ids: torch.Tensor) -> list[int]:
    """Lengths of the examples in a packed row ``position_ids [1, T]`` (ids restart at 0 per example)."""
    starts = (position_ids[0] == 0).nonzero()[:, 0].tolist() + [position_ids.shape[1]]
    return [b - a for a, b in zip(starts[:-1], starts[1:])]


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     sliding_window: int | None = None, **kwargs):
    """Causal attention inside each example of a packed row.

    ``query [1, H, T, D]``, ``key``/``value [1, H_kv, T, D]``; ``kwargs['position_ids'] [1, T]`` restarts
    at 0 where an example starts. Returns ``(out [1, T, H, D], None)`` as transformers' attention
    functions do. ``sliding_window`` (Gemma 3's local layers): a key is visible when ``q - k < window``.
    """
    pos = kwargs.get("position_ids")
    if pos is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        raise InputError("packed attention needs one packed row of position ids and no KV cache; this "
                         f"architecture ({type(module).__name__}) does not pass them: set pack_sequences: false")
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise InputError(f"packed attention does not implement soft-capping or attention sinks "
                         f"({type(module).__name__}): set pack_sequences: false")
    gqa = query.shape[1] != key.shape[1]
    lengths = _lengths(pos)
    outs = []
    # split, not slices: its backward is one concatenation, where each slice's would zero a full-row gradient
    for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2)):
        n = q.shape[2]
        if sliding_window and n > sliding_window:
            i = torch.arange(n, device=q.device)
            d = i[:, None] - i[None, :]
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=(d >= 0) & (d < sliding_window),
                                               dropout_p=dropout, scale=scaling, enable_gqa=gqa)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=scaling,
                                               enable_gqa=gqa)
        outs.append(o)
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def recompute_with_forward_attention(config):
    """A ``context_fn`` for non-reentrant ``torch.utils.checkpoint``: it is called at each checkpointed
    forward, records ``config._attn_implementation`` then, and returns a recomputation context that sets
    it back for the layer's recomputation in backward (packed forward -> packed recomputation)."""
    def context_fn():
        impl = config._attn_implementation

        @contextmanager
        def recompute():
            before = config._attn_implementation
            config._attn_implementation = impl
            try:
                yield
            finally:
                config._attn_implementation = before

        return nullcontext(), recompute()

    return context_fn


def _no_mask(*args, **kwargs):
    return None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED, packed_attention)
    AttentionMaskInterface.register(PACKED, _no_mask)


def packed_hidden(base: torch.nn.Module, config, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states ``[B, L, d]`` of ``base`` (a causal LM's decoder) on ``x [B, L, d]``, computing
    only the rows where ``mask [B, L]`` is True (each example's real tokens, left-aligned); padded
    rows of the output are zero. ``config``: the LLM's config, whose attention implementation is
    switched for this call."""
    _register()
    pos = (torch.cumsum(mask.long(), 1) - 1).clamp_min(0)
    before = config._attn_implementation
    config._attn_implementation = PACKED
    try:
        flat = base(inputs_embeds=x[mask][None], position_ids=pos[mask][None], use_cache=False).last_hidden_state[0]
    finally:
        config._attn_implementation = before
    return flat.new_zeros(x.shape[:2] + flat.shape[-1:]).masked_scatter(mask[..., None], flat)
