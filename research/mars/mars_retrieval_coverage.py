"""How often MARS retrieval can reach the answer, before any training: for each (n, N), the share of a split's
examples whose gold answer the knowledge names (`mrmkg.explain.named_entities`): the retrieved triples alone, then
with the analogy memory and the copy node when the config turns them on. No model is built; retrieval uses the
graph's stored entity vectors, so a grid takes seconds.

    .venv/bin/python research/mars/mars_retrieval_coverage.py -c configs/mars-smollm2-cpu-pointer.yaml \\
        [--set task_args.retrieval_query=question+example] [--split ../shared/data/mars/dev.json] 10,10 10,20 30,30
"""
from __future__ import annotations

import argparse
import sys

from mrmkg.errors import InputError
from mrmkg.explain import named_entities
from mrmkg.tasks.mars.data import load_mars_split
from mrmkg.tasks.mars.task import MarsTask
from mrmkg.engine import load_train_config


def coverage(task: MarsTask, split: str) -> tuple[float, float]:
    """(share named by the triples alone, share named by triples + memory + copy) over ``split``."""
    kg = task.kg
    records = load_mars_split(split, kg)
    examples = task.make_examples(records)
    by_triples = by_all = 0
    for r, ex in zip(records, examples):
        by_triples += r.answer in named_entities(kg, ex.meta["triples"])
        by_all += r.answer in named_entities(kg, ex.meta["triples"], ex.meta["memory"], ex.meta["copy"])
    return by_triples / len(records), by_all / len(records)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", required=True, help="MARS training config (its task_args are used)")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. task_args.memory=false")
    ap.add_argument("--split", default="../shared/data/mars/dev.json", help="MARS split file")
    ap.add_argument("grid", nargs="+", help="n,N pairs: first-stage top-n and triples kept")
    a = ap.parse_args(argv)
    try:
        cfg = load_train_config(a.config, a.set)
        pairs = []
        for g in a.grid:
            try:
                n, N = (int(x) for x in g.split(","))
            except ValueError:
                raise InputError(f"grid point {g!r}: expected two integers n,N, e.g. 10,20") from None
            pairs.append((n, N))
        print(f"| n | N | answer named by the triples | + analogy memory and copy node |  ({a.split})")
        print("|---:|---:|---:|---:|")
        for n, N in pairs:
            task = MarsTask.from_config({**cfg.task_args, "n": n, "N": N}, cfg)
            tri, both = coverage(task, a.split)
            print(f"| {n} | {N} | {tri:.3f} | {both:.3f} |", flush=True)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
