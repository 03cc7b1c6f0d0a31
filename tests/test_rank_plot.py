"""Ranking pictures: Hits@k curves and MRR intervals computed right, drawn to PNG/SVG, bad input named."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrmkg.errors import InputError
from mrmkg.rank_plot import hits_at_k, mrr_interval, render_hits_curves

RUNS = {"(i) question only": [1, 4, 12, 2, 30], "(ii) + facts": [1, 1, 3, 2, 7]}


def test_hits_at_k_and_mrr_interval():
    np.testing.assert_allclose(hits_at_k([1, 4, 12, 2, 30], kmax=4), [0.2, 0.4, 0.4, 0.6])
    m, h = mrr_interval([1, 2, 4])
    rr = np.array([1, 0.5, 0.25])
    assert m == pytest.approx(rr.mean()) and h == pytest.approx(1.96 * rr.std(ddof=1) / np.sqrt(3))
    assert mrr_interval([3]) == (pytest.approx(1 / 3), 0.0)


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_picture_is_written_atomically(tmp_path, suffix):
    out = render_hits_curves(RUNS, tmp_path / f"ladder{suffix}", title="MARS dev")
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    if suffix == ".png":
        with Image.open(out) as im:
            assert im.format == "PNG" and im.width > 1000
    else:
        text = out.read_text()
        ET.fromstring(text)
        # labels, both MRRs and the example count are text in the SVG
        for word in ("(i) question only", "(ii) + facts", f"{np.mean(1 / np.array(RUNS['(ii) + facts'])):.3f}",
                     "MRR over 5 examples", "MARS dev"):
            assert word in text, word


@pytest.mark.parametrize("runs, path, match", [
    (RUNS, "x.pdf", "unsupported picture type"),
    ({}, "x.png", "no runs"),
    ({"bad": [0, 1]}, "x.png", "run 'bad': expected one or more 1-based ranks"),
    ({"empty": []}, "x.png", "run 'empty'"),
])
def test_bad_input_is_named(tmp_path, runs, path, match):
    with pytest.raises(InputError, match=match):
        render_hits_curves(runs, tmp_path / path)
    assert not any(tmp_path.iterdir())


def _eval_dir(d: Path, ids: list[str], ranks: list[int]) -> str:
    d.mkdir()
    (d / "predictions.jsonl").write_text("".join(json.dumps({"id": i, "rank": r}) + "\n" for i, r in zip(ids, ranks)))
    return str(d)


def test_script_draws_eval_folders_and_refuses_other_splits(tmp_path):
    script = Path(__file__).resolve().parents[1] / "research" / "mars" / "mars_ladder_plot.py"
    a = _eval_dir(tmp_path / "a", ["x", "y", "z"], [1, 5, 2])
    b = _eval_dir(tmp_path / "b", ["x", "y", "z"], [2, 1, 1])
    c = _eval_dir(tmp_path / "c", ["x", "z", "y"], [2, 1, 1])
    out = tmp_path / "l.svg"
    subprocess.run([sys.executable, str(script), str(out), f"A={a}", f"B={b}"], check=True, capture_output=True)
    assert "MRR over 3 examples" in out.read_text()
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "m.svg"), f"A={a}", f"C={c}"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "lists other examples" in res.stderr and not (tmp_path / "m.svg").exists()
