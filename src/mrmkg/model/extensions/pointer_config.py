"""``PointerConfig``: the ``model.pointer`` section, options of the graph pointer
(:mod:`mrmkg.model.extensions.pointer`). Absent (``MRMKGConfig.pointer`` None) = no pointer."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from mrmkg.errors import InputError
from mrmkg.model.extensions.pointer_features import ALL_FEATURES, DEFAULT_FEATURES
from mrmkg.yamlconfig import Source, from_dict

MODES = ("add", "first")
RELATION_AT_EVAL = ("learned", "odds")


@dataclass
class PointerConfig:
    mode: str = field(default="add", metadata={
        "help": "add: a node candidate's score is entity head + pointer, one cross-entropy; first: subgraph nodes rank "
                "above every other candidate, ordered by the pointer alone, the rest by the entity head, trained by "
                "two cross-entropies (the head's over all candidates, the pointer's over the nodes), so the head's "
                "memory of training pairs cannot outvote the graph (mrmkg.model.extensions.pointer)"})
    features: tuple[str, ...] = field(default=DEFAULT_FEATURES, metadata={
        "help": "node features the graph pointer weighs (mrmkg.model.extensions.pointer_features.ALL_FEATURES): focus, "
                "memory, near (the default three), copy (the example tail when the question is the example head), node "
                "(a learned bonus of every subgraph node over the other candidates), relation (a learned weight per "
                "relation type of the node's edges to the focus), relation_odds (the same sum over a fixed table of "
                "per-relation log-odds that the task computes from its training file, one learned weight; MARS only), "
                "frequency (log(1 + how often the entity occurs in the task's training file), one learned weight; "
                "MARS only), retrieval (the best retrieval score of the triples that brought the node in; measured "
                "worse on MARS dev)"})
    scale: float = field(default=1.0, metadata={
        "help": "fixed multiplier of the pointer's feature and per-entity prior terms: a learning-rate multiplier "
                "for those few weights, which Adam otherwise moves by only ~lr per step (mrmkg.model.extensions.pointer)"})
    prior: bool = field(default=True, metadata={
        "help": "give the graph pointer a learned prior per entity (p_c in mrmkg.model.extensions.pointer); false: nodes "
                "are scored from their features, relations and graph encoding only (MARS dev, one epoch, 3 paired seeds: "
                "+0.002 to +0.019 Hits@1 without it; docs/results.md session 6)"})
    loss_weight: float = field(default=0.0, metadata={
        "help": "weight of the graph pointer's own loss: cross-entropy of its scores alone over the candidates that are "
                "subgraph nodes (mrmkg.model.extensions.pointer); 0 (default) = train it only through the summed scores "
                "(MARS dev, 1 epoch: 1.0 gave Hits@1 0.276 / MRR 0.329, 0 gave 0.289 / 0.344; docs/results.md)"})
    relation_at_eval: str = field(default="learned", metadata={
        "help": "which per-relation values the graph pointer's 'relation' term uses in evaluation (model.eval()): "
                "learned (the weights training fitted) or odds (the task's relation log-odds table, weight 1, in their "
                "place; training is unchanged). On MARS the learned weights differ from seed to seed and fit training "
                "pairs the model has memorised; odds measured +0.012 to +0.018 Hits@1 in 7 of 7 seeds "
                "(docs/results.md, session 8)"})
    relation_odds_init: float = field(default=0.0, metadata={
        "help": "starting weight of the pointer's relation_odds feature (its effective weight: the term starts as "
                "init x the log-odds table); 0 starts it off like every other pointer weight, 1 adds the training "
                "log-odds from the first step, a data prior the model can still re-weigh (mrmkg.model.extensions.pointer)"})

    def __post_init__(self) -> None:
        self.features = tuple(self.features)
        self.validate()

    def validate(self, path: str | Path | None = None) -> None:
        if self.mode not in MODES:
            raise InputError(f"model.pointer.mode is {self.mode!r}; expected one of {list(MODES)}", path=path)
        bad = [f for f in self.features if f not in ALL_FEATURES]
        if bad:
            raise InputError(f"model.pointer.features is {list(self.features)}; expected names from "
                             f"{list(ALL_FEATURES)}", path=path)
        if self.scale <= 0:
            raise InputError(f"model.pointer.scale is {self.scale}; expected > 0", path=path)
        if self.relation_at_eval not in RELATION_AT_EVAL:
            raise InputError(f"model.pointer.relation_at_eval is {self.relation_at_eval!r}; expected learned or odds",
                             path=path)
        if self.relation_at_eval == "odds" and "relation" not in self.features:
            raise InputError("model.pointer.relation_at_eval=odds replaces the pointer's 'relation' term in evaluation; "
                             f"model.pointer.features ({list(self.features)}) has none", path=path)
        if self.loss_weight < 0:
            raise InputError(f"model.pointer.loss_weight is {self.loss_weight}; expected >= 0", path=path)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str | Path | None = None) -> "PointerConfig":
        if not isinstance(d, dict):
            raise InputError(f"model.pointer must be a mapping of fields, not {d!r}", path=path)
        cfg = from_dict(cls, d, Source(path), prefix="model.pointer.")
        cfg.validate(path)
        return cfg

    @staticmethod
    def help() -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(PointerConfig)}
