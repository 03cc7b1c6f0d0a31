"""Draw several MARS evaluations of the same split file as one picture (Hits@k curves, MRR with 95 % intervals).

    .venv/bin/python research/mars/mars_ladder_plot.py OUT.svg "LABEL=EVAL_DIR" ["LABEL=EVAL_DIR" ...] [--title T]

EVAL_DIR is a `mrmkg eval --out` folder; its predictions.jsonl (the `rank` of each example) is read. Runs are
drawn in the order given. All runs must list the same examples in the same order."""
from __future__ import annotations

import argparse
import sys

from mrmkg.errors import InputError
from mrmkg.evaluate import read_predictions
from mrmkg.rank_plot import render_hits_curves


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="picture to write (.svg or .png)")
    ap.add_argument("runs", nargs="+", metavar="LABEL=EVAL_DIR")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    runs, ids = {}, None
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            ap.error(f"{spec!r}: expected LABEL=EVAL_DIR")
        preds = read_predictions(folder)
        if ids is not None and [p["id"] for p in preds] != ids:
            sys.exit(f"{folder}: predictions.jsonl lists other examples than {args.runs[0].partition('=')[2]}")
        ids = [p["id"] for p in preds]
        runs[label] = [p["rank"] for p in preds]
    print(render_hits_curves(runs, args.out, title=args.title))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except InputError as e:
        sys.exit(str(e))
