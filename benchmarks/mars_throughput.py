"""MARS stage-2 training throughput and evaluation speed on real data (frozen SmolLM2-135M).

Trains ``--steps`` optimizer steps of a config through the real engine (``mrmkg.engine.train``,
no checkpoints but the final one), then times ``MarsTask.predict`` on the first ``--eval-n`` dev
examples. Prints samples/s of training (every step timed, the first included: a conservative
figure), the one-off cost of building examples (retrieval) per 1,000, evaluation examples/s and the extrapolated time for 1,362 examples
(the released test split), and the peak RSS of this process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mars_throughput.py --config configs/mars-smollm2-cpu.yaml \
        --steps 20 --eval-n 256 [--threads 2] [--set task_args.prompt=question ...]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--train-examples", type=int, default=2000, help="training examples loaded (retrieval cost)")
    ap.add_argument("--eval-n", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import torch

    from mrmkg.tasks.mars.data import load_mars_split
    from mrmkg.engine import load_train_config, train
    from mrmkg.tasks.registry import make_task

    if a.threads:
        torch.set_num_threads(a.threads)
    out = tempfile.mkdtemp(prefix="mars-bench-")
    cfg = load_train_config(a.config, a.sets + [f"max_steps={a.steps}", f"output_dir={out}", "eval_at_end=false",
                                                "checkpoint_every=0", f"task_args.max_train_examples={a.train_examples}",
                                                "progress=false"])
    task = make_task(cfg)
    t0 = time.perf_counter()
    task.train_examples()
    prep = time.perf_counter() - t0
    res = train(cfg, task=task)
    model = task._model
    recs = load_mars_split(task.data_dir / task.config.dev_file, task.kg)[: a.eval_n]
    t0 = time.perf_counter()
    preds = task.predict(model, recs, batch_size=cfg.eval_batch_size)
    ev = time.perf_counter() - t0
    row = {
        "config": a.config, "sets": a.sets, "threads": torch.get_num_threads(), "steps": res.global_step,
        "batch_size": cfg.batch_size, "train_samples_per_s": round(res.samples_per_s, 2),
        "example_prep_s_per_1k": round(prep / min(a.train_examples, len(task.train_examples())) * 1000, 2),
        "eval_examples": len(preds), "eval_examples_per_s": round(len(preds) / ev, 2),
        "eval_1362_s": round(1362 / (len(preds) / ev), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "final_loss": res.final_loss,
    }
    print(json.dumps(row, indent=2))
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
