"""A non-learned MARS baseline: rank candidates by training memory, MarKG adjacency, then popularity.

score(c) = 1e9 * (c is the example tail and the question is the example head: h : t :: h : ?)
         + 1e6 * (times "question -> c" is a training analogy pair)
         + 1e3 * (c shares a MarKG triple with the question)
         +       (times c is a tail/answer in the training file)

No model, no LLM: it measures how much of MARS dev is answerable by the copy case, recall from the
training pairs and one MarKG hop, the sources mrmkg's copy node, analogy memory and graph pointer
give the model (``--no-copy`` drops the first term). Metrics
use mrmkg's protocol (2,063 candidates, rank = 1 + #strictly higher).

    .venv/bin/python research/mars/mars_rule_baseline.py [--data ../shared/data] [--split dev.json]
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from mrmkg.metrics.ranking import gold_ranks, ranking_metrics


def rows(path: Path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data", help="folder with mars/ and markg/")
    ap.add_argument("--split", default="dev.json", help="split file in mars/ (or a path)")
    ap.add_argument("--no-copy", action="store_true", help="without the h : t :: h : ? -> t term")
    args = ap.parse_args()
    data = Path(args.data)
    split = Path(args.split) if Path(args.split).exists() else data / "mars" / args.split
    cands = [x.strip() for x in (data / "mars" / "analogy_entities.txt").read_text().splitlines() if x.strip()]
    col = {c: i for i, c in enumerate(cands)}
    memory, popularity = defaultdict(Counter), Counter()
    for r in rows(data / "mars" / "train.json"):
        for h, t in (r["example"], (r["question"], r["answer"])):
            memory[h][t] += 1
            popularity[t] += 1
    neighbours = defaultdict(set)
    for line in (data / "markg" / "wiki_tuple_ids.txt").read_text().splitlines():
        h, _, t = line.strip().split("\t")
        neighbours[h].add(t)
        neighbours[t].add(h)
    base = np.array([popularity[c] for c in cands], dtype=np.float64)
    recs = rows(split)
    scores = np.tile(base, (len(recs), 1))
    for i, r in enumerate(recs):
        q = r["question"]
        for c in neighbours[q]:
            if c in col:
                scores[i, col[c]] += 1e3
        for c, n in memory[q].items():
            if c in col:
                scores[i, col[c]] += 1e6 * n
        h, t = r["example"]
        if not args.no_copy and q == h and t in col:
            scores[i, col[t]] += 1e9
    m = ranking_metrics(gold_ranks(scores, [col[r["answer"]] for r in recs]))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}))


if __name__ == "__main__":
    main()
