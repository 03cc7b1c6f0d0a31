"""Entity / relation tokens and the ranking head for MARS-style tasks (MarT protocol on a
decoder-only or seq2seq LLM).

Each KG entity and relation gets one new token embedding in a separate ``nn.Embedding`` (the LLM
vocabulary stays frozen; only these rows train). A prompt names them with placeholders
``[E<index>]`` / ``[R<index>]`` (see ``mrmkg.model.batch.PLACEHOLDER``), which the model embeds with
these tables instead of the LLM's word embeddings. Each row is initialised with the mean of the
frozen LLM input embeddings of its name's tokens, so "[E7]" starts where the word "cat" is.

Candidates are scored against the final hidden state at the answer slot (after the LLM's final
norm) with the *same* entity embeddings (tied, like MarT's MLM head restricted to entity tokens):
``score[b, c] = h_b . E[cand_c]``, one forward pass for all candidates.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class EntityHead(nn.Module):
    """``num_entities`` entity tokens and ``num_relations`` relation tokens of width ``d``."""

    def __init__(self, num_entities: int, num_relations: int, d: int, init_std: float = 0.02):
        super().__init__()
        self.entity = nn.Embedding(num_entities, d)
        self.relation = nn.Embedding(num_relations, d)
        nn.init.normal_(self.entity.weight, std=init_std)
        nn.init.normal_(self.relation.weight, std=init_std)

    @torch.no_grad()
    def init_from_names(self, entity_names: Sequence[str] | None, relation_names: Sequence[str] | None,
                        tokenizer, embed: nn.Module, batch_size: int = 1024, reduce: str = "mean") -> None:
        """Set each row to the mean (``reduce="mean"``) or the first (``"first"``) frozen input
        embedding of its name's tokens.

        ``embed`` is the LLM's input-embedding *module* (so scaled embeddings such as Gemma's are
        reproduced). Names that tokenise to nothing keep their random init.
        """
        for names, table in ((entity_names, self.entity), (relation_names, self.relation)):
            if names is None:
                continue
            if len(names) != table.num_embeddings:
                raise ValueError(f"{len(names)} names for {table.num_embeddings} tokens")
            for start in range(0, len(names), batch_size):
                chunk = [str(n) for n in names[start:start + batch_size]]
                ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
                width = max((len(x) for x in ids), default=0)
                if width == 0:
                    continue
                dev = table.weight.device
                mat = torch.zeros(len(ids), width, dtype=torch.long, device=dev)
                mask = torch.zeros(len(ids), width, dtype=torch.bool, device=dev)
                for i, x in enumerate(ids):
                    mat[i, :len(x)] = torch.tensor(x, dtype=torch.long)
                    mask[i, :len(x)] = True
                e = embed(mat).float() * mask[..., None]
                n = mask.sum(1, keepdim=True)
                init = e.sum(1) / n.clamp_min(1) if reduce == "mean" else e[:, 0]
                rows = torch.arange(start, start + len(ids), device=dev)
                ok = n.squeeze(1) > 0
                table.weight[rows[ok]] = init[ok].to(table.weight.dtype)

    def table(self, kind: str = "entity") -> torch.Tensor:
        return self.entity.weight if kind == "entity" else self.relation.weight

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor, kind: str = "entity") -> torch.Tensor:
        """``hidden [B, d]``, ``candidates [C]`` (shared) or ``[B, C]`` (per example) -> ``[B, C]``."""
        # Autocast would round the matmul back to bf16 (8 bits of mantissa): thousands of candidates
        # then tie, and ties count in the gold's favour. Scoring is cheap (C x d), so run it in fp32.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            w = self.table(kind).float()
            h = hidden.float()
            if candidates.dim() == 1:
                return h @ w[candidates].t()
            return torch.einsum("bd,bcd->bc", h, w[candidates])
