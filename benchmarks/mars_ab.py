"""Paired A/B timing of MARS training steps: two variants of a config on the same batches, alternating.

This host's speed drifts by up to ~10 % within minutes, more than most single changes are worth, so
two runs one after the other cannot tell a 3 % gain from noise. Here both variants live in one
process (two models, ~2 x 1.9 GB), take the same ``--steps`` batches in turn (A then B, then B then A,
...), and the paired per-step difference is reported: drift hits both sides of a pair alike.

A variant is a list of ``key=value`` overrides of the config (as ``mrmkg train --set``), e.g.
``--a model.pack_sequences=false --b model.pack_sequences=true``. Process-wide settings (threads,
``tune_malloc``, on here as in ``mrmkg train``) cannot differ between the two; time those with two
``mrmkg train --set max_steps=150`` runs, alternated. Collation is not timed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mars_ab.py --config configs/mars-smollm2-cpu-pointer.yaml \
        --set init_from=runs/ladder2/v-stage1 --a optim.fused=false --b optim.fused=true [--steps 40 --threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _variant(config: str, sets: list[str], seed: int):
    from mrmkg.engine import build_optimizer, load_init, load_train_config
    from mrmkg.tasks.registry import make_task

    cfg = load_train_config(config, sets)
    task = make_task(cfg)
    model = task.build_model()
    if cfg.init_from:
        load_init(model, cfg.init_from, cfg.init_skip)  # as `mrmkg train` does
    model.train()
    torch.manual_seed(seed)
    return cfg, task, task.train_examples(), model, build_optimizer(model, cfg.optim)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], dest="sets", help="override for both variants")
    ap.add_argument("--a", action="append", default=[], help="override of variant A (repeatable)")
    ap.add_argument("--b", action="append", default=[], help="override of variant B (repeatable)")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=4, help="untimed steps per variant first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mrmkg.malloc import tune_malloc

    tune_malloc()                                      # as mrmkg train does by default

    variants = {name: _variant(args.config, args.sets + extra, args.seed) for name, extra in (("A", args.a), ("B", args.b))}
    batch_size = {v[0].batch_size for v in variants.values()}
    if len(batch_size) != 1:
        ap.error(f"the variants must share batch_size to be paired, got {sorted(batch_size)}")
    batch_size = batch_size.pop()
    # the same positions in each variant's own examples (task_args may build them differently)
    n = min(len(v[2]) for v in variants.values())
    rng = np.random.default_rng(args.seed)
    picks = [rng.choice(n, batch_size, replace=False) for _ in range(args.warmup + args.steps)]

    def step(name: str, idx) -> float:
        cfg, task, examples, model, opt = variants[name]
        batch = task.collate([examples[int(i)] for i in idx])
        t = time.perf_counter()
        model(batch).loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.optim.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times = {"A": [], "B": []}
    for k, idx in enumerate(picks):
        for name in (("A", "B") if k % 2 == 0 else ("B", "A")):
            dt = step(name, idx)
            if k >= args.warmup:
                times[name].append(dt * 1e3)
    diff = [a - b for a, b in zip(times["A"], times["B"])]
    for name, extra in (("A", args.a), ("B", args.b)):
        t = times[name]
        print(f"{name} {' '.join(extra) or '(config)'}: median {statistics.median(t):.1f} ms/step, mean "
              f"{statistics.fmean(t):.1f}, {batch_size * 1e3 / statistics.median(t):.2f} samples/s")
    print(f"A - B per step, paired over {len(diff)} batches: median {statistics.median(diff):.1f} ms, "
          f"mean {statistics.fmean(diff):.1f} +- {statistics.stdev(diff) / len(diff) ** 0.5:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
