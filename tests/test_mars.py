"""MARS / MarKG tasks on a tiny graph and a tiny random LLM: file validation, prompts (modes,
stand-ins, variants, no gold relation), metrics and tie rule, training end to end, and `mrmkg eval`
outputs that agree with each other."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mrmkg.cli import main as cli_main
from mrmkg.errors import InputError

ENTS = [("Q1", "cat", "a pet animal"), ("Q2", "dog", "a pet animal"), ("Q3", "fur", ""), ("Q4", "pet", ""),
        ("Q5", "red", "a color"), ("Q6", "blue", "a color"), ("Q7", "sun", ""), ("Q8", "sky", ""),
        ("Q9", "bird", ""), ("Q10", "wing", ""), ("Q11", "fish", ""), ("Q12", "water", "")]
RELS = [("P1", "has"), ("P2", "is a"), ("P3", "color"), ("P4", "lives in")]
TRIPLES = [("Q1", "P1", "Q3"), ("Q2", "P1", "Q3"), ("Q1", "P2", "Q4"), ("Q2", "P2", "Q4"), ("Q7", "P3", "Q5"),
           ("Q8", "P3", "Q6"), ("Q9", "P1", "Q10"), ("Q11", "P4", "Q12"), ("Q9", "P4", "Q8"), ("Q3", "P3", "Q5")]
CANDS = ["Q3", "Q4", "Q5", "Q6", "Q8", "Q10", "Q12"]
TRAIN = [  # h : t :: q : a
    (["Q1", "Q3"], "Q2", "Q3", "P1", 0), (["Q9", "Q10"], "Q1", "Q3", "P1", 1), (["Q7", "Q5"], "Q8", "Q6", "P3", 2),
    (["Q8", "Q6"], "Q7", "Q5", "P3", 0), (["Q11", "Q12"], "Q9", "Q8", "P4", 1), (["Q1", "Q4"], "Q2", "Q4", "P2", 2),
    (["Q2", "Q3"], "Q9", "Q10", "P1", 0), (["Q9", "Q8"], "Q11", "Q12", "P4", 1),
]
DEV = [(["Q2", "Q3"], "Q1", "Q3", "P1", 0), (["Q7", "Q5"], "Q8", "Q6", "P3", 1), (["Q2", "Q4"], "Q1", "Q4", "P2", 2)]


def _write_split(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"example": ex, "question": q, "answer": a, "relation": r, "mode": m}) + "\n"
                            for ex, q, a, r, m in rows))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A built tiny graph folder (random index), MARS files and a tiny LLaMA saved as a folder."""
    from test_model_common import tiny_llm

    from mrmkg.kg.graph import MMKG
    from mrmkg.kg.index import KGIndex

    root = tmp_path_factory.mktemp("mars_world")
    kg = MMKG.from_records(ENTS, RELS, TRIPLES, images=[("Q7", "sun.jpg"), ("Q1", "cat.jpg")])
    g = np.random.default_rng(0)
    idx = KGIndex.from_arrays(g.normal(size=(kg.num_triples, 12)), g.normal(size=(kg.num_entities, 12)),
                              g.normal(size=(kg.num_relations, 12)), g.normal(size=(kg.num_images, 10)))
    graph = root / "graph"
    kg.save(graph)
    idx.save(graph)
    mars = root / "mars"
    mars.mkdir()
    _write_split(mars / "train.json", TRAIN)
    _write_split(mars / "dev.json", DEV)
    (mars / "analogy_entities.txt").write_text("\n".join(CANDS) + "\n")
    llm = tiny_llm("llama")
    llm.model.save_pretrained(root / "llm")
    llm.tokenizer.save_pretrained(root / "llm")
    return {"root": root, "graph": str(graph), "mars": str(mars), "llm": str(root / "llm"), "kg": kg}


def _task(world, **args):
    from mrmkg.tasks.mars.task import MarsTask

    return MarsTask.from_config({"graph": world["graph"], "data_dir": world["mars"], **args})


# ---------------------------------------------------------------------------------- files
@pytest.mark.parametrize("line,needle", [
    ('{"example": ["Q1", "Q3"], "question": "Q2", "answer": "Q3"', "not valid JSON"),
    ('["Q1"]', "JSON object"),
    ('{"example": ["Q1"], "question": "Q2", "answer": "Q3", "mode": 0}', "'example'"),
    ('{"example": ["Q1", "Q3"], "answer": "Q3", "mode": 0}', "'question' is missing"),
    ('{"example": ["Q1", "Q3"], "question": "Q2", "answer": "Q3", "mode": 3}', "'mode'"),
    ('{"example": ["Q1", "Q3"], "question": "Q99", "answer": "Q3", "mode": 0}', "'question': entity 'Q99'"),
    ('{"example": ["Q1", 7], "question": "Q2", "answer": "Q3", "mode": 0}', "'example[1]'"),
])
def test_split_validation_names_file_line_field(world, tmp_path, line, needle):
    from mrmkg.tasks.mars.data import load_mars_split

    p = tmp_path / "bad.json"
    p.write_text('{"example": ["Q1", "Q3"], "question": "Q2", "answer": "Q3", "mode": 0}\n\n' + line + "\n")
    with pytest.raises(InputError) as e:
        load_mars_split(p, world["kg"])
    assert e.value.line == 3 and str(p) in str(e.value) and needle in str(e.value)


def test_candidates_file(world, tmp_path):
    from mrmkg.tasks.mars.data import load_candidates

    c = load_candidates(Path(world["mars"]) / "analogy_entities.txt", world["kg"])
    assert [world["kg"].entity_ids[i] for i in c] == CANDS
    p = tmp_path / "c.txt"
    p.write_text("Q3\nQ3\n")
    with pytest.raises(InputError, match="listed twice"):
        load_candidates(p, world["kg"])


# ---------------------------------------------------------------------------------- metrics
def test_rank_is_the_golds_position_after_a_stable_descending_sort():
    from mrmkg.metrics.ranking import gold_ranks, ranking_metrics

    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1],   # gold 0: one strictly higher, tie with col 2 after it -> 2
                           [0.3, 0.3, 0.3, 0.3],   # all tied, gold last -> 4 (MarT's rule)
                           [0.1, 0.2, 0.3, 0.4]])  # gold 0 lowest -> 4
    ranks = gold_ranks(scores, [0, 3, 0])
    assert ranks.tolist() == [2, 4, 4]
    m = ranking_metrics(ranks)
    assert m == {"hits@1": 0.0, "hits@3": pytest.approx(1 / 3), "hits@5": 1.0, "hits@10": 1.0,
                 "mrr": pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3), "n": 3}


# ---------------------------------------------------------------------------------- prompts
def test_gold_relation_is_never_an_input(world):
    from mrmkg.tasks.mars.data import load_mars_split

    for prompt in ("question", "kg_text", "kg_graph", "kg_text_graph"):
        task = _task(world, prompt=prompt)
        recs = load_mars_split(Path(world["mars"]) / "dev.json", task.kg)
        a = task.make_examples(recs)
        for r in recs:
            r.relation = "P4"  # change the hidden relation: nothing the model sees may change
        b = task.make_examples(recs)
        for x, y in zip(a, b):
            assert x.prompt == y.prompt and x.meta == y.meta
            assert (x.subgraph is None) == (y.subgraph is None)
            if x.subgraph is not None:
                assert np.array_equal(x.subgraph.edge_triple, y.subgraph.edge_triple)


def test_modes_images_and_standins(world):
    from mrmkg.tasks.mars.data import MarsRecord

    kg = world["kg"]
    e = kg.entity_index
    # mode 0: question (sun, has an image) is image-side; mode 1: example pair (cat has an image, fur not)
    r0 = MarsRecord("a", e("Q8"), e("Q6"), e("Q7"), e("Q5"), 0, "P3", "x", 1)
    r1 = MarsRecord("b", e("Q1"), e("Q3"), e("Q2"), e("Q3"), 1, "P1", "x", 2)
    task = _task(world, prompt="question")
    x0, x1 = task.make_examples([r0, r1])
    assert x0.meta["sides"] == ["text", "text", "image"] and x0.image_tokens.shape == (1, 10)
    assert "image 1 is to" in x0.prompt and "sky [E" in x0.prompt and "sun" not in x0.prompt
    assert x1.meta["sides"] == ["image", "standin:name", "text"] and x1.image_tokens.shape == (1, 10)
    assert x1.prompt.startswith("Analogy: image 1 is to fur as dog [E1] is to")
    assert x1.answer == e("Q3")

    no_img = _task(world, prompt="question", use_images=False, standin="name+description")
    y0, y1 = no_img.make_examples([r0, r1])
    assert y0.image_tokens is None and y0.meta["sides"] == ["text", "text", "standin:name+description"]
    assert y0.prompt.endswith("as sun is to")  # sun has no description: the name alone
    assert y1.prompt.startswith("Analogy: cat (a pet animal) is to fur as dog [E1] is to")
    assert "[E" not in y1.prompt.split(" as ")[0]  # stand-ins carry no entity token by default
    tok = _task(world, prompt="question", use_images=False, standin_token=True).make_examples([r1])[0]
    assert "cat [E0]" in tok.prompt


def test_image_standin_graph_gives_the_alignment_loss_anchors(world, tmp_path):
    """On a graph built with --image-standin every subgraph entity has an image node, so Eq. 6 is
    non-zero in training; on the same graph without images it is exactly zero (MarKG's case).
    Image-side entities shown by a stand-in's features say so in 'sides'."""
    from mrmkg.kg.graph import MMKG
    from mrmkg.kg.index import KGIndex
    from mrmkg.tasks.mars.task import MarsTask, MarsTaskConfig

    g = np.random.default_rng(1)
    plain = MMKG.from_records(ENTS, RELS, TRIPLES)
    for name, kg in (("none", plain), ("standin", plain.with_image_standins("description"))):
        kg.save(tmp_path / name)
        KGIndex.from_arrays(g.normal(size=(kg.num_triples, 12)), g.normal(size=(kg.num_entities, 12)),
                            g.normal(size=(kg.num_relations, 12)),
                            g.normal(size=(kg.num_images, 12)) if kg.num_images else None).save(tmp_path / name)
    args = {"llm": world["llm"], "gnn_hidden": 16, "gnn_heads": 2, "gnn_num_blocks": 2, "gnn_relation_dim": 8,
            "dtype": "fp32", "align_weight": 0.1}
    losses = {}
    for name in ("none", "standin"):
        path = str(tmp_path / name)
        task = MarsTask(MarsTaskConfig(graph=path, data_dir=world["mars"], N=3, prompt="kg_graph"), args)
        ex = task.make_examples(_dev(world))
        model = task.build_model().train()
        out = model(model.collate(ex, candidates=task.candidates, rank_over="entity"))
        n_img = sum(int((x.subgraph.node_kind == 1).sum()) for x in ex)
        n_ent = sum(int((x.subgraph.node_kind == 0).sum()) for x in ex)
        losses[name] = (out.align_loss.item(), n_img, n_ent, [x.meta["sides"] for x in ex])
    assert losses["none"][:2] == (0.0, 0)
    align, n_img, n_ent, sides = losses["standin"]
    assert align > 0 and n_img == n_ent  # one stand-in image per entity node
    assert sides[1] == ["image-standin:description"] * 2 + ["text"]  # dev row 2 is mode 1


def test_prompt_variants(world):
    recs = _dev(world)
    q = _task(world, prompt="question").make_examples(recs)
    t = _task(world, prompt="kg_text", text_triples=3).make_examples(recs)
    g = _task(world, prompt="kg_graph", N=2).make_examples(recs)
    assert all(x.subgraph is None and not x.prompt.startswith("Facts") for x in q)
    assert all(x.subgraph is None and x.prompt.startswith("Facts: ") and x.prompt.endswith(q[i].prompt)
               for i, x in enumerate(t))
    assert all(len(x.prompt.split("\n")[0].split(";")) <= 3 for x in t)
    assert all(x.subgraph is not None and 0 < x.subgraph.triple_ids.size <= 2 for x in g)
    assert all(x.meta["triples"] == x.subgraph.triple_ids.tolist() for x in g)


def test_kg_text_fact_tokens_name_the_same_entities(world):
    kg, recs = world["kg"], _dev(world)
    plain = _task(world, prompt="kg_text", text_triples=3).make_examples(recs)
    marked = _task(world, prompt="kg_text", text_triples=3, fact_tokens=True).make_examples(recs)
    for p, m in zip(plain, marked):
        assert m.meta["triples"] == p.meta["triples"] and m.prompt.endswith(p.prompt.split("\n")[-1])
        facts = m.prompt.split("\n")[0].removeprefix("Facts: ").rstrip(".").split("; ")
        assert len(facts) == min(3, len(p.meta["triples"])) > 0
        for fact, tid in zip(facts, p.meta["triples"]):
            h, r, t = kg.triples[tid].tolist()
            assert fact == f"{kg.entity_names[h]} [E{h}] {kg.relation_names[r]} {kg.entity_names[t]} [E{t}]"
        # without the tokens the fact text is exactly the plain prompt's
        assert re.sub(r" \[E\d+\]", "", m.prompt.split("\n")[0]) == p.prompt.split("\n")[0]


def test_kg_text_graph_writes_the_facts_and_keeps_the_subgraph(world):
    recs = _dev(world)
    text = _task(world, prompt="kg_text", text_triples=2, N=2, fact_tokens=True).make_examples(recs)
    graph = _task(world, prompt="kg_graph", N=2).make_examples(recs)
    both = _task(world, prompt="kg_text_graph", text_triples=2, N=2, fact_tokens=True).make_examples(recs)
    assert any(t.prompt.startswith("Facts: ") for t in text)
    for t, g, b in zip(text, graph, both):
        assert b.prompt == t.prompt and g.subgraph is not None and t.subgraph is None
        assert b.meta["triples"] == g.meta["triples"]
        assert b.subgraph.triple_ids.tolist() == g.subgraph.triple_ids.tolist()
        assert b.subgraph.focus.tolist() == g.subgraph.focus.tolist()


def test_analogy_memory_from_the_training_file_only(world):
    kg = world["kg"]
    E, R = kg.entity_index, kg.relation_index
    task = _task(world, memory=True, memory_keep_gold=0.0, use_images=False)  # stand-ins, as on real MARS
    mem = task.memory()
    # Q2 is the question of "Q1:Q3 :: Q2:Q3" and the head of the pair (Q2, Q4) and (Q2, Q3) in train
    assert mem[E("Q2")] == [(R("P1"), E("Q3"), 2.0), (R("P2"), E("Q4"), 1.0)]
    assert E("Q12") not in mem                     # never a head in train; dev pairs are never read
    dev = _dev(world)
    ex = task.make_examples(dev)
    # dev question Q1 (answer Q3): all its training partners are in its memory, gold included
    assert ex[0].meta["memory"] == [["Q3", "P1", 2.0], ["Q4", "P2", 1.0]]
    assert ex[0].subgraph.focus.tolist() == [E("Q1")]
    assert sorted(t for _, _, t, _ in ex[0].subgraph.memory_edges) == [E("Q3"), E("Q4")]
    # as training examples (keep 0) the same records lose exactly their own answer's edges
    tr = task.make_examples(dev, train=True)
    assert tr[0].meta["memory"] == [["Q4", "P2", 1.0]] and tr[2].meta["memory"] == [["Q3", "P1", 2.0]]
    keep = _task(world, memory=True, memory_keep_gold=1.0, use_images=False).make_examples(dev, train=True)
    assert [x.meta["memory"] for x in keep] == [x.meta["memory"] for x in ex]
    # a question shown by its image (sun has one, mode 0) gets no memory: the image does not name it
    from mrmkg.tasks.mars.data import MarsRecord

    sun = MarsRecord("s", E("Q8"), E("Q6"), E("Q7"), E("Q5"), 0, "P3", "x", 1)
    assert _task(world, memory=True).make_examples([sun])[0].meta["memory"] == []
    assert task.make_examples([sun])[0].meta["memory"] == [["Q5", "P3", 2.0]]
    # off by default, and the cap holds
    assert all(x.meta["memory"] == [] for x in _task(world).make_examples(dev))
    assert all(len(x.meta["memory"]) <= 1 for x in _task(world, memory=True, memory_max=1).make_examples(dev))
    with pytest.raises(InputError, match="memory_keep_gold"):
        _task(world, memory_keep_gold=1.5)


def test_example_copy_node(world):
    """h : t :: h : ? -- with copy_node the example tail joins the subgraph, marked as the copy."""
    from mrmkg.tasks.mars.data import MarsRecord

    E = world["kg"].entity_index
    rec = MarsRecord("c", E("Q12"), E("Q6"), E("Q12"), E("Q6"), 1, "P3", "x", 1)   # water : blue :: water : ?
    other = MarsRecord("o", E("Q1"), E("Q6"), E("Q12"), E("Q6"), 1, "P3", "x", 2)  # cat : blue :: water : ?
    on, off = _task(world, copy_node=True, n=1, N=1), _task(world, n=1, N=1)
    sg = on.make_examples([rec])[0].subgraph
    assert sg.example.tolist() == [E("Q12"), E("Q6")]
    assert sg.node_ref[sg.copy_mask].tolist() == [E("Q6")]
    assert on.make_examples([rec])[0].meta["copy"] == "Q6" and on.make_examples([other])[0].meta["copy"] is None
    sg_off = off.make_examples([rec])[0].subgraph               # off: blue is a node only if retrieved
    assert E("Q6") not in sg_off.node_ref.tolist() and not sg_off.copy_mask.any()
    assert sg.num_nodes == sg_off.num_nodes + 1
    assert not on.make_examples([other])[0].subgraph.copy_mask.any()


def test_copy_augment_asks_the_example_back(world, tmp_path):
    from mrmkg.tasks.mars.data import load_mars_split

    recs = load_mars_split(Path(world["mars"]) / "train.json", world["kg"]) * 50
    recs = [dataclasses.replace(r, line=i + 1) for i, r in enumerate(recs)]
    task = _task(world, copy_augment=0.3)
    aug = task.copy_augmented(recs)
    changed = [a is not r for a, r in zip(aug, recs)]
    assert 0.22 < np.mean(changed) < 0.38 and changed == [a is not r for a, r in zip(task.copy_augmented(recs), recs)]
    for a, r, c in zip(aug, recs, changed):
        assert (a.question, a.answer) == ((r.head, r.tail) if c else (r.question, r.answer))
        assert (a.head, a.tail, a.mode, a.line) == (r.head, r.tail, r.mode, r.line)
    assert _task(world).copy_augmented(recs) == recs
    with pytest.raises(InputError, match="copy_augment"):
        _task(world, copy_augment=2.0)


def test_pointer_frequency_from_the_training_file(world, tmp_path):
    """The pointer's 'frequency' feature gets log(1 + occurrences in train) after building and after
    loading (it is not saved), and with a positive weight a pointer orders the nodes by it."""
    from collections import Counter

    from mrmkg.tasks.mars.task import MarsTask, MarsTaskConfig

    kg = world["kg"]
    seen = Counter(e for ex, q, a, _, _ in TRAIN for e in (*ex, q, a))
    want = np.log1p([seen[e] for e in kg.entity_ids])
    args = {"llm": world["llm"], "gnn_hidden": 16, "gnn_heads": 2, "gnn_num_blocks": 2, "gnn_relation_dim": 8,
            "pointer": {"mode": "first", "features": ["focus", "memory", "frequency"]}, "dtype": "fp32"}
    task = MarsTask(MarsTaskConfig(graph=world["graph"], data_dir=world["mars"], N=3), args)
    np.testing.assert_allclose(task.train_frequency(), [seen[e] for e in kg.entity_ids])
    model = task.build_model()
    torch.testing.assert_close(model.graph_pointer.frequency, torch.tensor(want, dtype=torch.float32))
    model.graph_pointer.frequency_weight.data.fill_(0.5)
    # the pointer (all else zero) now ranks the subgraph's candidate nodes by training frequency
    ex = task.make_examples(_dev(world)[:1])
    with torch.no_grad():
        scores = model(model.collate(ex, candidates=task.candidates, rank_over="entity")).scores[0]
    cands = task.candidates.tolist()
    nodes = [c for c in cands if c in ex[0].subgraph.node_ref.tolist()]
    assert len({want[c] for c in nodes}) >= 2
    by_score = sorted(nodes, key=lambda c: -float(scores[cands.index(c)]))
    assert [want[c] for c in by_score] == sorted((want[c] for c in nodes), reverse=True)
    model.save_pretrained(tmp_path / "freq")
    loaded = task.load_model(tmp_path / "freq")
    torch.testing.assert_close(loaded.graph_pointer.frequency, model.graph_pointer.frequency)
    assert loaded.graph_pointer.frequency_weight.item() == 0.5
    plain = MarsTask(task.config, {**args, "pointer": {"mode": "first", "features": ["focus", "memory"]}}).build_model()
    assert plain.graph_pointer.frequency is None and plain.graph_pointer.frequency_weight is None


def test_pointer_relation_odds_from_the_training_file(world, tmp_path):
    """'relation_odds': per relation and direction, the smoothed log-odds (against the mean rate)
    that a candidate neighbour of a training question through it is the answer; set after building
    and after loading, never saved."""
    from mrmkg.tasks.mars.task import MarsTask, MarsTaskConfig

    args = {"llm": world["llm"], "gnn_hidden": 16, "gnn_heads": 2, "gnn_num_blocks": 2, "gnn_relation_dim": 8,
            "pointer": {"mode": "first", "features": ["focus", "relation_odds"]}, "dtype": "fp32"}
    task = MarsTask(MarsTaskConfig(graph=world["graph"], data_dir=world["mars"], N=3), args)
    kg = world["kg"]
    R = kg.num_relations
    # counted by hand from TRAIN and TRIPLES: question -r-> candidate edges, and how many lead to the answer
    # (Q2: has Q3 / is a Q4, asked twice; Q1: has Q3 / is a Q4; Q8: color Q6; Q7: color Q5; Q9: has Q10 /
    # lives in Q8, asked twice; Q11: lives in Q12); no training question is the tail of a candidate's triple
    pos = {"P1": 3, "P2": 1, "P3": 2, "P4": 2}
    tot = {"P1": 5, "P2": 3, "P3": 2, "P4": 3}
    p0 = 8 / 13
    want = np.zeros(2 * R)
    for r in pos:
        i = kg.relation_index(r)
        want[i] = np.log((pos[r] + 10 * p0) / (tot[r] - pos[r] + 10 * (1 - p0))) - np.log(p0 / (1 - p0))
    got = task.train_relation_odds()
    np.testing.assert_allclose(got, want)
    assert got[kg.relation_index("P3")] > got[kg.relation_index("P4")] > 0 > got[kg.relation_index("P2")]
    model = task.build_model()
    torch.testing.assert_close(model.graph_pointer.relation_odds, torch.tensor(want, dtype=torch.float32))
    assert model.graph_pointer.relation_odds_weight.item() == 0.0
    started = MarsTask(task.config, {**args, "pointer": {**args["pointer"], "relation_odds_init": 1.0, "scale": 4.0}}
                       ).build_model()
    assert started.graph_pointer.relation_odds_weight.item() == 0.25          # x scale 4 = weight 1 from the start
    model.graph_pointer.relation_odds_weight.data.fill_(0.5)
    model.save_pretrained(tmp_path / "odds")
    loaded = task.load_model(tmp_path / "odds")
    torch.testing.assert_close(loaded.graph_pointer.relation_odds, model.graph_pointer.relation_odds)
    assert loaded.graph_pointer.relation_odds_weight.item() == 0.5
    from safetensors.torch import load_file
    assert not any("relation_odds." in k or k.endswith("relation_odds") for k in load_file(
        tmp_path / "odds" / "model.safetensors"))
    # relation_at_eval=odds needs the same table without the feature, after building and after loading
    at_eval = MarsTask(task.config, {**args, "pointer": {"mode": "first", "features": ["focus", "relation"],
                                                         "relation_at_eval": "odds"}})
    m = at_eval.build_model()
    torch.testing.assert_close(m.graph_pointer.relation_odds, torch.tensor(want, dtype=torch.float32))
    m.save_pretrained(tmp_path / "at_eval")
    torch.testing.assert_close(at_eval.load_model(tmp_path / "at_eval").graph_pointer.relation_odds,
                               torch.tensor(want, dtype=torch.float32))
    plain = MarsTask(task.config, {**args, "pointer": {"mode": "first", "features": ["focus", "relation"]}}
                     ).build_model()
    assert plain.graph_pointer.relation_odds is None


def _dev(world):
    from mrmkg.tasks.mars.data import load_mars_split

    return load_mars_split(Path(world["mars"]) / "dev.json", world["kg"])


def test_analogy_memory_keep_rate_is_seeded(world, tmp_path):
    from mrmkg.tasks.mars.data import load_mars_split
    from mrmkg.tasks.mars.task import MarsTask

    rows = [(["Q1", "Q3"], "Q2", "Q3", "P1", 0)] * 400
    mars = tmp_path / "mars"
    mars.mkdir()
    _write_split(mars / "train.json", rows)
    (mars / "analogy_entities.txt").write_text("\n".join(CANDS) + "\n")
    recs = load_mars_split(mars / "train.json", world["kg"])
    task = MarsTask.from_config({"graph": world["graph"], "data_dir": str(mars), "memory": True, "memory_keep_gold": 0.3})
    kept = [bool(x.meta["memory"]) for x in task.make_examples(recs, train=True)]
    assert 0.22 < np.mean(kept) < 0.38
    assert kept == [bool(x.meta["memory"]) for x in task.make_examples(recs, train=True)]


def test_copy_examples_keep_their_memory_edge_at_their_own_rate(world, tmp_path):
    from mrmkg.tasks.mars.data import load_mars_split
    from mrmkg.tasks.mars.task import MarsTask

    rows = [(["Q1", "Q3"], "Q2", "Q3", "P1", 0), (["Q2", "Q3"], "Q9", "Q10", "P1", 0)] * 200
    mars = tmp_path / "mars"
    mars.mkdir()
    _write_split(mars / "train.json", rows)
    (mars / "analogy_entities.txt").write_text("\n".join(CANDS) + "\n")
    recs = load_mars_split(mars / "train.json", world["kg"])
    copies = [dataclasses.replace(r, question=r.head, answer=r.tail) for r in recs if r.head == world["kg"].entity_index("Q2")]

    def kept(task, records):
        return np.mean([any(m[0] == "Q3" for m in x.meta["memory"]) for x in task.make_examples(records, train=True)])

    args = {"graph": world["graph"], "data_dir": str(mars), "memory": True}
    task = MarsTask.from_config({**args, "memory_keep_gold": 1.0, "copy_keep_gold": 0.3})
    assert 0.2 < kept(task, copies) < 0.4                  # Q2 : Q3 :: Q2 : ? keeps Q2 -> Q3 30% of the time
    assert kept(task, recs[::2]) == 1.0                    # Q1 : Q3 :: Q2 : ? (answer Q3) at memory_keep_gold
    assert kept(MarsTask.from_config(args), copies) == 1.0
    with pytest.raises(InputError, match="copy_keep_gold"):
        MarsTask.from_config({**args, "copy_keep_gold": -0.1})


def test_bad_memory_relation_names_the_line(world, tmp_path):
    mars = tmp_path / "mars"
    mars.mkdir()
    _write_split(mars / "train.json", TRAIN[:2] + [(["Q1", "Q3"], "Q2", "Q3", "P99", 0)])
    (mars / "analogy_entities.txt").write_text("\n".join(CANDS) + "\n")
    from mrmkg.tasks.mars.task import MarsTask

    task = MarsTask.from_config({"graph": world["graph"], "data_dir": str(mars), "memory": True})
    with pytest.raises(InputError, match=r"train.json:3.*'P99'"):
        task.memory()


# ---------------------------------------------------------------------------------- end to end
def _train_cfg(world, out: Path, prompt="kg_graph", memory=False, pointer=False, **extra) -> Path:
    cfg = {"task": "mars", "output_dir": str(out), "seed": 0, "epochs": 3, "batch_size": 4, "precision": "fp32",
           "progress": False, "eval_batch_size": 2, "optim": {"lr": 0.01, "warmup_steps": 1},
           "task_args": {"graph": world["graph"], "data_dir": world["mars"], "prompt": prompt, "N": 3, "memory": memory},
           "model": {"llm": world["llm"], "gnn_hidden": 16, "gnn_heads": 2, "gnn_num_blocks": 2, "pointer": {} if pointer else None,
                     "gnn_relation_dim": 8, "dtype": "fp32", "max_prompt_tokens": 64}, **extra}
    p = out.parent / f"{out.name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_train_then_eval_outputs_agree(world, tmp_path):
    from mrmkg.evaluate import metrics_from_predictions
    from mrmkg.engine import load_train_config, train

    cfg_path = _train_cfg(world, tmp_path / "run", memory=True, pointer=True)
    res = train(load_train_config(cfg_path))
    assert res.global_step == 3 * (len(TRAIN) // 4)
    assert set(res.metrics) >= {"hits@1", "hits@3", "hits@5", "hits@10", "mrr", "n"} and res.metrics["n"] == len(DEV)

    out = tmp_path / "eval"
    assert cli_main(["eval", str(tmp_path / "run"), "--split",
                     str(Path(world["mars"]) / "dev.json"), "-o", str(out), "--batch-size", "2", "--quiet"]) == 0
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [p["id"] for p in preds] == [f"dev-{i}" for i in range(1, len(DEV) + 1)]  # split-file order
    assert [p["gold"] for p in preds] == [a for _, _, a, _, _ in DEV]
    for p in preds:
        assert len(p["top10"]) == len(CANDS) and all(c in CANDS for c, _ in p["top10"])
        scores = [s for _, s in p["top10"]]
        assert scores == sorted(scores, reverse=True)
        # the rank agrees with the listed scores: 1 + #candidates strictly above the gold
        gold_score = dict((c, s) for c, s in p["top10"])[p["gold"]]
        assert p["rank"] == 1 + sum(s > gold_score for s in scores)
        assert 0 < len(p["retrieved"]) <= 3 and all(isinstance(t, int) for t, _ in p["retrieved"])
        # every question shown as text has training partners here; one shown as an image gets none
        assert bool(p["memory"]) == (p["sides"][2] != "image")
        assert p["copy"] is None                  # no dev question here is its example's head
        assert all(c in [e for e, _, _ in ENTS] for c, _, _ in p["memory"])
    assert any(p["memory"] for p in preds)
    assert metrics["tied"] == sum(p["tied"] for p in preds)  # how many golds shared their score, counted
    recomputed = metrics_from_predictions(out / "predictions.jsonl")
    assert {k: metrics[k] for k in recomputed} == recomputed
    # eval reproduces the metrics the run reported for the same split (batching does not matter)
    for k in ("hits@1", "hits@3", "hits@5", "hits@10", "mrr", "n"):
        assert metrics[k] == pytest.approx(res.metrics[k], abs=1e-9)
    assert metrics["image_sides"]  # the counts of how image-side entities were given are reported
    # `mrmkg ask` with the analogy of a mode-1 dev example (names and ids mixed) answers as evaluation ranked it
    import io
    from contextlib import redirect_stdout

    (h, t), q = DEV[1][0], DEV[1][1]
    name = dict((e, n) for e, n, _ in ENTS)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli_main(["ask", str(tmp_path / "run"), "--analogy", f"{name[h]} : {name[t]} :: {q} : ?", "--top-k", "10",
                         "--json", "--picture", str(tmp_path / "ask.png")]) == 0
    asked = json.loads(buf.getvalue())
    # the same ranking; scores equal up to float rounding (one example alone vs a batch of two)
    assert [c["id"] for c in asked["candidates"]] == [c for c, _ in preds[1]["top10"]]
    assert [c["score"] for c in asked["candidates"]] == pytest.approx([s for _, s in preds[1]["top10"]], abs=1e-5)
    assert asked["answer_id"] == preds[1]["top10"][0][0] and asked["meta"]["sides"] == preds[1]["sides"]
    assert sorted(r["id"] for r in asked["subgraph"]["triples"]) == sorted(t for t, _ in preds[1]["retrieved"])
    assert set(asked["timings"]) == {"encode", "retrieve", "model"} and (tmp_path / "ask.png").is_file()
    # --graph: the same evaluation from a moved graph folder, recorded as such
    import shutil

    moved = tmp_path / "moved-graph"
    shutil.copytree(world["graph"], moved)
    assert cli_main(["eval", str(tmp_path / "run"), "--split", str(Path(world["mars"]) / "dev.json"),
                     "-o", str(tmp_path / "eval-moved"), "--graph", str(moved), "--batch-size", "2", "-q"]) == 0
    assert json.loads((tmp_path / "eval-moved" / "metrics.json").read_text())["mrr"] == metrics["mrr"]
    assert yaml.safe_load((tmp_path / "eval-moved" / "eval_config.yaml").read_text())["task_args"]["graph"] == str(moved)
    # `mrmkg explain` reads this folder back in names: the retrieved triples and memory of every prediction
    from mrmkg.explain import explain, open_eval

    folder = open_eval(out)
    for p in preds:
        e = explain(folder, p)
        assert e["rank"] == p["rank"] and e["gold"]["id"] == p["gold"]
        assert sorted(k["triple"] for k in e["retrieved"]) == sorted(t for t, _ in p["retrieved"])
        assert [m["id"] for m in e["memory"]] == [m[0] for m in p["memory"]]


def test_training_is_seeded_and_learns(world, tmp_path):
    """Same seed, same metrics; and more training fits the training split (loss goes down)."""
    from mrmkg.engine import load_train_config, train

    a = train(load_train_config(_train_cfg(world, tmp_path / "a", prompt="question", log_every=1)))
    b = train(load_train_config(_train_cfg(world, tmp_path / "b", prompt="question", log_every=1)))
    assert a.metrics == b.metrics and a.history == b.history
    assert a.history[-1]["loss"] < a.history[0]["loss"]


def test_kg_text_graph_trains_the_graph_encoder(world, tmp_path):
    from safetensors.torch import load_file

    from mrmkg.engine import load_train_config, train

    args = {"graph": world["graph"], "data_dir": world["mars"], "prompt": "kg_text_graph", "N": 3, "text_triples": 3,
            "fact_tokens": True}
    res = train(load_train_config(_train_cfg(world, tmp_path / "run", epochs=1, task_args=args)))
    assert res.metrics["n"] == len(DEV) and np.isfinite(res.final_loss)
    w = load_file(str(tmp_path / "run" / "final" / "model" / "model.safetensors"))
    assert any(k.startswith("graph_encoder.") for k in w) and any(k.startswith("knowledge_adapter.") for k in w)


# each shipped config = configs/mars-smollm2-cpu.yaml + the overrides of the docs/results.md row it reproduces
_MEASURED_ROWS = {
    "mars-smollm2-cpu-pointer.yaml": [  # row S, evaluated with relation odds
        "epochs=1", "task_args.memory=true", "task_args.memory_keep_gold=1.0", "task_args.copy_node=true",
        "task_args.copy_augment=0.1", "model.pointer.mode=first",
        "model.pointer.features=[focus,memory,near,copy,relation]", "model.pointer.scale=30",
        "model.pack_sequences=true", "optim.fused=true", "task_args.copy_keep_gold=0.5", "model.pointer.prior=false",
        "model.pointer.relation_at_eval=odds"],
    "mars-smollm2-cpu-kg-text-graph.yaml": [  # scripts/mars_epoch.sh arm II4 (cumulative rung iv)
        "epochs=1", "task_args.graph=runs/graphs/markg-standin", "task_args.use_images=false",
        "task_args.prompt=kg_text_graph", "task_args.N=15", "task_args.text_triples=15", "task_args.fact_tokens=true",
        "model.max_prompt_tokens=256", "model.pack_sequences=true"],
}


@pytest.mark.parametrize("name", sorted(_MEASURED_ROWS))
def test_config_is_the_measured_row(name):
    from mrmkg.engine import load_train_config

    root = Path(__file__).resolve().parents[1] / "configs"
    row = load_train_config(root / "mars-smollm2-cpu.yaml", _MEASURED_ROWS[name])
    cfg = load_train_config(root / name)
    assert dataclasses.replace(cfg, output_dir=row.output_dir) == row


def test_eval_bad_checkpoint_exits_2(world, tmp_path):
    assert cli_main(["eval", str(tmp_path), "--split", str(Path(world["mars"]) / "dev.json"),
                     "-o", str(tmp_path / "o")]) == 2


# ---------------------------------------------------------------------------------- MarKG
@pytest.mark.parametrize("device,needle", [("gpu7", "expected cpu, cuda or cuda:N"), ("cuda", "no CUDA GPU")])
def test_eval_bad_device_exits_2(tmp_path, capsys, device, needle):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    rc = cli_main(["eval", str(tmp_path), "--split", str(tmp_path / "dev.json"),
                   "-o", str(tmp_path / "out"), "--device", device])
    assert rc == 2 and needle in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("prompt", ["kg_graph", "kg_text_graph"])
def test_markg_examples_hide_the_answer(world, prompt):
    from mrmkg.tasks.mars.markg import MarKGPretrainTask

    task = MarKGPretrainTask.from_config({"graph": world["graph"], "dev_triples": 2, "N": 10, "prompt": prompt,
                                          "text_triples": 3})
    kg = task.kg
    ex = task.make_examples(task.train_ids)
    assert len(ex) == 2 * len(task.train_ids) and not set(task.train_ids) & set(task.dev_ids)
    names, rels = kg.entity_names, kg.relation_names
    for e in ex:
        h, r, t = kg.triples[e.meta["triple"]].tolist()
        assert e.answer == (t if e.meta["kind"] == "entity" else r)
        tri = kg.triples[e.subgraph.triple_ids]
        if e.meta["kind"] == "entity":
            assert not any((x == [h, r, t]).all() for x in tri)
            assert t not in e.subgraph.seeds.tolist()
        else:
            assert not any({a, c} == {h, t} for a, _, c in tri.tolist())
        # kg_text_graph: the facts are the reduced subgraph's top 3 triples, so they cannot hand over the answer
        facts = [f"{names[a]} [E{a}] {rels[b]} {names[c]} [E{c}]" for a, b, c in tri[:3].tolist()]
        if prompt == "kg_graph" or not facts:
            assert not e.prompt.startswith("Facts:")
        else:
            assert e.prompt.startswith("Facts: " + "; ".join(facts) + ".\n")
            assert f"{names[h]} [E{h}] {rels[r]} {names[t]} [E{t}]" not in e.prompt
    assert any(e.image_tokens is not None for e in ex)  # heads with an image get their visual token
    if prompt == "kg_text_graph":
        assert sum(e.prompt.startswith("Facts:") for e in ex) > len(ex) // 2


def test_markg_more_facts_than_subgraph_triples_is_refused(world):
    from mrmkg.tasks.mars.markg import MarKGPretrainTask

    with pytest.raises(InputError, match="task_args.text_triples.*expected text_triples <= N"):
        MarKGPretrainTask.from_config({"graph": world["graph"], "prompt": "kg_text_graph", "N": 4, "text_triples": 5})


def test_markg_pretrain_then_mars_init_from(world, tmp_path):
    from mrmkg.engine import load_train_config, train

    stage1 = {"task": "markg", "output_dir": str(tmp_path / "s1"), "epochs": 1, "batch_size": 4, "precision": "fp32",
              "progress": False, "optim": {"lr": 0.01},
              "task_args": {"graph": world["graph"], "dev_triples": 2, "N": 4},
              "model": {"llm": world["llm"], "gnn_hidden": 16, "gnn_heads": 2, "gnn_num_blocks": 2,
                        "gnn_relation_dim": 8, "dtype": "fp32"}}
    p = tmp_path / "s1.yaml"
    p.write_text(yaml.safe_dump(stage1))
    r1 = train(load_train_config(p))
    assert {"entity/mrr", "relation/mrr", "entity/n"} <= set(r1.metrics)
    train(load_train_config(_train_cfg(world, tmp_path / "s2", epochs=1),
                              [f"init_from={tmp_path / 's1'}", "optim.lr=1e-12", "max_steps=1"]))
    from safetensors.torch import load_file

    w1 = load_file(str(tmp_path / "s1" / "final" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "s2" / "final" / "model" / "model.safetensors"))
    shared = set(w1) & set(w2)
    assert "entity_head.entity.weight" in shared
    for k in shared:
        torch.testing.assert_close(w1[k], w2[k], rtol=0, atol=1e-5)


def test_retrieval_coverage_script_counts_answers_the_knowledge_names(world, tmp_path):
    import subprocess
    import sys

    from mrmkg.tasks.mars.data import load_mars_split

    script = Path(__file__).resolve().parent.parent / "research" / "mars" / "mars_retrieval_coverage.py"
    cfg = _train_cfg(world, tmp_path / "run", memory=True)
    dev = str(Path(world["mars"]) / "dev.json")
    out = subprocess.run([sys.executable, str(script), "-c", str(cfg), "--split", dev, "1,1", "10,10"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.strip("|").split("|") for line in out.splitlines() if re.match(r"\| \d", line)]
    got = [(int(n), int(N), float(a), float(b)) for n, N, a, b in rows]
    kg = world["kg"]
    for n, N, by_triples, by_all in got:
        task = _task(world, memory=True, n=n, N=N)
        recs = load_mars_split(dev, kg)
        hit_t = hit_a = 0
        for r, ex in zip(recs, task.make_examples(recs)):
            ends = {int(e) for t in ex.meta["triples"] for e in kg.triples[t][[0, 2]]}
            hit_t += r.answer in ends
            hit_a += r.answer in ends | {kg.entity_index(m[0]) for m in ex.meta["memory"]}
        assert (by_triples, by_all) == (round(hit_t / len(recs), 3), round(hit_a / len(recs), 3))
        # dev-1 (Q1 : ? with answer Q3) is a training pair of Q1 (Q9 : Q10 :: Q1 : Q3), so the memory names it
        assert by_all >= max(by_triples, 1 / 3 - 1e-3)
    assert [(n, N) for n, N, _, _ in got] == [(1, 1), (10, 10)] and got[0][2] <= got[1][2]
    bad = subprocess.run([sys.executable, str(script), "-c", str(cfg), "--split", dev, "10"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "grid point '10'" in bad.stderr and "Traceback" not in bad.stderr
