"""A.6 retrieval on a toy graph: seeds, one-hop expansion, top-N re-rank, image queries, batch API."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrmkg.errors import InputError
from mrmkg.kg.index import IndexConfig, KGIndex
from mrmkg.kg.retrieve import RetrievalConfig, Retriever, expand, open_graph, top_n_sorted
from mrmkg.kg.subgraph import ENTITY, IMAGE
from test_index import BowEncoder, ThumbEncoder, make_images, toy_graph

QUERIES = ["paris music", "green tree river", "king castle bridge", "fire water"]


@pytest.fixture
def built(tmp_path):
    imgs = make_images(tmp_path, ["Q0", "Q3", "Q7", "Q11"], per_entity=2)
    kg = toy_graph(images=imgs)
    idx = KGIndex.build(kg, IndexConfig(), tmp_path / "g", text_encoder=BowEncoder(), vision_encoder=ThumbEncoder(),
                        progress=False, cache_root=tmp_path / "cache")
    return kg, idx, imgs, tmp_path / "g"


def _incident(kg, ents):
    """Reference expansion with a Python loop over all triples."""
    ents = set(int(e) for e in ents)
    return sorted(i for i, (h, _, t) in enumerate(kg.triples.tolist()) if h in ents or t in ents)


def test_text_query_follows_a6(built):
    kg, idx, _, _ = built
    cfg = RetrievalConfig(n=3, N=8, images_per_entity=0)
    r = Retriever(kg, idx, cfg, text_encoder=BowEncoder())
    for text in QUERIES:
        sub = r.retrieve(text)
        q = BowEncoder().encode([text])[0]
        # seeds = entities of the top-n triples
        s, ids = idx.search_triples(q[None], 3)
        assert set(sub.seeds.tolist()) == set(kg.triples[ids[0]][:, [0, 2]].reshape(-1).tolist())
        # <= N triples, all touching a seed, scores = cosine, sorted
        tids, ts = sub.triple_ids, sub.triple_scores
        assert 0 < tids.size <= 8
        seeds = set(sub.seeds.tolist())
        assert all(kg.triples[t, 0] in seeds or kg.triples[t, 2] in seeds for t in tids.tolist())
        np.testing.assert_allclose(ts, idx.triple_emb[tids] @ q, atol=1e-5)
        assert np.all(np.diff(ts) <= 0)
        # they are exactly the best N of the one-hop candidates (ties by smaller id)
        cands = np.array(_incident(kg, seeds))
        cs = idx.triple_emb[cands] @ q
        order = np.lexsort((cands, -cs))[:8]
        assert tids.tolist() == cands[order].tolist()
        # the top-1 triple of the first stage survives re-ranking
        assert ids[0, 0] in tids
        assert sub.query == text


def test_expand_matches_reference_and_hops(built):
    kg = built[0]
    seeds = np.array([0, 5, 5, 17])
    one = expand(kg, seeds, 1)
    assert one.tolist() == _incident(kg, seeds)
    two = expand(kg, seeds, 2)
    ends = np.unique(kg.triples[one][:, [0, 2]])
    assert two.tolist() == _incident(kg, ends)
    assert set(one.tolist()) < set(two.tolist())
    assert expand(kg, np.zeros(0, np.int64), 1).size == 0


def test_hops_two_reaches_further(built):
    kg, idx, _, _ = built
    enc = BowEncoder()
    sub1 = Retriever(kg, idx, RetrievalConfig(n=2, N=1000), text_encoder=enc).retrieve("red river")
    sub2 = Retriever(kg, idx, RetrievalConfig(n=2, N=1000, hops=2), text_encoder=enc).retrieve("red river")
    assert set(sub1.triple_ids.tolist()) < set(sub2.triple_ids.tolist())
    assert sub2.triple_ids.tolist() == expand(kg, sub2.seeds, 2)[
        np.lexsort((expand(kg, sub2.seeds, 2), -(idx.triple_emb[expand(kg, sub2.seeds, 2)] @ enc.encode(["red river"])[0])))
    ].tolist()


def test_image_query_without_shared_space(built):
    kg, idx, imgs, _ = built
    assert idx.text_dim != idx.image_dim  # 64 vs 48: no shared space
    r = Retriever(kg, idx, RetrievalConfig(n=3, N=6, image_k=1, images_per_entity=1),
                  text_encoder=BowEncoder(), vision_encoder=ThumbEncoder())
    sub = r.retrieve(image=imgs["Q7"][0])
    e7 = kg.entity_index("Q7")
    assert sub.seeds.tolist() == [e7]
    tids = sub.triple_ids
    assert 0 < tids.size <= 6
    assert all(e7 in (kg.triples[t, 0], kg.triples[t, 2]) for t in tids.tolist())
    # every candidate touches Q7, whose best image matches exactly: score max(a(h), a(t)) = 1
    np.testing.assert_allclose(sub.triple_scores, 1.0, atol=1e-5)
    assert sub.query.startswith("[image: ")
    # image nodes: one per entity that has images, linked by "image of"
    img_nodes = np.where(sub.node_kind == IMAGE)[0]
    owners = {int(kg.image_entity[sub.node_ref[i]]) for i in img_nodes}
    assert e7 in owners
    assert np.all(sub.edge_type[sub.edge_triple < 0] == kg.image_of)


def test_image_scoring_uses_best_entity_image(built):
    kg, idx, imgs, _ = built
    r = Retriever(kg, idx, RetrievalConfig(n=3, N=100, image_k=2, images_per_entity=0),
                  text_encoder=BowEncoder(), vision_encoder=ThumbEncoder())
    qv = ThumbEncoder().encode([imgs["Q3"][1]])[0]
    sub = r.retrieve_vectors(image_vec=qv)
    a = np.zeros(kg.num_entities, np.float32)
    for i, e in enumerate(kg.image_entity.tolist()):
        a[e] = max(a[e], float(idx.image_emb[i] @ qv))
    want = np.maximum(a[kg.triples[sub.triple_ids, 0]], a[kg.triples[sub.triple_ids, 2]])
    np.testing.assert_allclose(sub.triple_scores, want, atol=1e-5)
    assert kg.entity_index("Q3") in sub.seeds.tolist()


def test_text_and_image_combined(built):
    kg, idx, imgs, _ = built
    cfg = RetrievalConfig(n=3, N=50, image_k=1, image_weight=0.25, images_per_entity=0)
    r = Retriever(kg, idx, cfg, text_encoder=BowEncoder(), vision_encoder=ThumbEncoder())
    sub = r.retrieve("king castle", image=imgs["Q0"][0])
    text_only = Retriever(kg, idx, RetrievalConfig(n=3, N=50, images_per_entity=0),
                          text_encoder=BowEncoder()).retrieve("king castle")
    assert set(text_only.seeds.tolist()) | {kg.entity_index("Q0")} == set(sub.seeds.tolist())
    q = BowEncoder().encode(["king castle"])[0]
    e0 = kg.entity_index("Q0")
    for t, s in zip(sub.triple_ids.tolist(), sub.triple_scores.tolist()):
        h, _, tl = kg.triples[t]
        sv = 1.0 if e0 in (h, tl) else None
        if sv is not None:
            assert s == pytest.approx(0.75 * float(idx.triple_emb[t] @ q) + 0.25, abs=1e-5)


def test_shared_space_scoring(tmp_path):
    # a "CLIP-like" pair: vision encoder in the same 64-d space as the text encoder
    class SharedVision(ThumbEncoder):
        name, dim = "test-shared", 64

        def encode(self, images, batch_size=32, progress=False):
            return BowEncoder().encode(["paris music"] * len(images))

    imgs = make_images(tmp_path, ["Q1"], per_entity=1)
    kg = toy_graph(images=imgs)
    idx = KGIndex.build(kg, IndexConfig(), tmp_path / "g", text_encoder=BowEncoder(), vision_encoder=SharedVision(),
                        progress=False, cache_root=tmp_path / "c")
    r = Retriever(kg, idx, RetrievalConfig(n=3, N=5, image_scoring="shared", image_k=0),
                  text_encoder=BowEncoder(), vision_encoder=SharedVision())
    by_image = r.retrieve(image=imgs["Q1"][0])
    by_text = r.retrieve("paris music")
    assert by_image.triple_ids.tolist() == by_text.triple_ids.tolist()
    np.testing.assert_allclose(by_image.triple_scores, by_text.triple_scores, atol=1e-6)
    with pytest.raises(InputError, match="shared"):
        Retriever(kg, KGIndex.build(toy_graph(images=imgs), IndexConfig(), text_encoder=BowEncoder(),
                                    vision_encoder=ThumbEncoder(), progress=False, cache_root=tmp_path / "c"),
                  RetrievalConfig(image_scoring="shared"))


def test_batch_equals_single_and_encodes_once(built):
    kg, idx, imgs, _ = built
    enc, venc = BowEncoder(), ThumbEncoder()
    r = Retriever(kg, idx, RetrievalConfig(n=4, N=7), text_encoder=enc, vision_encoder=venc)
    texts = QUERIES + [None]
    images = [None, imgs["Q11"][0], None, None, imgs["Q3"][0]]
    batch = r.retrieve_batch(texts, images)
    assert enc.calls == 1 and venc.calls == 1
    for t, im, b in zip(texts, images, batch):
        one = r.retrieve(t, im)
        assert one.triple_ids.tolist() == b.triple_ids.tolist()
        np.testing.assert_allclose(one.triple_scores, b.triple_scores, atol=1e-6)
        np.testing.assert_array_equal(one.edge_index, b.edge_index)


def test_same_input_same_output(built):
    kg, idx, _, _ = built
    a = Retriever(kg, idx, text_encoder=BowEncoder()).retrieve("blue bird")
    b = Retriever(kg, idx, text_encoder=BowEncoder()).retrieve("blue bird")
    for f in ("node_kind", "node_ref", "edge_index", "edge_type", "edge_triple", "edge_score", "seeds"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_empty_and_unmatched_queries(built):
    kg, idx, _, _ = built
    r = Retriever(kg, idx, text_encoder=BowEncoder())
    for bad in ("", "   ", None):
        with pytest.raises(InputError, match="empty query"):
            r.retrieve(bad)
    with pytest.raises(InputError, match="empty query"):
        r.retrieve_vectors()
    with pytest.raises(InputError, match="empty query"):
        r.retrieve_batch(["ok", " "])
    with pytest.raises(InputError, match="dims"):
        r.retrieve_vectors(np.ones(3, np.float32))
    # nothing scores above min_score: documented empty Subgraph
    none = Retriever(kg, idx, RetrievalConfig(min_score=1.01), text_encoder=BowEncoder()).retrieve("paris")
    assert none.num_nodes == 0 and none.triple_ids.size == 0 and none.query == "paris"
    # min_score keeps only candidates above it
    some = Retriever(kg, idx, RetrievalConfig(N=100, min_score=0.3), text_encoder=BowEncoder()).retrieve("paris")
    assert some.triple_ids.size > 0 and np.all(some.triple_scores >= 0.3)


def test_index_without_images_rejects_image_query(tmp_path):
    kg = toy_graph()
    idx = KGIndex.build(kg, IndexConfig(vision_encoder=None), text_encoder=BowEncoder(), progress=False,
                        cache_root=tmp_path)
    r = Retriever(kg, idx, text_encoder=BowEncoder())
    with pytest.raises(InputError, match="without a vision encoder"):
        r.retrieve(image=tmp_path / "x.png")


def test_bad_config_and_wrong_encoder(built):
    kg, idx, _, _ = built
    with pytest.raises(InputError, match="N must be"):
        RetrievalConfig(N=0)
    with pytest.raises(InputError, match="image_scoring"):
        RetrievalConfig(image_scoring="clip")
    with pytest.raises(InputError, match="image_weight"):
        RetrievalConfig(image_weight=2.0)
    with pytest.raises(InputError, match="built with text encoder"):
        Retriever(kg, idx, text_encoder=BowEncoder(dim=32))
    with pytest.raises(InputError, match="triples"):
        Retriever(toy_graph(n_triples=50), idx)


def test_open_graph_round_trip_and_stale(built, tmp_path):
    kg, idx, _, d = built
    kg.save(d)
    kg2, idx2 = open_graph(d)
    r1 = Retriever(kg, idx, text_encoder=BowEncoder()).retrieve("queen ship")
    r2 = Retriever(kg2, idx2, text_encoder=BowEncoder()).retrieve("queen ship")
    assert r1.triple_ids.tolist() == r2.triple_ids.tolist()
    other = toy_graph(seed=5)
    other.save(d)  # graph replaced, index left stale
    with pytest.raises(InputError, match="different graph"):
        open_graph(d)


def test_to_pyg_shapes(built):
    kg, idx, _, _ = built
    r = Retriever(kg, idx, RetrievalConfig(n=5, N=10, images_per_entity=2), text_encoder=BowEncoder())
    sub = r.retrieve("red green blue")
    data = sub.to_pyg()
    n_img_edges = int((sub.edge_triple < 0).sum())
    assert data.num_nodes == sub.num_nodes
    assert data.edge_index.shape == (2, sub.triple_ids.size + n_img_edges)
    assert data.edge_type.dtype == torch.int64 and data.edge_type.shape == (data.edge_index.shape[1],)
    assert int(data.edge_index.max()) < data.num_nodes
    assert set(sub.node_kind.tolist()) <= {ENTITY, IMAGE}
    # every triple edge's endpoints are the triple's entities
    for (s, t), tid in zip(sub.edge_index.T.tolist(), sub.edge_triple.tolist()):
        if tid >= 0:
            assert sub.node_ref[s] == kg.triples[tid, 0] and sub.node_ref[t] == kg.triples[tid, 2]
    empty = Retriever(kg, idx, RetrievalConfig(min_score=2.0), text_encoder=BowEncoder()).retrieve("x y").to_pyg()
    assert empty.num_nodes == 0 and empty.edge_index.shape == (2, 0)


def test_top_n_sorted_ties():
    ids = np.array([9, 3, 7, 1, 5])
    s = np.array([0.5, 0.9, 0.5, 0.5, 0.1], np.float32)
    out_ids, out_s = top_n_sorted(ids, s, 3)
    assert out_ids.tolist() == [3, 1, 7] and out_s.tolist() == pytest.approx([0.9, 0.5, 0.5])


@pytest.mark.weights("minilm")
def test_real_minilm_retrieval(tmp_path):  # ~2 s: MiniLM is small, only 16 texts are encoded
    registry = pytest.importorskip("mrmkg.encoders.registry")
    enc = registry.get_text_encoder("minilm")
    from mrmkg.kg.graph import MMKG

    ents = [("Q90", "Paris", "capital of France"), ("Q142", "France", "country in Europe"),
            ("Q64", "Berlin", "capital of Germany"), ("Q183", "Germany", "country in Europe"),
            ("Q7187", "gene", "unit of heredity"), ("Q7430", "DNA", "molecule"),
            ("Q1501", "swimming pool", "pool of water"), ("Q283", "water", "chemical compound")]
    rels = [("P1376", "capital of"), ("P527", "has part"), ("P186", "made from material")]
    triples = [("Q90", "P1376", "Q142"), ("Q64", "P1376", "Q183"), ("Q7430", "P527", "Q7187"),
               ("Q1501", "P186", "Q283")]
    kg = MMKG.from_records(ents, rels, triples)
    idx = KGIndex.build(kg, IndexConfig(vision_encoder=None), tmp_path, text_encoder=enc, progress=False,
                        cache_root=tmp_path / "c")
    r = Retriever(kg, idx, RetrievalConfig(n=1, N=2), text_encoder=enc)
    assert kg.verbalise(int(r.retrieve("What is the capital of France?").triple_ids[0])) == "Paris capital of France"
    assert kg.verbalise(int(r.retrieve("What is a swimming pool filled with?").triple_ids[0])).startswith("swimming")
    assert r.retrieve("heredity and molecules").triple_ids[0] == 2
