"""KGIndex: embeddings, FAISS (exact / HNSW / IVF), persistence, embedding cache on rebuild.

Uses a toy graph and deterministic test-only encoders (bag-of-words hashing for text, a 4x4 colour
thumbnail for images) defined here; test_retrieve.py imports them.
"""
from __future__ import annotations

import hashlib
import re

import faiss
import numpy as np
import pytest
from PIL import Image

from mrmkg.encoders.base import TextEncoder, VisionEncoder
from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.index import IndexConfig, KGIndex


class BowEncoder(TextEncoder):
    """Hashed bag of words, L2-normalised: texts sharing words have positive cosine."""

    def __init__(self, dim: int = 64, name: str = "test-bow"):
        self.dim, self.name, self.calls, self.items = dim, f"{name}-{dim}", 0, 0

    def encode(self, texts, batch_size=64, progress=False):
        self.calls += 1
        self.items += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 64) & 1 else -1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-12)


class ThumbEncoder(VisionEncoder):
    """4x4 RGB thumbnail minus its mean, normalised (48-d): identical pictures have cosine 1."""

    name, dim, num_tokens = "test-thumb", 48, 16

    def __init__(self):
        self.calls = 0

    def _load(self, im):
        return im if isinstance(im, Image.Image) else Image.open(im).convert("RGB")

    def encode(self, images, batch_size=32, progress=False):
        self.calls += 1
        x = np.stack([np.asarray(self._load(im).resize((4, 4)), np.float32).reshape(-1) for im in images])
        x -= x.mean(axis=1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def encode_tokens(self, images, batch_size=32, progress=False):
        x = np.stack([np.asarray(self._load(im).resize((4, 4)), np.float32).reshape(16, 3) for im in images])
        return np.repeat(x, 16, axis=2)


WORDS = ("red green blue river mountain city paris france tokyo japan cat dog bird fish tree stone "
         "music piano violin guitar sun moon star planet water fire wind earth bread cheese apple pear "
         "king queen castle bridge ship train road").split()
RELS = [("P1", "located in"), ("P2", "part of"), ("P3", "made of"), ("P4", "plays"), ("P5", "near")]


def toy_graph(n_entities: int = 40, n_triples: int = 160, seed: int = 0, images: dict | None = None) -> MMKG:
    """A random connected-ish graph whose entity names are word pairs; deterministic per seed.

    ``images`` maps entity id -> list of image paths."""
    rng = np.random.default_rng(seed)
    ents = [(f"Q{i}", f"{WORDS[i % len(WORDS)]} {WORDS[(7 * i + 3) % len(WORDS)]}", f"thing number {i}")
            for i in range(n_entities)]
    # a ring guarantees every entity has a triple; the rest is random
    pairs = [(i, (i + 1) % n_entities) for i in range(n_entities)]
    while len(pairs) < n_triples:
        h, t = rng.integers(0, n_entities, 2)
        if h != t:
            pairs.append((int(h), int(t)))
    triples = [(f"Q{h}", RELS[k % len(RELS)][0], f"Q{t}") for k, (h, t) in enumerate(pairs)]
    imgs = [(e, p) for e, ps in (images or {}).items() for p in ps]
    return MMKG.from_records(ents, RELS, triples, imgs)


def make_images(folder, entity_ids, per_entity: int = 2, seed: int = 0) -> dict:
    """Random 8x8 PNGs, ``per_entity`` for each entity id; returns {entity id: [paths]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in entity_ids:
        out[e] = []
        for j in range(per_entity):
            p = folder / f"{e}_{j}.png"
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(p)
            out[e].append(str(p))
    return out


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_build_shapes_normalised_and_no_images(tmp_path, cache):
    kg = toy_graph()
    enc = BowEncoder()
    idx = KGIndex.build(kg, IndexConfig(), tmp_path / "g", text_encoder=enc, progress=False, cache_root=cache)
    assert idx.triple_emb.shape == (kg.num_triples, 64)
    assert idx.entity_emb.shape == (kg.num_entities, 64)
    assert idx.relation_emb.shape == (kg.num_relations, 64) == (len(RELS) + 1, 64)  # includes "image of"
    assert idx.image_emb.shape == (0, 0)
    for a in (idx.triple_emb, idx.entity_emb, idx.relation_emb):
        assert a.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # triple vectors are the encoder's vectors of the verbalised triples
    np.testing.assert_allclose(idx.triple_emb, BowEncoder().encode(kg.verbalise_all()), atol=1e-6)
    assert idx.exact and idx.manifest["counts"]["triples"] == kg.num_triples
    assert idx.manifest["text_encoder_id"] == "test-bow-64" and idx.manifest["vision_encoder"] is None
    s, ids = idx.search_images(np.zeros((2, 48), np.float32), 3)
    assert s.shape == ids.shape == (2, 0)


def test_entity_text_with_description(tmp_path, cache):
    kg = toy_graph()
    a = KGIndex.build(kg, IndexConfig(entity_text="name"), text_encoder=BowEncoder(), progress=False,
                      cache_root=cache)
    b = KGIndex.build(kg, IndexConfig(entity_text="name+description"), text_encoder=BowEncoder(),
                      progress=False, cache_root=cache)
    np.testing.assert_allclose(b.entity_emb, BowEncoder().encode(kg.entity_texts(True)), atol=1e-6)
    assert not np.allclose(a.entity_emb, b.entity_emb)


def test_search_is_cosine_and_sorted(cache):
    kg = toy_graph()
    idx = KGIndex.build(kg, text_encoder=BowEncoder(), progress=False, cache_root=cache)
    q = BowEncoder().encode(["paris music", "green tree river"])
    s, ids = idx.search_triples(q, 7)
    assert s.shape == ids.shape == (2, 7)
    brute = q @ idx.triple_emb.T
    for b in range(2):
        np.testing.assert_allclose(s[b], brute[b, ids[b]], atol=1e-5)
        assert np.all(np.diff(s[b]) <= 1e-6)
        np.testing.assert_allclose(s[b], np.sort(brute[b])[::-1][:7], atol=1e-5)
    s, ids = idx.search_triples(q[0], 10_000)  # k larger than T is clipped; 1-D query accepted
    assert ids.shape == (1, kg.num_triples) and sorted(ids[0].tolist()) == list(range(kg.num_triples))
    with pytest.raises(ValueError, match="queries must be"):
        idx.search_triples(np.zeros((1, 5), np.float32), 3)


@pytest.mark.parametrize("approx", ["hnsw", "ivf"])
def test_approximate_agrees_with_exact(approx, cache):
    kg = toy_graph(n_entities=120, n_triples=900, seed=3)
    exact = KGIndex.build(kg, IndexConfig(), text_encoder=BowEncoder(), progress=False, cache_root=cache)
    cfg = IndexConfig(exact_max=100, approx=approx, ivf_nlist=8, ivf_nprobe=8)
    approxi = KGIndex.build(kg, cfg, text_encoder=BowEncoder(), progress=False, cache_root=cache)
    assert exact.exact and not approxi.exact
    assert isinstance(approxi.triple_index, faiss.IndexHNSW if approx == "hnsw" else faiss.IndexIVF)
    q = BowEncoder().encode([f"{WORDS[i]} {WORDS[-i]}" for i in range(1, 21)])
    se, ie = exact.search_triples(q, 10)
    sa, ia = approxi.search_triples(q, 10)
    # ids may differ among exact ties (bag-of-words texts repeat), so compare score lists, and
    # check each returned id really scores at least the exact k-th best
    np.testing.assert_allclose(sa, se, atol=1e-5)
    true = np.take_along_axis(q @ exact.triple_emb.T, ia, axis=1)
    np.testing.assert_allclose(true, sa, atol=1e-5)
    assert np.all(true >= se[:, -1:] - 1e-5)
    if approx == "hnsw":  # k above efSearch widens the beam for that call only
        s, ids = approxi.search_triples(q[:2], 300)
        assert ids.shape == (2, 300) and (ids >= 0).all() and len(set(ids[0].tolist())) == 300
        assert np.all(np.diff(s, axis=1) <= 1e-6) and approxi.triple_index.hnsw.efSearch == cfg.hnsw_ef_search


def test_auto_picks_hnsw_then_ivf(cache):
    kg = toy_graph(n_entities=60, n_triples=300, seed=2)
    small = KGIndex.build(kg, IndexConfig(exact_max=10, hnsw_max=1000), text_encoder=BowEncoder(), progress=False,
                          cache_root=cache)
    large = KGIndex.build(kg, IndexConfig(exact_max=10, hnsw_max=100, ivf_nlist=4, ivf_nprobe=4),
                          text_encoder=BowEncoder(), progress=False, cache_root=cache)
    assert isinstance(small.triple_index, faiss.IndexHNSWFlat)
    assert isinstance(large.triple_index, faiss.IndexIVFFlat) and large.triple_index.nprobe == 4
    assert large.manifest["triple_index"] == "IndexIVFFlat"
    # nprobe == nlist visits every list: IVF is then exact
    q = BowEncoder().encode(["red river", "king music"])
    np.testing.assert_allclose(large.search_triples(q, 5)[0], np.sort(q @ large.triple_emb.T, axis=1)[:, ::-1][:, :5],
                               atol=1e-5)


def test_persistence_round_trip_mmap(tmp_path, cache):
    imgs = make_images(tmp_path, ["Q0", "Q1", "Q5"])
    kg = toy_graph(images=imgs)
    idx = KGIndex.build(kg, IndexConfig(exact_max=50), tmp_path / "g", text_encoder=BowEncoder(),
                        vision_encoder=ThumbEncoder(), progress=False, cache_root=cache)
    files = sorted(p.name for p in (tmp_path / "g" / "index").iterdir())
    assert files == ["checksums.json", "entity_emb.npy", "image_emb.npy", "images.faiss", "manifest.json",
                     "relation_emb.npy", "triple_emb.npy", "triples.faiss"]
    assert not [p for p in (tmp_path / "g").iterdir() if p.name.startswith(".")]  # no temp leftovers
    back = KGIndex.load(tmp_path / "g")
    assert isinstance(back.triple_emb, np.memmap)
    for name in ("triple_emb", "entity_emb", "relation_emb", "image_emb"):
        np.testing.assert_array_equal(getattr(back, name), getattr(idx, name))
    assert back.image_emb.shape == (6, 48)
    assert type(back.triple_index) is type(idx.triple_index) and not back.exact
    assert back.triple_index.hnsw.efSearch == idx.config.hnsw_ef_search
    q = BowEncoder().encode(["blue city", "cat stone"])
    for a, b in zip(idx.search_triples(q, 5), back.search_triples(q, 5)):
        np.testing.assert_array_equal(a, b)
    qv = ThumbEncoder().encode([imgs["Q5"][1]])
    s, ids = back.search_images(qv, 2)
    assert ids[0, 0] == kg.image_paths.index(imgs["Q5"][1]) and s[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert KGIndex.load(tmp_path / "g" / "index").num_triples == kg.num_triples  # index folder itself


def test_relative_image_paths_resolve_against_graph_folder(tmp_path, cache):
    (tmp_path / "g" / "images").mkdir(parents=True)
    abs_imgs = make_images(tmp_path / "g" / "images", ["Q4"], per_entity=1)
    kg = toy_graph(images={"Q4": ["images/Q4_0.png"]})
    idx = KGIndex.build(kg, IndexConfig(), tmp_path / "g", text_encoder=BowEncoder(), vision_encoder=ThumbEncoder(),
                        progress=False, cache_root=cache)
    np.testing.assert_allclose(idx.image_emb, ThumbEncoder().encode(abs_imgs["Q4"]), atol=1e-6)


def test_rebuild_served_from_cache(tmp_path, cache):
    imgs = make_images(tmp_path, ["Q2", "Q3"])
    kg = toy_graph(images=imgs)
    t1, v1 = BowEncoder(), ThumbEncoder()
    first = KGIndex.build(kg, IndexConfig(), tmp_path / "a", text_encoder=t1, vision_encoder=v1,
                          progress=False, cache_root=cache)
    assert t1.calls == 3 and v1.calls == 1  # triples, entities, relations; images
    # same graph + encoders into a fresh folder: every embedding comes from the cache
    t2, v2 = BowEncoder(), ThumbEncoder()
    second = KGIndex.build(kg, IndexConfig(), tmp_path / "b", text_encoder=t2, vision_encoder=v2,
                           progress=False, cache_root=cache)
    assert t2.calls == 0 and v2.calls == 0
    np.testing.assert_array_equal(first.triple_emb, second.triple_emb)
    # same folder again: the finished index is reused as is
    mtime = (tmp_path / "a" / "index" / "triples.faiss").stat().st_mtime_ns
    third = KGIndex.build(kg, IndexConfig(), tmp_path / "a", text_encoder=t2, vision_encoder=v2,
                          progress=False, cache_root=cache)
    assert (tmp_path / "a" / "index" / "triples.faiss").stat().st_mtime_ns == mtime and t2.calls == 0
    assert third.manifest["key"] == first.manifest["key"]
    # a changed graph re-encodes (only what changed is new content, but the key differs)
    kg2 = toy_graph(seed=1, images=imgs)
    t3 = BowEncoder()
    KGIndex.build(kg2, IndexConfig(), tmp_path / "a", text_encoder=t3, vision_encoder=ThumbEncoder(),
                  progress=False, cache_root=cache)
    assert t3.calls == 1  # triples changed; entity and relation texts are cached
    assert KGIndex.load(tmp_path / "a").manifest["key"] != first.manifest["key"]


def test_failed_build_leaves_old_index(tmp_path, cache):
    kg = toy_graph()
    KGIndex.build(kg, IndexConfig(), tmp_path / "g", text_encoder=BowEncoder(), progress=False, cache_root=cache)
    before = (tmp_path / "g" / "index" / "manifest.json").read_text()

    class Broken(BowEncoder):
        def encode(self, texts, batch_size=64, progress=False):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        KGIndex.build(toy_graph(seed=9), IndexConfig(), tmp_path / "g", text_encoder=Broken(),
                      progress=False, cache_root=cache)
    assert (tmp_path / "g" / "index" / "manifest.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["index"]


def test_bad_config_and_missing_index(tmp_path):
    with pytest.raises(InputError, match="entity_text"):
        IndexConfig(entity_text="names")
    with pytest.raises(InputError, match="approx"):
        IndexConfig(approx="lsh")
    with pytest.raises(InputError, match="exact_max"):
        IndexConfig(exact_max=0)
    with pytest.raises(InputError, match="no index found"):
        KGIndex.load(tmp_path)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        KGIndex.load(tmp_path)


def test_image_standins_are_text_encoded_descriptions_one_per_entity(tmp_path, cache):
    kg = toy_graph(n_entities=6, n_triples=8, images=make_images(tmp_path, ["Q1"], per_entity=2))
    kg.entity_descriptions[4] = ""                                   # no description: the name stands in
    sk = kg.with_image_standins("description")
    assert (kg.num_images, sk.num_images) == (2, 6) and sk.image_standin == "description"
    assert [sk.images_of(e).tolist() for e in range(6)] == [[e] for e in range(6)]
    texts = sk.image_standin_texts()
    assert texts[0] == "thing number 0" and texts[4] == kg.entity_names[4]
    # no vision encoder is loaded or used: the text encoder embeds the stand-ins, in the text space
    idx = KGIndex.build(sk, IndexConfig(), tmp_path / "g", text_encoder=BowEncoder(), progress=False, cache_root=cache)
    np.testing.assert_allclose(idx.image_emb, BowEncoder().encode(texts), atol=1e-6)
    assert idx.manifest["image_standin"] == "description" and idx.manifest["vision_encoder"] is None
    # round trip, and a stand-in graph never shares an index key with the graph it came from
    sk.save(tmp_path / "g")
    assert MMKG.load(tmp_path / "g").image_standin == "description"
    real = KGIndex.build(kg, IndexConfig(), text_encoder=BowEncoder(), vision_encoder=ThumbEncoder(), progress=False,
                         cache_root=cache)
    assert real.manifest["key"] != idx.manifest["key"] and real.manifest["image_standin"] is None
    with pytest.raises(ValueError, match="real images"):
        kg.image_standin_texts()
    with pytest.raises(ValueError, match="'description'"):
        kg.with_image_standins("caption")
