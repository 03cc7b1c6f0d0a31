"""scripts/mars_rule_baseline.py ranks memory partners, then MarKG neighbours, then popular answers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_rule_order_memory_then_neighbour_then_popularity(tmp_path):
    (tmp_path / "mars").mkdir()
    (tmp_path / "markg").mkdir()
    train = [{"example": ["A", "B"], "question": "C", "answer": "D", "relation": "P1", "mode": 0},
             {"example": ["E", "D"], "question": "F", "answer": "D", "relation": "P1", "mode": 0}]
    dev = [{"example": ["X", "Y"], "question": "A", "answer": "B", "relation": "P1", "mode": 0},   # memory: rank 1
           {"example": ["X", "Y"], "question": "G", "answer": "H", "relation": "P1", "mode": 0},   # neighbour: rank 1
           {"example": ["X", "Y"], "question": "Z", "answer": "D", "relation": "P1", "mode": 0},   # most popular: rank 1
           {"example": ["X", "Y"], "question": "Z", "answer": "B", "relation": "P1", "mode": 0}]   # D (2) outranks B (1): 2
    for name, rows in (("train.json", train), ("dev.json", dev)):
        (tmp_path / "mars" / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "mars" / "analogy_entities.txt").write_text("B\nD\nH\n")
    (tmp_path / "markg" / "wiki_tuple_ids.txt").write_text("G\tP2\tH\nH\tP2\tB\n")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "mars_rule_baseline.py"), "--data", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    # ranks 1, 1, 1 and 2
    assert m["n"] == 4 and m["hits@1"] == 0.75 and m["mrr"] == (1 + 1 + 1 + 0.5) / 4
