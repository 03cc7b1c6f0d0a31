"""Graph pointer: a candidate that is a node of the retrieved subgraph gets a score from that node.

Not in the paper; off by default, on when the model config has a ``pointer`` section
(``MRMKGConfig.pointer``, a :class:`~mrmkg.model.extensions.pointer_config.PointerConfig`). It is
the model's score hook (:mod:`mrmkg.model.score_hook`): the core scorer hands it the entity head's
ranking. The paper's ranking head scores all candidates from the answer slot alone, so knowledge
reaches the answer only through the soft prompt. The pointer adds, for every entity node ``j`` of example ``b``'s subgraph whose entity is
candidate ``c``::

    score[b, c] += (W slot_b) . x_j + s * (u . phi_j + p_c)

* ``slot_b [d]``: the LLM hidden state at the answer slot; ``W``: Linear(d -> h);
* ``x_j [h]``: the graph encoder's output for node j (so RGAT is trained by the pointer directly);
* ``phi_j [F]``: structure the encoder cannot see from node features alone, the columns named by
  ``PointerConfig.features`` (registry :data:`~mrmkg.model.extensions.pointer_features.FEATURES`):
  ``focus`` j is a focus entity (MARS: the question entity; ``Subgraph.focus``), ``memory`` log(1 + how often a memory edge leads into
  j), ``near`` j shares an MMKG edge with a focus entity, ``copy`` j is the example tail while the
  focus is the example head (``h : t :: h : ?`` is answered by ``t``; ``Subgraph.example``),
  ``node`` a constant 1, a learned preference of subgraph nodes over the rest of the candidates, and
  ``retrieval`` the highest retrieval score (``edge_score``, clipped at 0) of the MMKG triples that
  brought j in: among MARS answers that only a retrieved triple names, the top-scored node is the
  answer about as often as the pointer's first choice is, and in other examples. Trained on MARS, its
  weight came out negative, because most training answers are memory partners that no triple brings
  in, and it lowered dev Hits@1 at N = 10 and 20 (docs/results.md, session 16);
  and ``relation``, not a column but a learned weight per relation type (and direction), summed
  over the edges that join j to a focus entity (which relations -- MarKG's or the memory's -- lead
  to answers; on MARS the MarKG edges labelled with analogy relations A0-A18 do);
  ``relation_odds``, the same sum over a node's edges to a focus entity but of fixed per-relation
  values the task supplies (:meth:`GraphPointer.set_relation_odds`; MARS: smoothed log-odds, from
  the training file, that a question's neighbour through that relation is its answer), with one
  learned weight (starting at ``PointerConfig.relation_odds_init``, 0 like every other pointer weight
  by default) -- the ``relation`` term estimates ~2 x 193 weights from the few training
  examples each relation appears in, so on MARS its values differed from seed to seed. Trained
  as a feature, its weight stayed small (training pairs recur ~8.6 times and the bilinear term
  fits them without it); used in evaluation *in place of* the learned ``relation`` weights
  (``PointerConfig.relation_at_eval="odds"``: weight 1, training unchanged) it lifted MARS dev
  Hits@1 in every seed (docs/results.md, session 8); and
  ``frequency``, ``log(1 + f_c)`` for a per-entity count the task supplies
  (:meth:`GraphPointer.set_frequency`; MARS: occurrences in the training file), with one learned
  weight -- a data prior whose strength is learned, where ``p_c`` must learn every entity alone
  (on MARS dev it measured worse, 0.389 vs 0.406 Hits@1: docs/results.md, session 5);
* ``p_c``: a learned prior per entity (how often it is the answer when it is a node); optional
  (``PointerConfig.prior``): with ``scale`` 30 it moves 30x faster than the other
  weights and can learn the training answers by heart;
* ``s``: ``PointerConfig.scale``, fixed. Adam moves a weight by about the learning rate per
  step whatever its gradient, so after one MARS epoch at lr 1e-3 a flag's weight is at most ~1.3
  (measured: |u| <= 0.2, prior std 0.008) -- too little to order nodes the way the memory / neighbour
  / popularity rule does; ``s`` lets these few weights move ``s`` times faster (an lr multiplier).

Optionally (``PointerConfig.loss_weight`` > 0) training adds ``pointer_loss``: cross-entropy
of the pointer's scores alone over the candidates that are nodes, for examples whose answer is one.
It was meant to keep the pointer strong although the entity head memorises the training pairs (each
MARS pair recurs ~8 times, while most dev pairs are new); measured on MARS dev it did not help, so
it is off by default (docs/results.md).

How the bonus meets the entity head is ``PointerConfig.mode`` (:meth:`GraphPointer.forward`): ``add``
sums them; ``first`` ranks every node above every other candidate, nodes by the bonus alone, the
rest by the head, and trains the head and the pointer by separate cross-entropies -- the head
memorises training pairs, which would otherwise outvote the graph on new pairs.

All pointer weights start at zero (``relation_odds`` at ``relation_odds_init``, 0 by default), so in ``add``
mode a fresh model ranks exactly as without the pointer. Every pointed
candidate is a node with provenance (the triple or memory edge that brought it in), which is what
``predictions.jsonl`` shows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrmkg.kg.subgraph import ENTITY
from mrmkg.model.extensions.pointer_config import MODES, PointerConfig
from mrmkg.model.extensions.pointer_features import ALL_FEATURES, DEFAULT_FEATURES, FEATURES, node_features
from mrmkg.model.score_hook import Ranking, ScoreHook


class GraphPointer(ScoreHook):
    """The graph pointer as the model's score hook.

    ``bonus(slot [B, d], x [N, h], graph, candidates [C] | [B, C])`` -> ``(bonus [B, C], is_node [B, C]
    bool)``: the score bonus (0 off the subgraph) and which candidates are nodes; ``forward`` combines it
    with the entity head per ``mode``, ``loss`` gives the ranking loss of that combination.
    """

    def __init__(self, d: int, h: int, num_entities: int, features=DEFAULT_FEATURES, scale: float = 1.0,
                 num_relations: int = 0, prior: bool = True, odds_init: float = 0.0,
                 relation_at_eval: str = "learned", mode: str = "add", loss_weight: float = 0.0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"pointer mode must be one of {list(MODES)}, not {mode!r}")
        self.mode = mode
        self.loss_weight = loss_weight
        self.scale = scale
        self.relation_at_eval = relation_at_eval
        self.num_entities = num_entities
        unknown = [f for f in features if f not in ALL_FEATURES]
        if unknown:
            raise ValueError(f"unknown pointer features {unknown}; expected names from {list(ALL_FEATURES)}")
        self.features = tuple(f for f in features if f in FEATURES)
        self.query = nn.Linear(d, h)
        self.feature = nn.Linear(len(self.features), 1, bias=False) if self.features else None
        self.prior = nn.Embedding(num_entities, 1) if prior else None
        self.relation = None
        self.num_relations = num_relations
        for name in ("relation", "relation_odds"):
            if name in features and num_relations < 1:
                raise ValueError(f"the pointer's {name!r} feature needs num_relations >= 1")
        if "relation" in features:
            self.relation = nn.Embedding(2 * num_relations, 1)   # [r] focus -> j, [R + r] j -> focus
        self.relation_odds_weight = nn.Parameter(torch.zeros(())) if "relation_odds" in features else None
        self.frequency_weight = nn.Parameter(torch.zeros(())) if "frequency" in features else None
        # task data, not weights: set by the task after building or loading (not saved)
        self.register_buffer("relation_odds", None, persistent=False)
        self.register_buffer("frequency", None, persistent=False)
        for p in self.parameters():
            nn.init.zeros_(p)
        if self.relation_odds_weight is not None:
            nn.init.constant_(self.relation_odds_weight, odds_init / scale)   # the term starts as odds_init x table

    @classmethod
    def from_config(cls, config: PointerConfig, d: int, h: int, num_entities: int,
                    num_relations: int) -> "GraphPointer":
        """The pointer of ``model.pointer`` for an LLM of width ``d`` and a graph encoder of width ``h``."""
        return cls(d, h, num_entities, config.features, config.scale, num_relations, prior=config.prior,
                   odds_init=config.relation_odds_init, relation_at_eval=config.relation_at_eval,
                   mode=config.mode, loss_weight=config.loss_weight)

    # ------------------------------------------------------------------ the score hook
    def forward(self, ranking: Ranking, slot: torch.Tensor, batch, encoded) -> Ranking:
        """Re-rank ``ranking.head [B, C]`` (entity candidates only, and only with a graph encoding).
        ``mode`` add: scores = head + bonus; first: node candidates get their bonus shifted above the
        row's best head score, the others their head score. ``state = (bonus, is_node)``."""
        x_k = encoded.node_states
        if x_k is None or batch.rank_over != "entity":
            return ranking
        scores = ranking.head
        bonus, is_node = self.bonus(slot, x_k, batch.graphs, ranking.candidates)
        if self.mode == "add":
            return Ranking(scores + bonus, scores, ranking.candidates, state=(bonus, is_node))
        lowest = bonus.masked_fill(~is_node, float("inf")).amin(1, keepdim=True)
        shift = (scores.amax(1, keepdim=True) - lowest.clamp(max=0.0) + 1.0).detach()
        # equal bonuses (a fresh, zero-initialised pointer) are ordered by the head, not tied
        lo, hi = scores.amin(1, keepdim=True), scores.amax(1, keepdim=True)
        tie = 1e-3 * ((scores - lo) / (hi - lo).clamp_min(1e-6)).detach()
        return Ranking(torch.where(is_node, bonus + shift + tie, scores), scores, ranking.candidates, state=(bonus, is_node))

    def loss(self, ranking: Ranking, answer_pos: torch.Tensor):
        """add: cross-entropy of the summed scores; first: two separate rankings, the head's over all
        candidates plus the pointer's over the nodes. With ``loss_weight`` > 0 also ``pointer``, the
        pointer's own cross-entropy over the nodes."""
        bonus, is_node = ranking.state
        if self.mode == "first":
            rank_loss = (F.cross_entropy(ranking.head, answer_pos, ignore_index=-100)
                         + pointer_loss(bonus, is_node, answer_pos))
        else:
            rank_loss = F.cross_entropy(ranking.scores, answer_pos, ignore_index=-100)
        aux = {}
        if self.loss_weight > 0:
            aux["pointer"] = (self.loss_weight, pointer_loss(bonus, is_node, answer_pos))
        return rank_loss, aux

    # ------------------------------------------------------------------ the pointer's scores
    def bonus(self, slot: torch.Tensor, x: torch.Tensor, graph, candidates: torch.Tensor):
        B, C = slot.shape[0], candidates.shape[-1]
        bonus = torch.zeros(B, C, device=slot.device)
        is_node = torch.zeros(B, C, dtype=torch.bool, device=slot.device)
        with torch.autocast(device_type=slot.device.type, enabled=False):
            ent = (graph.node_kind == ENTITY).nonzero().squeeze(1)
            if ent.numel() == 0:
                return bonus, is_node
            b, e = graph.batch[ent], graph.node_ref[ent]
            if candidates.dim() == 1:
                lookup = torch.full((int(max(e.max(), candidates.max())) + 1,), -1, dtype=torch.long, device=e.device)
                lookup[candidates] = torch.arange(C, device=e.device)
                pos = lookup[e]
            else:
                match = candidates[b] == e[:, None]
                pos = torch.where(match.any(1), match.float().argmax(1), torch.full_like(e, -1))
            keep = pos >= 0
            ent, b, pos = ent[keep], b[keep], pos[keep]
            w = self.query(slot.float())                                               # [B, h]
            flags = (self.prior(graph.node_ref[ent]).squeeze(-1) if self.prior is not None
                     else torch.zeros(ent.shape[0], device=slot.device))
            if self.feature is not None:
                flags = flags + self.feature(node_features(graph, self.features)[ent]).squeeze(-1)
            if self.relation is not None and not self.training and self.relation_at_eval == "odds":
                odds = self._given("relation_odds", "relation_at_eval=odds")
                flags = flags + self._relation_term(graph, lambda t: odds[t] / self.scale)[ent]
            elif self.relation is not None:
                flags = flags + self._relation_term(graph, lambda t: self.relation(t).squeeze(-1))[ent]
            if self.relation_odds_weight is not None:
                odds = self._relation_term(graph, self._given("relation_odds", "'relation_odds' feature").__getitem__)
                flags = flags + self.relation_odds_weight * odds[ent]
            if self.frequency_weight is not None:
                frequency = self._given("frequency", "'frequency' feature")
                flags = flags + self.frequency_weight * frequency[graph.node_ref[ent]]
            logit = (w[b] * x[ent].float()).sum(-1) + self.scale * flags
            is_node[b, pos] = True
            return bonus.index_put((b, pos), logit, accumulate=True), is_node
    def set_frequency(self, counts) -> None:
        """``counts [num_entities]`` (>= 0) for the ``frequency`` feature, used as ``log(1 + counts)``."""
        counts = torch.as_tensor(counts, dtype=torch.float32).reshape(-1)
        if counts.shape[0] != self.num_entities or (counts < 0).any():
            raise ValueError(f"set_frequency: expected {self.num_entities} counts >= 0, got "
                             f"{counts.shape[0]} (min {float(counts.min()) if counts.numel() else 0})")
        self.frequency = torch.log1p(counts).to(self.query.weight.device)

    @property
    def needs_relation_odds(self) -> bool:
        """Whether the task must call :meth:`set_relation_odds`."""
        return self.relation_odds_weight is not None or (self.relation is not None and self.relation_at_eval == "odds")

    def _given(self, name: str, what: str) -> torch.Tensor:
        """The task-supplied buffer ``name`` (``frequency`` or ``relation_odds``), which ``what`` needs."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"the pointer's {what} needs {name}: call GraphPointer.set_{name} (the MARS task does)")
        return value

    def set_relation_odds(self, values) -> None:
        """``values [2 * num_relations]`` (finite) for the ``relation_odds`` feature: ``[r]`` for an
        edge focus -r-> node, ``[R + r]`` for node -r-> focus."""
        values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        if values.shape[0] != 2 * self.num_relations or not torch.isfinite(values).all():
            raise ValueError(f"set_relation_odds: expected {2 * self.num_relations} finite values "
                             f"(2 x {self.num_relations} relations), got {values.shape[0]}")
        self.relation_odds = values.to(self.query.weight.device)

    def _relation_term(self, graph, value) -> torch.Tensor:
        """``[N]``: per node, the sum of ``value(types) [e]`` (types index ``[2R]``: relation type, and
        ``+ R`` for the direction node -> focus) over its edges to a focus entity."""
        src, dst = graph.edge_index
        focus = graph.node_focus > 0
        out = torch.zeros(graph.node_kind.shape[0], device=src.device)
        fw, bw = focus[src], focus[dst]
        out = out.index_add(0, dst[fw], value(graph.edge_type[fw]))
        return out.index_add(0, src[bw], value(graph.edge_type[bw] + self.num_relations))


def pointer_loss(bonus: torch.Tensor, is_node: torch.Tensor, answer_pos: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``bonus [B, C]`` over each row's node candidates, for the rows whose answer
    (``answer_pos [B]``, -100 = none) is a node; 0 when no row qualifies."""
    rows = (answer_pos >= 0).nonzero().squeeze(1)
    rows = rows[is_node[rows, answer_pos[rows]]]
    if rows.numel() == 0:
        return bonus.sum() * 0.0
    logits = bonus[rows].masked_fill(~is_node[rows], float("-inf"))
    return torch.nn.functional.cross_entropy(logits, answer_pos[rows])
