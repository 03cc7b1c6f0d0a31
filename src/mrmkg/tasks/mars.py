"""MARS analogical reasoning (stage 2) and MarKG entity/relation prediction (stage 1), MarT protocol.

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

**Metrics** (MarT): rank = 1 + number of candidates scored *strictly* higher than the gold, so ties
count in the gold's favour; Hits@k = mean(rank <= k) for k in 1, 3, 5, 10; MRR = mean(1 / rank);
over every example of the split file, unfiltered, over all candidates.

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

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from mrmkg.errors import InputError
from mrmkg.fileio import read_jsonl
from mrmkg.train import to_device

MODES = (0, 1, 2)
#: which of (example head, example tail, question) is shown as an image, per MarT mode
IMAGE_SIDES = {0: (False, False, True), 1: (True, True, False), 2: (True, False, True)}
HITS = (1, 3, 5, 10)
#: prompt variants that write retrieved facts as text / that give the model the subgraph
FACT_PROMPTS = ("kg_text", "kg_text_graph")
GRAPH_PROMPTS = ("kg_graph", "kg_text_graph")


# ---------------------------------------------------------------------------------- data files
@dataclass
class MarsRecord:
    """One MARS example; entity fields are graph indices, ``line`` its 1-based line in ``path``."""

    id: str
    head: int
    tail: int
    question: int
    answer: int
    mode: int
    relation: str | None
    path: str
    line: int


def _entity(kg, value, path, line, name) -> int:
    if not isinstance(value, str) or not value:
        raise InputError(f"field '{name}': expected an entity id string, got {value!r}", path=path, line=line)
    try:
        return kg.entity_index(value)
    except KeyError:
        raise InputError(f"field '{name}': entity {value!r} is not in the graph", path=path, line=line) from None


def load_mars_split(path: str | Path, kg) -> list[MarsRecord]:
    """Read a MARS JSON-Lines split (any file of that format), validating every field.

    Raises InputError naming ``file:line`` and the field for: invalid JSON, a non-object line,
    missing/ill-typed ``example`` (two entity ids), ``question``, ``answer``, ``mode`` (0/1/2), or an
    entity id the graph does not have. Blank lines are skipped. The record id is ``<stem>-<line>``
    unless the record has an ``id`` field.
    """
    p = Path(path)
    out = []
    for ln, r in read_jsonl(p, "MARS split file", "one JSON object per line (a MARS record)"):
        for key in ("example", "question", "answer", "mode"):
            if key not in r:
                raise InputError(f"field '{key}' is missing", path=p, line=ln)
        ex = r["example"]
        if not isinstance(ex, list) or len(ex) != 2:
            raise InputError(f"field 'example': expected a list of two entity ids, got {ex!r}", path=p, line=ln)
        mode = r["mode"]
        if isinstance(mode, bool) or mode not in MODES:
            raise InputError(f"field 'mode': expected 0, 1 or 2, got {mode!r}", path=p, line=ln)
        rel = r.get("relation")
        if rel is not None and not isinstance(rel, str):
            raise InputError(f"field 'relation': expected a string, got {rel!r}", path=p, line=ln)
        out.append(MarsRecord(
            id=str(r.get("id", f"{p.stem}-{ln}")),
            head=_entity(kg, ex[0], p, ln, "example[0]"), tail=_entity(kg, ex[1], p, ln, "example[1]"),
            question=_entity(kg, r["question"], p, ln, "question"), answer=_entity(kg, r["answer"], p, ln, "answer"),
            mode=int(mode), relation=rel, path=str(p), line=ln))
    if not out:
        raise InputError("MARS split file has no examples", path=p)
    return out


def load_candidates(path: str | Path, kg) -> np.ndarray:
    """``analogy_entities.txt`` (one entity id per line) -> graph indices ``int64 [C]``."""
    p = Path(path)
    if not p.is_file():
        raise InputError("candidate entity file not found", path=p)
    ids, seen = [], set()
    for ln, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        e = raw.strip()
        if not e:
            continue
        if e in seen:
            raise InputError(f"candidate {e!r} is listed twice", path=p, line=ln)
        seen.add(e)
        ids.append(_entity(kg, e, p, ln, "entity"))
    if not ids:
        raise InputError("candidate entity file is empty", path=p)
    return np.asarray(ids, dtype=np.int64)


# ---------------------------------------------------------------------------------- metrics
def gold_ranks(scores: torch.Tensor | np.ndarray, gold_pos: Sequence[int]) -> np.ndarray:
    """``scores [B, C]``, gold column per row -> rank = 1 + #candidates scored strictly higher
    (ties count in the gold's favour)."""
    s = torch.as_tensor(scores).float().cpu()
    g = torch.as_tensor(np.asarray(gold_pos, dtype=np.int64))
    gold = s[torch.arange(s.shape[0]), g]
    return (1 + (s > gold[:, None]).sum(1)).numpy().astype(np.int64)


def ranking_metrics(ranks: Sequence[int]) -> dict:
    """Hits@1/3/5/10, MRR and n over ``ranks`` (1-based)."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no ranks to score")
    out = {f"hits@{k}": float((r <= k).mean()) for k in HITS}
    out["mrr"] = float((1.0 / r).mean())
    out["n"] = int(r.size)
    return out


# ---------------------------------------------------------------------------------- config
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


# ---------------------------------------------------------------------------------- shared pieces
def facts_prefix(kg, triple_ids: np.ndarray, entity_tokens: bool) -> str:
    """Triples ``triple_ids`` (shape (k,)) as the prompt prefix "Facts: a; b.\\n" ("" for none): each
    "head relation tail" (``kg.verbalise``), or with ``entity_tokens`` "name [E i] relation name [E j]",
    the entities' trainable tokens, so a fact names the candidates the model ranks."""
    if entity_tokens:
        names, rels = kg.entity_names, kg.relation_names
        facts = [f"{names[h]} [E{h}] {rels[r]} {names[t]} [E{t}]" for h, r, t in kg.triples[triple_ids].tolist()]
    else:
        facts = [kg.verbalise(int(i)) for i in triple_ids]
    return "Facts: " + "; ".join(facts) + ".\n" if facts else ""


def _resolve(base: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() or p.exists() or not str(base) else base / p


class _GraphContext:
    """The graph, its index and a retriever; entity vectors and first images for queries."""

    def __init__(self, graph: str, n: int, N: int, images_per_entity: int):
        from mrmkg.kg.retrieve import RetrievalConfig, Retriever, open_graph

        if not graph:
            raise InputError("field 'task_args.graph': the built MarKG graph folder is required "
                             "(make it with `mrmkg kg build <markg folder> -o DIR`)")
        self.graph = graph
        self.kg, self.index = open_graph(graph)
        self.retriever = Retriever(self.kg, self.index, RetrievalConfig(n=n, N=N, images_per_entity=images_per_entity))
        self.entity_vec = np.asarray(self.index.entity_emb, dtype=np.float32)
        self.image_vec = np.asarray(self.index.image_emb, dtype=np.float32)

    def first_image(self, e: int) -> int | None:
        imgs = self.kg.images_of(e)
        return int(imgs[0]) if imgs.size and self.image_vec.shape[0] else None


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


class TaskModel(torch.nn.Module):
    """Sums an MR-MKG model's losses over several sub-batches (one per ranking table: a batch can
    rank entities or relations, not both), weighted by their sizes. ``forward(batches)`` with a
    list of ``MRMKGBatch``; saving delegates to the wrapped model."""

    def __init__(self, mrmkg):
        super().__init__()
        self.mrmkg = mrmkg

    def forward(self, batches):
        from types import SimpleNamespace

        total = sum(len(b) for b in batches)
        loss = sum(self.mrmkg(b).loss * (len(b) / total) for b in batches)
        return SimpleNamespace(loss=loss)

    def save_pretrained(self, directory) -> None:
        self.mrmkg.save_pretrained(directory)


def _build_mrmkg(ctx: _GraphContext, model_args: dict, seed: int, default_use_kg: bool, default_use_image: bool):
    from mrmkg.encoders.registry import load_llm
    from mrmkg.model import MRMKG, KGFeatures, MRMKGConfig

    args = {"seed": seed, "use_kg": default_use_kg, "use_image": default_use_image, **model_args,
            "kg": ctx.graph, "entity_head": True}
    cfg = MRMKGConfig.from_dict(args)
    llm = load_llm(cfg.llm, progress=False)
    features = KGFeatures.from_index(ctx.index)
    return MRMKG(cfg, llm, features, image_token_dim=ctx.image_vec.shape[1] if ctx.image_vec.shape[1] else None,
                 entity_names=ctx.kg.entity_names, relation_names=ctx.kg.relation_names, report=False)


# ---------------------------------------------------------------------------------- MARS
class MarsTask:
    """MARS as a :class:`mrmkg.train.Task`; also used by ``mrmkg eval`` (:meth:`predict`)."""

    def __init__(self, config: MarsTaskConfig, model_args: dict | None = None, seed: int = 0):
        from mrmkg.paths import shared_data_dir

        if not 0.0 <= config.memory_keep_gold <= 1.0 or config.memory_max < 0:
            raise InputError("task_args.memory_keep_gold must be in [0, 1] and task_args.memory_max >= 0, got "
                             f"{config.memory_keep_gold!r} and {config.memory_max!r}")
        if not 0.0 <= config.copy_keep_gold <= 1.0:
            raise InputError(f"task_args.copy_keep_gold must be in [0, 1], got {config.copy_keep_gold!r}")
        if not 0.0 <= config.copy_augment <= 1.0:
            raise InputError(f"task_args.copy_augment must be in [0, 1], got {config.copy_augment!r}")
        self.config = config
        self.model_args = dict(model_args or {})
        self.seed = seed
        base = Path(config.data_dir) if config.data_dir else (shared_data_dir() or Path(".")) / "mars"
        self.data_dir = base
        self.ctx = _GraphContext(config.graph, config.n, max(config.N, config.text_triples), config.images_per_entity)
        self.kg = self.ctx.kg
        self.candidates = load_candidates(_resolve(base, config.candidates_file), self.kg)
        self._model = None
        self._train = None
        self._memory = None

    @classmethod
    def from_config(cls, args: dict, train_config=None) -> "MarsTask":
        from mrmkg.yamlconfig import Source, from_dict

        cfg = from_dict(MarsTaskConfig, args, Source(), prefix="task_args.")
        return cls(cfg, getattr(train_config, "model", {}), getattr(train_config, "seed", 0))

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
        return load_mars_split(_resolve(self.data_dir, self.config.train_file), self.kg)

    def memory(self) -> dict[int, list[tuple[int, int, float]]]:
        """Analogy memory from ``train_file``: entity -> ``[(relation, partner, count)]``, most seen first."""
        if self._memory is None:
            from collections import Counter

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
        from mrmkg.model import MRMKGExample

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
                sg = _top_triples(self.kg, sg, cfg.N, cfg.images_per_entity)
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
            text_vecs.append(None if im is not None else _unit(v))
            image_vecs.append(None if im is None else ctx.image_vec[im])
            queries.append(self.kg.entity_names[r.question])
        return ctx.retriever.retrieve_vectors_batch(text_vecs, image_vecs, queries)

    # -- Task protocol
    def build_model(self) -> TaskModel:
        self._model = _build_mrmkg(self.ctx, self.model_args, self.seed,
                                   default_use_kg=self.config.prompt in GRAPH_PROMPTS,
                                   default_use_image=True)
        self._give_train_statistics(self._model)
        return TaskModel(self._model)

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

    def load_model(self, directory) -> TaskModel:
        """An MR-MKG model saved by ``save_pretrained`` (features from this task's graph)."""
        from mrmkg.model import MRMKG, KGFeatures

        self._model = MRMKG.from_pretrained(directory, features=KGFeatures.from_index(self.ctx.index))
        self._give_train_statistics(self._model)
        return TaskModel(self._model)

    def train_examples(self):
        if self._train is None:
            recs = self.train_records
            if self.config.max_train_examples:
                recs = recs[: self.config.max_train_examples]
            self._train = self.make_examples(self.copy_augmented(recs), train=True)
        return self._train

    def collate(self, examples):
        return [self._model.collate(examples, candidates=self.candidates, rank_over="entity")]

    def predict(self, model: TaskModel, records: Sequence[MarsRecord], batch_size: int = 16, progress: bool = False,
                examples=None):
        """Rank the candidates for every record. Returns a list of prediction dicts (split order).
        ``examples``: the records' prepared examples, when the caller has them (retrieval is skipped)."""
        mrmkg = model.mrmkg if isinstance(model, TaskModel) else model
        self._model = mrmkg
        was_training = mrmkg.training
        mrmkg.eval()
        examples = self.make_examples(records) if examples is None else examples
        cand_ids = [self.kg.entity_ids[c] for c in self.candidates.tolist()]
        pos_of = {int(c): i for i, c in enumerate(self.candidates.tolist())}
        preds = []
        it = range(0, len(examples), batch_size)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="eval", unit="batch")
        for s in it:
            chunk = examples[s : s + batch_size]
            batch = mrmkg.collate(chunk, candidates=self.candidates, rank_over="entity")
            scores = mrmkg.rank(to_device(batch, mrmkg.device)).float().cpu()
            gold = [pos_of[r.answer] for r in records[s : s + batch_size]]
            ranks = gold_ranks(scores, gold)
            top = torch.topk(scores, k=min(10, scores.shape[1]), dim=1)
            for i, ex in enumerate(chunk):
                rec = records[s + i]
                preds.append({
                    "id": rec.id, "gold": self.kg.entity_ids[rec.answer], "rank": int(ranks[i]),
                    "top10": [[cand_ids[j], round(float(v), 6)] for v, j in zip(top.values[i].tolist(), top.indices[i].tolist())],
                    "retrieved": [[t, sc] for t, sc in zip(ex.meta["triples"], ex.meta["triple_scores"])],
                    "memory": ex.meta["memory"], "copy": ex.meta["copy"],
                    "mode": rec.mode, "sides": ex.meta["sides"],
                })
        mrmkg.train(was_training)
        return preds

    def evaluate(self, model, batch_size: int = 16) -> dict:
        """Metrics on ``dev_file`` (its examples are built once and reused by later evaluations)."""
        if getattr(self, "_dev", None) is None:
            recs = load_mars_split(_resolve(self.data_dir, self.config.dev_file), self.kg)
            if self.config.max_eval_examples:
                recs = recs[: self.config.max_eval_examples]
            self._dev = (recs, self.make_examples(recs))
        recs, examples = self._dev
        preds = self.predict(model, recs, batch_size, examples=examples)
        out = ranking_metrics([p["rank"] for p in preds])
        out["image_sides"] = describe_sides(preds)
        return out


def _top_triples(kg, sg, N: int, images_per_entity: int):
    """The subgraph rebuilt from its ``N`` best triples (same seeds)."""
    from mrmkg.kg.subgraph import Subgraph

    ids, scores = sg.triple_ids, sg.triple_scores
    order = np.lexsort((ids, -scores))[:N]
    return Subgraph.from_triples(kg, ids[order], scores[order], seeds=sg.seeds, query=sg.query,
                                 images_per_entity=images_per_entity)


def describe_sides(preds: Sequence[dict]) -> dict:
    """How image-side entities were represented across predictions: {'image': n, 'standin:name': n, ...}."""
    from collections import Counter

    c = Counter(k for p in preds for k in p["sides"] if k != "text")
    return dict(sorted(c.items()))


# ---------------------------------------------------------------------------------- MarKG pretraining
class MarKGPretrainTask:
    """Stage 1: MarKG entity and relation prediction (see the module docstring)."""

    def __init__(self, config: MarKGTaskConfig, model_args: dict | None = None, seed: int = 0):
        self.config = config
        self.model_args = dict(model_args or {})
        self.seed = seed
        self.ctx = _GraphContext(config.graph, config.n, config.N, config.images_per_entity)
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
        self._model = None
        self._train = None

    @classmethod
    def from_config(cls, args: dict, train_config=None) -> "MarKGPretrainTask":
        from mrmkg.yamlconfig import Source, from_dict

        cfg = from_dict(MarKGTaskConfig, args, Source(), prefix="task_args.")
        return cls(cfg, getattr(train_config, "model", {}), getattr(train_config, "seed", 0))

    def make_examples(self, triple_ids: np.ndarray):
        """Two examples per triple (entity then relation prediction), ``meta['kind']`` says which."""
        from mrmkg.model import MRMKGExample

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

    def build_model(self) -> TaskModel:
        self._model = _build_mrmkg(self.ctx, self.model_args, self.seed,
                                   default_use_kg=self.config.prompt in GRAPH_PROMPTS, default_use_image=True)
        return TaskModel(self._model)

    def train_examples(self):
        if self._train is None:
            self._train = self.make_examples(self.train_ids)
        return self._train

    def collate(self, examples):
        ent = [e for e in examples if e.meta["kind"] == "entity"]
        rel = [e for e in examples if e.meta["kind"] == "relation"]
        out = []
        if ent:
            out.append(self._model.collate(ent, rank_over="entity"))
        if rel:
            # the reserved "image of" relation is never a triple's relation: rank the real ones
            out.append(self._model.collate(rel, candidates=np.arange(self.kg.num_relations - 1), rank_over="relation"))
        return out

    def evaluate(self, model, batch_size: int = 16) -> dict:
        mrmkg = model.mrmkg if isinstance(model, TaskModel) else model
        self._model = mrmkg
        mrmkg.eval()
        examples = self.make_examples(self.dev_ids)
        ranks = {"entity": [], "relation": []}
        for s in range(0, len(examples), batch_size):
            for b in self.collate(examples[s : s + batch_size]):
                scores = mrmkg.rank(to_device(b, mrmkg.device)).float().cpu()
                ranks[b.rank_over] += gold_ranks(scores, b.answer_pos.tolist()).tolist()
        out = {}
        for kind, r in ranks.items():
            if r:
                out.update({f"{kind}/{k}": v for k, v in ranking_metrics(r).items()})
        return out


def _without(kg, sg, drop, hide: int, images_per_entity: int):
    """``sg`` without the triples for which ``drop(h, r, t)`` is true, and without entity ``hide``
    as a bare seed (it stays only if a kept triple reaches it): the answer must not leak."""
    from mrmkg.kg.subgraph import Subgraph

    ids = sg.triple_ids
    tri = kg.triples[ids] if ids.size else np.zeros((0, 3), np.int64)
    keep = np.array([not drop(h, r, t) for h, r, t in tri.tolist()], dtype=bool)
    seeds = sg.seeds[sg.seeds != hide]
    if keep.all() and seeds.size == sg.seeds.size:
        return sg
    return Subgraph.from_triples(kg, ids[keep], sg.triple_scores[keep], seeds=seeds, query=sg.query,
                                 images_per_entity=images_per_entity)
