"""ScienceQA as a task: Multimodal-CoT training and evaluation through the engine.

``task: scienceqa`` in a training config (``task_args`` = :class:`~mrmkg.tasks.scienceqa.data.ScienceQATaskArgs`)
trains MR-MKG on one stage of Multimodal-CoT, chosen by ``task_args.prompt.format``:

* ``QCM-LE`` (rationale stage): input question/context/options -> ``"Solution: {lecture} {solution}."``;
* ``QCMG-A`` (answer stage): the same input plus a rationale line -> ``"The answer is (X)."``; training
  uses the *gold* rationale (as MM-CoT does);
* ``QCM-A`` (direct answer): no rationale.

Each example gets the sub-MMKG retrieved from ``task_args.kg`` (question + context + options as the
query, paper A.6/A.7) and, for problems with an image, the frozen vision encoder's tokens of the image
(the encoder named by ``model.vision_encoder``).

**Evaluation** (:meth:`ScienceQATask.evaluate`, called by the engine on ``eval_split``, and
:func:`evaluate_scienceqa`, the entry point of ``mrmkg scienceqa eval`` that writes files): greedy
generation -> strict answer parsing (:func:`~mrmkg.tasks.scienceqa.data.resolve_predictions`, unparseable =
wrong and counted, MM-CoT's random fallback only with ``answer_fallback: random``) -> the official
scorer's columns (NAT SOC LAN TXT IMG NO G1-6 G7-12 Average). The rationale stage has no answer to
parse; it is monitored with ROUGE-L F1 and exact match of the generated rationale against the gold
one (:func:`rationale_metrics`), and its ``predictions.jsonl`` feeds the answer stage.

**Rationales of the answer stage at inference** (``task_args.rationales``): a ``predictions.jsonl``
written by ``mrmkg scienceqa eval`` on a rationale-stage checkpoint (its ``output`` per pid is the
generated rationale; ``{split}`` in the path is replaced by the evaluated split, so one setting serves
val during training and test at the end). Every evaluated pid must have one (an InputError names the
file and the first missing pid). Unset: the *gold* rationale is used at inference too — an oracle
upper bound (MM-CoT's "w/ gold rationale" row), not the paper's setting; metrics record which.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import read_jsonl
from mrmkg.kg.retrieve import Retriever, open_graph
from mrmkg.metrics.text import rouge_l
from mrmkg.model import KGFeatures
from mrmkg.tasks.base import Task
from mrmkg.tasks.scienceqa import data as sqa
from mrmkg.tasks.scienceqa import score as S

#: problems whose examples (retrieval + image tokens) are built at a time: bounds the memory of
#: image tokens (49 x 1280 floats per image for EfficientNet-Lite0) during evaluation
EVAL_CHUNK = 256


# ------------------------------------------------------------------------------ helpers
def read_rationales(path: str | Path) -> dict[str, str]:
    """pid -> generated rationale from a ``predictions.jsonl`` of the rationale stage (``output``)."""
    p = Path(path)
    out: dict[str, str] = {}
    what = ("rationales file (the predictions.jsonl of the rationale stage, written by "
            "`mrmkg scienceqa eval` on the rationale checkpoint)")
    for ln, rec in read_jsonl(p, what):
        if "pid" not in rec or not isinstance(rec.get("output"), str):
            raise InputError('expected an object with "pid" and "output" (the generated rationale)', path=p, line=ln)
        out[str(rec["pid"])] = rec["output"].strip()
    return out


def rationale_metrics(outputs: dict[str, str], problems: dict[str, sqa.ScienceQAProblem]) -> dict:
    """Mean ROUGE-L F1 (x100) and exact-match rate (x100) of generated vs. gold QCM-LE targets."""
    if not outputs:
        raise ValueError("no outputs to score")
    refs = {pid: sqa.build_target(problems[pid], "QCM-LE") for pid in outputs}
    rl = [rouge_l(outputs[p], refs[p]) for p in outputs]
    em = [outputs[p].strip() == refs[p] for p in outputs]
    return {"rouge_l": round(100.0 * float(np.mean(rl)), 2), "exact_match": round(100.0 * float(np.mean(em)), 2),
            "n": len(outputs)}


def _flat_scores(scores: S.ScienceQAScores, report: sqa.ParseReport) -> dict:
    out: dict = dict(scores.rounded())  # the official columns, in order
    out.update({"n": scores.total["Average"], "unparsed": report.unparsed, "fallback": report.fallback})
    return out


def _to_half(examples: list) -> list:
    # image tokens are kept as float16 in the training set (halves the memory of 6k x 49 x 1280
    # EfficientNet tokens); collate converts them back to float32
    for ex in examples:
        if ex.image_tokens is not None:
            ex.image_tokens = np.asarray(ex.image_tokens, dtype=np.float16)
    return examples


# ------------------------------------------------------------------------------ the task
class ScienceQATask(Task):
    """ScienceQA (one Multimodal-CoT stage); see the module docstring.

    Args:
        args: validated ``task_args``.
        model_args: ``model`` section of the training config (:class:`~mrmkg.model.MRMKGConfig` fields).
        seed: the run's seed (model init).
    """

    name = "scienceqa"
    config_class = sqa.ScienceQATaskArgs
    output = "generate"
    graph_arg = "kg"

    def __init__(self, args: sqa.ScienceQATaskArgs, model_args: dict | None = None, seed: int = 0):
        super().__init__(args, model_args, seed)
        self.args = args  # ScienceQA's name for its config (ScienceQATaskArgs)
        self.data = sqa.load_scienceqa(args.root, images_dir=args.images)
        for name in (args.train_split, args.eval_split):
            self.data.split(name)  # unknown split names fail now, not after training
        self.kg = self.index = self.retriever = None
        if args.kg:
            self.kg, self.index = open_graph(args.kg)
            self.retriever = Retriever(self.kg, self.index, args.retrieval_config())
        elif args.prompt.retrieval != "none":
            raise InputError("field 'task_args.kg': a graph folder (`mrmkg kg build`) is required unless "
                             "task_args.prompt.retrieval is 'none'")
        # resolve the model config once: it decides whether image tokens are needed and their width
        self.mcfg = self.model_config()
        self._vision = None

    # -- the model
    def model_defaults(self) -> dict:
        # the KG prefix is on exactly when there is a graph to retrieve from; generation, no entity head
        return {"use_kg": self.retriever is not None}

    def model_fixed(self) -> dict:
        return {"kg": self.args.kg, "entity_head": False}

    def image_token_dim(self) -> int:
        return self.vision_encoder.dim if self.uses_images else 0

    @property
    def uses_images(self) -> bool:
        return self.args.prompt.with_image and self.mcfg.use_image

    @property
    def vision_encoder(self):
        """The frozen encoder of question images (``model.vision_encoder``), loaded on first use."""
        if self._vision is None and self.uses_images:
            from mrmkg.encoders.registry import get_vision_encoder

            self._vision = get_vision_encoder(self.mcfg.vision_encoder)
        return self._vision

    def features(self):
        if self.index is not None:
            return KGFeatures.from_index(self.index)
        # no graph: an empty feature table (the KG prefix is off); widths only matter for the checkpoint
        return KGFeatures.random(0, 1, 0, 1, 0)

    def problems(self, split: str, limit: int | None = None) -> list[sqa.ScienceQAProblem]:
        probs = self.data.split(split)
        limit = self.args.limit if limit is None else limit
        return probs[:limit] if limit else probs

    def rationales_for(self, split: str, pids: Sequence[str], path: str | None = None) -> dict[str, str] | None:
        """Generated rationales of ``pids`` for the answer stage (None = gold; see module docstring)."""
        if self.args.prompt.format != "QCMG-A":
            return None
        path = self.args.rationales if path is None else path
        if not path:
            return None
        p = Path(str(path).replace("{split}", split))
        rats = read_rationales(p)
        missing = [pid for pid in pids if pid not in rats]
        if missing:
            raise InputError(f"no generated rationale for pid {missing[0]} ({len(missing)} of {len(pids)} problems "
                             f"of split {split!r}); evaluate the rationale checkpoint on this split first", path=p)
        return rats

    def make_examples(self, problems: Sequence[sqa.ScienceQAProblem], with_target: bool = True,
                      rationales: dict[str, str] | None = None) -> list:
        """``MRMKGExample`` per problem (:func:`mrmkg.tasks.scienceqa.data.make_examples`)."""
        return sqa.make_examples(problems, self.args.prompt, retriever=self.retriever,
                                 vision_encoder=self.vision_encoder if self.uses_images else None,
                                 rationales=rationales, with_target=with_target)

    def make_train_examples(self) -> list:
        # the answer stage's generated rationales of the eval split must exist before hours of training
        self.rationales_for(self.args.eval_split, [p.pid for p in self.problems(self.args.eval_split)])
        probs = self.problems(self.args.train_split)
        out = []
        for s in range(0, len(probs), EVAL_CHUNK):  # gold rationales for QCMG-A (MM-CoT)
            out += _to_half(self.make_examples(probs[s : s + EVAL_CHUNK]))
        return out

    def read_output(self, text: str, example) -> dict:
        """The choice a generated "The answer is (X)." names (strict: never guessed); for the
        rationale stage (QCM-LE) the text itself."""
        if self.args.prompt.format == "QCM-LE":
            return {"answer": text.strip()}
        choices, gold = example.meta["choices"], example.meta.get("gold")
        pa = sqa.parse_answer(text, len(choices))
        out = {"answer": "" if pa.index is None else choices[pa.index],
               "answer_id": None if pa.index is None else chr(ord("A") + pa.index),
               "prediction": pa.index, "parse": pa.status}
        if gold is not None:
            out["gold"] = chr(ord("A") + gold)
            out["correct"] = pa.index == gold
        return out

    def predict(self, model, problems: Sequence[sqa.ScienceQAProblem], batch_size: int = 8,
                rationales: dict[str, str] | None = None, progress: bool = False) -> list[dict]:
        """Generate for every problem (split order), through :class:`mrmkg.pipeline.Pipeline`. One dict
        per problem: ``pid``, ``prediction`` (choice index or None: strict parse, never guessed),
        ``parse`` (status), ``output`` (the generated text), ``answer`` (gold index), ``retrieved`` (the
        subgraph's provenance, :meth:`Subgraph.to_dict <mrmkg.kg.subgraph.Subgraph.to_dict>`, or None
        without a graph)."""
        from mrmkg.pipeline import Pipeline

        pipe = Pipeline(self, model)
        preds = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(problems), desc=f"generate {self.args.prompt.format}", unit="problem")
        for c in range(0, len(problems), EVAL_CHUNK):
            chunk = list(problems[c : c + EVAL_CHUNK])
            examples = self.make_examples(chunk, with_target=False, rationales=rationales)
            for s in range(0, len(chunk), batch_size):
                part = examples[s : s + batch_size]
                for p, ex, a in zip(chunk[s : s + batch_size], part, pipe.predict(part, batch_size=batch_size)):
                    pa = sqa.parse_answer(a.text, len(p.choices))
                    preds.append({
                        "pid": p.pid, "prediction": pa.index, "parse": pa.status, "output": a.text,
                        "answer": p.answer,
                        "retrieved": None if ex.subgraph is None or self.kg is None else ex.subgraph.to_dict(self.kg),
                    })
                if bar is not None:
                    bar.update(len(part))
        if bar is not None:
            bar.close()
        return preds

    def evaluate_split(self, pipe, split, batch_size: int = 8, progress: bool = False):
        """The problems of ``split`` (None: ``test_split``): the official scorer's columns for the
        answer formats (plus the parse report), ROUGE-L / exact match for the rationale stage."""
        split = str(split or self.args.test_split)
        probs = self.problems(split)
        if not probs:
            raise InputError(f"split {split!r} has no problems")
        rats = self.rationales_for(split, [p.pid for p in probs])
        preds = self.predict(pipe.model, probs, batch_size, rationales=rats, progress=progress)
        flat, scores, report = self.score(preds)
        extra = {"split": split, "format": self.args.prompt.format}
        if self.args.prompt.format == "QCMG-A":
            extra["rationales"] = "gold" if rats is None else str(self.args.rationales).replace("{split}", split)
        metrics = flat if scores is None else {**scores.to_dict(), "parse": report.to_dict()}
        if progress and scores is not None:
            S.print_scores(scores, topics=False)
        return preds, {**metrics, **extra}, {"split": split}

    def query_examples(self, queries, timer) -> list:
        """A user's multiple-choice question (``choices`` required, ``image`` optional, ``context``
        the hint), written as the checkpoint's Multimodal-CoT stage writes its inputs."""
        probs = []
        for i, q in enumerate(queries):
            if q.analogy is not None:
                raise InputError("a ScienceQA checkpoint answers multiple-choice questions (a question and --choices), "
                                 "not analogies (--analogy is for MARS and demo checkpoints)")
            if not q.question.strip():
                raise InputError("the question is empty")
            if not q.choices or len(q.choices) < 2:
                raise InputError("a ScienceQA checkpoint answers multiple-choice questions: give at least two "
                                 "choices (--choices \"A|B\")")
            if len(q.choices) > len(sqa.OPTIONS):  # the prompt names them by the letters A-E, as ScienceQA does
                raise InputError(f"a ScienceQA checkpoint answers with one of {len(sqa.OPTIONS)} option letters "
                                 f"({', '.join(sqa.OPTIONS)}): give at most {len(sqa.OPTIONS)} choices, not "
                                 f"{len(q.choices)}")
            image = None if q.image is None else Path(q.image)
            if image is not None and not image.is_file():
                raise InputError("image not found", path=image)
            probs.append(sqa.ScienceQAProblem(
                pid=f"ask-{i + 1}", question=q.question.strip(), choices=list(q.choices), answer=-1, hint=q.context,
                image=None if image is None else image.name, task="", grade="grade1", subject="", topic="",
                category="", skill="", lecture="", solution="", split="ask", image_path=image))
        with timer("retrieve"):
            examples = self.make_examples(probs, with_target=False)
        for ex in examples:
            ex.meta["gold"] = None
        return examples

    def score(self, preds: list[dict]) -> tuple[dict, S.ScienceQAScores | None, sqa.ParseReport | None]:
        """(flat metrics, official scores, parse report) of predictions; scores are None for QCM-LE."""
        outputs = {p["pid"]: p["output"] for p in preds}
        if self.args.prompt.format == "QCM-LE":
            return rationale_metrics(outputs, self.data.problems), None, None
        resolved, report = sqa.resolve_predictions(outputs, self.data.problems, fallback=self.args.answer_fallback,
                                                   seed=self.seed)
        scores = S.score(self.data.problems, resolved)
        return _flat_scores(scores, report), scores, report

    def evaluate(self, model, batch_size: int = 8) -> dict:
        """Metrics on ``eval_split`` (first ``limit`` problems): the official columns for the answer
        formats (plus ``n``, ``unparsed``), ROUGE-L / exact match for the rationale stage."""
        probs = self.problems(self.args.eval_split)
        rats = self.rationales_for(self.args.eval_split, [p.pid for p in probs])
        preds = self.predict(model, probs, batch_size, rationales=rats)
        metrics, _, _ = self.score(preds)
        if self.args.prompt.format == "QCMG-A":
            metrics["rationales"] = "generated" if rats is not None else "gold"
        return metrics


# ------------------------------------------------------------------------------ entry point
def evaluate_scienceqa(checkpoint: str | Path, out: str | Path, split: str | None = None, batch_size: int = 8,
                       kg: str | None = None, rationales: str | None = None, limit: int | None = None,
                       root: str | None = None, progress: bool = True, device: str = "cpu",
                       dtype: str | None = None) -> dict:
    """Evaluate a ScienceQA checkpoint of ``mrmkg train`` on ``split`` (default: the run's
    ``test_split``) and write ``predictions.jsonl`` (:meth:`ScienceQATask.predict`; readable by
    ``mrmkg scienceqa score`` and, for the rationale stage, by the answer stage's ``rationales``),
    ``metrics.json`` and ``eval_config.yaml`` into ``out``, atomically (:func:`mrmkg.evaluate.evaluate`).
    ``kg``, ``rationales`` (may hold ``{split}``), ``limit`` and ``root`` override the run's ``task_args``.
    ``device`` and ``dtype`` (the frozen LLM's) as in :meth:`Pipeline.from_pretrained`. Returns the metrics dict written."""
    from mrmkg.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(checkpoint, device=device, dtype=dtype, task_args={
        "kg": kg, "rationales": rationales, "limit": limit, "root": root})
    if not isinstance(pipe.task, ScienceQATask):
        raise InputError(f"this checkpoint was trained on task {pipe.task.name!r}, not 'scienceqa'", path=checkpoint)
    if rationales and pipe.task.args.prompt.format != "QCMG-A":  # it would be ignored: say so instead
        raise InputError(f"--rationales feeds the answer stage (prompt format QCMG-A); this checkpoint's format is "
                         f"{pipe.task.args.prompt.format}", path=checkpoint)
    from mrmkg.evaluate import write_evaluation

    return write_evaluation(pipe, split, out, batch_size=batch_size, progress=progress)
