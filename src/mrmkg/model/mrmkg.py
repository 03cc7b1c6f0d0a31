"""The MR-MKG model: graph encoder + adapters + alignment on top of a frozen LLM (paper §3.2-3.3).

Prompt assembly (Eq. 7): ``prompt = H'_K ⊕ H'_I ⊕ H_T`` along the sequence axis, fed as
``inputs_embeds``. ``H_T`` comes from the frozen input-embedding module (placeholders ``[E i]`` /
``[R i]`` from the entity head). Per example, only the real rows of each segment are kept and the
result is packed without holes, so a padded batch computes exactly what each item alone would:

* causal LMs: ``[BOS] H'_K H'_I H_T Y`` right-padded for training (loss only on target tokens Y,
  LM-head logits computed only on the rows that predict them) and ``[BOS] H'_K H'_I H_T``
  left-padded for greedy generation with a KV cache; explicit ``position_ids`` in both.
* seq2seq LMs: ``H'_K H'_I H_T`` (text ends with EOS) are the encoder's ``inputs_embeds``; the
  target (+EOS) is the decoder's labels; generation runs the encoder once and a cached decoder loop.

One encoding step (``encode``) builds that packed prompt -- prefix, packing, and for seq2seq the
encoder run -- for all three uses: ``forward`` (losses), ``rank`` (candidate scores) and ``generate``.

Ranking (``rank``): the hidden state at the answer slot -- the last prompt token for causal LMs (the
position that predicts the next token), the first decoder position for seq2seq -- is scored against
entity/relation token embeddings (``EntityHead``); cross-entropy over the candidates is the task loss.
An optional score hook (:mod:`mrmkg.model.score_hook`; the MARS graph pointer, ``config.pointer``)
may re-rank those scores and define their loss.

Loss: ``L = L_task + lambda * L_align (+ the score hook's weighted auxiliary losses)`` (Eq. 8),
``L_task`` = token cross-entropy (mean over target tokens) plus the ranking loss when the batch has answers.

Dtypes and devices: the frozen LLM may be stored in bf16/fp16 (``config.llm_dtype``, loaded by
:func:`mrmkg.encoders.llm.load_llm`); every trained part (graph encoder, adapters, entity head,
pointer) and the KG features stay float32, so the optimizer never sees a half-precision weight. The
casts sit at the two boundaries: the adapters take the LLM's word embeddings ``H_T`` as their query
and cast it to their own dtype (attention scores in fp32); ``encode`` casts the prefix segments to
the embeddings' dtype before the LLM runs; scores and logits read from the LLM are cast back to
float32 (``_lm_logits``, ``EntityHead.score``), and every loss is float32. ``config.dtype == "bf16"``
autocasts the forward (float16 when the LLM is stored in fp16). With ``config.device_map == "auto"``
the LLM's layers may sit on several GPUs: the trained parts live with the input embeddings
(``self.device``), and what comes back from the LLM is moved there.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mrmkg.encoders.registry import load_llm
from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_bytes, atomic_write_json
from mrmkg.manifest import (DamagedCheckpointError, check_tensors, read_json, require, safetensors_header,
                            verify_checksums, warn_unverified, write_checksums)
from mrmkg.model.alignment import triplet_alignment_loss
from mrmkg.model.batch import ENTITY_TOKEN, RELATION_TOKEN, MRMKGBatch, MRMKGExample, collate
from mrmkg.model.config import MRMKGConfig
from mrmkg.model.features import KGFeatures
from mrmkg.model.packing import packed_hidden, recompute_with_forward_attention
from mrmkg.model.params import parameter_report, print_parameter_report
from mrmkg.model.parts import build_trainable_parts
from mrmkg.model.score_hook import Ranking, ScoreHook

#: version of the ``mrmkg.json`` layout; 2: the graph pointer's options are the ``config.pointer`` section
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
META = "mrmkg.json"


@dataclass
class MRMKGOutput:
    """``loss`` = task + lambda * align + the score hook's weighted auxiliary losses. ``example_loss [B]``:
    per-example token-mean CE (gen tasks). ``scores [B, C]`` for ranking batches. ``aux_losses``: the
    score hook's auxiliary losses by name, unweighted (the graph pointer's own loss: ``"pointer"``)."""

    loss: torch.Tensor
    gen_loss: torch.Tensor | None = None
    rank_loss: torch.Tensor | None = None
    align_loss: torch.Tensor | None = None
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    example_loss: torch.Tensor | None = None
    scores: torch.Tensor | None = None


@dataclass
class Encoded:
    """One batch's prompt, packed for the LLM (:meth:`MRMKG.encode`); what forward, rank and generate share.

    ``inputs_embeds [B, L, d]``, ``attention_mask [B, L]`` bool: causal ``[BOS] H'_K H'_I H_T`` (then
    the target ``Y`` when encoded with targets), seq2seq ``H'_K H'_I H_T``, each example's rows without
    holes (right-aligned when encoded with ``left=True``). ``position_ids [B, L]`` (causal).
    ``prompt_len [B]``: prompt rows per example (the causal answer slot is row ``prompt_len - 1``).
    ``target_pos [B, n_Y]``: packed column of every target token (causal, with targets).
    ``encoder_states [B, L, d]``: the seq2seq encoder's output. ``node_states [N, h]``: the graph
    encoder's output ``X_K`` (None without a graph). ``align_loss``: Eq. 6 (training only, else None).
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    prompt_len: torch.Tensor
    position_ids: torch.Tensor | None = None
    target_pos: torch.Tensor | None = None
    encoder_states: torch.Tensor | None = None
    node_states: torch.Tensor | None = None
    align_loss: torch.Tensor | None = None


def pack(segments: Sequence[tuple[torch.Tensor, torch.Tensor]], left: bool = False):
    """Concatenate per-example real rows of ``segments`` without holes.

    ``segments``: ``(x [B, L_i, ...], mask [B, L_i])`` pairs in prompt order. Returns
    ``(packed [B, L, ...], mask [B, L], dest [B, sum L_i])`` where ``dest`` is the packed position
    of every input row (valid only where its mask is True). ``left=True`` right-aligns each example
    (left padding, for generation).
    """
    x = torch.cat([s[0] for s in segments], dim=1)
    m = torch.cat([s[1] for s in segments], dim=1)
    n = m.sum(dim=1)
    width = int(n.max().item()) if n.numel() else 0
    dest = torch.cumsum(m.long(), dim=1) - 1
    if left:
        dest = dest + (width - n)[:, None]
    b, t = m.nonzero(as_tuple=True)
    out = x.new_zeros((x.shape[0], width) + tuple(x.shape[2:]))
    out = out.index_put((b, dest[b, t]), x[b, t])
    mask = torch.zeros(x.shape[0], width, dtype=torch.bool, device=x.device)
    mask[b, dest[b, t]] = True
    return out, mask, dest


class MRMKG(nn.Module):
    """MR-MKG around a frozen ``LLMBundle``.

    Args:
        config: ``MRMKGConfig``.
        llm: ``mrmkg.encoders.base.LLMBundle`` (model, tokenizer, kind "causal"|"seq2seq", name).
        features: frozen ``KGFeatures`` of the graph the subgraphs come from.
        image_token_dim: width of the question image's visual tokens (default: ``features.vision_dim``).
        entity_names / relation_names: names used to initialise entity / relation tokens.
        report: print the parameter report (a rich table) after building.
    """

    def __init__(self, config: MRMKGConfig, llm, features: KGFeatures, image_token_dim: int | None = None,
                 entity_names: Sequence[str] | None = None, relation_names: Sequence[str] | None = None,
                 report: bool = True):
        super().__init__()
        self.config = config
        self.llm = llm
        self.kind = llm.kind
        self.lm = llm.model
        self.features = features
        self.d = llm.hidden_size
        self.image_token_dim = int(image_token_dim if image_token_dim is not None else features.vision_dim)
        for p in self.lm.parameters():
            p.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            std = float(self.embed_tokens.weight.float().std()) if config.entity_head else 0.02
            parts = build_trainable_parts(config, self.d, features.text_dim, features.vision_dim,
                                          features.num_relations, features.num_entities, self.image_token_dim,
                                          entity_init_std=std)
        for part in parts.values():  # with the input embeddings: on the LLM's (first) device
            if part is not None:
                part.to(self.device)
        self.graph_encoder = parts["graph_encoder"]
        self.knowledge_adapter = parts["knowledge_adapter"]
        self.visual_adapter = parts["visual_adapter"]
        self.entity_head = parts["entity_head"]
        self.graph_pointer = parts["graph_pointer"]
        if self.entity_head is not None and (entity_names is not None or relation_names is not None):
            self.entity_head.init_from_names(entity_names, relation_names, llm.tokenizer, self.embed_tokens,
                                             reduce=config.entity_init)
        self.align_generator = torch.Generator().manual_seed(config.seed)
        if config.gradient_checkpointing:
            kwargs = {"use_reentrant": False, "context_fn": recompute_with_forward_attention(self.lm.config)}
            if hasattr(self.lm, "activation_checkpointing_enable"):  # transformers >= 5.x name
                self.lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                self.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.train(False)
        if report:
            print_parameter_report(self)

    # ------------------------------------------------------------------ helpers
    @property
    def embed_tokens(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def train(self, mode: bool = True):
        """Train the adapters; the frozen LLM stays in eval mode, so no dropout runs in it.

        With gradient checkpointing: HF checkpoints a decoder layer only while that layer is in train mode,
        so the checkpointing layers and the modules above them are put in train mode and every module inside
        a layer stays in eval. Keeping only ``nn.Dropout`` modules in eval is not enough: T5 draws its
        attention-probability dropout from the attention module's own flag. Architectures without HF's
        ``GradientCheckpointingLayer`` fall back to the whole LLM in train mode with its Dropout modules in eval.
        """
        super().train(mode)
        self.lm.eval()
        if mode and self.config.gradient_checkpointing:
            from transformers.modeling_layers import GradientCheckpointingLayer

            layers = [n.split(".") for n, m in self.lm.named_modules() if isinstance(m, GradientCheckpointingLayer)]
            above = {".".join(parts[:i]) for parts in layers for i in range(len(parts) + 1)}  # layers, ancestors
            for name, m in self.lm.named_modules():
                m.training = name in above if layers else not isinstance(m, nn.Dropout)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_report(self) -> dict:
        return parameter_report(self)

    @property
    def score_hook(self) -> ScoreHook | None:
        """The module that may re-rank the entity head's scores (:mod:`mrmkg.model.score_hook`): the graph
        pointer when ``config.pointer`` is set (its attribute name is its weights' checkpoint prefix)."""
        return self.graph_pointer

    def collate(self, examples: Sequence[MRMKGExample], candidates=None, rank_over: str = "entity") -> MRMKGBatch:
        """``mrmkg.model.batch.collate`` with this model's tokenizer, kind and length limits."""
        return collate(examples, self.llm.tokenizer, self.kind, self.config.max_prompt_tokens,
                       self.config.max_target_tokens, candidates=candidates, rank_over=rank_over)

    def _autocast(self):
        if self.config.dtype == "bf16":
            # an fp16 LLM computes in fp16: bf16 autocast would round its fp16 weights a second time
            half = torch.float16 if self.embed_tokens.weight.dtype == torch.float16 else torch.bfloat16
            return torch.autocast(device_type=self.device.type, dtype=half)
        return contextlib.nullcontext()

    def _check(self, batch: MRMKGBatch) -> None:
        f = self.features
        g = batch.graphs
        if g is not None and g.num_nodes:
            kinds, refs = g.node_kind, g.node_ref
            for k, n, what in ((0, f.num_entities, "entity"), (1, f.num_images, "image")):
                sel = refs[kinds == k]
                if sel.numel() and (int(sel.max()) >= n or int(sel.min()) < 0):
                    raise InputError(f"subgraph refers to {what} {int(sel.max())} but the KG features have {n} {what}s")
            if g.edge_type.numel() and int(g.edge_type.max()) >= f.num_relations:
                raise InputError(f"subgraph edge type {int(g.edge_type.max())} >= {f.num_relations} relations")
        if batch.image_tokens is not None and self.visual_adapter is not None and batch.image_tokens.shape[-1] != self.image_token_dim:
            raise InputError(f"image_tokens have width {batch.image_tokens.shape[-1]}; the model expects {self.image_token_dim}")
        special = batch.text_kind != 0
        if special.any():
            if self.entity_head is None:
                raise InputError("prompt has [E i]/[R i] placeholders but the model has no entity head (config.entity_head)")
            for k, n, what in ((ENTITY_TOKEN, self.entity_head.entity.num_embeddings, "E"),
                               (RELATION_TOKEN, self.entity_head.relation.num_embeddings, "R")):
                ids = batch.text_ids[(batch.text_kind == k) & batch.text_mask]
                if ids.numel() and int(ids.max()) >= n:
                    raise InputError(f"prompt placeholder [{what}{int(ids.max())}] is out of range (model has {n})")

    # ------------------------------------------------------------------ prompt
    def embed_text(self, ids: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """``H_T [B, n, d]``: frozen word embeddings, entity/relation tokens at placeholders."""
        vocab = kinds == 0
        h = self.embed_tokens(torch.where(vocab, ids, torch.zeros_like(ids)))
        if self.entity_head is not None and (~vocab).any():
            ent = self.entity_head.entity(torch.where(kinds == ENTITY_TOKEN, ids, torch.zeros_like(ids)))
            rel = self.entity_head.relation(torch.where(kinds == RELATION_TOKEN, ids, torch.zeros_like(ids)))
            h = torch.where((kinds == ENTITY_TOKEN)[..., None], ent.to(h.dtype), h)
            h = torch.where((kinds == RELATION_TOKEN)[..., None], rel.to(h.dtype), h)
        return h

    def prefix(self, batch: MRMKGBatch):
        """Compute the prompt segments.

        Returns ``(segments, align_loss, x_k)``: ``segments`` = list of ``(x [B, L, d], mask [B, L])``
        for H'_K, H'_I, H_T in that order (absent ones omitted); ``align_loss`` scalar or None;
        ``x_k [N, h]`` the graph encoder's node outputs (None without a graph).
        """
        from torch_geometric.utils import to_dense_batch

        self._check(batch)
        B = len(batch)
        h_t = self.embed_text(batch.text_ids, batch.text_kind)
        t_mask = batch.text_mask
        segments = []
        h_i = None
        has_image = batch.has_image
        img_seg = None
        if self.visual_adapter is not None and batch.image_tokens is not None and has_image.any():
            out, m, h_i = self.visual_adapter(batch.image_tokens, batch.image_mask, h_t, t_mask)
            img_seg = (out, m)
        align = x_k = None
        if self.graph_encoder is not None and batch.graphs is not None and batch.graphs.num_nodes:
            g = batch.graphs
            x_k = self.graph_encoder(g, self.features)                     # [N, h]
            dense, k_mask = to_dense_batch(x_k, g.batch, batch_size=B)     # [B, n_K, h]
            q, q_mask = h_t, t_mask
            if self.config.knowledge_query == "image" and h_i is not None:
                q, q_mask = self._image_query(h_t, t_mask, h_i, batch.image_mask, has_image)
            out, m, h_k = self.knowledge_adapter(dense, k_mask, q, q_mask)
            segments.append((out, m))
            if self.training and self.config.align_weight > 0:
                rows = x_k if self.config.align_on == "graph" else h_k[k_mask]
                align = triplet_alignment_loss(rows, g.node_kind, g.edge_index, g.batch,
                                               self.config.align_margin, self.config.align_anchors,
                                               self.config.align_negatives, self.align_generator)
        if img_seg is not None:
            segments.append(img_seg)
        segments.append((h_t, t_mask))
        return segments, align, x_k

    @staticmethod
    def _image_query(h_t, t_mask, h_i, i_mask, has_image):
        """Per example: H_I as the knowledge query when it has an image, else H_T (padded to one length)."""
        L = max(h_t.shape[1], h_i.shape[1])
        pt = F.pad(h_t, (0, 0, 0, L - h_t.shape[1]))
        pi = F.pad(h_i.to(h_t.dtype), (0, 0, 0, L - h_i.shape[1]))
        mt = F.pad(t_mask, (0, L - t_mask.shape[1]))
        mi = F.pad(i_mask, (0, L - i_mask.shape[1]))
        sel = has_image[:, None]
        return torch.where(sel[..., None], pi, pt), torch.where(sel, mi, mt)

    def _bos_segment(self, B: int, dtype) -> list:
        bos = self.llm.tokenizer.bos_token_id
        if self.kind != "causal" or bos is None:
            return []
        ids = torch.full((B, 1), bos, dtype=torch.long, device=self.device)
        return [(self.embed_tokens(ids).to(dtype), torch.ones(B, 1, dtype=torch.bool, device=self.device))]

    # ------------------------------------------------------------------ encode (shared by forward, rank, generate)
    def encode(self, batch: MRMKGBatch, with_targets: bool = False, left: bool = False) -> Encoded:
        """The batch's prompt segments (``prefix``), cast to the text's dtype and packed without holes.

        Causal: ``[BOS] H'_K H'_I H_T``, plus the embedded target ``Y`` when ``with_targets`` and the
        batch has targets (training); ``left=True`` right-aligns each example (causal greedy generation
        with a KV cache). Seq2seq: ``H'_K H'_I H_T``, and the encoder is run on it (``encoder_states``).
        """
        segments, align, x_k = self.prefix(batch)
        dtype = segments[-1][0].dtype
        segments = self._bos_segment(len(batch), dtype) + [(x.to(dtype), m) for x, m in segments]
        prompt_len = sum(m.sum(1) for _, m in segments)
        targets = self.kind == "causal" and with_targets and batch.target_ids is not None
        if targets:
            segments = segments + [(self.embed_tokens(batch.target_ids).to(dtype), batch.target_mask)]
        x, mask, dest = pack(segments, left=left)
        enc = Encoded(x, mask, prompt_len, node_states=x_k, align_loss=align)
        if self.kind == "causal":
            enc.position_ids = (torch.cumsum(mask.long(), 1) - 1).clamp_min(0)
            if targets:
                enc.target_pos = dest[:, -batch.target_ids.shape[1]:]
        else:
            enc.encoder_states = self.lm.get_encoder()(inputs_embeds=x, attention_mask=mask.long()).last_hidden_state.to(self.device)
        return enc

    @property
    def _base(self) -> nn.Module:
        return getattr(self.lm, self.lm.base_model_prefix)

    def _causal_hidden(self, enc: Encoded) -> torch.Tensor:
        """Last hidden states ``[B, L, d]`` of the causal LLM on the packed prompt; rows where the mask is
        False are padding (zero outputs when ``config.pack_sequences``, see mrmkg.model.packing)."""
        if self.config.pack_sequences:
            hidden = packed_hidden(self._base, self.lm.config, enc.inputs_embeds, enc.attention_mask)
        else:
            hidden = self._base(inputs_embeds=enc.inputs_embeds, attention_mask=enc.attention_mask.long(),
                                position_ids=enc.position_ids, use_cache=False).last_hidden_state
        return hidden.to(self.device)  # device_map="auto": the last layer may sit on another GPU

    def answer_slot(self, enc: Encoded, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d]``: the hidden state that ranks candidates. Causal: the last prompt row of ``hidden``
        (``_causal_hidden(enc)`` when not given); seq2seq: the first decoder position."""
        if self.kind == "causal":
            hidden = self._causal_hidden(enc) if hidden is None else hidden
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), enc.prompt_len - 1]
        start = self.lm.config.decoder_start_token_id or 0
        states = enc.encoder_states
        dec_ids = torch.full((states.shape[0], 1), start, dtype=torch.long, device=states.device)
        out = self.lm.get_decoder()(input_ids=dec_ids, encoder_hidden_states=states,
                                    encoder_attention_mask=enc.attention_mask.long(), use_cache=False)
        return out.last_hidden_state[:, 0].to(self.device)

    def _lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.lm.get_output_embeddings()(h)
        cap = getattr(self.lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits.float()

    # ------------------------------------------------------------------ scores and losses
    def rank_scores(self, slot: torch.Tensor, batch: MRMKGBatch, enc: Encoded) -> Ranking:
        """The entity head's scores of the candidates (``batch.candidates``, else every entity / relation
        token) from ``slot [B, d]``, re-ranked by the score hook when the model has one."""
        cand = batch.candidates
        if cand is None:
            cand = torch.arange(self.entity_head.table(batch.rank_over).shape[0], device=slot.device)
        head = self.entity_head.score(slot, cand, batch.rank_over).float()
        ranking = Ranking(head, head, cand)
        return ranking if self.score_hook is None else self.score_hook(ranking, slot, batch, enc)

    def rank_loss(self, ranking: Ranking, answer_pos: torch.Tensor):
        """``(loss, {name: (weight, aux loss)})``: the score hook's, when it changed the ranking; else the
        cross-entropy of the scores over the candidates (``answer_pos`` -100 = no answer)."""
        if ranking.state is None:
            return F.cross_entropy(ranking.scores, answer_pos, ignore_index=-100), {}
        return self.score_hook.loss(ranking, answer_pos)

    def _causal_target_loss(self, hidden: torch.Tensor, enc: Encoded, batch: MRMKGBatch):
        """Token cross-entropy of the target rows; LM-head logits only on the rows that predict them."""
        labels = torch.full(enc.attention_mask.shape, -100, dtype=torch.long, device=hidden.device)
        b, t = batch.target_mask.nonzero(as_tuple=True)
        labels[b, enc.target_pos[b, t]] = batch.target_ids[b, t]
        sel = labels[:, 1:] != -100                       # rows that predict a target token
        logits = self._lm_logits(hidden[:, :-1][sel])     # [n_tgt, V] only
        return self._token_ce(logits, labels[:, 1:][sel], sel.nonzero()[:, 0], len(batch))

    def _seq2seq_target_loss(self, enc: Encoded, batch: MRMKGBatch):
        labels = batch.target_ids.masked_fill(~batch.target_mask, -100)
        logits = self.lm(encoder_outputs=(enc.encoder_states,), attention_mask=enc.attention_mask.long(),
                         decoder_input_ids=self.lm._shift_right(labels), use_cache=False).logits.float().to(self.device)
        sel = batch.target_mask
        return self._token_ce(logits[sel], batch.target_ids[sel], sel.nonzero()[:, 0], len(batch))

    @staticmethod
    def _token_ce(logits, targets, rows, B):
        tok = F.cross_entropy(logits, targets, reduction="none")
        per = torch.zeros(B, device=logits.device).index_add(0, rows, tok)
        cnt = torch.zeros(B, device=logits.device).index_add(0, rows, torch.ones_like(tok))
        return tok.mean(), per / cnt.clamp_min(1)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: MRMKGBatch) -> MRMKGOutput:
        """Losses of one batch (targets and/or answers). Gradients reach only trainable modules."""
        with self._autocast():
            enc = self.encode(batch, with_targets=True)
            gen_loss = example_loss = rank_loss = ranking = hidden = None
            aux = {}
            if self.kind == "causal":
                hidden = self._causal_hidden(enc)
                if batch.target_ids is not None:
                    gen_loss, example_loss = self._causal_target_loss(hidden, enc, batch)
            elif batch.target_ids is not None:
                gen_loss, example_loss = self._seq2seq_target_loss(enc, batch)
            if batch.answer_pos is not None and self.entity_head is not None:
                ranking = self.rank_scores(self.answer_slot(enc, hidden), batch, enc)
                rank_loss, aux = self.rank_loss(ranking, batch.answer_pos)
        parts = [p for p in (gen_loss, rank_loss) if p is not None]
        if not parts:
            raise InputError("batch has neither targets nor answers (or answers without config.entity_head)")
        loss = sum(parts)
        if enc.align_loss is not None:
            loss = loss + self.config.align_weight * enc.align_loss
        for weight, term in aux.values():
            loss = loss + weight * term
        return MRMKGOutput(loss=loss, gen_loss=gen_loss, rank_loss=rank_loss, align_loss=enc.align_loss,
                           aux_losses={name: term for name, (_, term) in aux.items()}, example_loss=example_loss,
                           scores=None if ranking is None else ranking.scores)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def rank(self, batch: MRMKGBatch) -> torch.Tensor:
        """Candidate scores ``[B, C]`` (C = candidates, or every entity/relation token), one forward pass."""
        if self.entity_head is None:
            raise InputError("rank() needs config.entity_head = true")
        with self._autocast():
            enc = self.encode(batch)
            return self.rank_scores(self.answer_slot(enc), batch, enc).scores

    @torch.no_grad()
    def generate(self, batch: MRMKGBatch, max_new_tokens: int = 32) -> list[str]:
        """Greedy decoding from the same prefix as training; returns the decoded strings."""
        tok = self.llm.tokenizer
        eos = tok.eos_token_id
        with self._autocast():
            enc = self.encode(batch, left=self.kind == "causal")
            dtype = enc.inputs_embeds.dtype
            B = len(batch)
            out_ids = torch.zeros(B, 0, dtype=torch.long, device=self.device)
            done = torch.zeros(B, dtype=torch.bool, device=self.device)
            mask = enc.attention_mask.long()
            if self.kind == "causal":
                o = self._base(inputs_embeds=enc.inputs_embeds, attention_mask=mask, position_ids=enc.position_ids,
                               use_cache=True)
                cache, last = o.past_key_values, o.last_hidden_state[:, -1]
                nxt_pos = enc.position_ids[:, -1:] + 1
                for _ in range(max_new_tokens):
                    nxt = self._lm_logits(last).argmax(-1).to(self.device)
                    out_ids, done = self._append(out_ids, nxt, done, eos)
                    if done.all():
                        break
                    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                    o = self._base(inputs_embeds=self.embed_tokens(nxt[:, None]).to(dtype), attention_mask=mask,
                                   position_ids=nxt_pos, past_key_values=cache, use_cache=True)
                    cache, last, nxt_pos = o.past_key_values, o.last_hidden_state[:, -1], nxt_pos + 1
            else:
                start = self.lm.config.decoder_start_token_id or 0
                nxt = torch.full((B,), start, dtype=torch.long, device=self.device)
                cache = None
                for _ in range(max_new_tokens):
                    o = self.lm(encoder_outputs=(enc.encoder_states,), attention_mask=mask,
                                decoder_input_ids=nxt[:, None], past_key_values=cache, use_cache=True)
                    cache = o.past_key_values
                    nxt = o.logits[:, -1].float().argmax(-1).to(self.device)
                    out_ids, done = self._append(out_ids, nxt, done, eos)
                    if done.all():
                        break
        texts = []
        for row in out_ids.tolist():
            if eos is not None and eos in row:
                row = row[:row.index(eos)]
            texts.append(tok.decode(row, skip_special_tokens=True))
        return texts

    @staticmethod
    def _append(out_ids, nxt, done, eos):
        nxt = torch.where(done, torch.full_like(nxt, eos if eos is not None else 0), nxt)
        out_ids = torch.cat([out_ids, nxt[:, None]], 1)
        if eos is not None:
            done = done | (nxt == eos)
        return out_ids, done

    # ------------------------------------------------------------------ persistence
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().contiguous().cpu() for n, p in self.named_parameters() if p.requires_grad}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` (trainable weights only) and ``mrmkg.json`` (config, frozen
        model names, feature shapes), each atomically, then ``checksums.json`` (their sizes and
        SHA-256, :mod:`mrmkg.manifest`) last: a folder whose writing was interrupted does not verify."""
        from safetensors.torch import save

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(d / WEIGHTS, save(self.trainable_state_dict(), metadata={"format": "pt"}))
        atomic_write_json(d / META, {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "frozen": {"llm": self.llm.name, "llm_kind": self.kind, "text_encoder": self.config.text_encoder,
                       "vision_encoder": self.config.vision_encoder},
            "dims": {"d": self.d, "text_dim": self.features.text_dim, "vision_dim": self.features.vision_dim,
                     "num_entities": self.features.num_entities, "num_relations": self.features.num_relations,
                     "image_token_dim": self.image_token_dim},
        })
        write_checksums(d, [WEIGHTS, META], kind="model")

    @staticmethod
    def read_pretrained(directory: str | Path) -> dict:
        """The checked ``mrmkg.json`` of a ``save_pretrained`` folder, before anything is loaded: the
        folder against its ``checksums.json`` (every file's size and SHA-256; a folder without one
        loads with an ``UnverifiedArtifactWarning``), the JSON's keys and types, the format version,
        the safetensors header. Raises :class:`~mrmkg.manifest.DamagedCheckpointError` (or another
        ``InputError``) naming the file."""
        d = Path(directory)
        if not (d / META).is_file() or not (d / WEIGHTS).is_file():
            raise InputError(f"not an MR-MKG checkpoint (expected {META} and {WEIGHTS})", path=d)
        err = DamagedCheckpointError
        meta = read_json(d / META, d, err)
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
            # checked before the manifest: formats before 2 predate manifests, and the fix is the same
            raise InputError(f"checkpoint format {version} is older than this mrmkg's format {FORMAT_VERSION} (format 2 "
                             "moved the graph pointer's options into the model config's 'pointer' section); retrain "
                             "it with this version (mrmkg train)", path=d / META)
        if not verify_checksums(d, d, hashed=lambda name: True, kind="model", error=err):
            warn_unverified(d, "checkpoint", "save it again (save_pretrained / mrmkg train) to add one")
        if not isinstance(meta, dict):
            raise err(d, META, f"a JSON {type(meta).__name__}, expected an object")
        if version != FORMAT_VERSION:
            raise err(d, META, f"'format_version' is {version!r}, expected {FORMAT_VERSION}")
        require(d, META, meta, "config", (dict,), "an object", error=err)
        frozen = require(d, META, meta, "frozen", (dict,), "an object", error=err)
        require(d, META, frozen, "llm", (str,), error=err)
        dims = require(d, META, meta, "dims", (dict,), "an object", error=err)
        for k in ("d", "text_dim", "vision_dim", "num_entities", "num_relations", "image_token_dim"):
            v = require(d, META, dims, k, (int, type(None)) if k == "image_token_dim" else (int,),
                        "an integer or null" if k == "image_token_dim" else "an integer", error=err)
            if v is not None and v < 0:
                raise err(d, META, f"dims.{k} is {v}, expected >= 0")
        safetensors_header(d / WEIGHTS, d, err)
        return meta

    @classmethod
    def from_pretrained(cls, directory: str | Path, llm=None, features: KGFeatures | None = None,
                        report: bool = False) -> "MRMKG":
        """Rebuild from ``save_pretrained`` output (checked first by :meth:`read_pretrained`). ``llm``
        defaults to ``load_llm(<saved name>)``; ``features`` to the index of ``config.kg`` (required when
        the model uses the KG). The weights must be exactly the model's trainable parameters (names,
        shapes, dtypes), checked from the safetensors header before any is read."""
        from safetensors.torch import load_file

        d = Path(directory)
        meta = cls.read_pretrained(d)
        config = MRMKGConfig.from_dict(meta["config"], path=d / META)
        dims = meta["dims"]
        if llm is None:
            llm = load_llm(meta["frozen"]["llm"])
        elif llm.name != meta["frozen"]["llm"]:  # same hidden size passes the checks below: say it once
            warnings.warn(f"{d} was trained on the frozen LLM {meta['frozen']['llm']!r}; running it on {llm.name!r}")
        if features is None:
            if config.kg:
                from mrmkg.kg.index import KGIndex  # imports faiss: only when the features must be loaded

                features = KGFeatures.from_index(KGIndex.load(config.kg))
            elif not config.use_kg and not config.entity_head:
                features = KGFeatures.random(0, 1, 0, dims["text_dim"], dims["vision_dim"])
            else:
                raise InputError("this checkpoint needs KG features: pass features= or set config.kg", path=d / META)
        got = {"d": llm.hidden_size, "text_dim": features.text_dim, "num_relations": features.num_relations}
        for k, v in got.items():
            if v != dims[k]:
                raise InputError(f"checkpoint was trained with {k}={dims[k]}, the given model/features have {v}", path=d / META)
        model = cls(config, llm, features, image_token_dim=dims["image_token_dim"], report=report)
        own = dict(model.named_parameters())
        want = {n: p for n, p in own.items() if p.requires_grad}
        check_tensors(safetensors_header(d / WEIGHTS, d, DamagedCheckpointError), want, d, WEIGHTS,
                      DamagedCheckpointError)
        state = load_file(str(d / WEIGHTS))
        with torch.no_grad():
            for n, t in state.items():
                own[n].copy_(t)
        return model
