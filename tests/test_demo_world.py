"""The generated demo world: determinism, structure, questions, splits without leakage."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.tasks.demo.drawing import render_entity_image
from mrmkg.tasks.demo.world import CREATURE_RELATIONS, TEMPLATES, World, WorldConfig, _generate, build_world, image_match_accuracy, invent_names, leaked_facts, load_world

TINY = dict(n_creatures=20, n_distractors=4, n_places=4, n_foods=8, n_materials=4, n_clans=3)


def tiny(**kw) -> WorldConfig:
    return WorldConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tiny(), out=tmp_path_factory.mktemp("w") / "world")


class PixelEncoder:
    """A stand-in vision encoder: mean-centred, L2-normalised 16x16 pixels."""

    name, dim = "pixels16", 16 * 16 * 3

    def encode(self, images, **kw):
        rows = []
        for im in images:
            im = im if isinstance(im, Image.Image) else Image.open(im)
            a = np.asarray(im.convert("RGB").resize((16, 16)), dtype=np.float32).ravel()
            a -= a.mean()
            rows.append(a / np.linalg.norm(a))
        return np.stack(rows)


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ determinism and caching
def test_same_seed_gives_byte_identical_files(tmp_path):
    a = build_world(tiny(), out=tmp_path / "a")
    first = _files(a.root)
    build_world(tiny(), out=tmp_path / "a", force=True)  # regenerate in place
    assert _files(a.root) == first
    b = build_world(tiny(), out=tmp_path / "b")
    other = _files(b.root)
    assert set(other) == set(first)
    # only graph.json holds absolute image paths (and checksums.json its hash); everything else is identical
    for name in first:
        if name not in ("graph/graph.json", "graph/checksums.json"):
            assert other[name] == first[name], name
    ca, cb = (json.loads(f["graph/checksums.json"])["files"] for f in (first, other))
    assert ca["graph.npz"] == cb["graph.npz"] and ca.keys() == cb.keys()
    ga = json.loads(first["graph/graph.json"])
    gb = json.loads(other["graph/graph.json"])
    assert [p.replace(str(a.root), "") for p in ga["image_paths"]] == \
        [p.replace(str(b.root), "") for p in gb["image_paths"]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_other_seed_gives_another_world(world, tmp_path):
    w2 = build_world(tiny(seed=1), out=tmp_path / "w2")
    assert w2.kg.entity_names != world.kg.entity_names
    assert not np.array_equal(w2.kg.triples, world.kg.triples)


def test_second_build_reuses_folder_and_other_config_needs_force(tmp_path):
    w = build_world(tiny(), out=tmp_path / "w")
    stamp = (w.root / "world.json").stat().st_mtime_ns
    again = build_world(tiny(), out=tmp_path / "w")
    assert (again.root / "world.json").stat().st_mtime_ns == stamp
    assert again.config == w.config
    with pytest.raises(InputError, match="another config"):
        build_world(tiny(seed=3), out=tmp_path / "w")
    replaced = build_world(tiny(seed=3), out=tmp_path / "w", force=True)
    assert replaced.config.seed == 3 and load_world(tmp_path / "w").config.seed == 3


def test_default_folder_is_keyed_by_config_under_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    w = build_world(tiny())
    assert w.root == (tmp_path / "cache" / "worlds" / tiny().key()).absolute()
    assert tiny().key() != tiny(seed=1).key() and tiny().key() == tiny().key()


def test_refuses_a_foreign_nonempty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a demo world"):
        build_world(tiny(), out=tmp_path / "x")
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep me"


# ------------------------------------------------------------------ the graph
def test_graph_structure(world):
    kg = MMKG.load(world.kg_dir)
    types = world.entity_types
    assert kg.num_entities == 20 + 4 + 4 + 8 + 4 + 3
    assert len({n.lower() for n in kg.entity_names}) == kg.num_entities  # unique names
    # every entity has exactly one picture, a 64x64 PNG on disk, linked by "image of"
    assert kg.num_images == kg.num_entities
    assert all(len(kg.images_of(e)) == 1 for e in range(kg.num_entities))
    for p in kg.image_paths[:5]:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == (64, 64)
    # pictures are unique per entity
    looks = [tuple(sorted(v.items())) for v in world.visuals.values()]
    assert len(set(looks)) == len(looks)
    # every creature (asked or distractor) has exactly one fact per creature relation
    rel = {r: kg.relation_index(r) for r in CREATURE_RELATIONS}
    for e, t in types.items():
        if t in ("creature", "distractor"):
            out = kg.triples[kg.out_triples(kg.entity_index(e))]
            assert sorted(out[:, 1].tolist()) == sorted(rel.values())
    # realistic structure: habitats are shared and foods grow in places
    lives = kg.triples[kg.triples[:, 1] == rel["lives_in"]]
    assert np.bincount(lives[:, 2]).max() > 1
    assert (kg.triples[:, 1] == kg.relation_index("grows_in")).sum() == 8
    assert kg.relation_names[kg.image_of] == "image of"


def test_tsv_export_loads_with_the_generic_loader(world):
    from mrmkg.kg.io import load_tsv

    d = world.root / "tsv"
    # the export's image list points at the world's own images/ beside tsv/ ("../images/..."), outside the
    # list's folder: a data file may only do that with allow_outside_paths (mrmkg.fileio.contained_path)
    kg = load_tsv(d / "triples.tsv", entities=d / "entities.tsv", relations=d / "relations.tsv",
                  images=d / "images.tsv", allow_outside_paths=True)
    assert kg.entity_ids == world.kg.entity_ids and kg.entity_names == world.kg.entity_names
    assert kg.relation_ids == world.kg.relation_ids
    assert np.array_equal(kg.triples, world.kg.triples)
    assert [Path(p).resolve() for p in kg.image_paths] == [Path(p).resolve() for p in world.kg.image_paths]


def test_invented_names_are_unique_and_pronounceable():
    names = invent_names(500, np.random.default_rng(0))
    assert len({n.lower() for n in names}) == 500
    assert all(n.isalpha() and n[0].isupper() and 4 <= len(n) <= 11 for n in names)
    assert all(any(v in n.lower() for v in "aeiouy") for n in names)


# ------------------------------------------------------------------ questions
def test_every_answer_is_a_graph_fact_in_its_candidate_set(world):
    kg = world.kg
    facts = {(kg.entity_ids[h], kg.relation_ids[r], kg.entity_ids[t]) for h, r, t in kg.triples.tolist()}
    qs = world.all_questions()
    assert len({q.id for q in qs}) == len(qs)
    for q in qs:
        assert (q.subject, q.relation, q.answer) in facts
        assert q.answer in world.candidates[q.candidates]
        assert world.candidates[q.candidates][world.answer_index(q)] == q.answer
        if q.type != "analogy":
            assert q.candidates == TEMPLATES[q.relation][0]


def test_question_types_and_texts(world):
    by_type = Counter(q.type for q in world.all_questions())
    assert by_type["image"] == 20 * 5 and by_type["analogy"] == 20
    assert by_type["text"] == 20 * 5 + 8 + 4  # creatures, foods (grows in), materials (found in)
    name = dict(zip(world.kg.entity_ids, world.kg.entity_names))
    for q in world.all_questions():
        if q.type == "image":
            assert Path(q.image).is_file() and name[q.subject] not in q.text and "this" in q.text
        elif q.type == "text":
            assert q.image is None and name[q.subject] in q.text
        else:
            h, t = q.example
            assert q.text == f"{name[h]} is to {name[t]} as {name[q.subject]} is to what?"
            assert t != q.answer  # the answer is never copied from the example
            assert world.kg.relation_ids[world.kg.relation_index(q.relation)] == q.relation


def test_image_questions_show_another_rendering_that_still_matches_the_entity(world, tmp_path):
    kg = world.kg
    qs = [q for q in world.all_questions() if q.type == "image"]
    for q in qs[:20]:
        own = kg.image_paths[kg.images_of(kg.entity_index(q.subject))[0]]
        assert Path(q.image).read_bytes() != Path(own).read_bytes()
    # jitter 0 renders the graph's own picture: the nearest image is always the subject's
    exact = build_world(tiny(jitter=0.0), out=tmp_path / "j0")
    assert image_match_accuracy(exact, PixelEncoder())["top1"] == 1.0
    # the real perturbation still leaves the subject near the top even for raw pixels
    acc = image_match_accuracy(world, PixelEncoder())
    assert acc["n"] == len(qs) and acc["top5"] >= 0.6 and acc["top5"] >= acc["top1"]


def test_splits_are_by_subject_without_leakage(world):
    subj = {s: {q.subject for q in world.questions[s]} for s in ("train", "dev", "test")}
    assert subj["train"] and subj["dev"] and subj["test"]
    assert not (subj["train"] & subj["test"]) and not (subj["train"] & subj["dev"]) and not (subj["dev"] & subj["test"])
    for q in world.all_questions():
        if q.example:  # example pairs come from training creatures only
            assert q.example[0] in subj["train"]
    assert leaked_facts(world) == set()
    for q in world.questions["train"]:
        assert q.split == "train"


def test_leakage_check_can_fail(world):
    moved = next(q for q in world.questions["test"] if q.type == "text")
    bad = World(world.root, world.config, world.kg,
                {"train": world.questions["train"] + [moved], "dev": world.questions["dev"],
                 "test": world.questions["test"]},
                world.candidates, world.entity_types, world.visuals)
    assert (moved.subject, moved.relation, moved.answer) in leaked_facts(bad)


def test_answers_are_not_guessable_from_frequency():
    data = _generate(WorldConfig())
    per = {}
    for s in data["specs"]:
        per.setdefault((s["type"], s["relation"]), Counter())[s["answer"]] += 1
    for key, c in per.items():
        if sum(c.values()) >= 100:  # analogies (~40 per relation) are checked as a whole below
            assert max(c.values()) / sum(c.values()) <= 0.15, (key, c.most_common(3))
    analogies = Counter(s["answer"] for s in data["specs"] if s["type"] == "analogy")
    assert max(analogies.values()) / sum(analogies.values()) <= 0.05
    assert 1000 <= len(data["specs"]) <= 3500


def test_default_sizes():
    data = _generate(WorldConfig())
    assert 300 <= len(data["entities"]) <= 400
    assert Counter(s["type"] for s in data["specs"])["image"] == 200 * 5


# ------------------------------------------------------------------ pictures
def test_rendering_is_deterministic_and_jitter_changes_pixels():
    v = {"shape": "star", "colour": "red", "pattern": "dots", "mark": "eyes", "size": "large"}
    a = np.asarray(render_entity_image(v))
    assert a.shape == (64, 64, 3) and np.array_equal(a, np.asarray(render_entity_image(v)))
    j1 = np.asarray(render_entity_image(v, rng=np.random.default_rng(0), jitter=1.0))
    j2 = np.asarray(render_entity_image(v, rng=np.random.default_rng(0), jitter=1.0))
    assert np.array_equal(j1, j2) and not np.array_equal(a, j1)
    other = np.asarray(render_entity_image({**v, "shape": "square"}))
    assert np.abs(a.astype(int) - other).mean() > 2


# ------------------------------------------------------------------ bad input
def test_config_validation():
    with pytest.raises(InputError, match="image_relations"):
        WorldConfig(image_relations=("flies_to",))
    with pytest.raises(InputError, match="test_fraction"):
        WorldConfig(dev_fraction=0.5, test_fraction=0.5)
    with pytest.raises(InputError, match="n_places"):
        WorldConfig(n_places=0)
    with pytest.raises(InputError, match="unknown world config"):
        WorldConfig.from_dict({"seed": 1, "n_dragons": 3})
    with pytest.raises(InputError, match="distinct pictures"):
        _generate(WorldConfig(n_creatures=3000))


def test_load_errors_name_the_file(world, tmp_path):
    with pytest.raises(InputError, match="not a demo world"):
        load_world(tmp_path)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(world.root, copy)
    path = copy / "questions" / "dev.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = '{"id": "q1", "type": "text"'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        load_world(copy)
    assert e.value.line == 2 and e.value.path.endswith("dev.jsonl")


# ------------------------------------------------------------------ with the real encoders
@pytest.mark.slow
@pytest.mark.weights("minilm", "efficientnet-lite0")
def test_real_retrieval_finds_the_subject_of_image_questions(tmp_path):
    """End to end with MiniLM + EfficientNet-Lite0: index the world, retrieve for image and text
    questions, and draw one subgraph."""
    from mrmkg.kg.index import IndexConfig, KGIndex
    from mrmkg.kg.retrieve import RetrievalConfig, Retriever
    from mrmkg.viz import render_subgraph

    w = build_world(tiny(), out=tmp_path / "w")
    index = KGIndex.build(w.kg, IndexConfig(), directory=w.kg_dir, progress=False, cache_root=tmp_path / "emb")
    r = Retriever(w.kg, index, RetrievalConfig(n=5, N=10, image_k=3))
    image_qs = [q for q in w.all_questions() if q.type == "image"][:30]
    hits = 0
    for q in image_qs:
        sg = r.retrieve(text=q.text, image=q.image)
        hits += w.kg.entity_index(q.subject) in sg.node_ref[sg.node_kind == 0].tolist()
    assert hits / len(image_qs) >= 0.7
    text_qs = [q for q in w.all_questions() if q.type == "text" and q.relation in ("eats", "lives_in")][:20]
    found = 0
    for q in text_qs:
        rows = r.retrieve(text=q.text).triples_table(w.kg)
        found += any((x["head"], x["relation"], x["tail"]) == (q.subject, q.relation, q.answer) for x in rows)
    assert found / len(text_qs) >= 0.7
    sg = r.retrieve(text=image_qs[0].text, image=image_qs[0].image)
    out = render_subgraph(w.kg, sg, tmp_path / "sub.png", title=image_qs[0].text)
    assert out.stat().st_size > 10_000
