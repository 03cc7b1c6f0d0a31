"""EfficientNet-Lite0 image encoding: memory layout and batch size, as ratios measured side by side.

The vision encoder is the demo's and `kg build`'s largest fixed cost (the demo encodes ~670
pictures). This times, in one process and alternating so that machine-load drift hits every setting
alike, ``extract_features`` on the same random batch in NCHW (contiguous) and channels_last (NHWC,
what :class:`mrmkg.encoders.vision.EfficientNetLite0Encoder` uses) at several batch sizes, with
:func:`mrmkg.malloc.tune_malloc` on (as the encoder calls it) or off (``--no-tune-malloc``), and
checks that both layouts give the same features (max abs difference).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/vision_encode.py [--images 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from mrmkg.encoders.vision import EfficientNetLite0Encoder
from mrmkg.malloc import tune_malloc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="images per timed pass (a multiple of every batch size)")
    ap.add_argument("--batches", default="8,16,32", help="batch sizes to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-tune-malloc", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if not args.no_tune_malloc:
        tune_malloc()
    torch.manual_seed(0)
    nhwc = EfficientNetLite0Encoder().model                              # channels_last, as shipped
    nchw = copy.deepcopy(nhwc).to(memory_format=torch.contiguous_format)
    x = torch.randn(args.images, 3, 224, 224)                          # [n, 3, 224, 224]
    layouts = {"nchw": (nchw, x.contiguous()), "channels_last": (nhwc, x.contiguous(memory_format=torch.channels_last))}
    sizes = [int(b) for b in args.batches.split(",")]
    seconds = {(lay, b): [] for lay in layouts for b in sizes}
    with torch.inference_mode():
        diff = (nchw.extract_features(x[:8]) - nhwc.extract_features(layouts["channels_last"][1][:8])).abs().max().item()
        for lay, (model, inp) in layouts.items():                      # warm-up: oneDNN primitives per shape
            for b in sizes:
                model.extract_features(inp[:b])
        for _ in range(args.repeats):
            for b in sizes:
                for lay, (model, inp) in layouts.items():
                    t = time.perf_counter()
                    for s in range(0, args.images, b):
                        model.extract_features(inp[s:s + b])
                    seconds[(lay, b)].append(time.perf_counter() - t)
    base = min(seconds[("nchw", 32 if 32 in sizes else sizes[-1])])
    rows = []
    print(f"{'layout':>14} {'batch':>5} {'ms/image':>9} {'vs nchw@32':>10}")
    for (lay, b), ts in seconds.items():
        best = min(ts)
        rows.append({"layout": lay, "batch": b, "ms_per_image": round(best / args.images * 1000, 2),
                     "speedup": round(base / best, 3)})
        print(f"{lay:>14} {b:>5} {best / args.images * 1000:9.1f} {base / best:10.2f}x")
    print(f"max |NCHW - channels_last| feature difference: {diff:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "max_abs_diff": diff, "threads": torch.get_num_threads(),
                       "tune_malloc": not args.no_tune_malloc}, f, indent=1)


if __name__ == "__main__":
    main()
