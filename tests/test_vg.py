"""Stage-1 pretraining data: the Visual Genome builder (tiny VG fixture) and QA from any MMKG."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.tasks.kgqa import data as kg_qa
from mrmkg.tasks.kgqa.vg import VGConfig, VGStage1, build_vg

FIX = Path(__file__).parent / "fixtures" / "vg"


def _build(tmp_path, vg=FIX, **cfg):
    return build_vg(vg, tmp_path / "out", images_dir=vg / "images", config=VGConfig(**cfg))


def _triples(kg: MMKG, sg) -> set[tuple[str, str, str]]:
    return {(kg.entity_names[h], kg.relation_names[r], kg.entity_names[t]) for h, r, t in kg.triples[sg.triple_ids]}


# ------------------------------------------------------------------------------ Visual Genome
def test_region_based_qa_only_with_counts(tmp_path):
    d = _build(tmp_path)
    assert [r.id for r in d.records] == ["vg:100", "vg:101", "vg:200"]
    assert [(r.question, r.target) for r in d.records] == [
        ("What color is the clock?", "Green."), ("Who is wearing the jacket?", "The man."),
        ("What is the dog chasing?", "A ball.")]
    assert d.records[0].prompt == "Question: What color is the clock?\nAnswer:"
    assert d.records[0].meta == {"image_id": 1, "qa_id": 100, "region_id": 1000}
    c = d.counts
    assert (c["qa_pairs"], c["skipped_not_region_based"], c["skipped_no_scene_graph"], c["instances"]) == (5, 1, 1, 3)
    assert Path(d.records[2].image) == (FIX / "images" / "VG_100K_2" / "2.jpg").resolve()


def test_scene_graph_becomes_the_instance_mmkg(tmp_path):
    d = _build(tmp_path)
    kg, sg = d.kg, d.records[0].subgraph
    # relations between objects (duplicate "Wearing" collapsed), attributes linked by "attribute of"
    assert _triples(kg, sg) == {
        ("man", "behind", "clock"), ("man", "wearing", "jacket"),
        ("tall", "attribute of", "man"), ("green", "attribute of", "clock"),
        ("round", "attribute of", "clock"), ("grey", "attribute of", "jacket")}
    ents = [kg.entity_names[r] for k, r in zip(sg.node_kind, sg.node_ref) if k == 0]
    assert sorted(ents) == sorted(["man", "clock", "jacket", "speck", "tall", "green", "round", "grey"])
    # one crop per object linked by "image of", except the speck whose clipped box is 1x1 px
    img_edges = sg.edge_type == kg.image_of
    assert img_edges.sum() == 3 and d.counts["skipped_small_crops"] == 1
    owners = sorted(kg.entity_names[kg.image_entity[r]] for k, r in zip(sg.node_kind, sg.node_ref) if k == 1)
    assert owners == ["clock", "jacket", "man"]
    # the crop has the bounding box's size and pixels of the photo
    clock_img = next(kg.image_paths[r] for k, r in zip(sg.node_kind, sg.node_ref)
                     if k == 1 and kg.entity_names[kg.image_entity[r]] == "clock")
    crop = Image.open(clock_img)
    assert crop.size == (15, 15)
    photo = Image.open(FIX / "images" / "VG_100K" / "1.jpg").convert("RGB")
    assert np.abs(np.asarray(crop, np.int16) - np.asarray(photo.crop((30, 2, 45, 17)), np.int16)).max() <= 1
    # attributes.json adds attributes too; the v1.0 'name' spelling is accepted
    assert _triples(kg, d.records[2].subgraph) == {("dog", "chasing", "ball"), ("brown", "attribute of", "dog")}
    # the instance's own MMKG
    g = d.instance_graph(0)
    assert (g.num_entities, g.num_triples, g.num_images) == (8, 6, 3)


def test_output_folder_round_trips(tmp_path):
    d = _build(tmp_path)
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text())["counts"]["instances"] == 3
    back = VGStage1.load(out)
    assert back.kg.entity_ids == d.kg.entity_ids and len(back.records) == 3
    for a, b in zip(d.records, back.records):
        assert (a.id, a.prompt, a.target, a.image) == (b.id, b.prompt, b.target, b.image)
        assert np.array_equal(a.subgraph.edge_index, b.subgraph.edge_index)
        assert np.array_equal(a.subgraph.node_ref, b.subgraph.node_ref)


def test_region_scope_and_caps(tmp_path):
    d = _build(tmp_path, graph_scope="region")
    assert _triples(d.kg, d.records[0].subgraph) == {("green", "attribute of", "clock"), ("round", "attribute of", "clock")}
    assert _triples(d.kg, d.records[1].subgraph) == {
        ("man", "wearing", "jacket"), ("tall", "attribute of", "man"), ("grey", "attribute of", "jacket")}
    d2 = build_vg(FIX, tmp_path / "o2", images_dir=FIX / "images", config=VGConfig(max_triples=2, max_instances=1))
    assert len(d2.records) == 1
    assert _triples(d2.kg, d2.records[0].subgraph) == {("man", "behind", "clock"), ("man", "wearing", "jacket")}


def test_same_input_same_output(tmp_path):
    a = build_vg(FIX, tmp_path / "a", images_dir=FIX / "images")
    b = build_vg(FIX, tmp_path / "b", images_dir=FIX / "images")
    assert a.kg.entity_ids == b.kg.entity_ids and np.array_equal(a.kg.triples, b.kg.triples)


@pytest.fixture()
def vgcopy(tmp_path):
    root = tmp_path / "vg"
    shutil.copytree(FIX, root)
    return root


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_bad_inputs_are_named(vgcopy, tmp_path):
    out = tmp_path / "out"
    sg = vgcopy / "scene_graphs.json"
    _edit(sg, lambda d: d[0]["relationships"].append(
        {"relationship_id": 77, "predicate": "on", "subject_id": 1, "object_id": 999}))
    with pytest.raises(InputError, match=r"scene_graphs.json: image_id 1, relationship 77: field 'object_id' = 999 "
                                         r"is not an object of this graph"):
        build_vg(vgcopy, out, images_dir=vgcopy / "images")
    assert not out.exists()  # nothing half-written
    shutil.copy(FIX / "scene_graphs.json", sg)
    _edit(sg, lambda d: d[1]["objects"][0].update(x="left"))
    with pytest.raises(InputError, match=r"image_id 2, object_id 10: field 'x': expected an integer"):
        build_vg(vgcopy, out, images_dir=vgcopy / "images")
    shutil.copy(FIX / "scene_graphs.json", sg)
    _edit(sg, lambda d: d[1]["objects"][0].pop("names"))
    with pytest.raises(InputError, match=r"object_id 10: expected 'names'"):
        build_vg(vgcopy, out, images_dir=vgcopy / "images")
    shutil.copy(FIX / "scene_graphs.json", sg)
    _edit(vgcopy / "question_answers.json", lambda d: d[0]["qas"][0].update(answer=""))
    with pytest.raises(InputError, match=r"question_answers.json: image_id 1, qa_id 100: field 'answer'"):
        build_vg(vgcopy, out, images_dir=vgcopy / "images")
    shutil.copy(FIX / "question_answers.json", vgcopy / "question_answers.json")
    (vgcopy / "qa_to_region_mapping.json").unlink()
    with pytest.raises(InputError, match="qa_to_region_mapping.json not found"):
        build_vg(vgcopy, out, images_dir=vgcopy / "images")


def test_missing_image_fails_or_is_skipped(vgcopy, tmp_path):
    shutil.copy(FIX / "qa_to_region_mapping.json", vgcopy)
    (vgcopy / "images" / "VG_100K_2" / "2.jpg").unlink()
    with pytest.raises(InputError, match="image of image_id 2 not found"):
        build_vg(vgcopy, tmp_path / "o", images_dir=vgcopy / "images")
    d = build_vg(vgcopy, tmp_path / "o", images_dir=vgcopy / "images", config=VGConfig(skip_missing_images=True))
    assert [r.id for r in d.records] == ["vg:100", "vg:101"] and d.counts["skipped_missing_image"] == 1
    (vgcopy / "images" / "VG_100K" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="not an image"):
        build_vg(vgcopy, tmp_path / "o", images_dir=vgcopy / "images")


# --------------------------------------------------------------------------- QA from any MMKG
@pytest.fixture()
def toy():
    return MMKG.from_records(
        entities=[("Q1", "Paris", "capital of France"), ("Q2", "France", ""), ("Q3", "Europe", ""),
                  ("Q4", "Seine", ""), ("Q5", "Lyon", ""), ("Q6", "Marseille", ""), ("Q7", "Nice", ""),
                  ("Q8", "Lille", "")],
        relations=[("P17", "country"), ("P30", "continent"), ("P206", "located next to"), ("P150", "city")],
        triples=[("Q1", "P17", "Q2"), ("Q2", "P30", "Q3"), ("Q1", "P206", "Q4"),
                 ("Q2", "P150", "Q5"), ("Q2", "P150", "Q6"), ("Q2", "P150", "Q7"), ("Q2", "P150", "Q8")],
        images=[("Q1", "/img/paris1.jpg"), ("Q1", "/img/paris2.jpg"), ("Q4", "/img/seine.jpg")],
    )


def test_relation_and_image_questions(toy):
    recs, counts = kg_qa.build_kg_qa(toy)
    by_q = {r.question: r for r in recs}
    assert by_q["What is the country of Paris?"].target == "France"
    assert by_q["What is the continent of France?"].target == "Europe"
    assert by_q["What is the located next to of Paris?"].target == "Seine"
    assert "What is the city of France?" not in by_q  # 4 answers > max_answers=3
    assert counts == {"relation_questions": 3, "image_questions": 2, "skipped_too_many_answers": 1}
    imgs = [r for r in recs if r.image]
    assert [(r.image, r.target) for r in imgs] == [("/img/paris1.jpg", "Paris"), ("/img/seine.jpg", "Seine")]
    assert imgs[0].prompt == "Question: What is shown in this image?\nAnswer:"
    r = by_q["What is the country of Paris?"]
    assert r.subgraph.triple_ids[0] == 0  # the answer triple comes first
    assert set(r.subgraph.triple_ids.tolist()) == {0, 2}  # Paris's incident triples
    assert (r.subgraph.edge_type == toy.image_of).sum() == 2  # one image node per entity: Paris, Seine
    assert np.all(r.subgraph.edge_score == 0)


def test_kg_qa_options_and_determinism(toy):
    cfg = kg_qa.KGQAConfig(max_answers=4, image_questions=False, max_triples=2, subgraph="none")
    recs, _ = kg_qa.build_kg_qa(toy, cfg)
    assert {r.question: r.target for r in recs}["What is the city of France?"] == "Lyon, Marseille, Nice, Lille"
    assert all(r.subgraph is None for r in recs)
    a, _ = kg_qa.build_kg_qa(toy, kg_qa.KGQAConfig(max_instances=3, seed=5))
    b, _ = kg_qa.build_kg_qa(toy, kg_qa.KGQAConfig(max_instances=3, seed=5))
    assert [r.id for r in a] == [r.id for r in b] and len(a) == 3
    assert all(np.array_equal(x.subgraph.edge_triple, y.subgraph.edge_triple) for x, y in zip(a, b))
    with pytest.raises(InputError, match="needs a Retriever"):
        kg_qa.build_kg_qa(toy, kg_qa.KGQAConfig(subgraph="retrieve"))
    with pytest.raises(InputError, match="field 'subgraph': expected neighbourhood"):
        kg_qa.KGQAConfig(subgraph="all")


def test_records_round_trip_and_bad_lines(toy, tmp_path):
    recs, _ = kg_qa.build_kg_qa(toy)
    p = tmp_path / "r.jsonl"
    kg_qa.save_records(recs, p)
    back = kg_qa.load_records(p)
    assert [(r.id, r.prompt, r.target, r.image) for r in back] == [(r.id, r.prompt, r.target, r.image) for r in recs]
    assert all(np.array_equal(a.subgraph.edge_index, b.subgraph.edge_index) for a, b in zip(recs, back))
    p.write_text('{"id": "x", "prompt": "q", "target": 3}\n')
    with pytest.raises(InputError, match=r"r.jsonl:1: field 'target': expected a string"):
        kg_qa.load_records(p)
    sub = kg_qa.subgraph_to_mmkg(toy, recs[0].subgraph)
    assert sub.num_triples == recs[0].subgraph.triple_ids.size and sub.has_entity("Q1")


def test_cli_stage1_vg_and_kg_qa(tmp_path, capsys, toy):
    from mrmkg.cli import main

    out = tmp_path / "vgout"
    assert main(["stage1", "vg", str(FIX), "--out", str(out), "--images", str(FIX / "images")]) == 0
    assert "instances: 3" in capsys.readouterr().out and (out / "records.jsonl").is_file()
    toy.save(tmp_path / "g")
    assert main(["stage1", "kg-qa", str(tmp_path / "g"), "--out", str(tmp_path / "r")]) == 0
    assert len(kg_qa.load_records(tmp_path / "r" / "records.jsonl")) == 5
    assert main(["stage1", "vg", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "qa_to_region_mapping.json not found" in capsys.readouterr().err
