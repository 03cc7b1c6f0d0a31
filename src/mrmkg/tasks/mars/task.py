"""MARS analogical reasoning (stage 2), MarT protocol.

**MARS** (Zhang et al., ICLR 2023). A record ``{"example": [h, t], "question": q, "answer": a,
"relation": r, "mode": m}`` asks: *h is to t as q is to ?*. The input is the example pair and the
question entity (plus, per ``prompt``, knowledge about the question entity); the output is a
ranking of the 2,063 analogy entities. The gold ``relation`` is **never** an input (MarT hides it).

* Modes (MarT): 0 = example pair as text, question as image; 1 = example pair as images, question
  as text; 2 = example head as image, example tail as text, question as image. An *image-side*
  entity is given by its image features when the graph has an image of it (``use_images``): one
  visual token per image-side entity, the pooled frozen-encoder feature of its first image from the
  graph's index, in prompt order, and the prompt names it "image 1", "image 2", ...; otherwise by
  a text stand-in (``standin`` = its name, or name and description). Every prediction records which
  (``sides``), and evaluation reports the counts. A graph built with ``mrmkg kg build --image-standin
  description`` has one stand-in image per entity (its description, text-encoded): its visual tokens
  are reported as ``image-standin:description``, and its image nodes give the alignment loss anchors.
* Prompt variants (``prompt``; the ablation ladder of issue 4): ``question`` = the analogy alone;
  ``kg_text`` = the top ``text_triples`` retrieved triples written into the prompt as sentences;
  ``kg_graph`` = the retrieved subgraph through the graph encoder and knowledge adapter, in place of
  the facts (paper Table 3: the MMKG *replaces* the text KG); ``kg_text_graph`` = both, the ladder
  read cumulatively (rung iii = rung ii + the graph): the facts are the top ``text_triples`` of the
  subgraph's ``N`` triples, so every fact is among the triples a prediction lists.
* Text-side entities are written as their name followed by their entity token ``[E i]`` (MarT adds
  one token per MarKG entity; ``entity_tokens``). A text stand-in for an image-side entity carries
  no entity token unless ``standin_token`` (the token would carry what the image is meant to).
* Analogy memory (``memory``; not in the paper, off by default): the training split's analogy pairs
  ``(x, relation, y)`` -- every example pair and every (question, answer) -- are a store of facts
  the MMKG does not have (MARS answers are never MMKG triples of the question). With it on, the
  question entity's pairs join its subgraph as memory edges (``Subgraph.with_memory``: question
  -relation-> partner, weighted by how often the pair was seen; at most ``memory_max``), so the
  graph encoder, the adapter and the graph pointer see them and predictions list them. Only the
  training file feeds the memory, and a question shown as a real image gets none:
  the memory is keyed by the entity, which the image alone does not name. A training example's own answer
  is always in its memory, while on dev it is for 37.6 % of examples; ``memory_keep_gold`` < 1
  drops it (seeded per example) to match: worse when the pointer's bonus is added to the entity
  head; with ``model.pointer.mode=first`` 1.0 and 0.4 measured within noise (docs/results.md).
* Example copy (``copy_node``; not in the paper, off by default): every MARS subgraph knows its
  example pair (``Subgraph.example``). When the question is the example head (``h : t :: h : ?``,
  4.8 % of dev), the answer is the example tail; ``copy_node`` adds it as a node so the graph
  pointer's ``copy`` feature can pick it (a question image of the same entity is its same first
  picture, so this holds in every mode). MARS train has almost no such examples (5 of 10,641), so
  ``copy_augment`` turns a fraction of training examples into their copy form.
* Frequency (``model.pointer.features`` with ``frequency``; not in the paper): the task gives the
  graph pointer how often each entity occurs in the training file (recomputed from ``train_file``
  when a model is built or loaded, like the memory), a prior whose strength the pointer learns
  (measured worse on MARS dev at one epoch, docs/results.md).
* Relation odds (``model.pointer.features`` with ``relation_odds``; not in the paper): for every
  relation type and direction, the smoothed log-odds that a MarKG neighbour of a training question
  reached through it is that question's answer (:meth:`MarsTask.train_relation_odds`), a fixed
  table the pointer weighs with one learned weight instead of learning ~2 x 193 relation weights;
  or, with ``model.pointer.relation_at_eval=odds``, that evaluation uses in place of the learned relation
  weights (weight 1; measured better in every seed, docs/results.md session 8).
* Retrieval (paper A.7: "retrieved from the question entity"): the query vector is the question
  entity's frozen embedding from the index (the same vector its text would get), or its image
  feature when the question is shown as an image; ``retrieval_query=question+example`` adds the
  example pair's vectors (mean, re-normalised).
**Metrics** (:mod:`mrmkg.metrics.ranking`, MarT): Hits@1/3/5/10 and MRR over every example of the
split file, unfiltered, over all candidates.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from mrmkg.errors import InputError
from mrmkg.metrics.ranking import TIE_RULE, ranking_metrics
from mrmkg.model import MRMKGExample
from mrmkg.tasks.base import GraphRankingTask
from mrmkg.tasks.knowledge import GraphContext, facts_prefix, resolve_entity, top_triples, unit_vector
from mrmkg.tasks.mars.data import IMAGE_SIDES, MarsRecord, load_candidates, load_mars_split, resolve_path

#: prompt variants that write retrieved facts as text / that give the model the subgraph
FACT_PROMPTS = ("kg_text", "kg_text_graph")
GRAPH_PROMPTS = ("kg_graph", "kg_text_graph")


@dataclass
class MarsTaskConfig:
    graph: str = field(default="", metadata={"help": "Built MarKG graph folder with its index (`mrmkg kg build <markg> -o DIR`)."})
    data_dir: str = field(default="", metadata={"help": "MARS folder (train.json, dev.json, analogy_entities.txt); default: the shared data's mars/."})
    train_file: str = field(default="train.json", metadata={"help": "Training split (relative to data_dir, or a path)."})
    dev_file: str = field(default="dev.json", metadata={"help": "Split evaluated during/after training (relative to data_dir, or a path)."})
    candidates_file: str = field(default="analogy_entities.txt", metadata={"help": "Candidate answer entities (the 2,063 analogy entities)."})
    prompt: Literal["question", "kg_text", "kg_graph", "kg_text_graph"] = field(default="kg_graph", metadata={
        "help": "question: the analogy alone; kg_text: + retrieved triples written as text; kg_graph: + the "
                "retrieved subgraph through the graph encoder and knowledge adapter (no text facts); "
                "kg_text_graph: the text facts and the subgraph."})
    standin: Literal["name", "name+description"] = field(default="name", metadata={
        "help": "Text stand-in for an image-side entity without an image: its name, or 'name (description)'."})
    standin_token: bool = field(default=False, metadata={"help": "Also give a text stand-in its entity token [E i]."})
    entity_tokens: bool = field(default=True, metadata={"help": "Write text-side entities as 'name [E i]' (trainable entity token) rather than the name alone."})
    use_images: bool = field(default=True, metadata={"help": "Give image-side entities by their image features when the graph has an image of them."})
    retrieval_query: Literal["question", "question+example"] = field(default="question", metadata={
        "help": "Retrieval query: the question entity (paper A.7), or the mean of question and example-pair vectors."})
    n: int = field(default=10, metadata={"help": "Retrieval first stage: top-n triples whose entities seed the subgraph."})
    N: int = field(default=10, metadata={"help": "Triples kept in the subgraph (paper: 10 for MARS)."})
    images_per_entity: int = field(default=1, metadata={"help": "Image nodes attached per subgraph entity (when the graph has images)."})
    text_triples: int = field(default=15, metadata={"help": "kg_text, kg_text_graph: retrieved triples written into the prompt."})
    fact_tokens: bool = field(default=False, metadata={
        "help": "kg_text, kg_text_graph: write each fact's head and tail as 'name [E i]', with the same trainable entity tokens the "
                "question's entities and the ranking head use, so an answer named in a fact is one token away from "
                "its score (off: names only)."})
    memory: bool = field(default=False, metadata={
        "help": "Not in the paper: add the question entity's analogy pairs from the training file to its subgraph as "
                "memory edges (graph prompts only; see the module docstring)."})
    memory_keep_gold: float = field(default=1.0, metadata={
        "help": "Training examples keep their own (question, answer) memory edges with this probability. Measured on MARS "
                "dev at one epoch with model.pointer.mode=add: 1.0 gives Hits@1 0.343 / MRR 0.421, 0.4 (matching dev's "
                "37.6% memory coverage) 0.288 / 0.348; with pointer.mode=first 1.0 gave 0.396 / 0.485, 0.4 0.392 / 0.478."})
    copy_keep_gold: float = field(default=1.0, metadata={
        "help": "memory_keep_gold for training examples in copy form (h : t :: h : ?, copy_augment): the probability "
                "that they keep the memory edge to their answer t. At 1.0 a trained copy is always also a memory "
                "partner, while only 49% of MARS dev copies have their pair in the training memory, and the rest can "
                "lose to a frequent memory partner; 0.5 matches dev (measured: dev copies 0.878 -> 0.96-1.00 Hits@1 over "
                "3 seeds, docs/results.md session 6)."})
    copy_node: bool = field(default=False, metadata={
        "help": "When the question is the example head (h : t :: h : ?, 4.8% of MARS dev), add the example tail to the "
                "subgraph as a node the graph pointer can pick (feature 'copy' of model.pointer.features)."})
    copy_augment: float = field(default=0.0, metadata={
        "help": "Probability that a training example is replaced by its copy form h : t :: h : ? -> t (seeded). MARS "
                "train has 5 such examples (0.05%), dev 4.8%, so the pointer's 'copy' weight cannot be learnt without. Dev, "
                "one epoch, nodes first: 0.05 gave Hits@1 0.396 / 0.395 (seeds 0, 1), 0.1 0.406 / 0.391 / 0.400 (seeds 0-2)."})
    memory_max: int = field(default=10, metadata={"help": "Memory edges per question at most (most frequent first)."})
    max_train_examples: int = field(default=0, metadata={"help": "Use only the first this many training examples (0 = all)."})
    max_eval_examples: int = field(default=0, metadata={"help": "Evaluate during training on the first this many dev examples (0 = all)."})



class MarsTask(GraphRankingTask):
    """MARS: rank the candidate entities for ``h : t :: q : ?`` (see the module docstring)."""

    name = "mars"
    config_class = MarsTaskConfig

    def __init__(self, config: MarsTaskConfig, model_args: dict | None = None, seed: int = 0):
        from mrmkg.paths import shared_data_dir

        if not 0.0 <= config.memory_keep_gold <= 1.0 or config.memory_max < 0:
            raise InputError("task_args.memory_keep_gold must be in [0, 1] and task_args.memory_max >= 0, got "
                             f"{config.memory_keep_gold!r} and {config.memory_max!r}")
        if not 0.0 <= config.copy_keep_gold <= 1.0:
            raise InputError(f"task_args.copy_keep_gold must be in [0, 1], got {config.copy_keep_gold!r}")
        if not 0.0 <= config.copy_augment <= 1.0:
            raise InputError(f"task_args.copy_augment must be in [0, 1], got {config.copy_augment!r}")
        super().__init__(config, model_args, seed)
        base = Path(config.data_dir) if config.data_dir else (shared_data_dir() or Path(".")) / "mars"
        self.data_dir = base
        self.ctx = GraphContext(config.graph, config.n, max(config.N, config.text_triples), config.images_per_entity)
        self.kg = self.ctx.kg
        self.candidates = load_candidates(resolve_path(base, config.candidates_file), self.kg)
        self._memory = None
        self._dev = None

    # -- prompts
    def _mention(self, e: int, image_side: bool, image_no: int | None) -> tuple[str, str]:
        """Text for entity ``e`` and how it was represented ('text', 'image', 'image-standin:<kind>' (a
        visual token from a graph built with ``--image-standin``), 'standin:<kind>' (text in the prompt))."""
        name = self.kg.entity_names[e]
        if image_side and image_no is not None:
            return f"image {image_no}", (f"image-standin:{self.kg.image_standin}" if self.kg.image_standin else "image")
        if image_side:
            text = name
            if self.config.standin == "name+description" and self.kg.entity_descriptions[e]:
                text = f"{name} ({self.kg.entity_descriptions[e]})"
            if self.config.standin_token and self.config.entity_tokens:
                text = f"{text} [E{e}]"
            return text, f"standin:{self.config.standin}"
        return (f"{name} [E{e}]" if self.config.entity_tokens else name), "text"

    @functools.cached_property
    def train_records(self) -> list[MarsRecord]:
        """``train_file``, parsed once: it feeds the training examples, the memory and the frequencies."""
        return load_mars_split(resolve_path(self.data_dir, self.config.train_file), self.kg)

    def memory(self) -> dict[int, list[tuple[int, int, float]]]:
        """Analogy memory from ``train_file``: entity -> ``[(relation, partner, count)]``, most seen first."""
        if self._memory is None:
            counts: dict[int, Counter] = {}
            for r in self.train_records:
                if r.relation is None:
                    raise InputError("field 'relation' is missing (the analogy memory needs the training relation)",
                                     path=r.path, line=r.line)
                try:
                    rel = self.kg.relation_index(r.relation)
                except KeyError:
                    raise InputError(f"field 'relation': {r.relation!r} is not a relation of the graph",
                                     path=r.path, line=r.line) from None
                for x, y in ((r.head, r.tail), (r.question, r.answer)):
                    counts.setdefault(x, Counter())[(rel, y)] += 1
            self._memory = {x: [(rel, y, float(n)) for (rel, y), n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
                            for x, c in counts.items()}
        return self._memory

    def _memory_edges(self, r: MarsRecord, train: bool) -> list[tuple[int, int, int, float]]:
        cfg = self.config
        pairs = self.memory().get(r.question, [])
        keep = cfg.copy_keep_gold if r.question == r.head else cfg.memory_keep_gold
        if train and pairs and np.random.default_rng([self.seed, r.line]).random() >= keep:
            pairs = [p for p in pairs if p[1] != r.answer]
        return [(r.question, rel, y, n) for rel, y, n in pairs[: cfg.memory_max]]

    def copy_augmented(self, records: Sequence[MarsRecord]) -> list[MarsRecord]:
        """Training records where each one, with p = ``copy_augment`` (seeded by its line), asks its
        own example back: ``h : t :: h : ?`` with answer ``t``."""
        p = self.config.copy_augment
        return [dataclasses.replace(r, question=r.head, answer=r.tail)
                if p and np.random.default_rng([self.seed, r.line, 1]).random() < p else r for r in records]

    def make_examples(self, records: Sequence[MarsRecord], train: bool = False):
        """``MRMKGExample`` per record (subgraphs retrieved in one batch). ``train``: the records
        are training examples (their own answers leave the analogy memory, see ``memory_keep_gold``)."""
        cfg, ctx = self.config, self.ctx
        plans = []
        for r in records:
            sides = IMAGE_SIDES[r.mode]
            tokens, mentions, kinds = [], [], []
            for e, img_side in zip((r.head, r.tail, r.question), sides):
                im = ctx.first_image(e) if (img_side and cfg.use_images) else None
                if im is not None:
                    tokens.append(ctx.image_vec[im])
                text, kind = self._mention(e, img_side, len(tokens) if im is not None else None)
                mentions.append(text)
                kinds.append(kind)
            plans.append((r, mentions, kinds, tokens))
        subgraphs = [None] * len(records)
        if cfg.prompt != "question":
            subgraphs = self._retrieve(records)
        out = []
        for (r, (h, t, q), kinds, tokens), sg in zip(plans, subgraphs):
            if cfg.prompt in GRAPH_PROMPTS and sg is not None and cfg.N < sg.triple_ids.size:
                sg = top_triples(self.kg, sg, cfg.N, cfg.images_per_entity)
            meta = {"id": r.id, "sides": kinds, "triples": [] if sg is None else sg.triple_ids.tolist(),
                    "triple_scores": [] if sg is None else [round(float(s), 6) for s in sg.triple_scores.tolist()]}
            prompt = f"Analogy: {h} is to {t} as {q} is to"
            if cfg.prompt in FACT_PROMPTS:  # facts are always among the triples the prediction lists
                prompt = facts_prefix(self.kg, sg.triple_ids[: cfg.text_triples], cfg.fact_tokens) + prompt
            if cfg.prompt in GRAPH_PROMPTS and sg is not None:
                sg = dataclasses.replace(sg, focus=np.array([r.question], dtype=np.int64)).with_example(r.head, r.tail, cfg.copy_node)
                if cfg.memory and kinds[2] != "image":  # an image does not say which entity it is
                    sg = sg.with_memory(self._memory_edges(r, train))
            meta["memory"] = [] if sg is None else [[self.kg.entity_ids[t], self.kg.relation_ids[rel], c]
                                                    for _, rel, t, c in sg.memory_edges]
            copied = [] if sg is None else sg.node_ref[sg.copy_mask].tolist()
            meta["copy"] = self.kg.entity_ids[copied[0]] if copied else None
            out.append(MRMKGExample(prompt=prompt, answer=r.answer, subgraph=sg if cfg.prompt in GRAPH_PROMPTS else None,
                                    image_tokens=np.stack(tokens) if tokens else None, meta=meta))
        return out

    def _retrieve(self, records: Sequence[MarsRecord]):
        ctx, cfg = self.ctx, self.config
        text_vecs, image_vecs, queries = [], [], []
        for r in records:
            q_img = IMAGE_SIDES[r.mode][2]
            im = ctx.first_image(r.question) if (q_img and cfg.use_images) else None
            v = ctx.entity_vec[r.question]
            if cfg.retrieval_query == "question+example":
                v = ctx.entity_vec[r.head] + ctx.entity_vec[r.tail] + v
            text_vecs.append(None if im is not None else unit_vector(v))
            image_vecs.append(None if im is None else ctx.image_vec[im])
            queries.append(self.kg.entity_names[r.question])
        return ctx.retriever.retrieve_vectors_batch(text_vecs, image_vecs, queries)

    # -- the model
    @property
    def uses_graph(self) -> bool:
        return self.config.prompt in GRAPH_PROMPTS

    def attach(self, model):
        self._give_train_statistics(model)
        return super().attach(model)

    def _give_train_statistics(self, model) -> None:
        """The pointer's ``frequency`` and ``relation_odds`` features read statistics of the training
        file (not saved with the weights, like the analogy memory: all come from ``train_file``)."""
        pointer = model.graph_pointer
        if pointer is not None and pointer.frequency_weight is not None:
            pointer.set_frequency(self.train_frequency())
        if pointer is not None and pointer.needs_relation_odds:
            pointer.set_relation_odds(self.train_relation_odds())

    def train_frequency(self) -> np.ndarray:
        """``[num_entities]``: how often each entity occurs in ``train_file``'s records (example
        head and tail, question, answer)."""
        counts = np.zeros(len(self.kg.entity_ids), dtype=np.float64)
        for r in self.train_records:
            np.add.at(counts, [r.head, r.tail, r.question, r.answer], 1.0)
        return counts

    def train_relation_odds(self, strength: float = 10.0) -> np.ndarray:
        """``[2R]``: per relation ``r``, at ``[r]`` for the edges question -r-> candidate and at
        ``[R + r]`` for candidate -r-> question, ``log(odds_r / odds_0)``, where ``odds_r`` is the
        odds that such a MarKG neighbour of a ``train_file`` question is its answer, smoothed
        towards the rate ``p_0`` of all (relation, direction) pairs with ``strength`` pseudo-edges:
        ``(pos_r + strength p_0) / (neg_r + strength (1 - p_0))``. A relation never seen next to a
        training question gets 0, one that leads to answers more often than average > 0. Only
        candidates count as neighbours. The training examples' own answers are counted (no
        leave-one-out): with thousands of edges for the common relations and the smoothing for the
        rare ones, a single example moves a value little."""
        kg, R = self.kg, self.kg.num_relations
        is_cand = np.zeros(kg.num_entities, dtype=bool)
        is_cand[self.candidates] = True
        pos, tot = np.zeros(2 * R), np.zeros(2 * R)
        for r in self.train_records:
            for triple_ids, other, shift in ((kg.out_triples(r.question), 2, 0), (kg.in_triples(r.question), 0, R)):
                t = kg.triples[triple_ids]
                t = t[is_cand[t[:, other]]]
                np.add.at(tot, t[:, 1] + shift, 1.0)
                np.add.at(pos, t[t[:, other] == r.answer, 1] + shift, 1.0)
        if not 0 < pos.sum() < tot.sum():
            return np.zeros(2 * R)
        p0 = pos.sum() / tot.sum()
        odds = (pos + strength * p0) / (tot - pos + strength * (1 - p0))
        return np.log(odds) - np.log(p0 / (1 - p0))

    def make_train_examples(self) -> list:
        recs = self.train_records
        if self.config.max_train_examples:
            recs = recs[: self.config.max_train_examples]
        return self.make_examples(self.copy_augmented(recs), train=True)

    def collate(self, examples):
        return [self.model.collate(examples, candidates=self.candidates, rank_over="entity")]

    def rank_batch(self, examples):
        return self.model.collate(examples, candidates=self.candidates, rank_over="entity"), None

    def candidate(self, batch, column: int) -> tuple[str, str]:
        e = int(self.candidates[column])
        return self.kg.entity_ids[e], self.kg.entity_names[e]

    def predict(self, model, records: Sequence[MarsRecord], batch_size: int = 16, progress: bool = False,
                examples=None) -> list[dict]:
        """Rank the candidates for every record (through :class:`mrmkg.pipeline.Pipeline`); one
        prediction dict per record, in order: ``id``, ``gold``, ``rank``, ``top10`` ([entity id,
        score]), ``retrieved`` ([triple id, score]), ``memory``, ``copy``, ``mode``, ``sides``, ``tied``.
        ``examples``: the records' prepared examples, when the caller has them (retrieval is skipped)."""
        from mrmkg.pipeline import Pipeline

        examples = self.make_examples(records) if examples is None else examples
        answers = Pipeline(self, model).predict(examples, top_k=10, batch_size=batch_size, progress=progress)
        return [{"id": rec.id, "gold": self.kg.entity_ids[rec.answer], "rank": a.rank,
                 "top10": [[c.id, round(c.score, 6)] for c in a.candidates],
                 "retrieved": [[t, sc] for t, sc in zip(a.meta["triples"], a.meta["triple_scores"])],
                 "memory": a.meta["memory"], "copy": a.meta["copy"], "mode": rec.mode, "sides": a.meta["sides"],
                 "tied": a.tied}
                for a, rec in zip(answers, records)]

    def evaluate(self, model, batch_size: int = 16) -> dict:
        """Metrics on ``dev_file`` (its examples are built once and reused by later evaluations)."""
        if self._dev is None:
            recs = load_mars_split(resolve_path(self.data_dir, self.config.dev_file), self.kg)
            if self.config.max_eval_examples:
                recs = recs[: self.config.max_eval_examples]
            self._dev = (recs, self.make_examples(recs))
        recs, examples = self._dev
        preds = self.predict(model, recs, batch_size, examples=examples)
        out = ranking_metrics([p["rank"] for p in preds], tied=[p["tied"] for p in preds])
        out["image_sides"] = describe_sides(preds)
        return out

    def evaluate_split(self, pipe, split, batch_size: int = 16, progress: bool = False):
        """Every example of the MARS split file ``split`` (any path; None: ``dev_file``), in file order."""
        split = resolve_path(self.data_dir, self.config.dev_file) if split is None else Path(split)
        records = load_mars_split(split, self.kg)
        preds = self.predict(pipe.model, records, batch_size=batch_size, progress=progress)
        metrics = ranking_metrics([p["rank"] for p in preds], tied=[p["tied"] for p in preds])
        metrics.update({"split_file": str(split), "image_sides": describe_sides(preds), "tie_rule": TIE_RULE})
        return preds, metrics, {"split_file": str(split)}

    # -- a user's own analogy (mrmkg ask)
    def resolve_entity(self, text: str) -> int:
        """An entity given by id or by name (case-insensitive); InputError listing the matches when
        the name is unknown or ambiguous."""
        return resolve_entity(self.kg, text)

    def query_examples(self, queries, timer) -> list:
        """``head : tail :: question : ?`` analogies, asked in MarT mode 1 (the example pair on the
        image side, the question as text), as most training examples are: the pair is given by the
        graph's own images of its entities where it has them (e.g. MarKG's description stand-ins),
        else by text stand-ins, exactly as in training; the prediction's ``sides`` says which."""
        records = []
        for i, q in enumerate(queries):
            if q.analogy is None:
                raise InputError("a MARS checkpoint answers analogies: give one as --analogy \"head : tail :: question : ?\"")
            if q.image is not None:
                raise InputError("a MARS checkpoint takes no photo: its graph's images are the index's own "
                                 "(MarKG's are text stand-ins); give every entity by name or id in --analogy")
            h, t, x = (self.resolve_entity(s) for s in q.analogy)
            records.append(MarsRecord(id=f"ask-{i + 1}", head=h, tail=t, question=x, answer=None, mode=1,
                                      relation=None, path="<query>", line=i + 1))
        with timer("retrieve"):
            return self.make_examples(records)


def describe_sides(preds: Sequence[dict]) -> dict:
    """How image-side entities were represented across predictions: {'image': n, 'standin:name': n, ...}."""
    c = Counter(k for p in preds for k in p["sides"] if k != "text")
    return dict(sorted(c.items()))

