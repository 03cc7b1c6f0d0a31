"""Subgraph pictures: PNG and SVG files that open, for full, empty and one-node subgraphs."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.subgraph import Subgraph
from mrmkg.viz import render_subgraph


@pytest.fixture(scope="module")
def kg(tmp_path_factory) -> MMKG:
    d = tmp_path_factory.mktemp("kg")
    colours = {"Vrosk": (200, 40, 40), "Taimbe": (40, 160, 60), "Glouxa": (40, 60, 200)}
    images = []
    for name, c in colours.items():
        p = d / f"{name}.png"
        Image.new("RGB", (32, 32), c).save(p)
        images.append((name, str(p)))
    images.append(("Zhiel", str(d / "missing.png")))  # a broken image must not break the picture
    ents = [(n, n, "") for n in ("Vrosk", "Taimbe", "Glouxa", "Zhiel")]
    rels = [("eats", "eats"), ("lives_in", "lives in"), ("preys_on", "preys on")]
    triples = [("Vrosk", "eats", "Taimbe"), ("Vrosk", "lives_in", "Glouxa"), ("Taimbe", "lives_in", "Glouxa"),
               ("Glouxa", "preys_on", "Vrosk"), ("Vrosk", "preys_on", "Glouxa"), ("Zhiel", "eats", "Taimbe")]
    return MMKG.from_records(ents, rels, triples, images)


def _subgraph(kg) -> Subgraph:
    ids = np.arange(kg.num_triples)
    scores = np.linspace(0.91, 0.42, kg.num_triples).astype(np.float32)
    return Subgraph.from_triples(kg, ids, scores, seeds=[0], query="What does Vrosk eat?", images_per_entity=1)


def test_png_is_written_and_readable(kg, tmp_path):
    sg = _subgraph(kg)
    assert sg.num_nodes == 8 and (sg.node_kind == 1).sum() == 4
    out = render_subgraph(kg, sg, tmp_path / "sub" / "g.png", title=sg.query)
    assert out == tmp_path / "sub" / "g.png"
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG" and im.width >= 600 and im.height >= 400
        a = np.asarray(im.convert("RGB"))
    # the thumbnails' colours are drawn (pure-ish red/green/blue pixels exist)
    for c in ((200, 40, 40), (40, 160, 60), (40, 60, 200)):
        assert (np.abs(a.astype(int) - c).sum(-1) < 30).sum() > 50, c
    assert [p.name for p in out.parent.iterdir()] == ["g.png"]  # atomic: no temp files left


def test_svg_has_names_scores_relations_and_thumbnails(kg, tmp_path):
    out = render_subgraph(kg, _subgraph(kg), tmp_path / "g.svg", title="What does Vrosk eat?")
    text = out.read_text()
    ET.fromstring(text)  # well-formed XML
    for word in ("Vrosk", "Taimbe", "Glouxa", "Zhiel", "eats 0.91", "lives in", "preys on", "unreadable"):
        assert word in text, word
    assert text.count("<image") == 3  # three readable images, one placeholder box
    # the same subgraph gives the same bytes (no dates, no random ids)
    again = render_subgraph(kg, _subgraph(kg), tmp_path / "h.svg", title="What does Vrosk eat?")
    assert again.read_bytes() == out.read_bytes()


def test_image_standins_are_drawn_as_their_text(kg, tmp_path):
    sk = MMKG.from_records([(e, n, "a fanged marsh lizard" if n == "Vrosk" else "")
                            for e, n in zip(kg.entity_ids, kg.entity_names)],
                           list(zip(kg.relation_ids[:-1], kg.relation_names[:-1])),
                           [(kg.entity_ids[h], kg.relation_ids[r], kg.entity_ids[t]) for h, r, t in kg.triples.tolist()]
                           ).with_image_standins("description")
    text = render_subgraph(sk, _subgraph(sk), tmp_path / "s.svg").read_text()
    assert text.count("stand-in:") == 4 and "a fanged marsh lizard" in text
    assert "<image" not in text and "unreadable" not in text


def test_copy_node_is_labelled(kg, tmp_path):
    import dataclasses

    sg = dataclasses.replace(_subgraph(kg), focus=np.array([0]))
    plain = render_subgraph(kg, sg, tmp_path / "a.svg").read_text()
    copied = render_subgraph(kg, sg.with_example(0, 1), tmp_path / "b.svg").read_text()
    assert plain.count("(copy)") == 1                     # the legend only
    assert copied.count("(copy)") == 2                    # the legend and the example tail's node


def test_empty_and_one_node_subgraphs(kg, tmp_path):
    empty = render_subgraph(kg, Subgraph.empty("nothing"), tmp_path / "empty.svg")
    assert "empty subgraph" in empty.read_text()
    one = Subgraph.from_triples(kg, [], [], seeds=[2], images_per_entity=0)
    assert one.num_nodes == 1 and one.num_edges == 0
    p = render_subgraph(kg, one, tmp_path / "one.png")
    with Image.open(p) as im:
        assert im.format == "PNG"
    assert "Glouxa" in render_subgraph(kg, one, tmp_path / "one.svg").read_text()
    no_edges = Subgraph.from_triples(kg, [], [], seeds=[0, 1, 2], images_per_entity=0)
    assert "Taimbe" in render_subgraph(kg, no_edges, tmp_path / "three.svg").read_text()


def test_unsupported_format_is_an_input_error(kg, tmp_path):
    with pytest.raises(InputError, match="expected one of"):
        render_subgraph(kg, _subgraph(kg), tmp_path / "g.jpg")
    assert not (tmp_path / "g.jpg").exists()
