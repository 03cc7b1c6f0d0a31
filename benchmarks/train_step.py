"""Cost of one MR-MKG training step against the floor of its frozen LLM, fp32 and bf16.

* ``mrmkg``: one full training step -- graph encoder (2-layer RGAT) over the batch's subgraphs,
  knowledge and visual adapters, alignment loss, frozen SmolLM2-135M forward with the assembled
  prompt, LM-head logits on the target rows only, backward, AdamW step on the trainable part.
* ``floor``: the frozen LLM alone, forward + backward into its input embeddings (a leaf tensor
  with ``requires_grad``), with the *same* batch size, packed sequence length, attention mask and
  target rows (logits on the target rows only, same cross-entropy).

Each (mode, dtype, repeat) runs in a fresh subprocess so that its peak memory (RSS sampled every
2 ms, minus the RSS just before the first step) is not hidden by memory the allocator kept from
another mode; repeats alternate floor / mrmkg to spread machine-load drift evenly. Reported time
is the median per-sample time of the timed steps, best over repeats.

Also prints the trainable-parameter count this design gives for the paper's backbones (FLAN-T5-XL
d=2048, FLAN-T5-XXL d=4096; configs written by hand, no weights) next to the paper's 77M / 248M.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_step.py [--threads 1] [--batch 16] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORDS = ("which animal has fur and a long tail and lives in a house with people who feed it every day "
         "the cat the fish the bird or the dog context none").split()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Samples RSS in a thread; ``peak`` is the max seen since ``start``."""

    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        self.peak = rss_mb()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mb())


def synthetic_kg(seed: int = 0):
    """A MarKG-sized random graph (11,292 entities, 193 relations, 33k triples, one image each)."""
    from mrmkg.kg.graph import MMKG

    rng = np.random.default_rng(seed)
    E, R, T = 11292, 193, 33000
    tri = np.stack([rng.integers(0, E, T), rng.integers(0, R, T), rng.integers(0, E, T)], 1)
    return MMKG(entity_ids=[f"Q{i}" for i in range(E)], entity_names=[f"e{i}" for i in range(E)],
                entity_descriptions=[""] * E, relation_ids=[f"P{i}" for i in range(R)],
                relation_names=[f"r{i}" for i in range(R)], triples=tri,
                image_paths=[f"{i}.jpg" for i in range(E)], image_entity=np.arange(E))


def make_examples(kg, n: int, text_tokens: int, target_tokens: int, n_triples: int, image_tokens: int, seed: int):
    from mrmkg.kg.subgraph import Subgraph
    from mrmkg.model import MRMKGExample

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = rng.choice(WORDS, size=max(4, text_tokens - int(rng.integers(0, 4))))
        tgt = rng.choice(WORDS, size=target_tokens)
        tri = rng.choice(kg.num_triples, size=n_triples, replace=False)
        sg = Subgraph.from_triples(kg, tri, rng.random(n_triples), images_per_entity=1)
        img = rng.standard_normal((image_tokens, 1280)).astype(np.float32) if i % 2 == 0 else None
        out.append(MRMKGExample(" ".join(words) + " Answer:", " ".join(tgt), subgraph=sg, image_tokens=img))
    return out


def worker(args) -> dict:
    """One (mode, dtype) measurement in this process; returns a JSON-able dict."""
    torch.set_num_threads(args.threads)
    from mrmkg.encoders.registry import load_llm
    from mrmkg.model import MRMKG, KGFeatures, MRMKGConfig
    from mrmkg.model.mrmkg import pack

    kg = synthetic_kg()
    feats = KGFeatures.random(kg.num_entities, kg.num_relations, kg.num_images, 384, 1280, seed=0)
    llm = load_llm(args.llm, progress=False)
    cfg = MRMKGConfig(llm=args.llm, dtype=args.dtype, adapter_length=args.adapter_length, seed=0)
    model = MRMKG(cfg, llm, feats, report=False)
    batch = model.collate(make_examples(kg, args.batch, args.text_tokens, args.target_tokens, args.triples,
                                        args.image_tokens, seed=1))
    # the floor's inputs: same packed length, mask and target rows as the MR-MKG prompt
    with torch.no_grad(), model._autocast():
        segs, _, _ = model.prefix(batch)
        dt = segs[-1][0].dtype
        segs = model._bos_segment(len(batch), dt) + [(x.to(dt), m) for x, m in segs]
        y = model.embed_tokens(batch.target_ids).to(dt)
        x0, mask, dest = pack(segs + [(y, batch.target_mask)])
        L = batch.target_ids.shape[1]
        labels = torch.full(mask.shape, -100, dtype=torch.long)
        b, t = batch.target_mask.nonzero(as_tuple=True)
        labels[b, dest[:, -L:][b, t]] = batch.target_ids[b, t]
    pos = (torch.cumsum(mask.long(), 1) - 1).clamp_min(0)
    sel = labels[:, 1:] != -100
    tgt = labels[:, 1:][sel]
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    model.train()

    def floor_step():
        x = torch.randn(x0.shape, requires_grad=True)
        with model._autocast():
            h = model._base(inputs_embeds=x, attention_mask=mask.long(), position_ids=pos, use_cache=False).last_hidden_state
            logits = model._lm_logits(h[:, :-1][sel])
            loss = torch.nn.functional.cross_entropy(logits, tgt)
        loss.backward()
        assert x.grad is not None

    def mrmkg_step():
        out = model(batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    step = floor_step if args.mode == "floor" else mrmkg_step
    times = []
    with PeakRSS() as mem:
        base = mem.peak
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    return {"mode": args.mode, "dtype": args.dtype, "per_sample_s": statistics.median(times) / args.batch,
            "step_times_s": times, "peak_extra_mb": mem.peak - base, "batch": args.batch,
            "seq_len": int(mask.shape[1]), "tokens": int(mask.sum()), "target_tokens": int(sel.sum()),
            "trainable": model.parameter_report()["trainable"]}


def paper_counts() -> list[dict]:
    from transformers import T5Config

    from mrmkg.model import MRMKGConfig, count_trainable_parameters

    rows = []
    ours = MRMKGConfig()
    wide = lambda d: MRMKGConfig(gnn_hidden=d, gnn_heads=8, gnn_num_blocks=64, adapter_projections=True)  # noqa: E731
    for name, d, ff, paper in (("FLAN-T5-XL", 2048, 5120, 77e6), ("FLAN-T5-XXL", 4096, 10240, 248e6)):
        cfg = T5Config(d_model=d, d_ff=ff, d_kv=64, num_heads=d // 64, num_layers=24,
                       feed_forward_proj="gated-gelu")
        # paper setting: CLIP ViT-L features (768-d text, 1024-d image tokens), MMKG's 1,345 relations (+ image of)
        for label, c in (("default (h=256)", ours), ("h=d, Q/K/V", wide(d))):
            n = count_trainable_parameters(c, cfg, text_dim=768, vision_dim=1024, num_relations=1346)
            rows.append({"backbone": name, "d": d, "config": label, "ours": n["total"], "paper": paper, "parts": n["parts"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--text-tokens", type=int, default=16, help="approx. prompt words (the adapters make ~3x tokens)")
    ap.add_argument("--target-tokens", type=int, default=8)
    ap.add_argument("--triples", type=int, default=10, help="N triples per subgraph (+1 image per entity)")
    ap.add_argument("--image-tokens", type=int, default=49, help="visual tokens per image (every second example)")
    ap.add_argument("--adapter-length", default="text", choices=["text", "nodes"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", nargs=2, metavar=("MODE", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.mode, args.dtype = args.worker
        print(json.dumps(worker(args)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    passthrough = ["--llm", args.llm, "--batch", str(args.batch), "--text-tokens", str(args.text_tokens),
                   "--target-tokens", str(args.target_tokens), "--triples", str(args.triples),
                   "--image-tokens", str(args.image_tokens), "--adapter-length", args.adapter_length,
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    runs = []
    for dtype in args.dtypes.split(","):
        for rep in range(args.repeats):
            for mode in (("floor", "mrmkg") if rep % 2 == 0 else ("mrmkg", "floor")):
                cmd = [sys.executable, __file__, *passthrough, "--worker", mode, dtype]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if res.returncode:
                    sys.exit(f"worker {mode} {dtype} failed:\n{res.stderr[-3000:]}")
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
                r = runs[-1]
                print(f"  {dtype} {mode:5s} rep {rep}: {r['per_sample_s'] * 1e3:7.1f} ms/sample, "
                      f"peak +{r['peak_extra_mb']:.0f} MB", file=sys.stderr)
    summary = []
    print(f"\nbatch {args.batch}, threads {args.threads}, seq_len {runs[0]['seq_len']}, "
          f"tokens/batch {runs[0]['tokens']}, target tokens {runs[0]['target_tokens']}, "
          f"trainable {runs[0]['trainable'] if runs[0]['mode'] == 'mrmkg' else runs[1]['trainable']:,}")
    print(f"{'dtype':6s} {'floor ms/sample':>16s} {'MR-MKG ms/sample':>17s} {'ratio':>6s} {'floor peak MB':>14s} {'MR-MKG peak MB':>15s}")
    for dtype in args.dtypes.split(","):
        f = [r for r in runs if r["dtype"] == dtype and r["mode"] == "floor"]
        m = [r for r in runs if r["dtype"] == dtype and r["mode"] == "mrmkg"]
        ft, mt = min(r["per_sample_s"] for r in f), min(r["per_sample_s"] for r in m)
        fm, mm = min(r["peak_extra_mb"] for r in f), min(r["peak_extra_mb"] for r in m)
        summary.append({"dtype": dtype, "floor_s": ft, "mrmkg_s": mt, "ratio": mt / ft, "floor_mb": fm, "mrmkg_mb": mm})
        print(f"{dtype:6s} {ft * 1e3:16.1f} {mt * 1e3:17.1f} {mt / ft:6.2f} {fm:14.0f} {mm:15.0f}")
    counts = paper_counts()
    print("\ntrainable parameters for the paper's backbones (MMKG: 1,346 relation types, CLIP ViT-L dims)")
    for c in counts:
        print(f"  {c['backbone']:12s} d={c['d']:5d} {c['config']:16s} ours {c['ours'] / 1e6:7.1f}M   paper {c['paper'] / 1e6:.0f}M")
    if args.json:
        from mrmkg.fileio import atomic_write_json

        atomic_write_json(args.json, {"args": {k: v for k, v in vars(args).items() if k != "worker"},
                                      "runs": runs, "summary": summary, "paper_counts": counts})


if __name__ == "__main__":
    main()
