"""The visual adapter (Eq. 1-2) and the knowledge adapter (Eq. 4-5): a linear map into the LLM
embedding width ``d``, then single-head scaled dot-product attention.

``H = W x + b`` (Eq. 1 / 4), then, with query ``Q`` (``H_T`` or ``H_I``), depending on ``length``:

* ``"text"`` (the literal reading of Eq. 2 / 5): ``H' = softmax(Q H^T / sqrt(d)) H`` -- one output
  row per *query* token, ``[B, n_Q, d]``. The prefix is as long as the query (prompt ~3x the text).
* ``"nodes"``: one output row per node / visual token, each refined by attending over the query:
  ``H'_j = H_j + softmax(H_j Q^T / sqrt(d)) Q`` -- ``[B, n, d]``. The residual keeps the node's own
  content; the attended query mixes in what the question asks, so the prefix is as long as the
  subgraph (or the number of visual tokens) instead of the text.

``projections=True`` adds learned single-head Q/K/V/output maps (``d x d`` each, as MM-CoT's
``nn.MultiheadAttention(num_heads=1)``); the default follows the equations, which have none.

``gate=True`` (not in the paper) scales the output by ``tanh(g)`` with a learned scalar ``g``
that starts at 0, as LLaMA-Adapter's zero-init attention and Flamingo's tanh gates do: the prefix
starts as all-zero embeddings, so the frozen LLM first behaves exactly as without it, and the
prefix fades in as it becomes useful instead of disturbing what the LLM already reads from the text.

Padding: ``x_mask [B, n]`` and ``q_mask [B, n_Q]`` mark real rows. Keys that are padding get no
weight; an item with no keys at all (no nodes / no image) gets zero rows and an all-False output
mask, so the prompt assembly drops that segment for it.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_mask: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` with padded keys ignored; ``[B,m,d],[B,n,d],[B,n,d'],[B,n] -> [B,m,d']``.

    Rows whose keys are all padding return zeros (not NaN). The softmax runs in fp32.
    """
    scores = torch.matmul(q.float(), k.float().transpose(1, 2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~k_mask[:, None, :], float("-inf"))
    w = torch.softmax(scores, dim=-1)
    w = torch.nan_to_num(w, nan=0.0)  # all-masked rows: softmax of all -inf is NaN
    return torch.matmul(w.to(v.dtype), v)


class AttentionAdapter(nn.Module):
    """Linear map ``in_dim -> d`` plus single-head attention against a query.

    Args:
        in_dim: input width (``d_v`` for images, ``h`` of the graph encoder for nodes).
        d: LLM embedding width.
        length: ``"text"`` or ``"nodes"`` (see module docstring).
        projections: learned Q/K/V/out maps (MM-CoT style) instead of the bare equation.
        gate: zero-initialised ``tanh`` gate on the output (see module docstring).
    """

    def __init__(self, in_dim: int, d: int, length: str = "text", projections: bool = False, gate: bool = False):
        super().__init__()
        if length not in ("text", "nodes"):
            raise ValueError(f"length must be 'text' or 'nodes', not {length!r}")
        self.length = length
        self.proj = nn.Linear(in_dim, d)
        if projections:
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d) for _ in range(4))
        else:
            self.q_proj = self.k_proj = self.v_proj = self.o_proj = None
        self.gate = nn.Parameter(torch.zeros(())) if gate else None

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1 / 4: ``[..., in_dim] -> [..., d]``."""
        return self.proj(x)

    def attend(self, h: torch.Tensor, h_mask: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor):
        """Eq. 2 / 5 on projected rows ``h [B,n,d]`` with query ``q [B,m,d]``.

        Returns ``(out, out_mask)``: ``[B,m,d], [B,m]`` for "text"; ``[B,n,d], [B,n]`` for "nodes".
        """
        q = q.to(h.dtype)
        proj = self.q_proj is not None
        if self.length == "text":
            qq, kk, vv = (self.q_proj(q), self.k_proj(h), self.v_proj(h)) if proj else (q, h, h)
            out = masked_attention(qq, kk, vv, h_mask)
            out = self.o_proj(out) if proj else out
            out_mask = q_mask & h_mask.any(dim=1, keepdim=True)
        else:
            qq, kk, vv = (self.q_proj(h), self.k_proj(q), self.v_proj(q)) if proj else (h, q, q)
            att = masked_attention(qq, kk, vv, q_mask)
            out = h + (self.o_proj(att) if proj else att)
            out_mask = h_mask
        if self.gate is not None:
            out = out * torch.tanh(self.gate).to(out.dtype)
        out = out * out_mask[..., None].to(out.dtype)  # padding rows are exactly zero
        return out, out_mask

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor):
        """``x [B,n,in_dim]`` -> ``(H' , mask, H)`` where H is the Eq. 1/4 projection ``[B,n,d]``."""
        h = self.project(x)
        out, mask = self.attend(h, x_mask, q, q_mask)
        return out, mask, h
