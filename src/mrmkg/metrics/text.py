"""Text overlap of generated answers: exact match after VQA-style normalisation, and ROUGE-L F1."""
from __future__ import annotations

import re

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, drop articles and a trailing period, collapse whitespace (VQA-style, simplified)."""
    t = text.strip().lower().rstrip(".").strip()
    t = _ARTICLES.sub(" ", t)
    return " ".join(t.split())


def exact_match(pred: str, gold: str) -> bool:
    return normalize_answer(pred) == normalize_answer(gold)


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    """Sentence ROUGE-L F1 (beta = 1) on lowercased whitespace tokens, in [0, 1].

    A monitoring number for the rationale stage, not the ``rouge`` package's exact figure (that one
    tokenises differently and weighs recall by beta = 1.2)."""
    a, b = pred.lower().split(), ref.lower().split()
    if not a or not b:
        return float(a == b)
    lcs = _lcs(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)
