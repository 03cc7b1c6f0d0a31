"""What task code builds per example (``MRMKGExample``) and the collate that tokenises and pads
it into an ``MRMKGBatch``.

Prompt text may name KG entity / relation tokens with placeholders ``[E<i>]`` / ``[R<i>]``
(``i`` = entity / relation index of the graph); the model embeds those with its entity head.
Text pieces between placeholders are tokenised separately (no special tokens), so
``"[E3] is to [E9]"`` becomes ``<E3> tok(" is to ") <E9>``.

Shapes of an ``MRMKGBatch`` with B examples:

* ``text_ids [B, n_T]`` long, ``text_kind [B, n_T]`` long (0 vocab, 1 entity, 2 relation),
  ``text_mask [B, n_T]`` bool -- right-padded; seq2seq prompts end with EOS.
* ``target_ids [B, n_Y]``, ``target_mask [B, n_Y]`` -- target text + EOS, or None.
* ``graphs``: a PyG ``Batch`` of the subgraphs (an empty one for examples without), ``has_nodes [B]``.
* ``image_tokens [B, n_I, d_v]`` float, ``image_mask [B, n_I]``, or None when no example has an image.
* ``candidates [C]`` (shared) or ``[B, C]``, ``answer_pos [B]`` (index into candidates, -100 = none).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np
import torch

from mrmkg.errors import InputError
from mrmkg.kg.subgraph import Subgraph

PLACEHOLDER = re.compile(r"\[(E|R)(\d+)\]")
VOCAB, ENTITY_TOKEN, RELATION_TOKEN = 0, 1, 2


@dataclass
class MRMKGExample:
    """One example.

    Attributes:
        prompt: question text; may contain ``[E<i>]`` / ``[R<i>]`` placeholders.
        target: text to generate (training / generation tasks), or None.
        answer: index of the gold entity (or relation, per ``rank_over``) for ranking tasks, or None.
        subgraph: the retrieved subgraph, or None (no knowledge).
        image_tokens: ``[n_I, d_v]`` visual tokens of the question image (``[d_v]`` = one token), or None.
        candidates: per-example candidate ids ``[C]`` (overrides the collate's shared candidates), or None.
    """

    prompt: str
    target: str | None = None
    answer: int | None = None
    subgraph: Subgraph | None = None
    image_tokens: np.ndarray | None = None
    candidates: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class MRMKGBatch:
    text_ids: torch.Tensor
    text_kind: torch.Tensor
    text_mask: torch.Tensor
    graphs: object
    has_nodes: torch.Tensor
    target_ids: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None
    image_tokens: torch.Tensor | None = None
    image_mask: torch.Tensor | None = None
    candidates: torch.Tensor | None = None
    answer_pos: torch.Tensor | None = None
    rank_over: str = "entity"

    def __len__(self) -> int:
        return int(self.text_ids.shape[0])

    @property
    def has_image(self) -> torch.Tensor:
        if self.image_mask is None:
            return torch.zeros(len(self), dtype=torch.bool, device=self.text_ids.device)
        return self.image_mask.any(dim=1)

    def to(self, device) -> "MRMKGBatch":
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to(device) if hasattr(v, "to") and not isinstance(v, str) else v
        return MRMKGBatch(**out)


def tokenize_prompt(text: str, tokenizer, max_tokens: int, where: str = "prompt") -> tuple[list[int], list[int]]:
    """Token ids and kinds of ``text`` with placeholders; keeps the LAST ``max_tokens``."""
    ids: list[int] = []
    kinds: list[int] = []
    pos = 0
    for m in PLACEHOLDER.finditer(text):
        piece = text[pos:m.start()]
        if piece:
            t = tokenizer(piece, add_special_tokens=False)["input_ids"]
            ids += t
            kinds += [VOCAB] * len(t)
        ids.append(int(m.group(2)))
        kinds.append(ENTITY_TOKEN if m.group(1) == "E" else RELATION_TOKEN)
        pos = m.end()
    piece = text[pos:]
    if piece:
        t = tokenizer(piece, add_special_tokens=False)["input_ids"]
        ids += t
        kinds += [VOCAB] * len(t)
    return ids[-max_tokens:], kinds[-max_tokens:]


def _pad(rows: Sequence[Sequence[int]], value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask


def collate(examples: Sequence[MRMKGExample], tokenizer, kind: str = "causal", max_prompt_tokens: int = 512,
            max_target_tokens: int = 128, candidates=None, rank_over: str = "entity") -> MRMKGBatch:
    """Tokenise, pad and stack ``examples``.

    Args:
        tokenizer: the frozen LLM's tokenizer. kind: ``"causal"`` or ``"seq2seq"`` (seq2seq prompts get EOS).
        candidates: shared candidate ids ``[C]`` for ranking (default: none; ``answer`` then indexes
            the full entity/relation table and the model ranks all of them).
        rank_over: ``"entity"`` or ``"relation"``: which token table ``answer``/candidates refer to.
    """
    from torch_geometric.data import Batch

    if not examples:
        raise InputError("cannot collate an empty list of examples")
    eos = tokenizer.eos_token_id
    texts, tkinds, targets = [], [], []
    for i, ex in enumerate(examples):
        if not isinstance(ex.prompt, str):
            raise InputError(f"example {i}: prompt must be a string, not {type(ex.prompt).__name__}")
        ids, ks = tokenize_prompt(ex.prompt, tokenizer, max_prompt_tokens - (kind == "seq2seq"))
        if kind == "seq2seq" and eos is not None:
            ids, ks = ids + [eos], ks + [VOCAB]
        texts.append(ids)
        tkinds.append(ks)
        if ex.target is not None:
            t = tokenizer(ex.target, add_special_tokens=False)["input_ids"][: max_target_tokens - 1]
            targets.append(t + ([eos] if eos is not None else []))
    text_ids, text_mask = _pad(texts)
    text_kind, _ = _pad(tkinds)
    target_ids = target_mask = None
    if targets:
        if len(targets) != len(examples):
            raise InputError("either every example of a batch has a target or none has")
        target_ids, target_mask = _pad(targets)

    subgraphs = [ex.subgraph if ex.subgraph is not None else Subgraph.empty() for ex in examples]
    graphs = Batch.from_data_list([sg.to_pyg() for sg in subgraphs])
    has_nodes = torch.tensor([sg.num_nodes > 0 for sg in subgraphs], dtype=torch.bool)

    image_tokens = image_mask = None
    imgs = []
    for i, ex in enumerate(examples):
        x = ex.image_tokens
        if x is not None:
            x = np.asarray(x, dtype=np.float32)
            if x.ndim == 1:
                x = x[None, :]
            if x.ndim != 2 or not np.isfinite(x).all():
                raise InputError(f"example {i}: image_tokens must be a finite [n_I, d_v] array, got shape {x.shape}")
        imgs.append(x)
    dims = {x.shape[1] for x in imgs if x is not None}
    if len(dims) > 1:
        raise InputError(f"image_tokens of one batch have different widths {sorted(dims)}")
    if dims:
        dv = dims.pop()
        n = max(x.shape[0] for x in imgs if x is not None)
        image_tokens = torch.zeros(len(examples), n, dv)
        image_mask = torch.zeros(len(examples), n, dtype=torch.bool)
        for i, x in enumerate(imgs):
            if x is not None:
                image_tokens[i, :x.shape[0]] = torch.as_tensor(np.array(x, dtype=np.float32))  # copy: may be a read-only mmap
                image_mask[i, :x.shape[0]] = True

    cand = answer_pos = None
    per_ex = [ex.candidates for ex in examples]
    if any(c is not None for c in per_ex):
        if any(c is None for c in per_ex) or len({len(c) for c in per_ex}) != 1:
            raise InputError("per-example candidates must be given for every example of a batch, all of one length")
        cand = torch.as_tensor(np.stack([np.asarray(c, dtype=np.int64) for c in per_ex]))
    elif candidates is not None:
        cand = torch.as_tensor(np.asarray(candidates, dtype=np.int64)).reshape(-1)
    answers = [ex.answer for ex in examples]
    if any(a is not None for a in answers):
        pos = []
        for i, a in enumerate(answers):
            if a is None:
                pos.append(-100)
            elif cand is None:
                pos.append(int(a))
            else:
                row = cand if cand.dim() == 1 else cand[i]
                hit = (row == int(a)).nonzero()
                if hit.numel() == 0:
                    raise InputError(f"example {i}: answer {a} is not among its candidates")
                pos.append(int(hit[0, 0]))
        answer_pos = torch.tensor(pos, dtype=torch.long)
    return MRMKGBatch(text_ids=text_ids, text_kind=text_kind, text_mask=text_mask, graphs=graphs,
                      has_nodes=has_nodes, target_ids=target_ids, target_mask=target_mask,
                      image_tokens=image_tokens, image_mask=image_mask, candidates=cand,
                      answer_pos=answer_pos, rank_over=rank_over)
