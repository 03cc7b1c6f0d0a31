"""The demo world's questions as a task (stage 2), and a stage-1 task of QA generated from the world's graph.

Every question is answered by ranking its **closed candidate set** (places, foods, creatures,
clans, materials, or every entity for analogies) with the entity head, in one forward pass: the
hidden state at the last prompt token is scored against the entity tokens, scores outside the
question's set are masked to ``-inf``, and the training loss is cross-entropy over the set.

Per question type (what the model gets and how the subgraph is retrieved):

* ``image`` ("What does this creature eat?" + a picture): the picture's frozen vision features are
  the visual input (``image_input``: ``pooled`` = one visual token, the pooled feature; ``grid`` =
  the encoder's 49 feature-map tokens) and the *image-only* retrieval query (the subject is found
  by matching the picture against the graph's image nodes, then its triples are followed). The
  text never names the creature.
* ``text`` ("What does Vrosk eat?"): the subject is written ``Vrosk [E12]`` (its entity token);
  retrieval is queried with the question text.
* ``analogy`` (MARS form, "h is to t as q is to ?"): entities written ``name [E i]``; retrieval is
  queried with the question entity's frozen embedding (MARS, paper A.7); the hidden relation is
  never an input.

Knowledge (the ablation ladder's switches): ``facts`` writes the top ``text_triples`` retrieved
triples into the prompt as ``"Facts: [E1] eats [E7]; ..."`` (entity tokens, so the answer can be
pointed at); ``graph`` feeds the retrieved subgraph (top ``N`` triples, with image nodes) through
the graph encoder and knowledge adapter (the model's ``use_kg``). The demo's ladder
(:mod:`mrmkg.demo`) is cumulative: the graph rungs keep the facts text and add the MMKG prefix
(``DemoConfig.graph_keeps_facts``; off = the paper's Table 3, where the MMKG replaces the text KG).

Stage 1 (:class:`DemoStage1Task`): the same relation questions asked about every fact of the graph
whose head is *not* a dev/test subject (training creatures, the distractor creatures that no
question asks about, training foods and materials), each both as text and, for entities with a
picture, as an image question showing the graph's own picture. The retrieved subgraph holds the
answer: stage 1 teaches the adapters to read the graph (paper A.3), with no held-out fact as a
target.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mrmkg.encoders.cache import cached_encode
from mrmkg.errors import InputError
from mrmkg.kg.retrieve import RetrievalConfig, Retriever, open_graph
from mrmkg.metrics.choice import accuracy_by_type
from mrmkg.model import KGFeatures, MRMKGExample
from mrmkg.tasks.base import Task
from mrmkg.tasks.demo.world import TEMPLATES, load_world
from mrmkg.tasks.knowledge import resolve_entity, top_triples

QUESTION_TYPES = ("image", "text", "analogy")


@dataclass
class DemoTaskConfig:
    world: str = field(default="", metadata={"help": "World folder (build_world output) whose graph/ holds a built index."})
    eval_split: Literal["dev", "test"] = field(default="dev", metadata={"help": "Split that evaluate() scores."})
    facts: bool = field(default=False, metadata={"help": "Write the top text_triples retrieved triples into the prompt."})
    graph: bool = field(default=False, metadata={"help": "Feed the retrieved subgraph through the graph encoder and knowledge adapter."})
    fact_style: Literal["tokens", "names", "names+tokens"] = field(default="names", metadata={
        "help": "How facts name entities: tokens = '[E1] eats [E7]' (shortest), names = 'Vrosk eats Plumb' (the "
                "frozen LLM can copy a name it reads), names+tokens = 'Vrosk [E1] eats Plumb [E7]'."})
    fact_grouping: bool = field(default=True, metadata={
        "help": "Write consecutive facts about one head once ('Vrosk eats Plumb, lives in Oru') instead of repeating "
                "the head per fact: the same facts in ~20% fewer tokens."})
    entity_tokens: bool = field(default=False, metadata={
        "help": "Write question entities as 'Name [E i]' (trainable token). Off by default: a training "
                "subject's token can memorise its answers, a shortcut that does not carry to held-out subjects."})
    name_space: bool = field(default=True, metadata={
        "help": "Initialise entity tokens from ' Name' (leading space, the form an answer is written in) instead of 'Name'."})
    text_triples: int = field(default=8, metadata={"help": "Retrieved triples written as text when facts is on."})
    n: int = field(default=10, metadata={"help": "Retrieval first stage: top-n triples seed the subgraph."})
    N: int = field(default=8, metadata={"help": "Triples kept in the subgraph fed to the graph encoder."})
    image_k: int = field(default=5, metadata={"help": "An image query seeds with the entities of its image_k nearest graph images."})
    images_per_entity: int = field(default=1, metadata={"help": "Image nodes attached per subgraph entity (alignment needs them)."})
    image_input: Literal["pooled", "grid"] = field(default="pooled", metadata={
        "help": "Visual input of image questions: pooled (one token) or grid (the encoder's feature-map tokens; slower)."})
    types: tuple = field(default=QUESTION_TYPES, metadata={"help": "Question types used for training and evaluation."})
    max_train_per_type: int = field(default=0, metadata={"help": "Train on at most this many questions per type (seeded sample; 0 = all)."})
    max_eval_per_type: int = field(default=0, metadata={"help": "Evaluate at most this many questions per type (first ones; 0 = all)."})

    def __post_init__(self):
        self.types = tuple(self.types)
        bad = [t for t in self.types if t not in QUESTION_TYPES]
        if bad or not self.types:
            raise InputError(f"task_args.types: unknown or empty {list(self.types)}; expected some of {list(QUESTION_TYPES)}")
        for name in ("text_triples", "n", "N"):
            if getattr(self, name) < 1:
                raise InputError(f"task_args.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class _Item:
    """A question reduced to what the model needs (also used for stage-1 facts)."""

    id: str
    type: str
    prompt: str          # without facts
    answer: int | None   # entity index (None: a question of one's own)
    candidates: str      # candidate set id
    text_query: str | None = None
    text_vec: np.ndarray | None = None
    image_vec: np.ndarray | None = None       # pooled features [d_v] (retrieval query)
    image_tokens: np.ndarray | None = None    # visual input [n_I, d_v]
    subject: int | None = None


class DemoTask(Task):
    """The world's questions (see the module docstring). ``text_encoder`` / ``vision_encoder``
    default to the encoders named in the graph index's manifest."""

    name = "demo"
    config_class = DemoTaskConfig
    graph_arg = "world"  # the world folder holds the graph
    stage = 2

    def __init__(self, config: DemoTaskConfig, model_args: dict | None = None, seed: int = 0,
                 text_encoder=None, vision_encoder=None):
        if not config.world:
            raise InputError("field 'task_args.world': the demo world folder is required (mrmkg demo builds it)")
        super().__init__(config, model_args, seed)
        self.world = load_world(config.world)
        self.kg, self.index = open_graph(self.world.kg_dir)
        self.retriever = Retriever(self.kg, self.index, RetrievalConfig(
            n=config.n, N=max(config.N, config.text_triples), image_k=config.image_k,
            images_per_entity=config.images_per_entity), text_encoder=text_encoder, vision_encoder=vision_encoder)
        E = self.kg.num_entities
        self.allowed = {}
        for name, ids in self.world.candidates.items():
            m = np.zeros(E, dtype=bool)
            m[[self.kg.entity_index(e) for e in ids]] = True
            self.allowed[name] = m
        self._eval: dict = {}

    # ------------------------------------------------------------------ encoders
    @property
    def vision_encoder(self):
        return self.retriever.vision_encoder

    def _image_features(self, paths: Sequence[str], per_item: bool = False) -> tuple[np.ndarray, list | None]:
        """Pooled features ``[n, d_v]`` (through the embedding cache, one entry per picture with
        ``per_item``: query batches) and, for ``grid``, token grids."""
        if not paths:
            return np.zeros((0, self.index.image_dim), np.float32), None
        pooled = cached_encode(self.vision_encoder, list(paths), kind="image", per_item=per_item)
        grids = None
        if self.config.image_input == "grid":
            grids = list(np.asarray(self.vision_encoder.encode_tokens(list(paths)), dtype=np.float32))
        return pooled, grids

    # ------------------------------------------------------------------ items
    def _fact_entity(self, e: int) -> str:
        style = self.config.fact_style
        name = self.kg.entity_names[e]
        return f"[E{e}]" if style == "tokens" else name if style == "names" else f"{name} [E{e}]"

    def _facts_text(self, triple_ids) -> str:
        """``'A eats B; A lives in C'``, or with ``fact_grouping`` ``'A eats B, lives in C'``."""
        kg, parts, last = self.kg, [], None
        for h, r, t in kg.triples[triple_ids].tolist():
            tail = f"{kg.relation_names[r]} {self._fact_entity(t)}"
            if self.config.fact_grouping and h == last:
                parts[-1] += f", {tail}"
            else:
                parts.append(f"{self._fact_entity(h)} {tail}")
            last = h
        return "; ".join(parts)

    def _mention(self, e: int) -> str:
        return f"{self.kg.entity_names[e]} [E{e}]" if self.config.entity_tokens else self.kg.entity_names[e]

    def question_items(self, questions) -> list[_Item]:
        """World questions -> items (question pictures encoded once, through the embedding cache)."""
        kg = self.kg
        imgs = [q.image for q in questions if q.type == "image"]
        pooled, grids = self._image_features(imgs)
        out, k = [], 0
        for q in questions:
            subj = kg.entity_index(q.subject)
            item = _Item(id=q.id, type=q.type, prompt=q.text, answer=kg.entity_index(q.answer),
                         candidates=q.candidates, subject=subj)
            if q.type == "image":
                item.image_vec = pooled[k]
                item.image_tokens = grids[k] if grids is not None else pooled[k][None, :]
                k += 1
            elif q.type == "text":
                name = kg.entity_names[subj]
                item.prompt = q.text.replace(name, self._mention(subj), 1)
                item.text_query = q.text
            else:
                h, t = (kg.entity_index(x) for x in q.example)
                item.prompt = f"{self._mention(h)} is to {self._mention(t)} as {self._mention(subj)} is to"
                item.text_vec = np.asarray(self.index.entity_emb[subj], dtype=np.float32)
            out.append(item)
        return out

    def _retrieve(self, items: Sequence[_Item]):
        """One subgraph per item (None when the rung uses no knowledge)."""
        if not (self.config.facts or self.config.graph) or not items:
            return [None] * len(items)
        text_vecs, image_vecs, queries = [None] * len(items), [None] * len(items), [""] * len(items)
        ti = [i for i, it in enumerate(items) if it.text_query is not None]
        if ti:
            enc = self.retriever.text_encoder.encode([items[i].text_query for i in ti])
            for row, i in enumerate(ti):
                text_vecs[i] = enc[row]
        for i, it in enumerate(items):
            if it.text_vec is not None:
                text_vecs[i] = it.text_vec
            if it.image_vec is not None and it.text_query is None and it.text_vec is None:
                image_vecs[i] = it.image_vec
            queries[i] = it.text_query or it.prompt
        return self.retriever.retrieve_vectors_batch(text_vecs, image_vecs, queries)

    def make_examples(self, items: Sequence[_Item]):
        """``MRMKGExample`` per item; ``meta`` keeps id, type, candidate set and retrieval provenance."""
        cfg, kg = self.config, self.kg
        out = []
        for it, sg in zip(items, self._retrieve(items)):
            prompt = it.prompt
            meta = {"id": it.id, "type": it.type, "candidates": it.candidates, "triples": [], "triple_scores": []}
            if sg is not None:
                meta["triples"] = sg.triple_ids.tolist()
                meta["triple_scores"] = [round(float(s), 4) for s in sg.triple_scores.tolist()]
                if cfg.facts and sg.triple_ids.size:
                    prompt = f"Facts: {self._facts_text(sg.triple_ids[: cfg.text_triples])}.\n{prompt}"
                if cfg.graph and cfg.N < sg.triple_ids.size:
                    sg = top_triples(kg, sg, cfg.N, cfg.images_per_entity)
            meta["subgraph"] = sg
            out.append(MRMKGExample(prompt=f"{prompt}\nAnswer:", answer=it.answer, subgraph=sg if cfg.graph else None,
                                    image_tokens=it.image_tokens, meta=meta))
        return out

    def _sample(self, questions, limit: int, rng: np.random.Generator | None):
        by = {t: [q for q in questions if q.type == t] for t in self.config.types}
        out = []
        for t in self.config.types:
            qs = by[t]
            if limit and len(qs) > limit:
                qs = [qs[i] for i in sorted(rng.choice(len(qs), limit, replace=False).tolist())] if rng is not None \
                    else qs[:limit]
            out += qs
        return out

    def train_questions(self):
        return self._sample(self.world.questions["train"], self.config.max_train_per_type,
                            np.random.default_rng(self.seed))

    def eval_questions(self, split: str | None = None):
        return self._sample(self.world.questions[split or self.config.eval_split], self.config.max_eval_per_type, None)

    # ------------------------------------------------------------------ the model
    def model_defaults(self) -> dict:
        return {"use_kg": self.config.graph, "use_image": True, "adapter_length": "nodes"}

    def model_fixed(self) -> dict:
        return {"entity_head": True, "kg": str(self.world.kg_dir)}

    def model_config(self):
        cfg = super().model_config()
        if cfg.use_kg != self.config.graph:
            raise InputError(f"model.use_kg ({cfg.use_kg}) contradicts task_args.graph ({self.config.graph})")
        return cfg

    def features(self) -> KGFeatures:
        return KGFeatures.from_index(self.index)

    def image_token_dim(self) -> int | None:
        return self.index.image_dim

    def vocabulary(self):
        # Entity tokens start at the mean embedding of " Name" (with the leading space): the token
        # the LLM would write after "Answer:" when it copies a name it read in the facts.
        names = [" " + n for n in self.kg.entity_names] if self.config.name_space else self.kg.entity_names
        return names, self.kg.relation_names

    # ------------------------------------------------------------------ training
    def train_items(self) -> list[_Item]:
        return self.question_items(self.train_questions())

    def make_train_examples(self) -> list:
        return self.make_examples(self.train_items())

    def _allowed(self, examples) -> torch.Tensor:
        return torch.as_tensor(np.stack([self.allowed[e.meta["candidates"]] for e in examples]))

    def collate(self, examples):
        return self.rank_batch(examples)

    def loss(self, model, batch) -> torch.Tensor:
        """Cross-entropy over each question's closed candidate set, plus the alignment loss (Eq. 8)."""
        batch, allowed = batch
        out = model(batch)
        loss = F.cross_entropy(out.scores.masked_fill(~allowed, float("-inf")), batch.answer_pos)
        if out.align_loss is not None:
            loss = loss + model.config.align_weight * out.align_loss
        return loss

    # ------------------------------------------------------------------ answering
    def rank_batch(self, examples):
        return self.model.collate(examples, rank_over="entity"), self._allowed(examples)

    def candidate(self, batch, column: int) -> tuple[str, str]:
        return self.kg.entity_ids[column], self.kg.entity_names[column]

    def predict(self, model, examples, batch_size: int = 16, progress: bool = False) -> list[dict]:
        """Rank each example's candidate set (through :class:`mrmkg.pipeline.Pipeline`). One dict per
        example: id, type, gold, pred (entity ids), correct, top3 [[entity id, score]], retrieved
        [[triple id, score]]."""
        from mrmkg.pipeline import Pipeline

        answers = Pipeline(self, model).predict(examples, top_k=3, batch_size=batch_size, progress=progress)
        return [{"id": a.meta["id"], "type": a.meta["type"], "gold": a.gold, "pred": a.answer_id, "correct": a.correct,
                 "top3": [[c.id, round(c.score, 4)] for c in a.candidates],
                 "retrieved": [[t, sc] for t, sc in zip(a.meta["triples"], a.meta["triple_scores"])]}
                for a in answers]

    def eval_examples(self, split: str | None = None):
        split = split or self.config.eval_split
        if split not in self._eval:
            self._eval[split] = self.make_examples(self.question_items(self.eval_questions(split)))
        return self._eval[split]

    def evaluate(self, model, batch_size: int = 16, split: str | None = None, progress: bool = False) -> dict:
        """Accuracy per question type and overall (micro average) on ``split`` (default eval_split)."""
        return accuracy_by_type(self.predict(model, self.eval_examples(split), batch_size, progress), QUESTION_TYPES)

    def evaluate_split(self, pipe, split, batch_size: int = 16, progress: bool = False):
        """The world's ``split`` questions (dev or test; None: ``eval_split``), accuracy per type."""
        split = str(split or self.config.eval_split)
        if split not in self.world.questions:
            raise InputError(f"--split {split!r}: the demo world has the splits {', '.join(self.world.questions)}")
        preds = self.predict(pipe.model, self.eval_examples(split), batch_size, progress)
        return preds, accuracy_by_type(preds, QUESTION_TYPES), {"split": split}

    def query_examples(self, queries, timer) -> list:
        """A user's question about the world: with a picture, an image question (the picture is
        matched against the graph's images, as in training); with ``analogy``, an analogy; else a
        text question. The candidate set is the one of the training template the question matches
        ("What does {} eat?" -> foods), or every entity when it matches none."""
        items = []
        with timer("encode"):
            imgs = [q.image for q in queries if q.image is not None and q.analogy is None]
            pooled, grids = self._image_features(imgs, per_item=True) if imgs else (None, None)
        k = 0
        for i, q in enumerate(queries):
            text = q.question.strip()
            item = _Item(id=f"ask-{i + 1}", type="text", prompt=text, answer=None, candidates=_candidate_set(text))
            if q.analogy is not None:
                h, t, x = (resolve_entity(self.kg, s) for s in q.analogy)
                item.type, item.candidates, item.subject = "analogy", "entity", x
                item.prompt = f"{self._mention(h)} is to {self._mention(t)} as {self._mention(x)} is to"
                item.text_vec = np.asarray(self.index.entity_emb[x], dtype=np.float32)
            elif q.image is not None:
                if not text:
                    raise InputError("a question is required with the picture (e.g. 'What does this creature eat?')")
                item.type = "image"
                item.image_vec = pooled[k]
                item.image_tokens = grids[k] if grids is not None else pooled[k][None, :]
                k += 1
            else:
                if not text:
                    raise InputError("the question is empty")
                item.text_query = text
            items.append(item)
        with timer("retrieve"):
            return self.make_examples(items)


def _candidate_set(question: str) -> str:
    """The candidate set of the world's question template ``question`` matches ("entity": none)."""
    for cand, named, this in TEMPLATES.values():
        for template in (named, this):
            pattern = "^" + re.escape(template).replace(re.escape("{}"), ".+") + "$"
            if re.match(pattern, question.strip(), flags=re.IGNORECASE):
                return cand
    return "entity"


class DemoStage1Task(DemoTask):
    """Stage 1: relation QA about every graph fact whose head is no dev/test subject (module docstring).
    Evaluation scores the same held-out questions as stage 2 would (``eval_split``), so the
    stage-1 row says how far reading the graph alone gets."""

    name = "demo_stage1"
    stage = 1

    def train_items(self) -> list[_Item]:
        kg, w = self.kg, self.world
        held = {q.subject for s in ("dev", "test") for q in w.questions[s]}
        items = []
        for tid, (h, r, t) in enumerate(kg.triples.tolist()):
            rid = kg.relation_ids[r]
            hid = kg.entity_ids[h]
            if rid not in TEMPLATES or hid in held:
                continue
            cand, named, this = TEMPLATES[rid]
            name = kg.entity_names[h]
            if "text" in self.config.types:
                items.append(_Item(id=f"s1-t{tid}", type="text", prompt=named.format(self._mention(h)), answer=t,
                                   candidates=cand, text_query=named.format(name), subject=h))
            imgs = kg.images_of(h)
            if "image" in self.config.types and imgs.size and self.index.num_images:
                v = np.asarray(self.index.image_emb[int(imgs[0])], dtype=np.float32)
                tokens = v[None, :]
                if self.config.image_input == "grid":
                    tokens = np.asarray(self.vision_encoder.encode_tokens([kg.image_paths[int(imgs[0])]])[0], np.float32)
                items.append(_Item(id=f"s1-i{tid}", type="image", prompt=this, answer=t, candidates=cand,
                                   image_vec=v, image_tokens=tokens, subject=h))
        if self.config.max_train_per_type:
            rng = np.random.default_rng(self.seed)
            keep = []
            for ty in QUESTION_TYPES:
                group = [x for x in items if x.type == ty]
                if len(group) > self.config.max_train_per_type:
                    idx = sorted(rng.choice(len(group), self.config.max_train_per_type, replace=False).tolist())
                    group = [group[i] for i in idx]
                keep += group
            items = keep
        return items
