"""The official ScienceQA scorer, every column checked against values computed by hand.

Test split of the fixture (pid: subject, hint?, image?, grade, gold -> prediction):

    101 NAT  hint image g3  0 -> 0  ok      107 SOC  -    -     g12 1 -> 0  wrong
    102 NAT  hint -     g8  1 -> 1  ok      108 LAN  hint -     g2  0 -> 0  ok
    103 NAT  -    image g5  2 -> 1  wrong   109 LAN  -    -     g6  3 -> 3  ok
    104 NAT  -    -     g10 0 -> null wrong 110 LAN  -    -     g9  1 -> 2  wrong
    105 SOC  hint image g7  1 -> 1  ok      111 NAT  hint image g11 1 -> 0  wrong
    106 SOC  -    image g4  0 -> 0  ok      112 LAN  hint image g1  0 -> 0  ok

NAT 2/5, SOC 2/3, LAN 3/4, TXT 5/6 (101 102 105 108 111 112), IMG 4/6 (101 103 105 106 111 112:
TXT and IMG overlap on 101 105 111 112), NO 1/4 (104 107 109 110), G1-6 5/6, G7-12 2/6, Average 7/12.
"""
from __future__ import annotations

import json

import pytest

from mrmkg.errors import InputError
from mrmkg.tasks.scienceqa import data as sqa
from mrmkg.tasks.scienceqa import score as S
from sqa_fixture import scienceqa_root

FIX = scienceqa_root()

EXPECTED = {"NAT": (2, 5), "SOC": (2, 3), "LAN": (3, 4), "TXT": (5, 6), "IMG": (4, 6), "NO": (1, 4),
            "G1-6": (5, 6), "G7-12": (2, 6), "Average": (7, 12)}
ROUNDED = {"NAT": 40.0, "SOC": 66.67, "LAN": 75.0, "TXT": 83.33, "IMG": 66.67, "NO": 25.0,
           "G1-6": 83.33, "G7-12": 33.33, "Average": 58.33}


@pytest.fixture(scope="module")
def data():
    return sqa.load_scienceqa(FIX)


@pytest.fixture(scope="module")
def scores(data):
    return S.score_file(data.problems, FIX / "predictions_test.jsonl", pids=data.splits["test"])


def test_every_column_matches_hand_computed(scores):
    assert {c: (scores.correct[c], scores.total[c]) for c in S.COLUMNS} == EXPECTED
    assert scores.rounded() == ROUNDED
    assert scores.unparsed == 1 and scores.missing == 0


def test_txt_and_img_overlap(data, scores):
    both = [p.pid for p in data.split("test") if p.has_text and p.has_image]
    assert both == ["101", "105", "111", "112"]
    # TXT + IMG + NO counts more problems than there are, because of the overlap
    assert scores.total["TXT"] + scores.total["IMG"] + scores.total["NO"] == 16 > scores.total["Average"]


def test_per_topic_accuracy(scores):
    assert scores.topic_total == {"physics": 2, "biology": 2, "chemistry": 1, "geography": 2, "economics": 1,
                                  "grammar": 2, "writing-strategies": 2}
    assert {k: round(v, 2) for k, v in scores.topic_accuracy.items()} == {
        "physics": 100.0, "biology": 0.0, "chemistry": 0.0, "geography": 100.0, "economics": 0.0,
        "grammar": 100.0, "writing-strategies": 50.0}


def test_official_results_json_gives_the_same_scores(data, scores, tmp_path):
    preds = S.read_predictions(FIX / "predictions_test.jsonl")
    off = tmp_path / "preds.json"  # MM-CoT/ScienceQA style; -1 = no answer
    off.write_text(json.dumps({"results": {k: (-1 if v is None else v) for k, v in preds.items()}}))
    s2 = S.score_file(data.problems, off, pids=data.splits["test"])
    assert s2.rounded() == scores.rounded() and s2.unparsed == 1


def test_table_in_paper_order_and_metrics_json(scores, tmp_path):
    from rich.console import Console

    con = Console(width=160, record=True)
    S.print_scores(scores, console=con)
    text = con.export_text()
    header = next(line for line in text.splitlines() if "NAT" in line)
    pos = [header.index(c) for c in ("NAT", "SOC", "LAN", "TXT", "IMG", " NO ", "G1-6", "G7-12", "Average")]
    assert pos == sorted(pos)
    assert "58.33" in text and "66.67" in text and "writing-strategies" in text
    S.write_metrics(scores, tmp_path / "metrics.json", split="test")
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["accuracy"] == ROUNDED and m["columns"] == list(S.COLUMNS)
    assert m["split"] == "test" and m["unparsed"] == 1 and m["topic_accuracy"]["writing-strategies"] == 50.0


def test_missing_extra_and_bad_predictions(data, tmp_path):
    preds = S.read_predictions(FIX / "predictions_test.jsonl")
    part = {k: v for k, v in preds.items() if k != "112"}
    with pytest.raises(InputError, match=r"no prediction for pid 112 \(1 of 12"):
        S.score(data.problems, part, pids=data.splits["test"])
    s = S.score(data.problems, part, pids=data.splits["test"], allow_missing=True)
    assert s.missing == 1 and (s.correct["Average"], s.total["Average"]) == (6, 12)
    with pytest.raises(InputError, match="pid 9999"):
        S.score(data.problems, {**preds, "9999": 0})
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"pid": "101", "prediction": 0}\n{"pid": "102", "prediction": "B"}\n')
    with pytest.raises(InputError, match="p.jsonl:2: pid 102: 'prediction' must be a choice index"):
        S.read_predictions(bad)
    bad.write_text('{"pid": "101", "prediction": 0}\n{"pid": "101", "prediction": 1}\n')
    with pytest.raises(InputError, match="p.jsonl:2: pid 101 predicted twice"):
        S.read_predictions(bad)
    bad.write_text('{"pid": "101"}\n')
    with pytest.raises(InputError, match='p.jsonl:1: expected an object with "pid" and "prediction"'):
        S.read_predictions(bad)


def test_empty_group_is_none_not_a_crash(data):
    s = S.score(data.problems, {"108": 0, "109": 1})  # language science only, no image
    assert s.accuracy["NAT"] is None and s.accuracy["IMG"] is None
    assert s.rounded()["LAN"] == 50.0 and s.rounded()["Average"] == 50.0


def test_cli_check_prompts_score(tmp_path, capsys):
    from mrmkg.cli import main

    assert main(["scienceqa", "check", str(FIX)]) == 0
    out = capsys.readouterr().out
    assert "test" in out and "12" in out
    assert main(["scienceqa", "prompts", str(FIX), "--split", "test", "--limit", "1", "--prompt-format", "QCM-A"]) == 0
    assert "Context: Look at the picture of the two objects.\nOptions: (A) iron nail (B) glass cup\nAnswer:" \
        in capsys.readouterr().out
    m = tmp_path / "scored" / "metrics.json"
    assert main(["scienceqa", "score", str(FIX), str(FIX / "predictions_test.jsonl"), "--out", str(m.parent)]) == 0
    out = capsys.readouterr().out
    assert "58.33" in out and "83.33" in out
    assert json.loads(m.read_text())["accuracy"] == ROUNDED
    # a user error is one line and exit status 2
    assert main(["scienceqa", "score", str(FIX), str(tmp_path / "nope.jsonl")]) == 2
    assert "predictions file not found" in capsys.readouterr().err
    assert main(["scienceqa", "score", str(FIX), str(FIX / "predictions_test.jsonl"), "--split", "val"]) == 2
    assert "no prediction for pid 13" in capsys.readouterr().err


def test_predictions_that_are_not_utf8_name_the_file_and_line(tmp_path, capsys):
    from mrmkg.cli import main

    bad = tmp_path / "p.jsonl"
    bad.write_bytes(b'{"pid": "1", "prediction": 0}\n\xff\xfe{"pid": 2}\n')
    assert main(["scienceqa", "score", str(FIX), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: bytes that are not UTF-8" in err and "Traceback" not in err
