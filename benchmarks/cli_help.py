"""How long `mrmkg --help` takes, against a bare `python -c pass`, as a ratio.

The CLI must answer --help at once: the root app and every command import torch, transformers and
FAISS only inside the command bodies (tests/test_cli.py checks that none of them is imported). Runs
alternate (help, bare, help, bare, ...) so drift on a shared host hits both alike; the medians and
their ratio are printed, with the process's own ``-X importtime`` top entries when ``--top N``.

    .venv/bin/python benchmarks/cli_help.py [--runs 9] [--top 8] [--args "kg build --help"]

Measured on the 2-core development host (Python 3.11, session 17, 2026-12-03), before = the tree
where commands/train.py imported mrmkg.train (hence torch and numpy) at import, after = lazy imports
(importing mrmkg.cli loads none of torch, numpy, transformers, FAISS, accelerate):

    quiet host, 3 runs each:      before 2.90-3.07 s   after 0.29-0.41 s   python -c pass 0.02 s
    loaded host (~6 jobs on 2 cores), this script, --runs 5, before and after alternated twice:
                                  before median 4.99 / 6.57 s (ratio 170x / 150x)
                                  after  median 0.85 / 0.80 s (ratio 20x / 18x)
    load ~4, --runs 5, on the tasks/Pipeline layout:
                                  before median 5.57 s (ratio 170x)   after median 0.38 s (ratio 21x)

What is left is typer itself (~0.2 s of imports: it vendors click) and rich rendering the help.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9, help="runs of each command (alternated)")
    ap.add_argument("--args", default="--help", help="arguments of mrmkg to time (default: --help)")
    ap.add_argument("--top", type=int, default=0, help="also print the N slowest imports (-X importtime)")
    a = ap.parse_args(argv)
    cli = [sys.executable, "-m", "mrmkg", *shlex.split(a.args)]
    bare = [sys.executable, "-c", "pass"]
    _time(cli), _time(bare)  # warm the file cache
    t_cli, t_bare = [], []
    for _ in range(a.runs):
        t_cli.append(_time(cli))
        t_bare.append(_time(bare))
    m_cli, m_bare = statistics.median(t_cli), statistics.median(t_bare)
    print(f"mrmkg {a.args}: median {m_cli:.3f} s (min {min(t_cli):.3f}, max {max(t_cli):.3f}) over {a.runs} runs")
    print(f"python -c pass: median {m_bare:.3f} s (min {min(t_bare):.3f}, max {max(t_bare):.3f})")
    print(f"ratio: {m_cli / m_bare:.1f}x")
    heavy = subprocess.run([sys.executable, "-c", "import sys; from mrmkg.cli import main; "
                            "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'numpy', 'accelerate') "
                            "if m in sys.modules))"], check=True, capture_output=True, text=True).stdout.strip()
    print(f"heavy modules loaded by importing mrmkg.cli: {heavy}")
    if a.top:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", "from mrmkg.cli import main"],
                             check=True, capture_output=True, text=True).stderr
        rows = []
        for line in err.splitlines():  # "import time: self [us] | cumulative | imported package"
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                rows.append((int(parts[1]), parts[2]))
        print(f"slowest {a.top} imports (cumulative, us):")
        for us, name in sorted(rows, reverse=True)[: a.top]:
            print(f"  {us:>9}  {name.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
