"""research/mars/mars_paired.py: the paired counts and McNemar p-value on two hand-made evaluations."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "research" / "mars" / "mars_paired.py"


def _eval_dir(d: Path, ranks: list[int]) -> Path:
    d.mkdir()
    (d / "predictions.jsonl").write_text("".join(json.dumps({"id": i, "rank": r}) + "\n" for i, r in enumerate(ranks)))
    return d


def test_paired_counts_and_exact_mcnemar(tmp_path):
    a = _eval_dir(tmp_path / "a", [1, 1, 2, 5, 20, 1])
    b = _eval_dir(tmp_path / "b", [1, 3, 1, 1, 1, 1])
    out = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True, check=True).stdout
    # Hits@1: both right on examples 0 and 5, only A on 1, only B on 2, 3, 4 -> p = 2 * P(X <= 1 | 4, 0.5) = 0.625
    # each run's metrics come from its ranks (no metrics.json in these folders)
    assert "'hits@1': 0.5, 'hits@3': 0.6667" in out
    assert "hits@1: A 3 B 5 both 2 only A 1 only B 3 McNemar p=0.625" in out
    assert "hits@3: A 4 B 6 both 4 only A 0 only B 2 McNemar p=0.500" in out
    mrr_diff = (0 + (1 / 3 - 1) + (1 - 1 / 2) + (1 - 1 / 5) + (1 - 1 / 20) + 0) / 6
    assert f"MRR B - A = {mrr_diff:+.4f}" in out


def test_different_splits_are_refused(tmp_path):
    a = _eval_dir(tmp_path / "a", [1, 2])
    b = _eval_dir(tmp_path / "b", [1, 2, 3])
    res = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)
    assert res.returncode == 1 and "list different examples" in res.stderr


def test_missing_predictions_name_the_file(tmp_path):
    a = _eval_dir(tmp_path / "a", [1, 2])
    res = subprocess.run([sys.executable, str(SCRIPT), str(a), str(tmp_path / "nope")], capture_output=True, text=True)
    assert res.returncode == 1 and "predictions file not found" in res.stderr and "nope" in res.stderr
