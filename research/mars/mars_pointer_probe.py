"""Probe a MARS checkpoint's graph pointer: metrics, overall and by where the answer is, after editing
its relation weights or its bilinear term at test time (nothing is trained).

Edits (applied in this order, each optional):
* ``--relation-from RUN``: the learned per-relation weights (pointer feature ``relation``) of another
  checkpoint of the same configuration;
* ``--relation-scale K``: multiply the learned relation weights by K (0 removes them);
* ``--relation-odds K``: give the ``relation_odds`` feature (the training file's relation log-odds,
  ``MarsTask.train_relation_odds``) the weight K: its learned weight if the checkpoint has the
  feature, else in place of the learned relation weights (K x log-odds / ``pointer.scale``);
* ``--query-scale A``: multiply the bilinear term (slot x node encoding) by A (0 removes it).

Groups (the same as research/log.md, sessions 4-8): ``copy`` the question is the example head; ``memory`` the
answer is a training partner of the question; ``neighbour`` only a MarKG neighbour; ``neither``.

    .venv/bin/python research/mars/mars_pointer_probe.py RUN_DIR SPLIT_FILE [--relation-from RUN] [--relation-scale K]
        [--relation-odds K] [--query-scale A] [--threads 2]
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from safetensors.torch import load_file

from mrmkg.pipeline import open_task, resolve_checkpoint
from mrmkg.metrics.ranking import ranking_metrics
from mrmkg.tasks.mars.data import load_mars_split
from mrmkg.tasks.mars.task import MarsTask


def answer_group(task: MarsTask, record) -> str:
    """Where the answer of ``record`` is: copy, memory, neighbour or neither (see the module docstring)."""
    if record.question == record.head:
        return "copy"
    if any(partner == record.answer for _, partner, _ in task.memory().get(record.question, [])):
        return "memory"
    touching = task.kg.triples[task.kg.incident_triples([record.question])]
    other_end = np.where(touching[:, 0] == record.question, touching[:, 2], touching[:, 0])
    return "neighbour" if record.answer in other_end else "neither"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("split_file")
    ap.add_argument("--relation-from", help="take the learned relation weights of this checkpoint")
    ap.add_argument("--relation-scale", type=float, default=1.0, help="multiply the learned relation weights")
    ap.add_argument("--relation-odds", type=float, help="replace them by K x the training relation log-odds")
    ap.add_argument("--query-scale", type=float, default=1.0, help="multiply the pointer's bilinear term")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task, model_dir, _ = open_task(args.checkpoint)
    records = load_mars_split(args.split_file, task.kg)
    model = task.load_model(model_dir)
    pointer = model.graph_pointer
    if pointer is None:
        raise SystemExit("this checkpoint has no graph pointer (no model.pointer section)")
    learned_edit = args.relation_from or args.relation_scale != 1.0
    if pointer.relation is None and (learned_edit or (args.relation_odds is not None
                                                      and pointer.relation_odds_weight is None)):
        raise SystemExit("this checkpoint's graph pointer has no learned relation weights "
                         "(model.pointer.features without 'relation')")
    with torch.no_grad():
        if args.relation_from:
            other = load_file(resolve_checkpoint(args.relation_from)[0] / "model.safetensors")
            pointer.relation.weight.copy_(other["graph_pointer.relation.weight"])
        if pointer.relation is not None:
            pointer.relation.weight.mul_(args.relation_scale)
        if args.relation_odds is not None and pointer.relation_odds_weight is not None:
            pointer.relation_odds_weight.fill_(args.relation_odds / pointer.scale)
        elif args.relation_odds is not None:
            odds = torch.as_tensor(task.train_relation_odds(), dtype=torch.float32)
            pointer.relation.weight.copy_(args.relation_odds * odds.unsqueeze(1) / pointer.scale)
        pointer.query.weight.mul_(args.query_scale)
        pointer.query.bias.mul_(args.query_scale)
    preds = task.predict(model, records, batch_size=32, progress=False)
    ranks = np.array([p["rank"] for p in preds])
    m = ranking_metrics(ranks.tolist())
    by_group = defaultdict(list)
    for r, rank in zip(records, ranks):
        by_group[answer_group(task, r)].append(rank)
    groups = "  ".join(f"{g} ({len(v)}) {np.mean(np.array(v) == 1):.3f}"
                       for g, v in sorted(by_group.items(), key=lambda kv: ["copy", "memory", "neighbour",
                                                                            "neither"].index(kv[0])))
    print(f"hits@1 {m['hits@1']:.4f}  mrr {m['mrr']:.4f}  | Hits@1 by group: {groups}")


if __name__ == "__main__":
    main()
