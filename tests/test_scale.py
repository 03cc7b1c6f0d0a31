"""The pieces that let a 10M-triple graph fit one machine (benchmarks/scale.py measures them at size):
the IVF-PQ index choice, the memory-mapped graph layout, string tables, and A.6 over both."""
from __future__ import annotations

import json
import os
import warnings

import faiss
import numpy as np
import pytest

import mrmkg.kg.graph as graph_mod
from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.index import IndexConfig, KGIndex, graph_key
from mrmkg.kg.manifest import CHECKSUMS, DamagedArtifactError, UnverifiedArtifactWarning
from mrmkg.kg.retrieve import RetrievalConfig, Retriever, open_graph
from mrmkg.kg.strings import StringTable
from test_index import BowEncoder, ThumbEncoder, make_images, toy_graph

QUERIES = ["paris music", "green tree river", "king castle bridge", "fire water"]
PQ = dict(approx="ivfpq", exact_max=100, ivf_nlist=8, ivf_nprobe=8, pq_m=8, refine=10, add_chunk=700)


def _clustered(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20, d)).astype(np.float32)[rng.integers(0, 20, n)]
    x += 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------ IVF-PQ
def test_ivfpq_builds_searches_saves_and_loads_memory_mapped(tmp_path):
    x = _clustered(3000)
    ent, rel = _clustered(50, seed=1), _clustered(4, seed=2)
    idx = KGIndex.from_arrays(x, ent, rel, config=IndexConfig(**PQ))
    assert idx.manifest["triple_index"] == "IndexPreTransform"  # OPQ rotation in front of IVF-PQ
    ivf = faiss.downcast_index(faiss.extract_index_ivf(idx.triple_index))
    assert isinstance(ivf, faiss.IndexIVFPQ) and ivf.pq.M == 8 and ivf.nlist == 8 and ivf.ntotal == 3000
    # every indexed vector finds itself first (PQ hits re-scored exactly: cosine 1)
    rows = np.arange(0, 3000, 37)
    s, ids = idx.search_triples(x[rows], 5)
    assert ids[:, 0].tolist() == rows.tolist()
    np.testing.assert_allclose(s[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(s, axis=1) <= 1e-6)
    # without the refine step the scores are PQ approximations, not the exact cosine
    idx.config.refine = 1
    s1, _ = idx.search_triples(x[rows], 5)
    assert not np.allclose(s1[:, 0], 1.0, atol=1e-4)
    idx.config.refine = 10
    idx.save(tmp_path)
    back = KGIndex.load(tmp_path)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(back.triple_index).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)  # IO_FLAG_MMAP: the codes stay in the file
    assert faiss.extract_index_ivf(back.triple_index).nprobe == 8
    s2, ids2 = back.search_triples(x[rows], 5)
    assert ids2.tolist() == ids.tolist()
    np.testing.assert_allclose(s2, s, atol=1e-6)


def test_ivfpq_config_is_checked():
    with pytest.raises(InputError, match="approx must be one of"):
        IndexConfig(approx="pq")
    with pytest.raises(InputError, match="refine must be >= 1"):
        IndexConfig(approx="ivfpq", refine=0)
    with pytest.raises(InputError, match="pq_m=5 must divide the embedding dimension 16"):
        KGIndex.from_arrays(_clustered(300), _clustered(5), _clustered(2), config=IndexConfig(**{**PQ, "pq_m": 5}))


def test_memory_mapped_embeddings_are_not_copied_and_saved_as_links(tmp_path):
    src = tmp_path / "emb"
    src.mkdir()
    for name, a in (("t", _clustered(1000)), ("e", _clustered(30, seed=1)), ("r", _clustered(3, seed=2))):
        np.save(src / f"{name}.npy", a)
    t, e, r = (np.load(src / f"{n}.npy", mmap_mode="r") for n in "ter")
    idx = KGIndex.from_arrays(t, e, r, config=IndexConfig(**PQ))
    assert idx.triple_emb is t  # neither normalised into a copy nor read whole
    idx.save(tmp_path / "g")
    assert os.stat(tmp_path / "g" / "index" / "triple_emb.npy").st_ino == os.stat(src / "t.npy").st_ino
    back = KGIndex.load(tmp_path / "g")
    np.testing.assert_array_equal(np.asarray(back.triple_emb), np.asarray(t))
    with pytest.raises(ValueError, match="must already be unit rows"):
        np.save(src / "bad.npy", 2 * _clustered(10))
        KGIndex.from_arrays(np.load(src / "bad.npy", mmap_mode="r"), e, r)


# ------------------------------------------------------------------ string tables
def test_string_table_behaves_as_a_sequence():
    words = ["Q10", "Q2", "", "Zürich", "東京", "Q1"]
    t = StringTable.from_strings(words, with_order=True)
    assert len(t) == 6 and list(t) == words and t == words and t[3] == "Zürich" and t[-1] == "Q1"
    assert t[1:4] == words[1:4]
    assert [t.find(w) for w in words] == list(range(6)) and t.find("Q3") == -1
    assert "東京" in t and "Q3" not in t and t.index("Q1") == 5
    with pytest.raises(ValueError):
        t.index("nope")
    with pytest.raises(IndexError):
        t[6]
    assert StringTable.from_strings(words).find("Zürich") == 3  # no order: a scan
    assert t + ["x"] == words + ["x"] and ["x"] + t == ["x"] + words


# ------------------------------------------------------------------ mmap graph layout
@pytest.fixture
def toy(tmp_path):
    imgs = make_images(tmp_path, ["Q0", "Q3", "Q7", "Q11"], per_entity=2)
    kg = toy_graph(images=imgs)
    kg.save(tmp_path / "g", layout="mmap")
    idx = KGIndex.build(kg, IndexConfig(), tmp_path / "g", text_encoder=BowEncoder(), vision_encoder=ThumbEncoder(),
                        progress=False, cache_root=tmp_path / "cache")
    return kg, idx, imgs, tmp_path / "g"


def test_mmap_load_reads_no_array(toy):
    kg, _, _, g = toy
    j = json.loads((g / "graph.json").read_text())
    assert j["format_version"] == 2 and j["layout"] == "mmap" and "entity_names" not in j
    assert not (g / "graph.npz").exists()
    m = MMKG.load(g)
    for name in ("triples", "image_entity", "out_ptr", "out_idx", "in_ptr", "in_idx", "img_ptr", "img_idx"):
        a = getattr(m, name)
        assert isinstance(a, np.memmap) and not a.flags.writeable, name
        np.testing.assert_array_equal(np.asarray(a), getattr(kg, name))
    assert m.memory_mapped and not kg.memory_mapped
    for name in ("entity_ids", "entity_names", "entity_descriptions", "image_paths"):
        assert isinstance(getattr(m, name), StringTable) and isinstance(getattr(m, name).data, np.memmap)
        assert list(getattr(m, name)) == list(getattr(kg, name))
    assert m.relation_ids == kg.relation_ids and m.relation_names == kg.relation_names
    assert m.entity_index("Q17") == 17 and m.has_entity("Q3") and not m.has_entity("Q999")
    assert m.verbalise(5) == kg.verbalise(5) and m.stats() == kg.stats()
    assert graph_key(m) == graph_key(kg)  # stored at save, equal to the in-memory key


def test_mmap_graph_retrieves_exactly_like_the_in_memory_graph(toy):
    kg, idx, imgs, g = toy
    m, midx = open_graph(g)
    assert m.memory_mapped
    cfg = RetrievalConfig(n=3, N=8, images_per_entity=1)
    a = Retriever(kg, idx, cfg, text_encoder=BowEncoder(), vision_encoder=ThumbEncoder())
    b = Retriever(m, midx, cfg, text_encoder=BowEncoder(), vision_encoder=ThumbEncoder())
    queries = [(t, None) for t in QUERIES] + [(None, imgs["Q3"][0]), ("king castle", imgs["Q7"][1])]
    for text, image in queries:
        sa, sb = a.retrieve(text, image), b.retrieve(text, image)
        assert sa.triple_ids.size > 0
        for f in ("node_kind", "node_ref", "edge_index", "edge_type", "edge_triple", "edge_score", "seeds"):
            np.testing.assert_array_equal(getattr(sa, f), getattr(sb, f), err_msg=f)
        assert sa.to_dict(kg) == sb.to_dict(m)


def test_layout_auto_and_npz_still_default_for_small_graphs(tmp_path, monkeypatch):
    kg = toy_graph()
    kg.save(tmp_path / "small")
    assert json.loads((tmp_path / "small" / "graph.json").read_text())["format_version"] == 1
    assert not MMKG.load(tmp_path / "small").memory_mapped
    monkeypatch.setattr(graph_mod, "MMAP_MIN_TRIPLES", 10)
    kg.save(tmp_path / "small")  # the same folder, now past the threshold: the npz files go
    assert sorted(json.loads((tmp_path / "small" / CHECKSUMS).read_text())["files"]) == sorted(graph_mod._mmap_files())
    assert not (tmp_path / "small" / "graph.npz").exists() and MMKG.load(tmp_path / "small").memory_mapped
    with pytest.raises(InputError, match="layout must be one of"):
        kg.save(tmp_path / "x", layout="parquet")


@pytest.mark.parametrize("damage, file, reason", [
    (lambda g: (g / "triples.npy").write_bytes((g / "triples.npy").read_bytes()[:-8]), "triples.npy", "bytes"),
    (lambda g: (g / "out_ptr.npy").unlink(), "out_ptr.npy", "missing"),
    (lambda g: np.save(g / "in_ptr.npy", np.zeros(41, np.int64)), "in_ptr.npy", None),
], ids=["truncated", "missing", "replaced"])
@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
def test_damaged_mmap_folder_names_the_file(toy, damage, file, reason, manifest):
    g = toy[3]
    damage(g)
    if not manifest:
        (g / CHECKSUMS).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        with pytest.raises(DamagedArtifactError, match=f"is damaged: {file} \\(") as e:
            MMKG.load(g)
    assert "rebuild it with `mrmkg kg build" in str(e.value)
    if reason and manifest:
        assert reason in str(e.value)


def test_out_of_range_triple_is_caught_only_when_verifying_all(toy, monkeypatch):
    g = toy[3]
    t = np.load(g / "triples.npy")
    t[3, 2] = 10_000
    np.save(g / "triples.npy", t)  # same size: passes the size check, not hashed by default
    assert MMKG.load(g).num_triples == t.shape[0]
    monkeypatch.setenv("MRMKG_VERIFY_ALL", "1")
    with pytest.raises(DamagedArtifactError, match="triples.npy"):
        MMKG.load(g)
    (g / CHECKSUMS).unlink()  # the content check itself, not only the hash
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        with pytest.raises(DamagedArtifactError, match=r"triple 3 \[.*\] is out of range"):
            MMKG.load(g)


def test_unknown_format_version_asks_for_a_rebuild(toy):
    g = toy[3]
    j = json.loads((g / "graph.json").read_text())
    (g / "graph.json").write_text(json.dumps({**j, "format_version": 3}))
    (g / CHECKSUMS).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        with pytest.raises(InputError, match="format version 3 is not 1 or 2; rebuild it with `mrmkg kg build`"):
            MMKG.load(g)


def test_out_of_core_rows_are_read_not_mapped(tmp_path):
    np.save(tmp_path / "t.npy", _clustered(1000))
    t = np.load(tmp_path / "t.npy", mmap_mode="r")
    idx = KGIndex.from_arrays(t, _clustered(30, seed=1), _clustered(3, seed=2), config=IndexConfig(**PQ))
    ids = np.array([5, 7, 6, 999, 0, 5, 1, 2])  # unsorted, repeated, runs
    np.testing.assert_array_equal(idx.rows(idx.triple_emb, ids), np.asarray(t)[ids])
    assert idx.rows(idx.triple_emb, np.zeros(0, np.int64)).shape == (0, 16)
    with pytest.raises(IndexError):
        idx.rows(idx.triple_emb, np.array([1000]))


def test_an_index_from_before_ivfpq_still_loads(tmp_path):
    KGIndex.from_arrays(_clustered(200), _clustered(10, seed=1), _clustered(3, seed=2)).save(tmp_path)
    mf = tmp_path / "index" / "manifest.json"
    j = json.loads(mf.read_text())
    j["config"] = {k: v for k, v in j["config"].items() if k not in ("pq_m", "opq", "opq_niter", "refine", "add_chunk")}
    mf.write_text(json.dumps(j))
    (tmp_path / "index" / CHECKSUMS).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        assert KGIndex.load(tmp_path).config == IndexConfig(**{**j["config"]})
        j["config"]["bogus"] = 1
        mf.write_text(json.dumps(j))
        with pytest.raises(DamagedArtifactError, match="unknown key"):
            KGIndex.load(tmp_path)


# ------------------------------------------------------------------ PQ-code shortlist of the A.6 candidates
def test_pq_scores_decode_codes_through_the_direct_map_before_and_after_loading(tmp_path):
    x = _clustered(3000)
    idx = KGIndex.from_arrays(x, _clustered(50, seed=1), _clustered(4, seed=2), config=IndexConfig(**PQ))
    assert idx.compressed and not KGIndex.from_arrays(x[:50], x[:5], x[:2]).compressed
    ids, q = np.array([2999, 0, 17, 17, 1500]), x[17]
    approx = idx.pq_scores(ids, q)
    assert approx.shape == (5,) and approx.dtype == np.float32
    np.testing.assert_allclose(approx, x[ids] @ q, atol=0.15)  # approximate...
    assert not np.allclose(approx, x[ids] @ q, atol=1e-4)  # ...not the stored vectors
    assert idx.pq_scores(np.zeros(0, np.int64), q).shape == (0,)
    idx.save(tmp_path)
    back = KGIndex.load(tmp_path)
    np.testing.assert_allclose(back.pq_scores(ids, q), approx, atol=1e-6)
    with pytest.raises(ValueError, match="needs an IVF-PQ triple index"):
        KGIndex.from_arrays(x[:50], x[:5], x[:2]).pq_scores(ids[:1], q)
    # an index written without the direct map (before builds kept one) gets it at load
    ivf = faiss.downcast_index(faiss.extract_index_ivf(idx.triple_index))
    ivf.set_direct_map_type(faiss.DirectMap.NoMap)
    faiss.write_index(idx.triple_index, str(tmp_path / "index" / "triples.faiss"))
    (tmp_path / "index" / CHECKSUMS).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        np.testing.assert_allclose(KGIndex.load(tmp_path).pq_scores(ids, q), approx, atol=1e-6)


@pytest.fixture
def pq_graph():
    kg = toy_graph(n_entities=60, n_triples=3000)  # ~100 triples an entity: hundreds of candidates a query
    x = _clustered(3000, seed=3)
    idx = KGIndex.from_arrays(x, _clustered(60, seed=1), _clustered(kg.num_relations, seed=2),
                              config=IndexConfig(**PQ), kg=kg)
    return kg, idx, x


@pytest.mark.parametrize("shortlist", [1, 2, 4])
def test_shortlist_reads_only_its_rows_and_keeps_exact_scores(pq_graph, shortlist, monkeypatch):
    kg, idx, x = pq_graph
    read = []
    rows = idx.rows
    monkeypatch.setattr(idx, "rows", lambda emb, ids: read.append(len(ids)) or rows(emb, ids))
    full = Retriever(kg, idx, RetrievalConfig(n=5, N=10, shortlist=0))
    short = Retriever(kg, idx, RetrievalConfig(n=5, N=10, shortlist=shortlist))
    agree = []
    for i in range(0, 3000, 150):
        read.clear()
        a = full.retrieve_vectors(x[i])
        n_full = read[-1]
        read.clear()
        b = short.retrieve_vectors(x[i])
        assert n_full > 100 and read[-1] == 10 * shortlist  # only the shortlist's rows are read
        np.testing.assert_allclose(b.edge_score, x[b.triple_ids] @ x[i], atol=1e-5)  # final scores exact
        assert np.all(np.diff(b.edge_score) <= 1e-6)
        agree.append(len(set(a.triple_ids.tolist()) & set(b.triple_ids.tolist())) / 10)
    # with a shortlist of N the PQ error decides the ranks near the cut; 4 N keeps the exact top N
    assert np.mean(agree) >= {1: 0.6, 2: 0.85, 4: 0.95}[shortlist]


def test_shortlist_is_off_for_exact_indexes_and_checked(pq_graph, monkeypatch):
    kg = pq_graph[0]
    idx = KGIndex.from_arrays(pq_graph[2], _clustered(60, seed=1), _clustered(kg.num_relations, seed=2), kg=kg,
                              config=IndexConfig(approx="ivf", exact_max=100, ivf_nlist=8, ivf_nprobe=8))
    monkeypatch.setattr(idx, "pq_scores", lambda *a: pytest.fail("PQ scores on a float index"))
    sg = Retriever(kg, idx, RetrievalConfig(n=5, N=10, shortlist=1)).retrieve_vectors(pq_graph[2][0])
    assert sg.triple_ids.size == 10
    with pytest.raises(InputError, match="shortlist must be >= 0"):
        RetrievalConfig(shortlist=-1)
