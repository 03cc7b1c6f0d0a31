"""Graph pointer: a candidate that is a node of the retrieved subgraph gets a score from that node.

Not in the paper (``MRMKGConfig.graph_pointer``, off by default). The paper's ranking head scores
all candidates from the answer slot alone, so knowledge reaches the answer only through the soft
prompt. The pointer adds, for every entity node ``j`` of example ``b``'s subgraph whose entity is
candidate ``c``::

    score[b, c] += (W slot_b) . x_j + s * (u . phi_j + p_c)

* ``slot_b [d]``: the LLM hidden state at the answer slot; ``W``: Linear(d -> h);
* ``x_j [h]``: the graph encoder's output for node j (so RGAT is trained by the pointer directly);
* ``phi_j [F]``: structure the encoder cannot see from node features alone, the columns named by
  ``MRMKGConfig.pointer_features`` (registry :data:`FEATURES`): ``focus`` j is a focus entity (MARS:
  the question entity; ``Subgraph.focus``), ``memory`` log(1 + how often a memory edge leads into
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
  learned weight (starting at ``MRMKGConfig.relation_odds_init``, 0 like every other pointer weight
  by default) -- the ``relation`` term estimates ~2 x 193 weights from the few training
  examples each relation appears in, so on MARS its values differed from seed to seed. Trained
  as a feature, its weight stayed small (training pairs recur ~8.6 times and the bilinear term
  fits them without it); used in evaluation *in place of* the learned ``relation`` weights
  (``MRMKGConfig.relation_at_eval="odds"``: weight 1, training unchanged) it lifted MARS dev
  Hits@1 in every seed (docs/results.md, session 8); and
  ``frequency``, ``log(1 + f_c)`` for a per-entity count the task supplies
  (:meth:`GraphPointer.set_frequency`; MARS: occurrences in the training file), with one learned
  weight -- a data prior whose strength is learned, where ``p_c`` must learn every entity alone
  (on MARS dev it measured worse, 0.389 vs 0.406 Hits@1: docs/results.md, session 5);
* ``p_c``: a learned prior per entity (how often it is the answer when it is a node); optional
  (``MRMKGConfig.pointer_prior``): with ``pointer_scale`` 30 it moves 30x faster than the other
  weights and can learn the training answers by heart;
* ``s``: ``MRMKGConfig.pointer_scale``, fixed. Adam moves a weight by about the learning rate per
  step whatever its gradient, so after one MARS epoch at lr 1e-3 a flag's weight is at most ~1.3
  (measured: |u| <= 0.2, prior std 0.008) -- too little to order nodes the way the memory / neighbour
  / popularity rule does; ``s`` lets these few weights move ``s`` times faster (an lr multiplier).

Optionally (``MRMKGConfig.pointer_loss_weight`` > 0) training adds ``pointer_loss``: cross-entropy
of the pointer's scores alone over the candidates that are nodes, for examples whose answer is one.
It was meant to keep the pointer strong although the entity head memorises the training pairs (each
MARS pair recurs ~8 times, while most dev pairs are new); measured on MARS dev it did not help, so
it is off by default (docs/results.md).

How the bonus meets the entity head is ``MRMKGConfig.pointer_mode`` (mrmkg.model.mrmkg): ``add``
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
from torch import nn

from mrmkg.kg.subgraph import ENTITY


def _focus(graph) -> torch.Tensor:
    return graph.node_focus.float()


def _memory(graph) -> torch.Tensor:
    mem = graph.edge_memory.bool()
    counts = torch.zeros(graph.node_kind.shape[0], device=mem.device)
    return torch.log1p(counts.index_add(0, graph.edge_index[1][mem], graph.edge_score[mem].float()))


def _near(graph) -> torch.Tensor:
    src, dst = graph.edge_index
    focus = graph.node_focus
    kg_edge = ~graph.edge_memory.bool() & (graph.node_kind[src] == ENTITY) & (graph.node_kind[dst] == ENTITY)
    near = torch.zeros(graph.node_kind.shape[0], device=focus.device)
    s, t = src[kg_edge], dst[kg_edge]
    near[t[focus[s] > 0]] = 1.0
    near[s[focus[t] > 0]] = 1.0
    return near


def _copy(graph) -> torch.Tensor:
    copy = getattr(graph, "node_copy", None)  # graphs built before ``Subgraph.example`` existed have none
    return torch.zeros(graph.node_kind.shape[0], device=graph.node_kind.device) if copy is None else copy.float()


def _node(graph) -> torch.Tensor:
    return torch.ones(graph.node_kind.shape[0], device=graph.node_kind.device)


def _retrieval(graph) -> torch.Tensor:
    # the best retrieval score among the MMKG triples that brought j in (memory edges carry counts, not
    # scores; a node only memory edges reach gets 0, as does one whose triples all scored below 0)
    src, dst = graph.edge_index
    kg_edge = ~graph.edge_memory.bool()
    score = graph.edge_score.float()[kg_edge]
    out = torch.zeros(graph.node_kind.shape[0], device=src.device)
    out = out.scatter_reduce(0, src[kg_edge], score, reduce="amax")
    return out.scatter_reduce(0, dst[kg_edge], score, reduce="amax")


#: pointer feature name -> ``fn(graph) -> [N]``; ``MRMKGConfig.pointer_features`` picks the columns
FEATURES = {"focus": _focus, "memory": _memory, "near": _near, "copy": _copy, "node": _node,
            "retrieval": _retrieval}
DEFAULT_FEATURES = ("focus", "memory", "near")
#: every name ``MRMKGConfig.pointer_features`` accepts: the graph's columns, the learned ``relation``
#: term and the task-supplied ``relation_odds`` and ``frequency`` terms
ALL_FEATURES = (*FEATURES, "relation", "relation_odds", "frequency")


def node_features(graph, names=DEFAULT_FEATURES) -> torch.Tensor:
    """``phi [N, len(names)]`` for a PyG batch with ``node_focus``, ``edge_memory``, ``edge_score``
    (and ``node_copy`` for ``copy``), one column per name of :data:`FEATURES`."""
    return torch.stack([FEATURES[n](graph) for n in names], dim=1)


class GraphPointer(nn.Module):
    """``forward(slot [B, d], x [N, h], graph, candidates [C] | [B, C])`` -> ``(bonus [B, C],
    is_node [B, C] bool)``: the score bonus (0 off the subgraph) and which candidates are nodes."""

    def __init__(self, d: int, h: int, num_entities: int, features=DEFAULT_FEATURES, scale: float = 1.0,
                 num_relations: int = 0, prior: bool = True, odds_init: float = 0.0,
                 relation_at_eval: str = "learned"):
        super().__init__()
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

    def forward(self, slot: torch.Tensor, x: torch.Tensor, graph, candidates: torch.Tensor):
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
