"""MarKG entity and relation prediction (stage 1 for MARS), MarT protocol.

**MarKG pretraining** (MarT ``run_pretrain``): per triple (h, r, t) an entity-prediction example
"(h, r, ?)" ranked over all entities and a relation-prediction example "(h, ?, t)" ranked over all
relations, each with the MR-MKG prefix: the subgraph retrieved for the head entity, *minus the
triple being predicted* (and, for relation prediction, every edge between h and t), so the answer
is never handed to the model; the head's image as visual token when it has one. ``prompt=kg_text_graph``
also writes the top ``text_triples`` triples of that reduced subgraph as "Facts: ..." before the query
(entities as "name [E i]"), so that stage 1 sees the input form of the cumulative MARS rungs
(``kg_text_graph`` with ``fact_tokens``); it cannot leak the answer, as the facts come from the
subgraph after the removal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mrmkg.errors import InputError
from mrmkg.kg.subgraph import Subgraph
from mrmkg.metrics.ranking import ranking_metrics
from mrmkg.model import MRMKGExample
from mrmkg.tasks.base import GraphRankingTask
from mrmkg.tasks.knowledge import GraphContext, facts_prefix
from mrmkg.tasks.mars.task import GRAPH_PROMPTS


@dataclass
class MarKGTaskConfig:
    graph: str = field(default="", metadata={"help": "Built MarKG graph folder with its index."})
    dev_triples: int = field(default=500, metadata={"help": "Triples held out (seeded) for the dev metrics of both sub-tasks."})
    max_triples: int = field(default=0, metadata={"help": "Use only this many training triples (seeded sample; 0 = all)."})
    relation_prediction: bool = field(default=True, metadata={"help": "Also make the (h, ?, t) relation-prediction example per triple."})
    prompt: Literal["question", "kg_graph", "kg_text_graph"] = field(default="kg_graph", metadata={
        "help": "kg_graph: with the head's retrieved subgraph; question: the triple text alone; kg_text_graph: the "
                "subgraph and its top text_triples triples written as facts (the cumulative MARS rungs' input)."})
    text_triples: int = field(default=15, metadata={"help": "kg_text_graph: triples of the subgraph written as facts."})
    use_images: bool = field(default=True, metadata={"help": "Give the head's image features as a visual token when it has an image."})
    n: int = field(default=10, metadata={"help": "Retrieval first stage top-n."})
    N: int = field(default=10, metadata={"help": "Triples kept in the subgraph."})
    images_per_entity: int = field(default=1, metadata={"help": "Image nodes attached per subgraph entity."})



class MarKGPretrainTask(GraphRankingTask):
    """Stage 1: MarKG entity and relation prediction (see the module docstring)."""

    name = "markg"
    config_class = MarKGTaskConfig

    def __init__(self, config: MarKGTaskConfig, model_args: dict | None = None, seed: int = 0):
        super().__init__(config, model_args, seed)
        self.ctx = GraphContext(config.graph, config.n, config.N, config.images_per_entity)
        self.kg = self.ctx.kg
        if config.prompt == "kg_text_graph" and config.text_triples > config.N:
            raise InputError(f"field 'task_args.text_triples': {config.text_triples} facts cannot come from a subgraph of "
                             f"N = {config.N} triples; expected text_triples <= N")
        T = self.kg.num_triples
        perm = np.random.default_rng(seed).permutation(T)
        dev = min(config.dev_triples, max(T - 1, 0))
        self.dev_ids = np.sort(perm[:dev])
        train = perm[dev:]
        if config.max_triples:
            train = train[: config.max_triples]
        self.train_ids = np.sort(train)

    def make_examples(self, triple_ids: np.ndarray):
        """Two examples per triple (entity then relation prediction), ``meta['kind']`` says which."""
        kg, ctx, cfg = self.kg, self.ctx, self.config
        tri = kg.triples[triple_ids]
        sgs = [None] * len(tri)
        if cfg.prompt in GRAPH_PROMPTS and len(tri):
            sgs = ctx.retriever.retrieve_vectors_batch([ctx.entity_vec[h] for h in tri[:, 0].tolist()], None,
                                                       [kg.entity_names[h] for h in tri[:, 0].tolist()])
        out = []
        for tid, (h, r, t), sg in zip(triple_ids.tolist(), tri.tolist(), sgs):
            im = ctx.first_image(h) if cfg.use_images else None
            tokens = None if im is None else ctx.image_vec[im][None, :]
            hn = f"{kg.entity_names[h]} [E{h}]"
            ent_sg = None if sg is None else _without(kg, sg, lambda hh, rr, tt: (hh, rr, tt) == (h, r, t), t,
                                                        cfg.images_per_entity)
            out.append(MRMKGExample(prompt=self._facts(ent_sg) + f"{hn} {kg.relation_names[r]} [R{r}]", answer=t,
                                    subgraph=ent_sg, image_tokens=tokens, meta={"kind": "entity", "triple": tid}))
            if cfg.relation_prediction:
                rel_sg = None if sg is None else _without(kg, sg, lambda hh, rr, tt: {hh, tt} == {h, t}, -1,
                                                            cfg.images_per_entity)
                tn = f"{kg.entity_names[t]} [E{t}]"
                out.append(MRMKGExample(prompt=self._facts(rel_sg) + f"{hn} and {tn} are related by", answer=r,
                                        subgraph=rel_sg, image_tokens=tokens, meta={"kind": "relation", "triple": tid}))
        return out

    def _facts(self, sg) -> str:
        """``kg_text_graph``: the top ``text_triples`` triples of ``sg`` as facts with entity tokens; "" otherwise."""
        if self.config.prompt != "kg_text_graph" or sg is None:
            return ""
        return facts_prefix(self.kg, sg.triple_ids[: self.config.text_triples], entity_tokens=True)

    @property
    def uses_graph(self) -> bool:
        return self.config.prompt in GRAPH_PROMPTS

    def make_train_examples(self) -> list:
        return self.make_examples(self.train_ids)

    def collate(self, examples):
        ent = [e for e in examples if e.meta["kind"] == "entity"]
        rel = [e for e in examples if e.meta["kind"] == "relation"]
        out = []
        if ent:
            out.append(self.model.collate(ent, rank_over="entity"))
        if rel:
            # the reserved "image of" relation is never a triple's relation: rank the real ones
            out.append(self.model.collate(rel, candidates=np.arange(self.kg.num_relations - 1), rank_over="relation"))
        return out

    def rank_batch(self, examples):
        (batch,) = self.collate(examples)  # Pipeline batches hold one kind: see evaluate
        return batch, None

    def candidate(self, batch, column: int) -> tuple[str, str]:
        if batch.rank_over == "relation":
            return self.kg.relation_ids[column], self.kg.relation_names[column]
        return self.kg.entity_ids[column], self.kg.entity_names[column]

    def evaluate(self, model, batch_size: int = 16) -> dict:
        """Entity and relation Hits@k / MRR on the held-out triples (through the Pipeline, one kind at a time)."""
        from mrmkg.pipeline import Pipeline

        examples = self.make_examples(self.dev_ids)
        pipe, out = Pipeline(self, model), {}
        for kind in ("entity", "relation"):
            part = [e for e in examples if e.meta["kind"] == kind]
            if part:
                ranks = [a.rank for a in pipe.predict(part, top_k=1, batch_size=batch_size)]
                out.update({f"{kind}/{k}": v for k, v in ranking_metrics(ranks).items()})
        return out


def _without(kg, sg, drop, hide: int, images_per_entity: int):
    """``sg`` without the triples for which ``drop(h, r, t)`` is true, and without entity ``hide``
    as a bare seed (it stays only if a kept triple reaches it): the answer must not leak."""
    ids = sg.triple_ids
    tri = kg.triples[ids] if ids.size else np.zeros((0, 3), np.int64)
    keep = np.array([not drop(h, r, t) for h, r, t in tri.tolist()], dtype=bool)
    seeds = sg.seeds[sg.seeds != hide]
    if keep.all() and seeds.size == sg.seeds.size:
        return sg
    return Subgraph.from_triples(kg, ids[keep], sg.triple_scores[keep], seeds=seeds, query=sg.query,
                                 images_per_entity=images_per_entity)
