"""Compare two outputs of research/behaviour/run.sh, case by case, to every printed digit.

    python research/behaviour/compare.py BEFORE_DIR AFTER_DIR [--all] [--no-predictions]

What is compared, per case folder (``<dir>/<case>/``):

* every ``*.json`` file (metrics.json, summary.json, trainer_state.json, result.json, ...): each number
  (and each ``weights_sha256`` / ``*_sha256`` hash: bit-identical weights) at its key path; keys that are
  timings, speeds, memory, paths or dates are skipped (see VOLATILE);
* every ``*.log`` (the commands' stdout+stderr): each line that prints numbers, after masking timings and
  paths; the line's text with its numbers replaced by ``#`` names the metric, its numbers are the value.
  Rich tables: a row's last cell ("train s") is a timing and is dropped;
* every ``*.jsonl`` (predictions): the whole records, volatile keys dropped (``--no-predictions`` skips);
* ``table.md`` of the demo, without its timing column.

Folder names that carry a 12-hex content key (the demo's ``runs/no_kg-<key>``) are matched with the key
masked (``<key>``), and the demo's ``key`` values are not compared: they hash the index manifest, which
depends on the world's absolute path (a different OUT gives different keys, same numbers), and the
TrainConfig as a dict (a renamed field changes them).

Prints one table row per differing metric (``--all``: every metric) and a count per case; exit status 1
if anything differs or is missing on one side, 0 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

# key names (last path component) whose values change run to run or by machine, never by the model
VOLATILE = re.compile(r"(seconds|_s$|^s$|per_s|samples_per|rss|_mb$|time|elapsed|date|stamp|wall|"
                      r"^checkpoint$|^run$|^world$|^out$|^output_dir$|^picture$|path|dir$|^root$|^src$|"
                      r"^host$|^cached$|^version|^key$)", re.I)
SKIP_PARTS = {"cache", "inputs", "checkpoints", "model", "index"}  # inputs/caches/weights, not results
KEY = re.compile(r"-[0-9a-f]{12}\b")
TIMING = [
    re.compile(r"\b\d+(\.\d+)?\s*(s|ms|min)/it\b"), re.compile(r"\b\d+(\.\d+)?\s*it/s\b"),
    re.compile(r"\bin \d+(\.\d+)? ?s\b"), re.compile(r"\(train \d+(\.\d+)? ?s\)"),
    re.compile(r"\b\d+(\.\d+)? ?(s|sec|seconds)\b(?! x)"), re.compile(r"\b\d+(\.\d+)? ?samples/s\b"),
    re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ?"), re.compile(r"\b\d+(\.\d+)? ?(MB|GB|MiB|GiB)\b"),
]
NOISE = re.compile(r"Loading weights|Writing model shards|it/s\]|s/it\]|Warning|warn\(|FutureWarning|"
                   r"UserWarning|^\s*warnings\.|^\s*$")
PATH = re.compile(r"(?<![\w.])(/[^\s:,)'\"]+|\.{0,2}/[^\s:,)'\"]*[/.][^\s:,)'\"]*)")
NUM = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?", re.I)


def _skip(rel: Path) -> bool:
    return any(p in SKIP_PARTS for p in rel.parts[:-1])


def _norm(rel: Path) -> str:
    return KEY.sub("-<key>", rel.as_posix())


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if VOLATILE.search(str(k)):
                continue
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}[{i}]")
    elif isinstance(obj, bool) or obj is None:
        yield prefix, json.dumps(obj)
    elif isinstance(obj, (int, float)):
        yield prefix, repr(obj)
    elif isinstance(obj, str) and "sha256" in prefix:
        yield prefix, obj


def json_metrics(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    try:
        return dict(_flatten(json.loads(text)))
    except json.JSONDecodeError:  # JSON Lines under a .json name (MARS split files such as dev200.json)
        return jsonl_digest(path)


def log_metrics(path: Path) -> dict[str, str]:
    """Numbered printed lines: ``"<n>: template" -> "numbers"``; n counts equal templates in order."""
    out, seen = {}, {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if NOISE.search(line):
            continue
        if "│" in line:  # a rich table row: its last cell is the timing column of the demo table
            cells = line.split("│")
            line = "│".join(cells[:-2]) + "│"
        line = PATH.sub("<path>", line)
        for t in TIMING:
            line = t.sub("<t>", line)
        nums = NUM.findall(KEY.sub("-<key>", line))
        if not nums:
            continue
        template = NUM.sub("#", KEY.sub("-<key>", line)).strip()
        n = seen.get(template, 0)
        seen[template] = n + 1
        out[f"{template}" + (f" [{n + 1}]" if n else "")] = " ".join(nums)
    return out


def jsonl_digest(path: Path) -> dict[str, str]:
    """One value per file: the number of records and a sha256 of the records without volatile keys;
    plus the first record that differs is found by :func:`first_diff`."""
    recs = [_strip(json.loads(x)) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    h = hashlib.sha256(json.dumps(recs, sort_keys=True).encode()).hexdigest()[:16]
    return {"records": str(len(recs)), "sha256(records)": h}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    if isinstance(obj, str):
        return PATH.sub("<path>", obj)
    return obj


def md_metrics(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and not set(cells[1]) <= set("-:"):
            out[cells[0]] = " ".join(cells[1:-1])  # last column: train seconds
    return out


def case_metrics(case_dir: Path, predictions: bool) -> dict[str, str]:
    m = {}
    for p in sorted(case_dir.rglob("*")):
        rel = p.relative_to(case_dir)
        if not p.is_file() or _skip(rel):
            continue
        name = _norm(rel)
        if p.suffix == ".json":
            got = json_metrics(p)
        elif p.suffix == ".log":
            got = log_metrics(p)
        elif p.suffix == ".jsonl" and predictions:
            got = jsonl_digest(p)
        elif p.name == "table.md":
            got = md_metrics(p)
        else:
            continue
        m.update({f"{name}: {k}": v for k, v in got.items()})
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--all", action="store_true", help="print every metric, not only the differing ones")
    ap.add_argument("--no-predictions", action="store_true", help="do not compare predictions.jsonl records")
    ap.add_argument("--cases", nargs="*", help="only these cases (default: every case folder in BEFORE)")
    a = ap.parse_args(argv)
    cases = a.cases or sorted(p.name for p in a.before.iterdir() if p.is_dir() and (p / "steps.tsv").is_file())
    bad = 0
    rows = []
    summary = []
    for case in cases:
        b_dir, a_dir = a.before / case, a.after / case
        if not a_dir.is_dir():
            summary.append((case, 0, 0, "MISSING in after"))
            bad += 1
            continue
        mb = case_metrics(b_dir, not a.no_predictions)
        ma = case_metrics(a_dir, not a.no_predictions)
        n_diff = 0
        for k in sorted(set(mb) | set(ma)):
            vb, va = mb.get(k, "<missing>"), ma.get(k, "<missing>")
            eq = vb == va
            n_diff += not eq
            if a.all or not eq:
                rows.append((case, k, vb, va, "yes" if eq else "NO"))
        summary.append((case, len(set(mb) | set(ma)), n_diff, "equal" if n_diff == 0 else "DIFFERENT"))
        bad += n_diff > 0
    if rows:
        print("| case | metric | before | after | equal? |\n|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |")
        print()
    print("| case | metrics compared | differing | verdict |\n|---|---:|---:|---|")
    for c, n, d, v in summary:
        print(f"| {c} | {n} | {d} | {v} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
