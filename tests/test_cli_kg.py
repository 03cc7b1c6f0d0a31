"""`mrmkg kg build / stats / retrieve` through ``mrmkg.cli.main(argv)``.

Most tests register two tiny deterministic encoders (hashed bag of words; mean colour) in the
encoder registry, so the whole CLI path runs in milliseconds without weights; one test uses the
real MiniLM, and one builds the real MarKG (slow).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrmkg.cli import main
from mrmkg.encoders.base import TextEncoder, VisionEncoder
from mrmkg.encoders.images import load_image
from mrmkg.encoders.registry import register_text_encoder, register_vision_encoder


class BowEncoder(TextEncoder):
    """Hashed bag of lower-cased words: texts sharing words have a high cosine."""

    name, dim = "test-bow", 64

    def encode(self, texts, batch_size=64, progress=False):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace("?", " ").split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-12)


class ColourEncoder(VisionEncoder):
    """Mean RGB of the image (plus a constant), normalised: same-coloured images match."""

    name, dim, num_tokens = "test-colour", 4, 1

    def encode(self, images, batch_size=32, progress=False):
        out = np.array([[*np.asarray(load_image(im), np.float32).mean(axis=(0, 1)) / 255.0, 0.1] for im in images],
                       np.float32).reshape(-1, self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_tokens(self, images, batch_size=32, progress=False):
        return self.encode(images)[:, None, :]


register_text_encoder("test-bow", lambda arg: BowEncoder())
register_vision_encoder("test-colour", lambda arg: ColourEncoder())
FAKE = ["--text-encoder", "test-bow", "--vision-encoder", "test-colour"]


def solid(path: Path, rgb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), rgb).save(path)
    return path


@pytest.fixture
def graph_src(tmp_path):
    """A TSV folder: countries, capitals and continents; Paris has a red image, Berlin a blue one."""
    d = tmp_path / "src"
    d.mkdir()
    (d / "entities.tsv").write_text(
        "Q90\tParis\tcapital of France\nQ142\tFrance\tcountry\nQ64\tBerlin\tcapital of Germany\n"
        "Q183\tGermany\tcountry\nQ46\tEurope\tcontinent\nQ1\t[weird] name\tbrackets are not markup\n", encoding="utf-8")
    (d / "relations.tsv").write_text("P1376\tcapital of\nP30\tcontinent\nP47\tshares border with\nP9\tnoted\n",
                                     encoding="utf-8")
    (d / "triples.tsv").write_text(
        "Q90\tP1376\tQ142\nQ64\tP1376\tQ183\nQ142\tP30\tQ46\nQ183\tP30\tQ46\nQ142\tP47\tQ183\nQ1\tP9\tQ46\n",
        encoding="utf-8")
    solid(d / "img" / "paris.png", (250, 10, 10))
    solid(d / "img" / "berlin.png", (10, 10, 250))
    (d / "images.tsv").write_text("Q90\timg/paris.png\nQ64\timg/berlin.png\n", encoding="utf-8")
    return d


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def built(graph_src, tmp_path, cache, capsys):
    out = tmp_path / "built"
    assert main(["kg", "build", str(graph_src), "--format", "tsv", "--out", str(out), *FAKE]) == 0
    capsys.readouterr()
    return out


def run(argv, capsys) -> tuple[int, str, str]:
    rc = main(argv)
    o = capsys.readouterr()
    return rc, o.out, o.err


# ------------------------------------------------------------------------------ build
def test_build_writes_graph_and_index_and_second_build_is_cached(graph_src, tmp_path, cache, capsys):
    out = tmp_path / "g"
    rc, so, _ = run(["kg", "build", str(graph_src), "--format", "tsv", "--out", str(out), *FAKE], capsys)
    assert rc == 0
    assert (out / "graph.json").is_file() and (out / "index" / "manifest.json").is_file()
    assert "6 triples" in so and "2 images" in so and "encoded 19 of 19" in so  # 6 triples, 6 entities, 4+1 relations, 2 images
    rc, so, _ = run(["kg", "build", str(graph_src), "--format", "tsv", "--out", str(out), *FAKE], capsys)
    assert rc == 0 and "served from the embedding cache" in so
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".g.")]  # no temporary leftovers


def test_build_with_vision_none_ignores_images(graph_src, tmp_path, cache, capsys):
    out = tmp_path / "g"
    rc, so, _ = run(["kg", "build", str(graph_src), "--out", str(out), "--text-encoder", "test-bow",
                     "--vision-encoder", "none"], capsys)
    assert rc == 0
    m = json.loads((out / "index" / "manifest.json").read_text())
    assert m["counts"]["images"] == 0 and m["vision_encoder_id"] is None


def test_build_with_image_standins_replaces_images(graph_src, tmp_path, cache, capsys):
    out = tmp_path / "g"
    rc, so, _ = run(["kg", "build", str(graph_src), "--out", str(out), *FAKE, "--image-standin", "description"], capsys)
    assert rc == 0 and "6 image stand-ins (description)" in so and "replaced 2 real image(s)" in so
    m = json.loads((out / "index" / "manifest.json").read_text())
    assert m["counts"]["images"] == 6 and m["image_standin"] == "description" and m["image_dim"] == m["text_dim"]


def test_build_bad_input_exits_2_and_writes_nothing(graph_src, tmp_path, cache, capsys):
    (graph_src / "triples.tsv").write_text("Q90\tP1376\tQ142\nQ90\tP1376\n", encoding="utf-8")
    out = tmp_path / "g"
    rc, so, se = run(["kg", "build", str(graph_src), "--out", str(out), *FAKE], capsys)
    assert rc == 2 and "triples.tsv:2" in se and "missing columns" in se and "Traceback" not in se
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".g.")]


def test_failed_rebuild_keeps_the_previous_graph(built, graph_src, capsys):
    before = (built / "graph.json").read_bytes()
    solid(graph_src / "img" / "paris.png", (1, 2, 3))
    data = (graph_src / "img" / "paris.png").read_bytes()
    (graph_src / "img" / "paris.png").write_bytes(data[: len(data) // 2])  # truncated
    rc, _, se = run(["kg", "build", str(graph_src), "--out", str(built), *FAKE], capsys)
    assert rc == 2 and "images.tsv:1" in se and "paris.png" in se
    assert (built / "graph.json").read_bytes() == before and (built / "index" / "manifest.json").is_file()


def test_build_refuses_to_replace_a_folder_that_is_not_a_graph(graph_src, tmp_path, cache, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    rc, _, se = run(["kg", "build", str(graph_src), "--out", str(out), *FAKE], capsys)
    assert rc == 2 and "not a built graph" in se and (out / "precious.txt").read_text() == "keep me"


def test_build_quiet_prints_one_line(graph_src, tmp_path, cache, capsys):
    out = tmp_path / "g"
    rc, so, _ = run(["kg", "build", str(graph_src), "-o", str(out), *FAKE, "-q"], capsys)
    assert rc == 0 and (out / "index" / "manifest.json").is_file()
    assert so.startswith(f"wrote {out}: 6 entities, 6 triples, 2 images in ") and len(so.splitlines()) == 1


@pytest.mark.parametrize("where", ["file", "file/sub", "/dev/null/g", "/proc/g"])
def test_build_output_that_cannot_be_a_folder_exits_2_naming_it(where, graph_src, tmp_path, cache, capsys):
    (tmp_path / "file").write_text("keep me")
    out = Path(where) if where.startswith("/") else tmp_path / where
    rc, _, se = run(["kg", "build", str(graph_src), "-o", str(out), *FAKE], capsys)
    assert rc == 2 and str(out) in se and "Traceback" not in se and ".tmp" not in se
    assert (tmp_path / "file").read_text() == "keep me"


def test_build_unknown_ids_skip_is_reported(graph_src, tmp_path, cache, capsys):
    with open(graph_src / "triples.tsv", "a", encoding="utf-8") as f:
        f.write("Q90\tP1376\tQ999\n")
    out = tmp_path / "g"
    rc, _, se = run(["kg", "build", str(graph_src), "--out", str(out), *FAKE], capsys)
    assert rc == 2 and "triples.tsv:7" in se and "'Q999'" in se
    rc, so, _ = run(["kg", "build", str(graph_src), "--out", str(out), "--unknown-ids", "skip", *FAKE], capsys)
    assert rc == 0 and "skipped 1 triple(s) with unknown ids" in so


def test_build_bad_option_value_exits_2(graph_src, tmp_path, capsys):
    rc, _, se = run(["kg", "build", str(graph_src), "--out", str(tmp_path / "g"), "--format", "csv"], capsys)
    assert rc == 2 and "csv" in se


# ------------------------------------------------------------------------------ stats
def test_stats_table_and_json(built, capsys):
    rc, so, _ = run(["kg", "stats", str(built)], capsys)
    assert rc == 0 and "triples" in so and "test-bow" in so and "IndexFlatIP" in so
    rc, so, _ = run(["kg", "stats", str(built), "--json"], capsys)
    j = json.loads(so)
    assert j["graph"]["triples"] == 6 and j["graph"]["images"] == 2 and j["graph"]["entities"] == 6
    assert j["load"]["format"] == "tsv" and j["index"]["counts"]["triples"] == 6


def test_stats_of_a_folder_that_is_not_a_graph(tmp_path, capsys):
    rc, _, se = run(["kg", "stats", str(tmp_path)], capsys)
    assert rc == 2 and "not a built graph folder" in se


# ------------------------------------------------------------------------------ retrieve
def test_retrieve_table_shows_ids_and_scores_best_first(built, capsys):
    rc, so, _ = run(["kg", "retrieve", str(built), "what is the capital of France?", "-n", "1", "-N", "3"], capsys)
    assert rc == 0
    lines = [ln for ln in so.splitlines() if "(Q" in ln]
    assert len(lines) == 3
    assert "Paris (Q90)" in lines[0] and "capital of (P1376)" in lines[0] and "France (Q142)" in lines[0]
    scores = [float(ln.split("│")[-2]) for ln in lines]
    assert scores == sorted(scores, reverse=True)


def test_retrieve_json(built, capsys):
    rc, so, _ = run(["kg", "retrieve", str(built), "capital of France", "-N", "2", "--json"], capsys)
    assert rc == 0
    j = json.loads(so)
    assert j["query"] == "capital of France" and len(j["triples"]) <= 2
    t0 = j["triples"][0]
    assert {"id", "head", "head_name", "relation", "relation_name", "tail", "tail_name", "score"} <= set(t0)
    assert (t0["head"], t0["relation"], t0["tail"], t0["head_name"]) == ("Q90", "P1376", "Q142", "Paris")
    assert [t["score"] for t in j["triples"]] == sorted((t["score"] for t in j["triples"]), reverse=True)


def test_retrieve_names_with_brackets_are_printed_verbatim(built, capsys):
    rc, so, _ = run(["kg", "retrieve", str(built), "weird name noted", "-n", "1", "-N", "1"], capsys)
    assert rc == 0 and "[weird] name (Q1)" in so


def test_retrieve_by_image(built, tmp_path, capsys):
    q = solid(tmp_path / "red.png", (240, 20, 20))
    rc, so, _ = run(["kg", "retrieve", str(built), "--image", str(q), "-N", "1", "--json"], capsys)
    assert rc == 0
    t = json.loads(so)["triples"][0]
    assert "Q90" in (t["head"], t["tail"])  # Paris, whose picture is red


def test_retrieve_empty_query(built, capsys):
    rc, _, se = run(["kg", "retrieve", str(built), "   "], capsys)
    assert rc == 2 and "empty query" in se and "Traceback" not in se


def test_retrieve_question_that_is_not_utf8(built, capsys):
    rc, _, se = run(["kg", "retrieve", str(built), b"caf\xe9\xff".decode("utf-8", "surrogateescape")], capsys)
    assert rc == 2 and "not valid UTF-8" in se and "Traceback" not in se


def test_retrieve_query_that_matches_nothing(built, capsys):
    rc, _, se = run(["kg", "retrieve", str(built), "zebra xylophone", "--min-score", "0.5"], capsys)
    assert rc == 2 and "matched no triple" in se and "0.5" in se


def test_retrieve_with_a_bad_image(built, tmp_path, capsys):
    (tmp_path / "q.png").write_text("not an image")
    rc, _, se = run(["kg", "retrieve", str(built), "France", "--image", str(tmp_path / "q.png")], capsys)
    assert rc == 2 and "q.png" in se and "not an image" in se
    rc, _, se = run(["kg", "retrieve", str(built), "France", "--image", str(tmp_path / "missing.png")], capsys)
    assert rc == 2 and "missing.png" in se and "not found" in se


def test_help_texts_on_every_option(capsys):
    import typer.main

    from mrmkg.commands.kg import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        assert cmd.params
        for p in cmd.params:  # typer vendors its own click: isinstance(p, click.Option) is never true
            if p.param_type_name == "option" and p.name != "help":
                assert p.help, f"kg {name} {p.opts} has no help text"
            if p.param_type_name == "argument":
                assert getattr(p, "help", None), f"kg {name} argument {p.name} has no help text"


def test_python_m_mrmkg_bad_input_exit_2_without_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "mrmkg", "kg", "build", str(tmp_path / "nope"), "--format", "markg",
                        "--out", str(tmp_path / "g")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "nope" in r.stderr
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------------------------ real encoders
@pytest.mark.weights("minilm")
def test_retrieve_with_real_minilm(graph_src, tmp_path, cache, capsys):
    out = tmp_path / "g"
    rc, _, se = run(["kg", "build", str(graph_src), "--out", str(out), "--text-encoder", "minilm",
                     "--vision-encoder", "none"], capsys)
    assert rc == 0, se
    rc, so, _ = run(["kg", "retrieve", str(out), "Which city is the capital of Germany?", "-n", "2", "-N", "3",
                     "--json"], capsys)
    j = json.loads(so)
    assert rc == 0 and len(j["triples"]) == 3
    assert (j["triples"][0]["head"], j["triples"][0]["tail"]) == ("Q64", "Q183")


@pytest.mark.slow
@pytest.mark.weights("minilm", "efficientnet-lite0")
def test_build_and_retrieve_real_markg(data_dir, tmp_path, capsys):
    """The issue's acceptance path on MarKG (uses the user's embedding cache; minutes when cold)."""
    out = tmp_path / "markg"
    argv = ["kg", "build", str(data_dir / "markg"), "--format", "markg", "--out", str(out),
            "--images", str(data_dir / "mars" / "images")]
    rc, so, se = run(argv, capsys)
    assert rc == 0, se
    assert "33301 triples" in so and "dropped 6 duplicate" in so
    rc, so, se = run(argv, capsys)
    assert rc == 0 and "served from the embedding cache" in so, so + se
    rc, so, _ = run(["kg", "retrieve", str(out), "Algeria is a country in North Africa", "-N", "10", "--json"], capsys)
    j = json.loads(so)
    assert rc == 0 and 1 <= len(j["triples"]) <= 10


def test_stats_of_a_graph_without_index(graph_src, tmp_path, capsys):
    from mrmkg.kg.io import load_graph

    load_graph(graph_src).save(tmp_path / "bare")
    rc, so, _ = run(["kg", "stats", str(tmp_path / "bare")], capsys)
    assert rc == 0 and "none (build one with `mrmkg kg build`)" in so
    rc, _, se = run(["kg", "retrieve", str(tmp_path / "bare"), "France"], capsys)
    assert rc == 2 and "no index found" in se
