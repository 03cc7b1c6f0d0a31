"""Stage-1 pretraining (paper A.3) as a task: question -> answer over an instance's MMKG.

``task: stage1`` with ``task_args`` = :class:`~mrmkg.tasks.kgqa.data.Stage1TaskArgs` trains MR-MKG's
adapters on :class:`~mrmkg.tasks.kgqa.data.Stage1Record` files:

* ``source: vg``: a folder written by ``mrmkg stage1 vg`` (``records.jsonl``; ``graph/`` is the one
  MMKG all instances live in, ``task_args.kg`` defaults to it; the task indexes it on first use with
  the model's ``text_encoder`` / ``vision_encoder`` when ``graph/index`` is absent);
* ``source: records``: a ``records.jsonl`` written by ``mrmkg stage1 kg-qa`` over the graph ``kg``.

Each record becomes an ``MRMKGExample``: prompt ``"Question: ..\\nAnswer:"``, the answer as the
generative target, the record's subgraph (indices into ``kg``) and, when it has an image (the VG photo
or an entity image), that image's visual tokens. The answer is generated, as at fine-tuning time.

**Dev portion**: a seeded ``eval_fraction`` of the instances (at least one when the fraction is > 0)
is held out. :meth:`Stage1Task.evaluate` reports ``exact_match`` (x100: greedy answer == gold after
:func:`mrmkg.metrics.text.normalize_answer`, VQA-style: lowercase, whitespace collapsed, trailing period and articles
dropped), ``dev_loss`` (the mean training loss on the dev portion) and ``n``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mrmkg.encoders.registry import get_vision_encoder
from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.index import IndexConfig, KGIndex, resolve_image_path
from mrmkg.kg.retrieve import RetrievalConfig, Retriever, open_graph
from mrmkg.kg.subgraph import ENTITY
from mrmkg.metrics.text import exact_match
from mrmkg.model import KGFeatures
from mrmkg.tasks.base import Task
from mrmkg.tasks.kgqa.data import PROMPT_TEMPLATE, Stage1Record, Stage1TaskArgs, load_records, to_examples


def split_dev(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, dev ids), both sorted: a seeded ``fraction`` of ``range(n)`` is dev (>= 1 when
    ``fraction > 0`` and ``n >= 2``; never all of them)."""
    if fraction <= 0 or n < 2:
        return np.arange(n), np.zeros(0, np.int64)
    k = min(max(1, int(round(fraction * n))), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


class Stage1Task(Task):
    """Stage-1 QA instances; see the module docstring."""

    name = "stage1"
    config_class = Stage1TaskArgs
    output = "generate"
    graph_arg = "kg"

    def __init__(self, args: Stage1TaskArgs, model_args: dict | None = None, seed: int = 0):
        super().__init__(args, model_args, seed)
        self.args = args  # the stage-1 name for its config (Stage1TaskArgs)
        data = Path(args.data)
        if args.source == "vg":
            if not (data / "records.jsonl").is_file():
                raise InputError("field 'task_args.data': not a folder written by `mrmkg stage1 vg` "
                                 "(records.jsonl is missing)", path=data)
            records_file, graph = data / "records.jsonl", Path(args.kg) if args.kg else data / "graph"
        else:
            if not args.kg:
                raise InputError("field 'task_args.kg': source 'records' needs the graph folder the records "
                                 "were built from (with its index)")
            records_file, graph = data, Path(args.kg)
        self.graph = str(graph)
        self.mcfg = self.model_config()
        if not (graph / "index").is_dir():
            if args.source != "vg":
                raise InputError("the graph has no index; build it with `mrmkg kg build` first", path=graph)
            # the VG builder's graph/ is a saved MMKG, which `mrmkg kg build` does not read: index it
            # here, once, with the model's frozen encoders (written atomically into graph/index)
            KGIndex.build(MMKG.load(graph), IndexConfig(text_encoder=self.mcfg.text_encoder,
                                                        vision_encoder=self.mcfg.vision_encoder),
                          directory=graph, progress=False)
        self.kg, self.index = open_graph(graph)
        records = load_records(records_file)
        if args.limit:
            records = records[: args.limit]
        if not records:
            raise InputError("no stage-1 records", path=records_file)
        for r in records:
            if r.image:
                r.image = resolve_image_path(r.image, graph)  # kg-qa images are relative to the graph folder
            sg = r.subgraph
            if sg is not None and sg.num_nodes:
                ent = sg.node_ref[sg.node_kind == ENTITY]
                img = sg.node_ref[sg.node_kind != ENTITY]
                if (ent.size and int(ent.max()) >= self.kg.num_entities) or (img.size and int(img.max()) >= self.kg.num_images):
                    raise InputError(f"record {r.id}: its subgraph refers to nodes the graph does not have; "
                                     "was it built from another graph?", path=records_file)
        self.records: list[Stage1Record] = records
        self.train_ids, self.dev_ids = split_dev(len(records), args.eval_fraction, seed)
        self._vision = None
        self._retriever = None

    def model_fixed(self) -> dict:
        return {"kg": self.graph, "entity_head": False}

    def features(self) -> KGFeatures:
        return KGFeatures.from_index(self.index)

    def image_token_dim(self) -> int:
        return self.vision_encoder.dim if self.uses_images else 0

    @property
    def uses_images(self) -> bool:
        return self.args.with_image and self.mcfg.use_image

    @property
    def vision_encoder(self):
        if self._vision is None and self.uses_images:
            self._vision = get_vision_encoder(self.mcfg.vision_encoder)
        return self._vision

    def make_examples(self, ids: np.ndarray, with_target: bool = True) -> list:
        recs = [self.records[int(i)] for i in ids]
        ex = to_examples(recs, vision_encoder=self.vision_encoder if self.uses_images else None, with_target=with_target)
        for e, r in zip(ex, recs):
            e.meta.update(id=r.id, target=r.target)
            if e.image_tokens is not None:
                e.image_tokens = np.asarray(e.image_tokens, dtype=np.float16)  # memory; collate restores fp32
        return ex

    # -- Task protocol
    def make_train_examples(self) -> list:
        return self.make_examples(self.train_ids)

    def read_output(self, text: str, example) -> dict:
        gold = example.meta.get("target")
        out = {"answer": text.strip()}
        if gold is not None:
            out.update(gold=gold, correct=exact_match(text, gold))
        return out

    def predict(self, model, ids: np.ndarray | None = None, batch_size: int = 8) -> list[dict]:
        """Greedy answers for records ``ids`` (default: the dev portion), through
        :class:`mrmkg.pipeline.Pipeline`: ``id``, ``output``, ``target``, ``correct`` (exact match)."""
        from mrmkg.pipeline import Pipeline

        ids = self.dev_ids if ids is None else ids
        pipe, out = Pipeline(self, model), []
        for s in range(0, len(ids), batch_size):
            part = ids[s : s + batch_size]
            for i, a in zip(part.tolist(), pipe.predict(self.make_examples(part, with_target=False), batch_size=batch_size)):
                r = self.records[i]
                out.append({"id": r.id, "output": a.text, "target": r.target, "correct": a.correct})
        return out

    def evaluate_split(self, pipe, split, batch_size: int = 8, progress: bool = False):
        """The held-out portion (``split`` None or "dev") or every record ("all"): exact match."""
        split = str(split or "dev")
        if split not in ("dev", "all"):
            raise InputError(f"--split {split!r}: a stage-1 checkpoint is evaluated on 'dev' (its held-out records) or 'all'")
        ids = self.dev_ids if split == "dev" else np.arange(len(self.records))
        preds = self.predict(pipe.model, ids, batch_size)
        em = round(100.0 * float(np.mean([p["correct"] for p in preds])), 2) if preds else float("nan")
        return preds, {"exact_match": em, "n": len(preds)}, {"split": split}

    def query_examples(self, queries, timer) -> list:
        """A user's question (and picture): the subgraph is retrieved from the task's graph (paper
        A.6, default retrieval settings), the prompt written as the stage-1 records write theirs."""
        if self._retriever is None:
            self._retriever = Retriever(self.kg, self.index, RetrievalConfig())
        texts = [q.question.strip() for q in queries]
        if not all(texts):
            raise InputError("the question is empty")
        with timer("retrieve"):
            sgs = self._retriever.retrieve_batch(texts)
        recs = [Stage1Record(id=f"ask-{i + 1}", question=t, prompt=PROMPT_TEMPLATE.format(question=t), target="",
                             subgraph=sg, image=None if q.image is None else str(q.image))
                for i, (t, q, sg) in enumerate(zip(texts, queries, sgs))]
        with timer("encode"):
            return to_examples(recs, vision_encoder=self.vision_encoder if self.uses_images else None, with_target=False)

    def evaluate(self, model, batch_size: int = 8) -> dict:
        """``exact_match`` (x100), ``dev_loss`` and ``n`` on the dev portion ({} when there is none)."""
        if not len(self.dev_ids):
            return {}
        preds = self.predict(model, self.dev_ids, batch_size)
        total, n = 0.0, 0
        # the alignment loss samples anchors from the model's own generator: restore it, so that
        # evaluating (eval_every) leaves the training draws unchanged
        gen = getattr(model, "align_generator", None)
        state = gen.get_state() if gen is not None else None
        with torch.no_grad():
            for s in range(0, len(self.dev_ids), batch_size):
                ex = self.make_examples(self.dev_ids[s : s + batch_size])
                total += float(model(model.collate(ex).to(model.device)).loss) * len(ex)
                n += len(ex)
        if gen is not None:
            gen.set_state(state)
        return {"exact_match": round(100.0 * float(np.mean([p["correct"] for p in preds])), 2),
                "dev_loss": round(total / n, 6), "n": len(preds)}
