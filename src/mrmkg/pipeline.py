"""``Pipeline``: a trained checkpoint that answers questions, with the subgraph behind each answer.

    >>> from mrmkg import Pipeline
    >>> pipe = Pipeline.from_pretrained("runs/demo/rungs/v-stage1-xxxx")          # doctest: +SKIP
    >>> ans = pipe("What does this creature eat?", image="photo.png")             # doctest: +SKIP
    >>> ans.answer, ans.candidates[0].score, ans.subgraph["triples"][0]["id"]      # doctest: +SKIP

``from_pretrained`` loads once everything a checkpoint needs: its training config, its task (the
graph, the index and retriever, the answer space), the frozen models and the trained weights. A
call turns the question into the task's example (the task writes the prompt exactly as in
training), retrieves, and runs the model; :meth:`Pipeline.predict` does the last step for examples a
task already made. It is the one prediction path: ``mrmkg ask``, ``mrmkg eval``, evaluation during
training, ``mrmkg explain`` (through eval folders) and the demo's sample answers all go through it.

Two kinds of checkpoints, by their task's ``output``:

* ``rank`` (MARS, the demo world, MarKG pretraining): the model scores every candidate (entities or
  relations) at the answer slot; the answer is the best-scored allowed candidate, ``candidates``
  the top k with their scores, and ``rank`` the gold answer's rank when the example has one
  (:func:`mrmkg.metrics.ranking.gold_ranks`: MarT's rule, the gold's place after a stable sort).
* ``generate`` (ScienceQA, stage-1 QA): the model generates text greedily; the task reads the
  answer from it (ScienceQA: the choice in "The answer is (B)"; never guessed).

Timings per answer, in seconds: ``encode`` (frozen text/vision encoders on the question),
``retrieve`` (the subgraph search), ``model`` (graph encoder, adapters and the LLM; a batch's time
is shared evenly among its examples).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

from mrmkg.devices import check_device
from mrmkg.errors import InputError


def _plain(x):
    """What ``dataclasses.asdict`` makes of a field, for the types answers hold: nested dicts, lists
    and tuples copied, dataclasses turned into dicts, other leaves shared rather than deep-copied."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    if is_dataclass(x) and not isinstance(x, type):
        return asdict(x)  # e.g. a Candidate: flat, so asdict is cheap here
    return x


@dataclass
class Query:
    """A user's question. ``image``: a path or a PIL image; ``choices``: multiple-choice options;
    ``analogy``: ``(head, tail, question)`` entity names or ids (``head : tail :: question : ?``);
    ``context``: extra text some tasks take (ScienceQA's lecture context)."""

    question: str = ""
    image: Any = None
    choices: list[str] | None = None
    analogy: tuple[str, str, str] | None = None
    context: str = ""


@dataclass
class Candidate:
    """A scored candidate answer: graph id (or choice label), name, score."""

    id: str
    name: str
    score: float


@dataclass
class Answer:
    """What a checkpoint answered, and why.

    ``answer``: the answer's name (a ranked entity's name, the chosen option, or generated text);
    ``answer_id``: its graph id or option letter (None when nothing could be read);
    ``candidates``: the top k with scores (ranking checkpoints); ``text``: the generated text
    (generative checkpoints); ``gold`` / ``rank`` / ``tied`` (the gold shares its score with another
    candidate) / ``correct``: filled when the example has a gold answer; ``subgraph``: the retrieved subgraph (nodes, typed edges with retrieval scores, triples
    with ids and names), when asked for; ``timings``: seconds per stage; ``meta``: the task's own
    provenance of the example (e.g. MARS: how each entity was given, the analogy memory).
    """

    answer: str
    answer_id: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    text: str | None = None
    gold: str | None = None
    rank: int | None = None
    tied: bool | None = None
    correct: bool | None = None
    subgraph: dict | None = None
    timings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    #: the retrieved :class:`~mrmkg.kg.subgraph.Subgraph` itself (for drawing; not in ``to_dict``)
    graph: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Plain, JSON-ready copy (without ``graph``). Written out rather than ``dataclasses.asdict``:
        asdict deep-copies every leaf of the subgraph and was 8 % of a server's model thread."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "graph"}

    def draw(self, answer: Answer, path: str | Path, title: str | None = None) -> Path:
        """Draw ``answer``'s subgraph (entity names, image nodes as thumbnails, edge scores) to a
        .png or .svg file (:func:`mrmkg.viz.render_subgraph`)."""
        from mrmkg.kg.subgraph import Subgraph
        from mrmkg.viz import render_subgraph

        sg = answer.graph if answer.graph is not None else Subgraph.empty()
        return render_subgraph(self.task.kg, sg, path, title=title or f"answer: {answer.answer}")

    def __getitem__(self, key: str):  # dict-like access, as transformers' pipelines return dicts
        return getattr(self, key)


class _Timer:
    """Accumulates seconds per stage: ``with timer("retrieve"): ...``."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def verify_final(folder: Path) -> None:
    """A run's ``final/`` against its ``checksums.json`` (its own files; ``model/`` has its own manifest,
    checked when the model loads): its ``train_config.yaml`` rebuilds the task, so a damaged one must not
    load quietly. A ``final/`` written before it had a manifest loads with a warning."""
    from mrmkg.manifest import DamagedCheckpointError, verify_checksums, warn_unverified

    if not verify_checksums(folder, folder, hashed=lambda name: True, kind="final", error=DamagedCheckpointError):
        warn_unverified(folder, "checkpoint", "train it again (`mrmkg train`) to add one")


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """``(model folder, train_config.yaml)`` for a run folder, its ``final/`` or a model folder."""
    p = Path(path)
    if not p.exists():
        raise InputError("checkpoint not found", path=p)
    for cand in (p, p / "final"):
        if (cand / "model" / "mrmkg.json").is_file() and (cand / "train_config.yaml").is_file():
            verify_final(cand)
            return cand / "model", cand / "train_config.yaml"
    if (p / "mrmkg.json").is_file() and (p.parent / "train_config.yaml").is_file():
        verify_final(p.parent)
        return p, p.parent / "train_config.yaml"
    raise InputError("not a trained checkpoint: expected a run folder, its final/ folder or a model folder "
                     "written by `mrmkg train` (model/mrmkg.json and train_config.yaml)", path=p)


def open_task(checkpoint: str | Path, task_args: dict | None = None, graph: str | None = None):
    """``(task, model folder, training config)`` of a checkpoint: its task rebuilt from the run's
    ``train_config.yaml``, with ``task_args`` replacing recorded values, and ``graph`` the graph folder
    (the task's ``graph_arg`` field; e.g. when the run was trained on another machine)."""
    from mrmkg.engine import load_train_config
    from mrmkg.tasks.registry import get_task

    model_dir, cfg_path = resolve_checkpoint(checkpoint)
    cfg = load_train_config(cfg_path)
    cls = get_task(cfg.task)
    args = dict(cfg.task_args)
    args.update({k: v for k, v in {**(task_args or {}), **({cls.graph_arg: graph} if graph else {})}.items()
                 if v is not None})
    cfg.task_args = args
    return cls.from_config(args, cfg), model_dir, cfg


class Pipeline:
    """A task and its trained model, ready to answer (see the module docstring)."""

    def __init__(self, task, model, checkpoint: str | Path | None = None, train_config=None):
        self.task = task
        self.model = model
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.train_config = train_config  # the checkpoint's TrainConfig (from_pretrained)

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, device: str = "cpu", task_args: dict | None = None,
                        graph: str | None = None, dtype: str | None = None) -> "Pipeline":
        """Load ``checkpoint`` (a run folder of ``mrmkg train``, its ``final/`` or its model folder)
        onto ``device`` (cpu, cuda, cuda:N, or auto: the frozen LLM spread over the visible GPUs by
        accelerate's ``device_map="auto"``, the trained parts with its input embeddings); ``task_args``
        replace values recorded in its training config, ``graph`` its graph folder; ``dtype`` (bf16,
        fp16, fp32) is the frozen LLM's (default: the run's ``model.llm_dtype``; the trained parts
        stay float32)."""
        import torch

        from mrmkg.malloc import tune_malloc

        device = check_device(device) or "cpu"
        task, model_dir, cfg = open_task(checkpoint, task_args, graph)
        if device == "auto":  # placed by accelerate while loading; moving it whole would undo that
            model = task.load_model(model_dir, dtype=dtype, device="auto")
        else:  # the frozen LLM loads straight onto the device, then the trained parts follow
            dev = torch.device(device)
            model = task.load_model(model_dir, dtype=dtype, device=str(dev)).to(dev)
        tune_malloc()  # keep freed buffers in the process between batches, as training does
        return cls(task, model, checkpoint, cfg)

    @property
    def kind(self) -> str:
        return self.task.output

    def warm_up(self) -> "Pipeline":
        """Load now what the first question would load lazily (the retriever's text and vision
        encoders: seconds for MiniLM), so a server is ready when it says so."""
        retriever = getattr(self.task, "retriever", None)
        if retriever is not None:
            retriever.text_encoder
            if retriever.index.manifest.get("vision_encoder"):
                retriever.vision_encoder
        return self

    # ------------------------------------------------------------------ user questions
    def __call__(self, question: str = "", image=None, choices: Sequence[str] | None = None,
                 analogy: Sequence[str] | None = None, top_k: int = 5, context: str = "") -> Answer:
        """Answer one question (see :class:`Query` for the arguments)."""
        q = Query(question, image, None if choices is None else list(choices),
                  None if analogy is None else tuple(analogy), context)
        return self.batch([q], top_k=top_k)[0]

    def batch(self, queries: Sequence[Query | dict], top_k: int = 5, batch_size: int = 16) -> list[Answer]:
        """Answer several questions at once (one retrieval batch, model batches of ``batch_size``)."""
        if top_k < 1:
            raise InputError(f"top_k must be >= 1, got {top_k}")
        examples, timings = self._query_examples(queries)
        answers = self.predict(examples, top_k=top_k, batch_size=batch_size, with_subgraph=True)
        for a in answers:
            a.timings.update(timings)
        return answers

    def retrieve(self, queries: Sequence[Query | dict]) -> list[Answer]:
        """The subgraph each question retrieves, without running the model: :class:`Answer` records
        with an empty ``answer``, the ``subgraph`` (and ``graph``), the task's ``meta`` and the
        ``encode`` / ``retrieve`` timings (the same examples :meth:`batch` would give the model)."""
        examples, timings = self._query_examples(queries)
        return [self._with_provenance(Answer(answer="", timings=dict(timings)), ex, with_subgraph=True)
                for ex in examples]

    def _query_examples(self, queries: Sequence[Query | dict]) -> tuple[list, dict]:
        """The task's examples for ``queries`` and each one's share of the encode / retrieve seconds."""
        qs = [q if isinstance(q, Query) else Query(**q) for q in queries]
        timer = _Timer()
        examples = self.task.query_examples(qs, timer)
        return examples, {s: timer.seconds.get(s, 0.0) / max(len(qs), 1) for s in ("encode", "retrieve")}

    def _with_provenance(self, answer: Answer, example, with_subgraph: bool) -> Answer:
        """``answer`` with the example's provenance: its ``meta`` (the answer's own keys win) and, when
        asked, its subgraph (``graph`` and the reader's ``subgraph`` dict)."""
        answer.meta = {**{k: v for k, v in example.meta.items() if k != "subgraph"}, **answer.meta}
        if with_subgraph:
            answer.graph = example.meta.get("subgraph", example.subgraph)
            answer.subgraph = self.subgraph_dict(answer.graph)
        return answer

    # ------------------------------------------------------------------ the prediction path
    def predict(self, examples: Sequence, top_k: int = 10, batch_size: int = 16, progress: bool = False,
                with_subgraph: bool = False) -> list[Answer]:
        """Run the model on examples a task made; one :class:`Answer` per example, in order."""
        import torch

        model, task = self.model, self.task
        task.model = model
        was = model.training
        model.eval()
        starts = range(0, len(examples), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="predict", unit="batch", leave=False)
        out: list[Answer] = []
        with torch.no_grad():
            for s in starts:
                chunk = list(examples[s: s + batch_size])
                t0 = time.perf_counter()
                answers = self._rank(chunk, top_k) if task.output == "rank" else self._generate(chunk)
                share = (time.perf_counter() - t0) / len(chunk)
                for a, ex in zip(answers, chunk):
                    a.timings["model"] = share
                    out.append(self._with_provenance(a, ex, with_subgraph))
        model.train(was)
        return out

    def _rank(self, chunk: list, top_k: int) -> list[Answer]:
        import torch
        from accelerate.utils import send_to_device

        from mrmkg.metrics.ranking import gold_ranks

        task, model = self.task, self.model
        batch, allowed = task.rank_batch(chunk)
        scores = model.rank(send_to_device(batch, model.device)).float().cpu()
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        k = min(top_k, scores.shape[1])
        top = torch.topk(scores, k=k, dim=1)
        gold = [task.gold_column(batch, i) for i in range(len(chunk))]
        known = [i for i, g in enumerate(gold) if g is not None]
        ranks, tied = {}, {}
        if known:
            r, t = gold_ranks(scores[known], [gold[i] for i in known], ids=[chunk[i].meta.get("id", i) for i in known],
                              return_ties=True)
            ranks, tied = dict(zip(known, r.tolist())), dict(zip(known, t.tolist()))
        answers = []
        for i in range(len(chunk)):
            cands = [Candidate(*task.candidate(batch, j), float(v))  # masked (-inf) candidates are not answers
                     for v, j in zip(top.values[i].tolist(), top.indices[i].tolist()) if v != float("-inf")]
            a = Answer(answer=cands[0].name, answer_id=cands[0].id, candidates=cands)
            if gold[i] is not None:
                a.gold = task.candidate(batch, gold[i])[0]
                a.rank = int(ranks[i])
                a.tied = bool(tied[i])
                a.correct = a.answer_id == a.gold
            answers.append(a)
        return answers

    def _generate(self, chunk: list) -> list[Answer]:
        from accelerate.utils import send_to_device

        task, model = self.task, self.model
        texts = model.generate(send_to_device(task.collate(chunk), model.device),
                               max_new_tokens=task.max_new_tokens)
        answers = []
        for text, ex in zip(texts, chunk):
            read = task.read_output(text, ex)
            answers.append(Answer(answer=read.pop("answer"), answer_id=read.pop("answer_id", None), text=text,
                                  gold=read.pop("gold", None), correct=read.pop("correct", None),
                                  meta=read))  # the rest of the task's reading, e.g. ScienceQA's parse status
        return answers

    def subgraph_dict(self, sg) -> dict | None:
        """A subgraph for a reader: nodes, typed edges (relation, retrieval score, triple id: -1 for
        "image of", -2 for memory edges), and the triples table (ids, names, scores)."""
        kg = getattr(self.task, "kg", None)
        if sg is None or kg is None:
            return None
        d = sg.to_dict(kg)
        d["edges"] = [{"source": int(s), "target": int(t), "relation": kg.relation_ids[int(r)],
                       "relation_name": kg.relation_names[int(r)], "triple": int(tr), "score": round(float(sc), 6)}
                      for (s, t), r, tr, sc in zip(sg.edge_index.T.tolist(), sg.edge_type.tolist(),
                                                   sg.edge_triple.tolist(), sg.edge_score.tolist())]
        return d

    def draw(self, answer: Answer, path: str | Path, title: str | None = None) -> Path:
        """Draw ``answer``'s subgraph (entity names, image nodes as thumbnails, edge scores) to a
        .png or .svg file (:func:`mrmkg.viz.render_subgraph`)."""
        from mrmkg.kg.subgraph import Subgraph
        from mrmkg.viz import render_subgraph

        sg = answer.graph if answer.graph is not None else Subgraph.empty()
        return render_subgraph(self.task.kg, sg, path, title=title or f"answer: {answer.answer}")
