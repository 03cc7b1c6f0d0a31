"""research/mars/mars_rule_baseline.py ranks the copy, memory partners, MarKG neighbours, then popular answers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_rule_order_memory_then_neighbour_then_popularity(tmp_path):
    (tmp_path / "mars").mkdir()
    (tmp_path / "markg").mkdir()
    train = [{"example": ["A", "B"], "question": "C", "answer": "D", "relation": "P1", "mode": 0},
             {"example": ["E", "D"], "question": "F", "answer": "D", "relation": "P1", "mode": 0}]
    dev = [{"example": ["X", "Y"], "question": "A", "answer": "B", "relation": "P1", "mode": 0},   # memory: rank 1
           {"example": ["X", "Y"], "question": "G", "answer": "H", "relation": "P1", "mode": 0},   # neighbour: rank 1
           {"example": ["X", "Y"], "question": "Z", "answer": "D", "relation": "P1", "mode": 0},   # most popular: rank 1
           {"example": ["X", "Y"], "question": "Z", "answer": "B", "relation": "P1", "mode": 0},   # D (2) outranks B (1): 2
           {"example": ["G", "B"], "question": "G", "answer": "B", "relation": "P1", "mode": 0}]   # copy beats neighbour H
    for name, rows in (("train.json", train), ("dev.json", dev)):
        (tmp_path / "mars" / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "mars" / "analogy_entities.txt").write_text("B\nD\nH\n")
    (tmp_path / "markg" / "wiki_tuple_ids.txt").write_text("G\tP2\tH\nH\tP2\tB\n")
    def run(*extra):
        out = subprocess.run([sys.executable, str(ROOT / "research/mars/mars_rule_baseline.py"), "--data", str(tmp_path),
                              *extra], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    m = run()  # ranks 1, 1, 1, 2 and 1
    assert m["n"] == 5 and m["hits@1"] == 0.8 and m["mrr"] == (1 + 1 + 1 + 0.5 + 1) / 5
    m = run("--no-copy")  # the last one without the copy: neighbour H (1e3) and popular D (3) outrank B (1): 3
    assert m["hits@1"] == 0.6 and m["mrr"] == pytest.approx((1 + 1 + 1 + 0.5 + 1 / 3) / 5, abs=1e-4)

