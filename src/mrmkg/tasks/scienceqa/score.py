"""The official ScienceQA scorer: accuracy by subject, context modality and grade band.

Columns, in the paper's (Table 1) order, each = correct in group / size of group x 100:

=========  ===========================================================
NAT/SOC/LAN  subject is natural / social / language science
TXT        the hint (text context) is non-empty
IMG        the problem has an image  (TXT and IMG overlap)
NO         neither hint nor image
G1-6       grade1 .. grade6
G7-12      grade7 .. grade12
Average    all scored problems
=========  ===========================================================

This matches ``get_scores`` of lupantech/ScienceQA (and MM-CoT's copy of it) on the same
predictions: truthiness of ``hint`` / ``image``, grade lists, two decimals. Differences, on purpose:
an empty group is reported as ``None`` ("-") instead of crashing; predictions that could not be
parsed (None) count as wrong and are reported; per-topic accuracy is added.

Predictions files (:func:`read_predictions`):

* JSON Lines, one ``{"pid": "...", "prediction": <choice index or null>, ...}`` per problem
  (what ``mrmkg eval`` writes in predictions.jsonl; other keys, e.g. retrieved triples, are kept out);
* the official JSON ``{"results": {pid: index}}`` (ScienceQA / MM-CoT result files), or a bare
  ``{pid: index}`` object.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_write_json, read_jsonl, read_text
from mrmkg.tasks.scienceqa.data import ScienceQAProblem

COLUMNS = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Average")


def _groups(p: ScienceQAProblem) -> list[str]:
    g = [{"natural science": "NAT", "social science": "SOC", "language science": "LAN"}[p.subject]]
    if p.has_text:
        g.append("TXT")
    if p.has_image:
        g.append("IMG")
    if p.no_context:
        g.append("NO")
    g.append("G1-6" if p.grade_number <= 6 else "G7-12")
    g.append("Average")
    return g


@dataclass
class ScienceQAScores:
    """Accuracies in percent (None for an empty group) with the counts behind them."""

    accuracy: dict[str, float | None]  # column -> % (full precision)
    correct: dict[str, int]
    total: dict[str, int]
    topic_accuracy: dict[str, float]
    topic_correct: dict[str, int]
    topic_total: dict[str, int]
    unparsed: int = 0  # predictions that were None (failed to parse): counted wrong
    missing: int = 0  # problems without any prediction (only with allow_missing): counted wrong
    extra: dict = field(default_factory=dict)

    def rounded(self) -> dict[str, float | None]:
        """Two decimals, as the official scorer prints them."""
        return {k: (None if v is None else round(v, 2)) for k, v in self.accuracy.items()}

    def to_dict(self) -> dict:
        return {
            "columns": list(COLUMNS),
            "accuracy": self.rounded(),
            "correct": dict(self.correct),
            "total": dict(self.total),
            "topic_accuracy": {k: round(v, 2) for k, v in sorted(self.topic_accuracy.items())},
            "topic_correct": dict(sorted(self.topic_correct.items())),
            "topic_total": dict(sorted(self.topic_total.items())),
            "unparsed": self.unparsed,
            "missing": self.missing,
            **self.extra,
        }


def score(
    problems: Mapping[str, ScienceQAProblem],
    predictions: Mapping[str, int | None],
    pids: list[str] | None = None,
    allow_missing: bool = False,
    source: str | Path | None = None,
) -> ScienceQAScores:
    """Score predicted choice indices against the gold answers.

    Args:
        problems: pid -> problem (e.g. ``load_scienceqa(root).problems``).
        predictions: pid -> predicted choice index, or None for an unparseable answer (wrong).
        pids: the problems to score (e.g. the test split); default: exactly the predicted pids.
        allow_missing: score a problem of ``pids`` that has no prediction as wrong (counted in
            ``missing``) instead of raising (the official scorer asserts all 4,241 are present).
        source: the predictions file, named in errors.
    """
    unknown = [p for p in predictions if p not in problems]
    if unknown:
        raise InputError(f"prediction for pid {unknown[0]} ({len(unknown)} in all), which is not in problems.json",
                         path=source)
    pids = list(predictions) if pids is None else list(pids)
    missing = [p for p in pids if p not in predictions]
    if missing and not allow_missing:
        raise InputError(f"no prediction for pid {missing[0]} ({len(missing)} of {len(pids)} problems missing); "
                         "score every problem of the split, or allow missing ones (counted wrong)", path=source)
    correct = {c: 0 for c in COLUMNS}
    total = {c: 0 for c in COLUMNS}
    tc: dict[str, int] = {}
    tt: dict[str, int] = {}
    unparsed = 0
    for pid in pids:
        p = problems[pid]
        pred = predictions.get(pid)
        if pid in predictions and pred is None:
            unparsed += 1
        if pred is not None and (not isinstance(pred, int) or isinstance(pred, bool)):
            raise InputError(f"pid {pid}: prediction must be a choice index (int) or null, got {pred!r}", path=source)
        ok = pred is not None and pred == p.answer
        for g in _groups(p):
            total[g] += 1
            correct[g] += ok
        tt[p.topic] = tt.get(p.topic, 0) + 1
        tc[p.topic] = tc.get(p.topic, 0) + ok
    acc = {c: (100.0 * correct[c] / total[c] if total[c] else None) for c in COLUMNS}
    return ScienceQAScores(
        accuracy=acc, correct=correct, total=total,
        topic_accuracy={t: 100.0 * tc[t] / tt[t] for t in tt}, topic_correct=tc, topic_total=tt,
        unparsed=unparsed, missing=len(missing),
    )


def read_predictions(path: str | Path) -> dict[str, int | None]:
    """Read a predictions file (JSON Lines or the official ``{"results": ...}`` JSON); see module doc."""
    path = Path(path)
    text = read_text(path, "predictions file")
    stripped = text.lstrip()
    if stripped.startswith("{") and not path.suffix == ".jsonl":
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            obj = None  # maybe JSON Lines with a .json suffix (read_jsonl names the line otherwise)
        if isinstance(obj, dict) and "pid" not in obj:
            res = obj.get("results", obj)
            if not isinstance(res, dict):
                raise InputError('"results" must map pid -> predicted choice index', path=path)
            out = {}
            for pid, v in res.items():
                out[str(pid)] = _pred_value(v, path, None, str(pid))
            return out
    out: dict[str, int | None] = {}
    for i, rec in read_jsonl(path, "predictions file"):
        if "pid" not in rec or "prediction" not in rec:
            raise InputError('expected an object with "pid" and "prediction" (choice index or null)', path=path, line=i)
        pid = str(rec["pid"])
        if pid in out:
            raise InputError(f"pid {pid} predicted twice", path=path, line=i)
        out[pid] = _pred_value(rec["prediction"], path, i, pid)
    return out


def _pred_value(v, path: Path, line: int | None, pid: str) -> int | None:
    # -1 is what some ScienceQA baselines write for "no answer"; treat it like null.
    if v is None or v == -1:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"pid {pid}: 'prediction' must be a choice index (int) or null, got {v!r}", path=path, line=line)
    return v


def render_table(scores: ScienceQAScores, title: str = "ScienceQA accuracy (%)", name: str = "MR-MKG"):
    """A ``rich.table.Table`` with the paper's columns (Table 1 order), two decimals, '-' for empty."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("Method")
    for c in COLUMNS:
        t.add_column(c, justify="right")
    r = scores.rounded()
    t.add_row(name, *("-" if r[c] is None else f"{r[c]:.2f}" for c in COLUMNS))
    t.add_row("n", *(str(scores.total[c]) for c in COLUMNS))
    return t


def render_topics(scores: ScienceQAScores, title: str = "Accuracy by topic (%)"):
    from rich.table import Table

    t = Table(title=title)
    for c, j in (("topic", "left"), ("correct", "right"), ("total", "right"), ("accuracy", "right")):
        t.add_column(c, justify=j)
    for topic in sorted(scores.topic_total):
        t.add_row(topic, str(scores.topic_correct[topic]), str(scores.topic_total[topic]),
                  f"{scores.topic_accuracy[topic]:.2f}")
    return t


def print_scores(scores: ScienceQAScores, console=None, topics: bool = True, name: str = "MR-MKG") -> None:
    from rich.console import Console

    if console is None:
        # nine numeric columns plus the name need ~100 characters; never let rich elide them
        console = Console(width=max(Console().width, 110))
    console.print(render_table(scores, name=name))
    if scores.unparsed or scores.missing:
        console.print(f"unparseable answers (counted wrong): {scores.unparsed}; missing predictions: {scores.missing}")
    if topics:
        console.print(render_topics(scores))


def write_metrics(scores: ScienceQAScores, path: str | Path, **extra) -> None:
    """Write ``metrics.json`` atomically: rounded columns, counts, per-topic accuracy, ``extra`` keys."""
    d = scores.to_dict()
    d.update(extra)
    atomic_write_json(path, d)


def score_file(problems: Mapping[str, ScienceQAProblem], predictions_path: str | Path,
               pids: list[str] | None = None, allow_missing: bool = False) -> ScienceQAScores:
    """:func:`read_predictions` + :func:`score`."""
    return score(problems, read_predictions(predictions_path), pids=pids, allow_missing=allow_missing,
                 source=predictions_path)
