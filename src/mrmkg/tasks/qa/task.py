"""``task: qa``: one's own questions about one's own graph (:mod:`mrmkg.tasks.qa.data` for the file format).

Each question gets the subgraph retrieved from the task's graph (paper A.6) with its text and, when it
has a picture, the picture too (the picture's pooled features, from the graph's own vision encoder, are
also the visual token). The top ``text_triples`` triples are written into the prompt (``facts``), the
subgraph feeds the graph encoder and knowledge adapter (``graph``). The prompt::

    Facts: Vrosk eats Plumb; Plumb grows in Oru.
    Question: What does this creature eat?
    Options: (A) red (B) blue                       (choice questions only)
    Answer:

How an answer is modelled (``mode``; ``auto`` = ``rank`` when every question is an entity question,
else ``generate``):

* ``rank``: entity ranking with the entity head (one trainable token per graph entity, initialised
  from its name), every entity of the graph a candidate: the hidden state at the answer slot scores
  them all in one forward pass, training is cross-entropy over the entities, evaluation reports
  Hits@1/3/5/10 and MRR (:func:`mrmkg.metrics.ranking.ranking_metrics`; ties in the gold's favour),
  and ``mrmkg ask`` shows the top entities with scores. Only entity questions.
* ``generate``: every kind is generated greedily, trained on the answer text: a choice question on
  ``"The answer is (B)."`` (read back strictly: the letter in parentheses, or the text of exactly one
  option; never guessed), an entity question on the entity's name (read back as an id or exact name
  of the graph), a text question on its answer (exact match after
  :func:`mrmkg.metrics.text.normalize_answer`). Metrics per kind: ``choice_accuracy``,
  ``entity_accuracy`` (= Hits@1 of the generated name), ``text_exact_match``, each with its ``n_*``,
  and ``accuracy`` over all questions. Choices are generated rather than ranked because options are
  free text (not graph entities), as in ScienceQA; mixed files need one output.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from mrmkg.encoders.cache import cached_encode
from mrmkg.errors import InputError
from mrmkg.kg.retrieve import RetrievalConfig, Retriever, open_graph
from mrmkg.metrics.ranking import ranking_metrics
from mrmkg.metrics.text import exact_match
from mrmkg.model import KGFeatures, MRMKGExample
from mrmkg.tasks.base import Task
from mrmkg.tasks.knowledge import facts_prefix, top_triples
from mrmkg.tasks.qa.data import SPLITS, QARecord, find_entity, load_questions, safe_image

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CHOICE = re.compile(r"\(([A-Z])\)")


@dataclass
class QATaskConfig:
    data: str = field(default="", metadata={
        "help": "Questions: a .jsonl file (with a split field), a folder of train/dev/test.jsonl, or a folder "
                "saved by datasets (save_to_disk); see mrmkg.tasks.qa.data for the fields."})
    graph: str = field(default="", metadata={"help": "Graph folder built by `mrmkg kg build` (with its index)."})
    mode: Literal["auto", "rank", "generate"] = field(default="auto", metadata={
        "help": "rank: entity questions by entity ranking (Hits@k, MRR); generate: every kind generated "
                "(choices as 'The answer is (B).'); auto: rank when every question is an entity question."})
    answer_kind: Literal["auto", "entity", "text"] = field(default="auto", metadata={
        "help": "Kind of questions without choices nor a 'kind' field: auto = entity when the answer is a graph "
                "entity (id or exact name), else text; entity = must be one (an error otherwise); text."})
    eval_split: Literal["dev", "test"] = field(default="dev", metadata={"help": "Split that evaluation during training scores."})
    facts: bool = field(default=True, metadata={"help": "Write the top text_triples retrieved triples into the prompt."})
    use_graph: bool = field(default=True, metadata={
        "help": "Feed the retrieved subgraph through the graph encoder and knowledge adapter (model.use_kg)."})
    text_triples: int = field(default=5, metadata={"ge": 0, "help": "Retrieved triples written as text when facts is on."})
    n: int = field(default=10, metadata={"ge": 1, "help": "Retrieval first stage: top-n triples seed the subgraph."})
    N: int = field(default=8, metadata={"ge": 1, "help": "Triples kept in the subgraph fed to the graph encoder."})
    image_k: int = field(default=5, metadata={"ge": 0, "help": "A picture seeds retrieval with its image_k nearest graph images."})
    images_per_entity: int = field(default=1, metadata={"ge": 0, "help": "Image nodes attached per subgraph entity."})
    max_new_tokens: int = field(default=16, metadata={"ge": 1, "help": "Generation length (mode generate)."})
    allow_outside_paths: bool = field(default=False, metadata={
        "help": "Allow question pictures given by absolute paths or outside the data folder."})
    limit: int = field(default=0, metadata={"ge": 0, "help": "Use at most this many questions per split (0 = all)."})


class QATask(Task):
    """Questions from a file about a built graph; see the module docstring."""

    name = "qa"
    config_class = QATaskConfig
    graph_arg = "graph"

    def __init__(self, config: QATaskConfig, model_args: dict | None = None, seed: int = 0):
        if not config.graph:
            raise InputError("field 'task_args.graph': the graph folder built by `mrmkg kg build` is required")
        if not config.data:
            raise InputError("field 'task_args.data': the questions (.jsonl file, folder or datasets folder) are required")
        super().__init__(config, model_args, seed)
        self.kg, self.index = open_graph(config.graph)
        self.retriever = Retriever(self.kg, self.index, RetrievalConfig(
            n=config.n, N=max(config.N, config.text_triples, 1), image_k=config.image_k,
            images_per_entity=config.images_per_entity))
        self.questions = load_questions(config.data, self.kg, config.answer_kind, config.allow_outside_paths)
        if config.limit:
            self.questions = {s: q[: config.limit] for s, q in self.questions.items()}
        every = [r for s in SPLITS for r in self.questions[s]]
        if not self.questions["train"]:
            raise InputError("no training questions (split 'train')", path=config.data)
        if config.mode == "rank" or config.mode == "auto":
            others = [r for r in every if r.kind != "entity"]
            if config.mode == "rank" and others:
                raise InputError(f"task_args.mode 'rank' ranks graph entities, but question {others[0].id!r} "
                                 f"({others[0].where}) is a {others[0].kind} question; use mode: generate")
            self.output = "rank" if not others else "generate"
        else:
            self.output = "generate"
        self.has_images = any(r.image for r in every)
        if self.has_images and not self.index.num_images:
            raise InputError("questions have pictures, but the graph has no images (its index has no vision encoder)",
                             path=config.graph)
        self._eval: dict = {}

    # ------------------------------------------------------------------ the model
    def model_defaults(self) -> dict:
        return {"use_kg": self.config.use_graph, "use_image": True, "adapter_length": "nodes"}

    def model_fixed(self) -> dict:
        return {"kg": str(self.config.graph), "entity_head": self.output == "rank"}

    def features(self) -> KGFeatures:
        return KGFeatures.from_index(self.index)

    def image_token_dim(self) -> int | None:
        return self.index.image_dim if self.index.num_images else None

    def vocabulary(self):
        if self.output != "rank":
            return None, None
        return [" " + n for n in self.kg.entity_names], self.kg.relation_names

    # ------------------------------------------------------------------ examples
    def target(self, r: QARecord) -> str:
        """What generation is trained on (mode generate)."""
        if r.kind == "choice":
            return f"The answer is ({LETTERS[r.gold_choice]})."
        return self.kg.entity_names[r.entity] if r.kind == "entity" else r.answer

    def make_examples(self, records: Sequence[QARecord], with_target: bool = True) -> list[MRMKGExample]:
        """``MRMKGExample`` per record: retrieval with the question (and picture), the prompt, the
        gold (``answer`` in rank mode, ``target`` in generate mode with ``with_target``)."""
        if not records:
            return []
        cfg, kg = self.config, self.kg
        imgs = [r.image for r in records if r.image]
        pooled = cached_encode(self.retriever.vision_encoder, imgs, kind="image", per_item=True) if imgs else None
        texts = self.retriever.text_encoder.encode([r.question for r in records])
        image_vecs, k = [], 0
        for r in records:
            image_vecs.append(None if not r.image else np.asarray(pooled[k], np.float32))
            k += bool(r.image)
        sgs = self.retriever.retrieve_vectors_batch(list(texts), image_vecs, [r.question for r in records])
        out = []
        for r, sg, iv in zip(records, sgs, image_vecs):
            prompt = f"Question: {r.question}\n"
            if r.choices:
                prompt += "Options: " + " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(r.choices)) + "\n"
            if cfg.facts and cfg.text_triples and sg.triple_ids.size:
                prompt = facts_prefix(kg, sg.triple_ids[: cfg.text_triples], entity_tokens=False) + prompt
            full = sg
            if cfg.N < sg.triple_ids.size:
                sg = top_triples(kg, sg, cfg.N, cfg.images_per_entity)
            gold = None if r.answer is None else (r.answer if r.kind != "choice" else LETTERS[r.gold_choice])
            meta = {"id": r.id, "kind": r.kind, "question": r.question, "choices": r.choices, "gold": gold,
                    "entity": r.entity, "subgraph": full,
                    "triples": full.triple_ids.tolist(),
                    "triple_scores": [round(float(s), 4) for s in full.triple_scores.tolist()]}
            out.append(MRMKGExample(
                prompt=prompt + "Answer:",
                target=self.target(r) if with_target and self.output == "generate" and r.answer is not None else None,
                answer=r.entity if self.output == "rank" else None,
                subgraph=sg if cfg.use_graph else None,
                image_tokens=None if iv is None else iv[None, :], meta=meta))
        return out

    def make_train_examples(self) -> list:
        return self.make_examples(self.questions["train"])

    def collate(self, examples):
        if self.output == "rank":
            return self.model.collate(examples, rank_over="entity")
        return self.model.collate(examples)

    # ------------------------------------------------------------------ answering (Pipeline)
    def rank_batch(self, examples):
        return self.model.collate(examples, rank_over="entity"), None  # every graph entity is a candidate

    def candidate(self, batch, column: int) -> tuple[str, str]:
        return self.kg.entity_ids[column], self.kg.entity_names[column]

    def read_output(self, text: str, example) -> dict:
        """The answer of generated ``text`` by the question's kind (module docstring), with the gold."""
        m, said = example.meta, text.strip()
        kind, gold = m["kind"], m.get("gold")
        out: dict = {"answer": said, "kind": kind}
        if kind == "choice":
            choices = m["choices"]
            pick = _read_choice(said, choices)
            out.update(answer="" if pick is None else choices[pick],
                       answer_id=None if pick is None else LETTERS[pick])
            if gold is not None:
                out.update(gold=gold, correct=out["answer_id"] == gold)
        elif kind == "entity":
            try:
                e = find_entity(self.kg, said)
            except InputError:
                e = None
            out["answer_id"] = None if e is None else self.kg.entity_ids[e]
            if gold is not None:
                out.update(gold=self.kg.entity_ids[m["entity"]], correct=e is not None and e == m["entity"])
        elif gold is not None:
            out.update(gold=gold, correct=exact_match(said, gold))
        return out

    def query_examples(self, queries, timer) -> list:
        """A user's question: with ``choices`` a choice question (mode generate); else, in rank mode,
        an entity question ranked over the graph's entities, in generate mode a text question. A
        picture (any path: the user names it on the command line) is retrieved with and shown."""
        recs = []
        for i, q in enumerate(queries):
            if not q.question.strip():
                raise InputError("the question is empty")
            if q.choices and self.output == "rank":
                raise InputError("this checkpoint ranks graph entities (mode rank); it does not answer choices")
            image = None
            if q.image is not None:
                image = safe_image(str(q.image), Path.cwd(), allow_outside=True)
                if not self.index.num_images:
                    raise InputError("this checkpoint's graph has no images, so it cannot read a picture")
            kind = "choice" if q.choices else ("entity" if self.output == "rank" else "text")
            recs.append(QARecord(id=f"ask-{i + 1}", question=q.question.strip(), answer=None, kind=kind,
                                 split="ask", choices=list(q.choices) if q.choices else None, image=image))
        with timer("retrieve"):
            return self.make_examples(recs, with_target=False)

    # ------------------------------------------------------------------ evaluation
    def eval_examples(self, split: str) -> list:
        if split not in self._eval:
            self._eval[split] = self.make_examples(self.questions[split], with_target=False)
        return self._eval[split]

    def predict(self, model, split: str, batch_size: int = 16, progress: bool = False) -> list[dict]:
        """One dict per question of ``split``: id, kind, gold, pred, correct, and rank + top3
        (mode rank) or output (mode generate)."""
        from mrmkg.pipeline import Pipeline

        answers = Pipeline(self, model).predict(self.eval_examples(split), top_k=3, batch_size=batch_size,
                                                progress=progress)
        out = []
        for a in answers:
            p = {"id": a.meta["id"], "kind": a.meta["kind"], "gold": a.gold, "pred": a.answer_id,
                 "answer": a.answer, "correct": a.correct}
            if a.rank is not None:
                p.update(rank=a.rank, top3=[[c.id, round(c.score, 4)] for c in a.candidates])
            else:
                p["output"] = a.text
            out.append(p)
        return out

    def metrics(self, preds: list[dict]) -> dict:
        """Ranking metrics (mode rank) or accuracy per kind (mode generate); see the module docstring."""
        if not preds:
            return {"n": 0}
        if self.output == "rank":
            return ranking_metrics([p["rank"] for p in preds])
        out: dict = {"accuracy": float(np.mean([bool(p["correct"]) for p in preds])), "n": len(preds)}
        for kind, name in (("choice", "choice_accuracy"), ("entity", "entity_accuracy"), ("text", "text_exact_match")):
            got = [bool(p["correct"]) for p in preds if p["kind"] == kind]
            if got:
                out[name], out[f"n_{kind}"] = float(np.mean(got)), len(got)
        return out

    def evaluate(self, model, batch_size: int = 16) -> dict:
        """Metrics on ``eval_split`` ({"n": 0} when it is empty)."""
        return self.metrics(self.predict(model, self.config.eval_split, batch_size))

    def evaluate_split(self, pipe, split, batch_size: int = 16, progress: bool = False):
        """``mrmkg eval --split train|dev|test`` (None: ``eval_split``)."""
        split = str(split or self.config.eval_split)
        if split not in SPLITS:
            raise InputError(f"--split {split!r}: a qa checkpoint is evaluated on train, dev or test")
        if not self.questions[split]:
            raise InputError(f"split {split!r} has no questions", path=self.config.data)
        preds = self.predict(pipe.model, split, batch_size, progress)
        return preds, self.metrics(preds), {"split": split}


def _read_choice(text: str, choices: list[str]) -> int | None:
    """The option a generated text names: "(B)" (the first letter in parentheses within range), else
    the one option whose text it is (case-insensitive); None otherwise (never guessed)."""
    for m in _CHOICE.finditer(text):
        i = LETTERS.index(m.group(1))
        if i < len(choices):
            return i
    said = text.strip().rstrip(".").casefold()
    hits = [i for i, c in enumerate(choices) if c.casefold() == said]
    return hits[0] if len(hits) == 1 else None
