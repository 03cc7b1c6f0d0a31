"""Diagnose a MARS checkpoint with the graph pointer: metrics when its bonus is scaled by alpha.

score = entity-head score + alpha * pointer bonus; alpha = 1 is what the model computes, 0 is the
entity head alone, a large alpha lets the pointer decide among subgraph nodes (the head only breaks
ties and ranks the rest). If a larger alpha is better on held-out data, the head dominates because
it memorised training pairs that held-out examples do not share.

    .venv/bin/python research/mars/mars_pointer_weight.py RUN_DIR SPLIT_FILE [--alphas 0 0.5 1 2 3 1000]
"""
from __future__ import annotations

import argparse

import torch

from mrmkg.pipeline import open_task
from mrmkg.metrics.ranking import gold_ranks, ranking_metrics
from mrmkg.tasks.mars.data import load_mars_split
from accelerate.utils import send_to_device as to_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("split_file")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0, 0.5, 1, 2, 3, 1000])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task, model_dir, _ = open_task(args.checkpoint)
    records = load_mars_split(args.split_file, task.kg)
    model = task.load_model(model_dir).eval()
    if model.graph_pointer is None or model.config.pointer.mode != "add":
        raise SystemExit("this checkpoint has no graph pointer whose bonus is added (model.pointer.mode: add)")
    bonus, total = [], []
    pointer = model.graph_pointer.bonus

    def keep(*a, **k):
        out = pointer(*a, **k)
        bonus.append(out[0].detach())
        return out

    model.graph_pointer.bonus = keep
    examples = task.make_examples(records)
    for s in range(0, len(examples), 32):
        batch = model.collate(examples[s:s + 32], candidates=task.candidates)
        total.append(model.rank(to_device(batch, model.device)).float())
    total, bonus = torch.cat(total), torch.cat(bonus)
    head = total - bonus
    col = {int(c): i for i, c in enumerate(task.candidates.tolist())}
    gold = [col[r.answer] for r in records]
    print("alpha  hits@1  hits@3  hits@10  mrr")
    for a in args.alphas:
        m = ranking_metrics(gold_ranks(head + a * bonus, gold))
        print(f"{a:<6g} {m['hits@1']:.3f}   {m['hits@3']:.3f}   {m['hits@10']:.3f}    {m['mrr']:.3f}")


if __name__ == "__main__":
    main()
