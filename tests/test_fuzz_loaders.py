"""Fuzzing (Hypothesis): byte-mutated data files and graph folders either load or raise ``InputError``.

Each target starts from a valid file set, applies one to four byte mutations (flip, delete, insert,
truncate) to one of its files, and loads it: any exception other than
:class:`~mrmkg.errors.InputError` fails the test (Hypothesis then shrinks the mutation). 100
examples per target in ``make test`` (derandomised, so a run is reproducible); 2,000 random ones in
the slow suite (``make test-all``).

FAISS files are fuzzed only in folders *with* a checksum manifest: native code parses them, and
the manifest is what guarantees it only ever sees intact files (docs/design.md, "Errors and safety").
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.index import IndexConfig, KGIndex
from mrmkg.kg.io import load_graph, load_jsonl, load_markg
from mrmkg.kg.manifest import CHECKSUMS
from mrmkg.kg.retrieve import open_graph
from mrmkg.tasks.mars.data import load_candidates, load_mars_split
from mrmkg.tasks.scienceqa.data import load_scienceqa
from kg_formats_fixture import copy_formats
from sqa_fixture import scienceqa_root
from test_cli_kg import BowEncoder, ColourEncoder

SIZES = [pytest.param(100, id="100"), pytest.param(2000, id="2000", marks=pytest.mark.slow)]

mutation = st.tuples(st.sampled_from(["flip", "delete", "insert", "truncate"]), st.integers(0, 1 << 20),
                     st.integers(1, 255))


def mutate(data: bytes, ops) -> bytes:
    """Apply ``(kind, position, byte)`` mutations; positions wrap around the current length."""
    b = bytearray(data)
    for kind, pos, byte in ops:
        i = pos % (len(b) + 1)
        if kind == "flip" and i < len(b):
            b[i] ^= byte
        elif kind == "delete" and i < len(b):
            del b[i]
        elif kind == "insert":
            b.insert(i, byte)
        elif kind == "truncate":
            del b[i:]
    return bytes(b)


def fuzz(n: int, folder: Path, files: list[str], load) -> None:
    """Mutate one of ``files`` (relative to a fresh copy of ``folder``) and call ``load(copy)``."""
    work = folder.parent / f"{folder.name}-fuzz"

    @settings(max_examples=n, deadline=None, database=None, derandomize=n <= 100,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(files), st.lists(mutation, min_size=1, max_size=4))
    def one(name, ops):
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(folder, work, symlinks=True)
        p = work / name
        p.write_bytes(mutate(p.read_bytes(), ops))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load(work)
            except InputError:
                pass

    one()


def png(path: Path, rgb=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), rgb).save(path)


# ------------------------------------------------------------------ sources
@pytest.fixture(scope="module")
def markg(tmp_path_factory):
    d = tmp_path_factory.mktemp("markg") / "src"
    d.mkdir()
    (d / "entity2text.txt").write_text("Q1\tuniverse\nQ2\tgalaxy\nQ3\tstar\n", encoding="utf-8")
    (d / "entity2textlong.txt").write_text("Q1\tall of space\nQ3\ta ball of plasma\n", encoding="utf-8")
    (d / "relation2text.txt").write_text("P31\tinstance of\nP361\tpart of\n", encoding="utf-8")
    (d / "relation2textlong.txt").write_text("P31\tthat class of which this is an instance\n", encoding="utf-8")
    (d / "wiki_tuple_ids.txt").write_text("Q2\tP361\tQ1\nQ3\tP361\tQ2\nQ3\tP31\tQ3\nQ2\tP361\tQ1\n", encoding="utf-8")
    png(d / "images" / "Q3" / "sun.png")
    return d


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_markg_folder(markg, n):
    fuzz(n, markg, ["entity2text.txt", "entity2textlong.txt", "relation2text.txt", "relation2textlong.txt",
                    "wiki_tuple_ids.txt", "images/Q3/sun.png"], load_markg)


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    d = tmp_path_factory.mktemp("tsv") / "src"
    d.mkdir()
    (d / "entities.tsv").write_text("Q90\tParis\tcapital\nQ142\tFrance\tcountry\nQ46\tEurope\t\n", encoding="utf-8")
    (d / "relations.tsv").write_text("P1376\tcapital of\nP30\tcontinent\n", encoding="utf-8")
    (d / "triples.tsv").write_text("Q90\tP1376\tQ142\nQ142\tP30\tQ46\n", encoding="utf-8")
    png(d / "img" / "paris.png")
    (d / "images.tsv").write_text("Q90\timg/paris.png\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_tsv_folder(tsv, n):
    fuzz(n, tsv, ["entities.tsv", "relations.tsv", "triples.tsv", "images.tsv"], lambda d: load_graph(d, "tsv"))


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
    d = tmp_path_factory.mktemp("jsonl") / "src"
    png(d / "a" / "q1.png")
    recs = [{"type": "entity", "id": "Q1", "name": "one", "description": "first", "images": ["a/q1.png"]},
            {"type": "entity", "id": "Q2", "name": "two"}, {"type": "relation", "id": "P1", "name": "rel"},
            {"type": "triple", "head": "Q1", "relation": "P1", "tail": "Q2"},
            {"type": "image", "entity": "Q2", "path": "a/q1.png"}]
    (d / "g.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return d


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_jsonl(jsonl, n):
    fuzz(n, jsonl, ["g.jsonl"], lambda d: load_jsonl(d / "g.jsonl"))


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """The standard-format fixtures of test_kg_formats, with their pictures."""
    d = copy_formats(tmp_path_factory.mktemp("formats") / "src")
    png(d / "rdf" / "img" / "paris.png")
    png(d / "rdf" / "img" / "berlin.png")
    png(d / "mmkb" / "image-graph_images" / "m.05qtj" / "google_0.png")
    png(d / "openke" / "images" / "m.0156q" / "0.png")
    png(d / "pykeen" / "img" / "paris.png")
    return d


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("fmt", ["nt", "ttl"])
def test_fuzz_rdf(formats, fmt, n):
    fuzz(n, formats / "rdf", [f"graph.{fmt}", "img/paris.png"], lambda d: load_graph(d / f"graph.{fmt}", fmt))


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_mmkb(formats, n):
    fuzz(n, formats / "mmkb", ["FB15K_EntityTriples.txt", "FB15k_mid2name.txt"], lambda d: load_graph(d, "mmkb"))


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_mkgformer(formats, n):
    fuzz(n, formats / "mkgformer", ["train.tsv", "dev.tsv", "entity2text.txt", "entity2textlong.txt",
                                    "relation2text.txt"], lambda d: load_graph(d, "mmkb"))


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_openke(formats, n):
    fuzz(n, formats / "openke", ["entity2id.txt", "relation2id.txt", "train2id.txt", "valid2id.txt", "test2id.txt",
                                 "entity2text.txt"], lambda d: load_graph(d, "openke"))


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_pykeen(formats, n):
    fuzz(n, formats / "pykeen", ["triples.tsv", "images.tsv"],
         lambda d: load_graph(d / "triples.tsv", "pykeen", images=d / "images.tsv"))


@pytest.fixture(scope="module")
def mars(tmp_path_factory):
    d = tmp_path_factory.mktemp("mars") / "src"
    d.mkdir()
    recs = [{"example": ["Q1", "Q2"], "question": "Q3", "answer": "Q4", "mode": 0, "relation": "P1"},
            {"example": ["Q2", "Q1"], "question": "Q4", "answer": "Q3", "mode": 2, "id": "x7"}]
    (d / "test.json").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    (d / "analogy_entities.txt").write_text("Q1\nQ2\nQ3\nQ4\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_mars_split_and_candidates(mars, n):
    kg = MMKG.from_records([(f"Q{i}", f"e{i}", "") for i in range(1, 5)], [("P1", "r")], [("Q1", "P1", "Q2")])

    def load(d):
        load_mars_split(d / "test.json", kg)
        load_candidates(d / "analogy_entities.txt", kg)

    fuzz(n, mars, ["test.json", "analogy_entities.txt"], load)


@pytest.fixture(scope="module")
def sqa(tmp_path_factory):
    d = tmp_path_factory.mktemp("sqa") / "scienceqa"
    shutil.copytree(scienceqa_root(), d)
    return d


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_scienceqa(sqa, n):
    files = sorted(str(p.relative_to(sqa)) for p in sqa.glob("*.json"))
    assert "problems.json" in files and "pid_splits.json" in files
    fuzz(n, sqa, files, load_scienceqa)


# ------------------------------------------------------------------ built graph folders
@pytest.fixture(scope="module")
def built(tsv, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "g"
    kg = load_graph(tsv, "tsv")
    kg.save(out)
    KGIndex.build(kg, IndexConfig(text_encoder="test-bow", vision_encoder="test-colour"), out,
                  text_encoder=BowEncoder(), vision_encoder=ColourEncoder(), progress=False,
                  cache_root=tmp_path_factory.mktemp("cache"))
    return out


def _open(d: Path) -> None:
    kg, index = open_graph(d)
    kg.stats()
    index.search_triples(np.asarray(index.triple_emb[:1]), 2)


GRAPH_FILES = ["graph.json", "graph.npz", "index/manifest.json", "index/triple_emb.npy", "index/entity_emb.npy",
               "index/relation_emb.npy", "index/image_emb.npy"]


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_graph_folder_with_checksums(built, n):
    fuzz(n, built, [*GRAPH_FILES, "index/triples.faiss", "index/images.faiss", CHECKSUMS, f"index/{CHECKSUMS}"],
         _open)


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_old_graph_folder_content_checks(built, tmp_path, n):
    """Without checksums (a folder from before them): the content checks alone must hold."""
    old = tmp_path / "old"
    shutil.copytree(built, old)
    (old / CHECKSUMS).unlink()
    (old / "index" / CHECKSUMS).unlink()
    fuzz(n, old, GRAPH_FILES, _open)


# ------------------------------------------------------------------ regressions found by the fuzzers
def test_regression_candidates_not_utf8(mars, tmp_path):
    p = tmp_path / "analogy_entities.txt"
    p.write_bytes(b"Q1\n\xd1Q2\n")
    kg = MMKG.from_records([("Q1", "a", ""), ("Q2", "b", "")], [("P1", "r")], [("Q1", "P1", "Q2")])
    with pytest.raises(InputError, match="not UTF-8") as e:
        load_candidates(p, kg)
    assert e.value.line == 2


def test_regression_image_path_with_a_nul_byte(tsv, tmp_path):
    d = tmp_path / "src"
    shutil.copytree(tsv, d)
    (d / "images.tsv").write_text("Q90\timg/pa\0ris.png\n", encoding="utf-8")
    with pytest.raises(InputError, match="NUL byte") as e:
        load_graph(d, "tsv")
    assert e.value.line == 1
