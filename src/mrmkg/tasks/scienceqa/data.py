"""ScienceQA (Lu et al., NeurIPS 2022) in its official layout, with Multimodal-CoT prompting.

Files (the layout of github.com/lupantech/ScienceQA, ``data/``)::

    <root>/problems.json       pid -> {question, choices, answer, hint, image, task, grade, subject,
                               topic, category, skill, lecture, solution, split}
    <root>/pid_splits.json     split name -> [pid, ...] (train/val/test/trainval/minitrain/...)
    <root>/captions.json       {"model": ..., "captions": {pid: caption}}  (or ``<root>/../captions.json``)
    <images>/<split>/<pid>/image.png   with ``<images>`` = ``<root>/images`` if present, else ``<root>``

Everything is validated on load; a problem is reported as :class:`~mrmkg.errors.InputError` naming
the file, the line of the problem in ``problems.json`` where it can be found, the pid and the field.

Prompting follows Multimodal-CoT (amazon-science/mm-cot, ``utils_prompt.py``) character for
character, so that numbers are comparable with published ones:

* ``QCM-LE`` (rationale stage): ``"Question: {q}\\nContext: {c}\\nOptions: (A) .. (B) ..\\nSolution:"``
  -> ``"Solution: {lecture} {solution}."``
* ``QCMG-A`` (answer stage): the same input plus the rationale line (the gold ``"Solution: {lecture}
  {solution}"`` in training, the generated rationale at inference), ending ``"Answer:"`` ->
  ``"The answer is (X)."``
* ``QCM-A`` (direct answer): ``"Question: ..\\nContext: ..\\nOptions: ..\\nAnswer:"`` -> ``"The answer is (X)."``

Context = hint, plus the image caption when ``use_caption`` (joined by a space), ``"N/A"`` when both
are empty. As in MM-CoT, newlines inside lecture and solution are written as the two characters
``\\n`` and double spaces are collapsed once.

Answer parsing (:func:`parse_answer`) uses MM-CoT's rule — exactly one match of
``The answer is \\(([A-Z])\\)`` — and never guesses: anything else is *unparseable*, counted and
reported, and scored as wrong. MM-CoT's random fallback exists only behind ``fallback="random"``
(:func:`resolve_predictions`), for comparison with published numbers.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from mrmkg.errors import InputError
from mrmkg.fileio import contained_path, read_json

#: Option letters, as MM-CoT's ``--options`` default. ScienceQA has 2 to 5 choices.
OPTIONS = ("A", "B", "C", "D", "E")
SUBJECTS = ("natural science", "social science", "language science")
FORMATS = ("QCM-LE", "QCMG-A", "QCM-A")
PromptFormat = Literal["QCM-LE", "QCMG-A", "QCM-A"]

_REQUIRED: dict[str, tuple[type, ...]] = {
    "question": (str,), "choices": (list,), "answer": (int,), "hint": (str,), "image": (str, type(None)),
    "task": (str,), "grade": (str,), "subject": (str,), "topic": (str,), "category": (str,),
    "skill": (str,), "lecture": (str,), "solution": (str,), "split": (str,),
}
_GRADE = re.compile(r"^grade([1-9]|1[0-2])$")
_ANSWER = re.compile(r"The answer is \(([A-Z])\)")


# ---------------------------------------------------------------------------------------- data
@dataclass
class ScienceQAProblem:
    """One ScienceQA problem; field names are the official ones (``pid`` is the dict key)."""

    pid: str
    question: str
    choices: list[str]
    answer: int  # index into ``choices``
    hint: str  # the text context ("" when none)
    image: str | None  # "image.png" or None
    task: str
    grade: str  # "grade1" .. "grade12"
    subject: str  # one of SUBJECTS
    topic: str
    category: str
    skill: str
    lecture: str
    solution: str
    split: str  # train / val / test: the images folder the image lives in
    caption: str = ""  # generated caption (captions.json), "" when none
    image_path: Path | None = None  # resolved image file, None when the problem has no image

    @property
    def grade_number(self) -> int:
        return int(self.grade[len("grade"):])

    @property
    def has_text(self) -> bool:
        """TXT column of the official scorer: the hint is non-empty (truthiness, as the scorer)."""
        return bool(self.hint)

    @property
    def has_image(self) -> bool:
        """IMG column: the problem has an image (TXT and IMG overlap)."""
        return bool(self.image)

    @property
    def no_context(self) -> bool:
        """NO column: neither a hint nor an image."""
        return not self.hint and not self.image

    @property
    def answer_letter(self) -> str:
        return OPTIONS[self.answer]


@dataclass
class ScienceQA:
    """Loaded problems (all of problems.json, validated) and the pid splits."""

    problems: dict[str, ScienceQAProblem]
    splits: dict[str, list[str]]
    root: Path | None = None

    def split(self, name: str) -> list[ScienceQAProblem]:
        """The problems of split ``name``, in pid_splits.json order."""
        if name not in self.splits:
            raise InputError(f"unknown split {name!r}; pid_splits.json has: {', '.join(self.splits)}",
                             path=None if self.root is None else self.root / "pid_splits.json")
        return [self.problems[p] for p in self.splits[name]]


def _json(path: Path):
    return read_json(path, "file", "a ScienceQA JSON file")


def _line_of_key(path: Path, key: str) -> int | None:
    """1-based line where ``"key":`` occurs in a JSON file (only called on the error path)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r'"' + re.escape(key) + r'"\s*:', text)
    return None if m is None else text.count("\n", 0, m.start()) + 1


def load_pid_splits(path: str | Path) -> dict[str, list[str]]:
    """``pid_splits.json``: split name -> list of pid strings."""
    path = Path(path)
    data = _json(path)
    if not isinstance(data, dict):
        raise InputError(f"expected an object mapping split names to pid lists, got {type(data).__name__}", path=path)
    out: dict[str, list[str]] = {}
    for name, pids in data.items():
        if not isinstance(pids, list):
            raise InputError(f"split {name!r}: expected a list of pids, got {type(pids).__name__}",
                             path=path, line=_line_of_key(path, name))
        bad = [p for p in pids if not isinstance(p, (str, int)) or isinstance(p, bool)]
        if bad:
            raise InputError(f"split {name!r}: pid {bad[0]!r} is not a string", path=path, line=_line_of_key(path, name))
        out[name] = [str(p) for p in pids]
    return out


def load_captions(path: str | Path) -> dict[str, str]:
    """``captions.json`` (``{"captions": {pid: text}}``, as released by ScienceQA/MM-CoT) -> pid -> caption."""
    path = Path(path)
    data = _json(path)
    caps = data.get("captions") if isinstance(data, dict) else None
    if not isinstance(caps, dict):
        raise InputError('expected an object with a "captions" mapping of pid -> caption text', path=path)
    for pid, text in caps.items():
        if not isinstance(text, str):
            raise InputError(f"caption of pid {pid}: expected a string, got {type(text).__name__}",
                             path=path, line=_line_of_key(path, pid))
    return dict(caps)


def _validate_problem(pid: str, rec, path: Path) -> ScienceQAProblem:
    def err(msg: str) -> InputError:
        return InputError(f"pid {pid}: {msg}", path=path, line=_line_of_key(path, pid))

    if not isinstance(rec, dict):
        raise err(f"expected an object of problem fields, got {type(rec).__name__}")
    for name, types_ in _REQUIRED.items():
        if name not in rec:
            raise err(f"missing field '{name}'")
        v = rec[name]
        if not isinstance(v, types_) or isinstance(v, bool):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types_)
            raise err(f"field '{name}': expected {want}, got {type(v).__name__} {v!r}")
    choices = rec["choices"]
    if len(choices) < 2 or len(choices) > len(OPTIONS):
        raise err(f"field 'choices': expected 2 to {len(OPTIONS)} choices, got {len(choices)}")
    if not all(isinstance(c, str) for c in choices):
        raise err("field 'choices': every choice must be a string")
    if not 0 <= rec["answer"] < len(choices):
        raise err(f"field 'answer': index {rec['answer']} is out of range for {len(choices)} choices (0..{len(choices) - 1})")
    if not _GRADE.match(rec["grade"]):
        raise err(f"field 'grade': expected 'grade1' .. 'grade12', got {rec['grade']!r}")
    if rec["subject"] not in SUBJECTS:
        raise err(f"field 'subject': expected one of {', '.join(SUBJECTS)}, got {rec['subject']!r}")
    return ScienceQAProblem(pid=pid, **{k: rec[k] for k in _REQUIRED})


def _find(root: Path, name: str, explicit: str | Path | None) -> Path:
    if explicit is not None:
        return Path(explicit)
    for cand in (root / name, root.parent / name):
        if cand.is_file():
            return cand
    return root / name


def load_scienceqa(
    root: str | Path,
    problems_file: str | Path | None = None,
    pid_splits_file: str | Path | None = None,
    captions_file: str | Path | None = None,
    images_dir: str | Path | None = None,
    check_images: bool = True,
    allow_outside_paths: bool = False,
) -> ScienceQA:
    """Load and validate the official ScienceQA files.

    Args:
        root: folder with ``problems.json`` and ``pid_splits.json`` (``data/scienceqa`` of the official
            repository). ``captions.json`` is looked up in ``root`` and then its parent.
        problems_file, pid_splits_file, captions_file: explicit paths overriding the defaults; captions
            are optional (``""`` for every problem when no file is found).
        images_dir: folder holding ``<split>/<pid>/image.png``; default ``<root>/images`` when it
            exists, else ``<root>``.
        check_images: every problem with an image must have its file (an InputError otherwise).
        allow_outside_paths: accept an image path (``<images>/<split>/<pid>/<image>``, from the data files)
            that resolves outside ``<images>``; refused by default, before the file is looked at, with a
            message that does not tell whether it exists (:func:`mrmkg.fileio.contained_path`).

    Raises:
        InputError: missing file, bad JSON, a missing or ill-typed field, an answer index out of range,
            a pid in a split that is not in problems.json, a missing image file.
    """
    root = Path(root)
    ppath = Path(problems_file) if problems_file is not None else root / "problems.json"
    spath = _find(root, "pid_splits.json", pid_splits_file)
    cpath = _find(root, "captions.json", captions_file)
    raw = _json(ppath)
    if not isinstance(raw, dict):
        raise InputError(f"expected an object mapping pid -> problem, got {type(raw).__name__}", path=ppath)
    problems = {str(pid): _validate_problem(str(pid), rec, ppath) for pid, rec in raw.items()}
    splits = load_pid_splits(spath)
    for name, pids in splits.items():
        missing = [p for p in pids if p not in problems]
        if missing:
            raise InputError(f"split {name!r} lists pid {missing[0]} ({len(missing)} in all) that is not in "
                             f"{ppath.name}", path=spath, line=_line_of_key(spath, name))
    if cpath.is_file():
        caps = load_captions(cpath)
        for pid, p in problems.items():
            p.caption = caps.get(pid, "")
    elif captions_file is not None:
        raise InputError("captions file not found", path=cpath)
    img_root = Path(images_dir) if images_dir is not None else (root / "images" if (root / "images").is_dir() else root)
    for pid, p in problems.items():
        if p.image:
            rel = Path(p.split) / pid / p.image
            contained_path(rel, img_root, allow_outside=allow_outside_paths, what=f"pid {pid}: image", source=ppath,
                           line=_line_of_key(ppath, pid))
            p.image_path = img_root / rel  # as before (not resolved): embedding-cache keys stay the same
            if check_images and not p.image_path.is_file():
                raise InputError(f"pid {pid}: field 'image' is {p.image!r} but the image file is missing "
                                 f"(expected <images>/<split>/<pid>/{p.image})", path=p.image_path)
    return ScienceQA(problems=problems, splits=splits, root=root)


# ----------------------------------------------------------------------------------- prompting
def context_text(p: ScienceQAProblem, use_caption: bool = False) -> str:
    """Hint (+ caption when ``use_caption``), joined by a space; ``"N/A"`` when empty (MM-CoT)."""
    cap = p.caption if use_caption else ""
    return " ".join([p.hint, cap]).strip() or "N/A"


def choices_text(p: ScienceQAProblem) -> str:
    """``"(A) first (B) second"``."""
    return " ".join(f"({OPTIONS[i]}) {c}" for i, c in enumerate(p.choices))


def _escape(text: str) -> str:
    # MM-CoT writes newlines of lecture/solution as the two characters "\n" (one-line targets).
    return text.replace("\n", "\\n")


def rationale_text(p: ScienceQAProblem) -> str:
    """The gold rationale line used inside QCMG inputs: ``"Solution: {lecture} {solution}"``."""
    return f"Solution: {_escape(p.lecture)} {_escape(p.solution)}"


def build_input(p: ScienceQAProblem, fmt: PromptFormat = "QCM-LE", use_caption: bool = False,
                rationale: str | None = None) -> str:
    """The model input (prompt text) of ``p`` in format ``fmt``.

    For ``QCMG-A`` the rationale line is ``rationale`` (a generated ``"Solution: ..."`` at inference)
    or, when None, the gold one (training, as MM-CoT does).
    """
    if fmt not in FORMATS:
        raise InputError(f"prompt format {fmt!r}: expected one of {', '.join(FORMATS)}")
    base = f"Question: {p.question}\nContext: {context_text(p, use_caption)}\nOptions: {choices_text(p)}\n"
    if fmt == "QCMG-A":
        base += (rationale if rationale is not None else rationale_text(p)) + "\n"
    text = base + ("Solution:" if fmt == "QCM-LE" else "Answer:")
    return text.replace("  ", " ").strip()


def build_target(p: ScienceQAProblem, fmt: PromptFormat = "QCM-LE") -> str:
    """The training target: ``"Solution: {lecture} {solution}."`` (LE) or ``"The answer is (X)."`` (A)."""
    if fmt not in FORMATS:
        raise InputError(f"prompt format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "QCM-LE":
        out = f"Solution: {_escape(p.lecture)} {_escape(p.solution)}."
    else:
        out = f"The answer is ({p.answer_letter})."
    return out.replace("  ", " ").strip()


def retrieval_query(p: ScienceQAProblem, use_caption: bool = False) -> str:
    """Text that retrieves the sub-MMKG (paper A.7): question, context and options, one per line.

    An empty context is left out rather than written as "N/A", so the query holds no filler words.
    """
    ctx = " ".join([p.hint, p.caption if use_caption else ""]).strip()
    return "\n".join(x for x in (p.question, ctx, choices_text(p)) if x)


# ------------------------------------------------------------------------------ answer parsing
@dataclass
class ParsedAnswer:
    """``index`` is the chosen choice (None unless ``status == "ok"``)."""

    index: int | None
    status: Literal["ok", "unparseable", "ambiguous", "out_of_range"]
    letter: str | None = None


def parse_answer(text: str, num_choices: int) -> ParsedAnswer:
    """Extract the answer of a generated ``"The answer is (X)."``; never guesses.

    MM-CoT's rule: exactly one match of ``The answer is \\(([A-Z])\\)``. No match is
    ``unparseable``, several matches are ``ambiguous`` (even when they agree: MM-CoT fails them too),
    a letter past the problem's last choice is ``out_of_range``.
    """
    found = _ANSWER.findall(text or "")
    if not found:
        return ParsedAnswer(None, "unparseable")
    if len(found) > 1:
        return ParsedAnswer(None, "ambiguous", found[0])
    letter = found[0]
    idx = OPTIONS.index(letter) if letter in OPTIONS else len(OPTIONS)
    if idx >= num_choices:
        return ParsedAnswer(None, "out_of_range", letter)
    return ParsedAnswer(idx, "ok", letter)


@dataclass
class ParseReport:
    """How many generated answers parsed; ``failed`` lists (pid, status, text) of the others."""

    total: int = 0
    parsed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    fallback: str = "none"

    @property
    def unparsed(self) -> int:
        return self.total - self.parsed

    def to_dict(self) -> dict:
        return {"total": self.total, "parsed": self.parsed, "unparsed": self.unparsed,
                "by_status": dict(self.by_status), "fallback": self.fallback,
                "failed_pids": [f[0] for f in self.failed]}


def resolve_predictions(
    outputs: dict[str, str],
    problems: dict[str, ScienceQAProblem],
    fallback: Literal["none", "random"] = "none",
    seed: int = 0,
) -> tuple[dict[str, int | None], ParseReport]:
    """Generated answer texts (pid -> text) -> predicted choice indices (pid -> int or None).

    ``fallback="none"`` (default): an answer that does not parse is None, i.e. wrong, and reported.
    ``fallback="random"``: MM-CoT's behaviour, for comparison with published numbers only — a
    failed parse becomes ``random.choice(range(5))`` over *all five* option letters (not the
    problem's choices, so it may still be wrong by construction), drawn from ``random.Random(seed)``
    in pid order. The report counts the failures either way.
    """
    if fallback not in ("none", "random"):
        raise InputError(f"fallback {fallback!r}: expected 'none' or 'random'")
    rng = random.Random(seed)
    preds: dict[str, int | None] = {}
    rep = ParseReport(fallback=fallback)
    counts: Counter = Counter()
    for pid in outputs:
        if pid not in problems:
            raise InputError(f"prediction for pid {pid}, which is not a loaded problem")
        pa = parse_answer(outputs[pid], len(problems[pid].choices))
        counts[pa.status] += 1
        rep.total += 1
        if pa.status == "ok":
            rep.parsed += 1
            preds[pid] = pa.index
        else:
            rep.failed.append((pid, pa.status, outputs[pid]))
            preds[pid] = rng.choice(range(len(OPTIONS))) if fallback == "random" else None
    rep.by_status = dict(counts)
    return preds, rep


# ------------------------------------------------------------------------- model examples
@dataclass
class ScienceQAPromptConfig:
    """How a ScienceQA problem becomes a model example."""

    format: str = field(default="QCM-LE", metadata={"help": "QCM-LE (rationale stage), QCMG-A (answer stage "
                                                             "from a rationale) or QCM-A (direct answer)"})
    use_caption: bool = field(default=False, metadata={"help": "append the generated image caption to the "
                                                               "context (MM-CoT's --use_caption)"})
    retrieval: str = field(default="text", metadata={"help": "sub-MMKG query: text (question+context+options; the "
                                                             "paper's default, Table 6), image, text+image, or none"})
    with_image: bool = field(default=True, metadata={"help": "give image problems their visual tokens "
                                                             "(vision encoder -> visual adapter)"})

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.retrieval not in ("text", "image", "text+image", "none"):
            raise ValueError(f"retrieval must be text, image, text+image or none, not {self.retrieval!r}")


def make_examples(
    problems: Sequence[ScienceQAProblem],
    config: ScienceQAPromptConfig = ScienceQAPromptConfig(),
    retriever=None,
    vision_encoder=None,
    rationales: dict[str, str] | None = None,
    with_target: bool = True,
) -> list:
    """ScienceQA problems -> ``mrmkg.model.MRMKGExample`` objects (prompt, target, subgraph, image tokens).

    Args:
        retriever: a :class:`mrmkg.kg.retrieve.Retriever`; required unless ``config.retrieval == "none"``.
            Text retrieval embeds :func:`retrieval_query`; image retrieval the problem's image.
        vision_encoder: a :class:`~mrmkg.encoders.base.VisionEncoder`; image problems get
            ``image_tokens = encode_tokens([image])[0]`` (float32 ``[num_tokens, dim]``); None: no tokens.
        rationales: pid -> generated rationale, used by ``QCMG-A`` at inference (gold when absent).
        with_target: False for inference inputs (``target=None``).

    ``answer`` is left None: ScienceQA is scored by parsing generated text, not by ranking.
    """
    from mrmkg.model import MRMKGExample  # engineer MODEL's contract

    problems = list(problems)
    subgraphs: list = [None] * len(problems)
    mode = config.retrieval
    if mode != "none":
        if retriever is None:
            raise InputError(f"retrieval {mode!r} needs a Retriever (set retrieval: none to run without the MMKG)")
        texts = [retrieval_query(p, config.use_caption) for p in problems]
        imgs = [p.image_path for p in problems]
        if mode == "text":
            subgraphs = retriever.retrieve_batch(texts)
        else:
            # image / text+image: a problem without an image (half of ScienceQA) falls back to its
            # text query, so no example is left without knowledge; the paper does not say what it did.
            if mode == "image":
                texts = [t if im is None else None for t, im in zip(texts, imgs)]
            subgraphs = retriever.retrieve_batch(texts, imgs)
    tokens: list[np.ndarray | None] = [None] * len(problems)
    if config.with_image and vision_encoder is not None:
        with_img = [i for i, p in enumerate(problems) if p.image_path is not None]
        if with_img:
            arr = vision_encoder.encode_tokens([problems[i].image_path for i in with_img])
            for j, i in enumerate(with_img):
                tokens[i] = np.asarray(arr[j], dtype=np.float32)
    out = []
    for p, sg, tok in zip(problems, subgraphs, tokens):
        rat = (rationales or {}).get(p.pid)
        out.append(MRMKGExample(
            prompt=build_input(p, config.format, config.use_caption, rationale=rat),
            target=build_target(p, config.format) if with_target else None,
            answer=None,
            subgraph=sg,
            image_tokens=tok,
            meta={"pid": p.pid, "choices": list(p.choices), "gold": p.answer},
        ))
    return out


def make_example(problem: ScienceQAProblem, config: ScienceQAPromptConfig = ScienceQAPromptConfig(),
                 retriever=None, vision_encoder=None, rationale: str | None = None, with_target: bool = True):
    """One problem -> one ``MRMKGExample`` (see :func:`make_examples`)."""
    return make_examples([problem], config, retriever, vision_encoder,
                         None if rationale is None else {problem.pid: rationale}, with_target)[0]


def iter_split(data: ScienceQA, names: Iterable[str]) -> list[ScienceQAProblem]:
    """Problems of several splits, concatenated (e.g. ``["train", "val"]``)."""
    out = []
    for n in names:
        out += data.split(n)
    return out


# ------------------------------------------------------------------------ run configuration
def _retrieval_default():
    from mrmkg.kg.retrieve import RetrievalConfig

    # N = 20 for ScienceQA: Figure 3 peaks around 20 triples; one hop (paper §4.1)
    return RetrievalConfig(n=10, N=20, hops=1)


def _retrieval_type():
    from mrmkg.kg.retrieve import RetrievalConfig

    return RetrievalConfig


@dataclass
class ScienceQATaskArgs:
    """``task_args`` of a ScienceQA run (configs/scienceqa-*.yaml); validated with ``yamlconfig.from_dict``."""

    root: str = field(default="data/scienceqa", metadata={"help": "folder with problems.json and pid_splits.json"})
    images: str | None = field(default=None, metadata={"help": "folder of <split>/<pid>/image.png (default <root>/images)"})
    kg: str = field(default="", metadata={"help": "graph folder built by `mrmkg kg build` ('' = no knowledge graph)"})
    train_split: str = field(default="train", metadata={"help": "split trained on"})
    eval_split: str = field(default="val", metadata={"help": "split evaluated during/after training"})
    test_split: str = field(default="test", metadata={"help": "split scored by `mrmkg eval` (paper: test, 4,241)"})
    prompt: ScienceQAPromptConfig = field(default_factory=ScienceQAPromptConfig, metadata={"help": "prompt format and retrieval mode"})
    retrieval: dict = field(default_factory=dict, metadata={"help": "RetrievalConfig fields (n, N, hops, images_per_entity, ...); "
                                                                   "default n=10, N=20, hops=1"})
    rationales: str | None = field(default=None, metadata={"help": "QCMG-A at inference: predictions.jsonl of the rationale "
                                                                    "stage (its 'output' per pid is the generated rationale); "
                                                                    "'{split}' is replaced by the evaluated split; unset = gold "
                                                                    "rationales (an oracle upper bound, not the paper's setting)"})
    max_new_tokens: int = field(default=512, metadata={"help": "generation length (MM-CoT: 512 rationale, 64 answer)"})
    answer_fallback: str = field(default="none", metadata={"help": "none: unparseable answers are wrong; random: "
                                                                   "MM-CoT's random option (comparison only)"})
    limit: int | None = field(default=None, metadata={"help": "use only the first problems of each split (smoke runs)"})

    def __post_init__(self) -> None:
        if self.answer_fallback not in ("none", "random"):
            raise ValueError(f"answer_fallback must be 'none' or 'random', not {self.answer_fallback!r}")
        if isinstance(self.prompt, dict):
            self.prompt = ScienceQAPromptConfig(**self.prompt)

    def retrieval_config(self):
        """The :class:`~mrmkg.kg.retrieve.RetrievalConfig` (paper defaults overridden by ``retrieval``)."""
        import dataclasses

        from mrmkg.yamlconfig import from_dict

        base = dataclasses.asdict(_retrieval_default())
        base.update(self.retrieval)
        return from_dict(_retrieval_type(), base)
