"""Paths stay inside their data: image paths read from data files may not leave their folder.

For each loader (TSV image list, JSONL, MarKG images folder, ScienceQA problems, relative graph image
paths): ``../../etc/passwd``, ``/etc/hostname`` and a symlink pointing outside are refused with
file:line and the same message whether or not the outside file exists; a legitimate nested path is
accepted; ``allow_outside_paths`` accepts the outside paths.
"""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from mrmkg.cli import main
from mrmkg.errors import InputError
from mrmkg.kg.index import resolve_image_path
from mrmkg.kg.io import load_jsonl, load_markg, load_tsv
from mrmkg.tasks.scienceqa.data import load_scienceqa
from sqa_fixture import scienceqa_root
from test_cli_kg import FAKE  # noqa: F401  (registers the test encoders)

OUTSIDE_EXISTING = "/etc/hostname"
OUTSIDE_MISSING = "/nonexistent-mrmkg/x.png"


def png(path, rgb=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), rgb).save(path)
    return path


@pytest.fixture
def tsv(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "triples.tsv").write_text("Q1\tP1\tQ2\n", encoding="utf-8")
    png(d / "img" / "nested" / "q1.png")
    png(tmp_path / "secret" / "elsewhere.png", (1, 2, 3))  # a real image outside the data folder
    return d


def _tsv_images(d, *lines):
    (d / "images.tsv").write_text("".join(f"Q1\t{x}\n" for x in lines), encoding="utf-8")
    return d / "images.tsv"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "../secret/elsewhere.png", OUTSIDE_EXISTING, OUTSIDE_MISSING,
                                 "img/../../secret/elsewhere.png"])
def test_tsv_image_paths_outside_are_refused(tsv, bad):
    lst = _tsv_images(tsv, "img/nested/q1.png", bad)
    with pytest.raises(InputError, match="must stay inside") as e:
        load_tsv(tsv / "triples.tsv", images=lst)
    assert e.value.path == str(lst) and e.value.line == 2
    assert "not found" not in str(e.value) and "not a readable image" not in str(e.value)


def test_message_does_not_tell_whether_the_outside_file_exists(tsv):
    msgs = []
    for bad in (OUTSIDE_EXISTING, OUTSIDE_MISSING.replace("x.png", "hostname")):
        with pytest.raises(InputError) as e:
            load_tsv(tsv / "triples.tsv", images=_tsv_images(tsv, bad))
        msgs.append(str(e.value).replace(bad, "P"))
    assert msgs[0] == msgs[1]


def test_tsv_symlink_pointing_outside_is_refused(tsv):
    (tsv / "img" / "link.png").symlink_to(tsv.parent / "secret" / "elsewhere.png")
    with pytest.raises(InputError, match="must stay inside"):
        load_tsv(tsv / "triples.tsv", images=_tsv_images(tsv, "img/link.png"))


def test_tsv_nested_path_and_inside_symlink_are_accepted(tsv):
    (tsv / "img" / "alias.png").symlink_to(tsv / "img" / "nested" / "q1.png")
    kg = load_tsv(tsv / "triples.tsv", images=_tsv_images(tsv, "img/nested/q1.png", "img/./nested/../alias.png"))
    assert kg.num_images == 2 and kg.image_paths[0] == str((tsv / "img" / "nested" / "q1.png").resolve())


def test_allow_outside_paths_accepts_them(tsv):
    kg = load_tsv(tsv / "triples.tsv", images=_tsv_images(tsv, "../secret/elsewhere.png"), allow_outside_paths=True)
    assert kg.image_paths == [str((tsv.parent / "secret" / "elsewhere.png").resolve())]


@pytest.mark.parametrize("bad", ["../../etc/passwd", OUTSIDE_EXISTING])
def test_jsonl_image_paths_outside_are_refused(tmp_path, bad):
    d = tmp_path / "j"
    png(d / "a" / "b.png")
    recs = [{"type": "entity", "id": "Q1", "name": "one", "images": ["a/b.png"]},
            {"type": "entity", "id": "Q2", "name": "two"},
            {"type": "triple", "head": "Q1", "relation": "P1", "tail": "Q2"},
            {"type": "relation", "id": "P1", "name": "rel"},
            {"type": "image", "entity": "Q2", "path": bad}]
    p = d / "g.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    with pytest.raises(InputError, match="must stay inside") as e:
        load_jsonl(p)
    assert e.value.line == 5
    recs[-1]["path"] = "a/b.png"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    assert load_jsonl(p).num_images == 2
    recs[1]["images"] = [bad]
    recs.pop()
    p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    with pytest.raises(InputError, match="must stay inside") as e:
        load_jsonl(p)
    assert e.value.line == 2


def test_markg_image_symlink_pointing_outside_is_refused(tmp_path):
    d = tmp_path / "markg"
    d.mkdir()
    (d / "entity2text.txt").write_text("Q1\tone\nQ2\ttwo\n", encoding="utf-8")
    (d / "relation2text.txt").write_text("P1\trel\n", encoding="utf-8")
    (d / "wiki_tuple_ids.txt").write_text("Q1\tP1\tQ2\n", encoding="utf-8")
    png(d / "images" / "Q1" / "ok.png")
    assert load_markg(d).num_images == 1
    png(tmp_path / "secret.png")
    (d / "images" / "Q2").mkdir()
    (d / "images" / "Q2" / "s.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(InputError, match="must stay inside"):
        load_markg(d)
    assert load_markg(d, allow_outside_paths=True).num_images == 2


def test_kg_build_refuses_and_allow_outside_paths_accepts(tsv, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    _tsv_images(tsv, "../secret/elsewhere.png")
    out = tmp_path / "out"
    assert main(["kg", "build", str(tsv), "--format", "tsv", "--out", str(out), *FAKE]) == 2
    err = capsys.readouterr().err
    assert "images.tsv:1" in err and "--allow-outside-paths" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["kg", "build", str(tsv), "--format", "tsv", "--out", str(out), "--allow-outside-paths", *FAKE]) == 0


def test_relative_graph_image_paths_stay_in_the_graph_folder(tmp_path):
    png(tmp_path / "g" / "img" / "x.png")
    assert resolve_image_path("img/x.png", tmp_path / "g") == str(tmp_path / "g" / "img" / "x.png")
    assert resolve_image_path("/abs/path.png", tmp_path / "g") == "/abs/path.png"  # the graph's own, as built
    with pytest.raises(InputError, match="must stay inside"):
        resolve_image_path("../../etc/passwd", tmp_path / "g")
    (tmp_path / "g" / "img" / "out.png").symlink_to("/etc/hostname")
    with pytest.raises(InputError, match="must stay inside"):
        resolve_image_path("img/out.png", tmp_path / "g")


@pytest.fixture
def sqa(tmp_path):
    d = tmp_path / "scienceqa"
    shutil.copytree(scienceqa_root(), d)
    return d


def _set_image(d, value):
    p = d / "problems.json"
    probs = json.loads(p.read_text(encoding="utf-8"))
    pid = next(k for k, v in probs.items() if v["image"])
    probs[pid]["image"] = value
    p.write_text(json.dumps(probs, indent=1), encoding="utf-8")
    return pid


@pytest.mark.parametrize("bad", ["../../../../etc/passwd", OUTSIDE_EXISTING, OUTSIDE_MISSING])
def test_scienceqa_image_outside_is_refused(sqa, bad):
    pid = _set_image(sqa, bad)
    with pytest.raises(InputError, match=rf"pid {pid}: image .* must stay inside") as e:
        load_scienceqa(sqa)
    assert e.value.path == str(sqa / "problems.json") and e.value.line is not None
    assert "missing" not in str(e.value)
    assert load_scienceqa(sqa, allow_outside_paths=True, check_images=False).problems[pid].image_path is not None


def test_scienceqa_symlink_outside_is_refused_and_nested_accepted(sqa):
    ok = load_scienceqa(sqa)
    p = next(p for p in ok.problems.values() if p.image_path is not None)
    target = p.image_path
    backup = target.read_bytes()
    target.unlink()
    target.symlink_to("/etc/hostname")
    with pytest.raises(InputError, match="must stay inside"):
        load_scienceqa(sqa)
    target.unlink()
    (target.parent / "sub").mkdir()
    (target.parent / "sub" / "image.png").write_bytes(backup)
    p2 = json.loads((sqa / "problems.json").read_text())
    p2[p.pid if hasattr(p, "pid") else target.parent.name]["image"] = "sub/image.png"
    (sqa / "problems.json").write_text(json.dumps(p2), encoding="utf-8")
    assert load_scienceqa(sqa).problems[target.parent.name].image_path.is_file()


@pytest.mark.parametrize("out", ["/dev/null/x", "/proc/mrmkg-x"])
def test_kg_build_into_a_place_the_os_refuses(tsv, tmp_path, capsys, monkeypatch, out):
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    assert main(["kg", "build", str(tsv), "--format", "tsv", "-o", out, *FAKE]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: -o/--out cannot be created") and ".tmp" not in err and "Traceback" not in err
