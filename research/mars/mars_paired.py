"""Paired per-example comparison of two MARS evaluations of the same split file.

    .venv/bin/python research/mars/mars_paired.py EVAL_A EVAL_B

EVAL_* are `mrmkg eval --out` folders; only their predictions.jsonl (in the split file's order) is read, and each
run's metrics are recomputed from its ranks. Prints, for
Hits@1/3/10, how many examples each run gets and the other does not with an exact two-sided McNemar p-value, and
the MRR difference B - A with its paired standard error: on one dev set, two runs a standard error apart
can still differ reliably example by example, or not at all."""
from __future__ import annotations

import math
import sys

from mrmkg.errors import InputError
from mrmkg.evaluate import read_predictions
from mrmkg.metrics.ranking import ranking_metrics


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: the discordant pairs are Binomial(only_a + only_b, 1/2) under no difference."""
    m = only_a + only_b
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def main(path_a: str, path_b: str) -> None:
    a, b = read_predictions(path_a), read_predictions(path_b)
    if [x["id"] for x in a] != [x["id"] for x in b]:
        sys.exit(f"{path_a} and {path_b}: predictions.jsonl list different examples (not the same split file?)")
    for name, folder, run in (("A", path_a, a), ("B", path_b, b)):
        m = ranking_metrics([x["rank"] for x in run])
        print(name, folder, {k: round(m[k], 4) for k in ("hits@1", "hits@3", "hits@10", "mrr")})
    for k in (1, 3, 10):
        hit_a = [x["rank"] <= k for x in a]
        hit_b = [x["rank"] <= k for x in b]
        both = sum(p and q for p, q in zip(hit_a, hit_b))
        only_a = sum(p and not q for p, q in zip(hit_a, hit_b))
        only_b = sum(q and not p for p, q in zip(hit_a, hit_b))
        print(f"hits@{k}: A {sum(hit_a)} B {sum(hit_b)} both {both} only A {only_a} only B {only_b} "
              f"McNemar p={mcnemar_p(only_a, only_b):.3f}")
    diff = [1 / y["rank"] - 1 / x["rank"] for x, y in zip(a, b)]
    n = len(diff)
    mean = sum(diff) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in diff) / (n - 1))
    print(f"MRR B - A = {mean:+.4f} +- {sd / math.sqrt(n):.4f} (paired SE)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: .venv/bin/python research/mars/mars_paired.py EVAL_A EVAL_B")
    try:
        main(sys.argv[1], sys.argv[2])
    except InputError as e:
        sys.exit(str(e))
