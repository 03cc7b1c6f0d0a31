"""The graph pointer (mrmkg.model.extensions.pointer, the model's score hook) and memory edges on the
four-entity toy graph."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from mrmkg.kg.subgraph import MEMORY, Subgraph
from mrmkg.model import MRMKG, MRMKGExample, PointerConfig
from mrmkg.model.extensions.pointer import GraphPointer, pointer_loss
from mrmkg.model.extensions.pointer_features import node_features
from test_model_common import small_config, tiny_llm, toy_features, toy_kg


def memory_subgraph(kg):
    """cat -has-> fur (triple 0), seed cat; memory cat -is a-> dog (x3) and dog -has-> red (x1)."""
    sg = Subgraph.from_triples(kg, [0], [0.9], seeds=[0])
    return sg.with_memory([(0, 1, 1, 3.0), (1, 0, 4, 1.0)])


def test_with_memory_adds_nodes_edges_and_provenance():
    kg = toy_kg()
    sg = memory_subgraph(kg)
    assert sg.node_ref.tolist() == [0, 2, 1, 4]               # cat, fur, then dog and red from memory
    assert sg.edge_triple.tolist() == [0, MEMORY, MEMORY]
    assert sg.triple_ids.tolist() == [0]                      # memory edges are not MMKG triples
    assert sg.memory_edges == [(0, 1, 1, 3.0), (1, 0, 4, 1.0)]
    d = sg.to_dict(kg)
    assert d["memory"][0] == {"head": "Q1", "relation": "P2", "tail": "Q2", "count": 3.0}
    g = sg.to_pyg()
    assert g.node_focus.tolist() == [1, 0, 0, 0] and g.edge_memory.tolist() == [0, 1, 1]
    assert Subgraph.from_triples(kg, [0], [0.9]).with_memory([]).num_edges == 1
    # a focus replaces the seeds as what the pointer's "focus" flag marks
    sg.focus = np.array([1])
    assert sg.with_memory([(1, 0, 3, 1.0)]).to_pyg().node_focus.tolist() == [0, 0, 1, 0, 0]


def test_node_features_on_toy_graph():
    kg = toy_kg()
    phi = node_features(Batch.from_data_list([memory_subgraph(kg).to_pyg(), Subgraph.empty().to_pyg()]))
    # columns: is focus (here: the seed), log1p(memory count in), shares an MMKG edge with it
    expected = torch.tensor([[1, 0, 0], [0, 0, 1], [0, np.log1p(3.0), 0], [0, np.log1p(1.0), 0]], dtype=torch.float32)
    torch.testing.assert_close(phi, expected)


def test_retrieval_feature_is_the_best_score_of_a_nodes_triples():
    kg = toy_kg()
    # triples 0 (cat -has-> fur, 0.9) and 2 (scored below 0), then memory edges with counts 3 and 1
    sg = Subgraph.from_triples(kg, [0, 2], [0.9, -0.2], seeds=[0]).with_memory([(0, 1, 1, 3.0), (1, 0, 4, 1.0)])
    g = sg.to_pyg()
    phi = node_features(Batch.from_data_list([g, Subgraph.empty().to_pyg()]), ("retrieval",))[:, 0]
    assert sg.node_ref.tolist() == [0, 2, 3, 1, 4]            # cat, fur, pet, then dog and red from memory
    # cat and fur: 0.9 (cat's -0.2 triple does not lower it); pet: only the -0.2 triple, clipped at 0;
    # dog and red: reached only by memory edges, whose counts (3, 1) are never scores
    torch.testing.assert_close(phi, torch.tensor([0.9, 0.9, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("encoder", ["rgat", "gcn", "none"])
def test_pointer_touches_only_candidates_that_are_nodes(per_example, encoder):
    kg = toy_kg()
    torch.manual_seed(0)
    ptr = GraphPointer(d=6, h=5, num_entities=kg.num_entities)
    for p in ptr.parameters():
        torch.nn.init.normal_(p)
    g = Batch.from_data_list([memory_subgraph(kg).to_pyg(), Subgraph.from_triples(kg, [4], [0.5]).to_pyg()])
    x = torch.randn(g.num_nodes, 5)
    slot = torch.randn(2, 6)
    cand = torch.tensor([4, 3, 1, 2])                         # red, pet, dog, fur
    if per_example:
        cand = torch.stack([cand, torch.tensor([2, 4, 0, 3])])
    bonus, is_node = ptr.bonus(slot, x, g, cand)
    nodes = [{0, 2, 1, 4}, {2, 4}]
    for b in range(2):
        row = cand if cand.dim() == 1 else cand[b]
        for c, e in enumerate(row.tolist()):
            assert (bonus[b, c] != 0) == (e in nodes[b]) == bool(is_node[b, c]), (b, e)
    # the bonus for dog in example 0 is exactly W slot . x_dog + u . phi_dog + prior_dog
    j = 2
    want = ptr.query(slot[0]) @ x[j] + ptr.feature(node_features(g)[j])[0] + ptr.prior.weight[1, 0]
    col = (cand if cand.dim() == 1 else cand[0]).tolist().index(1)
    torch.testing.assert_close(bonus[0, col], want)
    # pointer_scale multiplies the flag and prior terms only
    scaled = GraphPointer(d=6, h=5, num_entities=kg.num_entities, scale=10.0)
    scaled.load_state_dict(ptr.state_dict())
    want10 = ptr.query(slot[0]) @ x[j] + 10 * (ptr.feature(node_features(g)[j])[0] + ptr.prior.weight[1, 0])
    torch.testing.assert_close(scaled.bonus(slot, x, g, cand)[0][0, col], want10)
    # without the per-entity prior: the same bonus less the prior, and no prior table
    bare = GraphPointer(d=6, h=5, num_entities=kg.num_entities, prior=False)
    bare.load_state_dict({k: v for k, v in ptr.state_dict().items() if not k.startswith("prior.")})
    assert bare.prior is None
    torch.testing.assert_close(bare.bonus(slot, x, g, cand)[0][0, col], want - ptr.prior.weight[1, 0])


def test_pointer_loss_only_over_node_candidates():
    bonus = torch.tensor([[2.0, 0.0, 1.0, 0.0], [0.0, 3.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]], requires_grad=True)
    is_node = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    # row 0: gold is a node -> CE over {2, 1}; row 1: gold (col 0) is not a node -> skipped; row 2: no answer
    loss = pointer_loss(bonus, is_node, torch.tensor([2, 0, -100]))
    torch.testing.assert_close(loss, -torch.log_softmax(torch.tensor([2.0, 1.0]), 0)[1])
    loss.backward()
    assert bonus.grad[0, 1] == 0 and bonus.grad[0, 3] == 0 and not bonus.grad[1:].any()
    none = pointer_loss(bonus, is_node, torch.tensor([1, 0, -100]))
    assert none.item() == 0.0 and none.requires_grad


def _model(**cfg):
    kg = toy_kg()
    cfg = {"entity_head": True, **cfg}
    return MRMKG(small_config(**cfg), tiny_llm("llama"), toy_features(kg), entity_names=kg.entity_names,
                 relation_names=kg.relation_names, report=False), kg


def test_zero_init_ranks_exactly_as_without_pointer():
    with_ptr, kg = _model(pointer={})
    plain, _ = _model()
    plain.load_state_dict({k: v for k, v in with_ptr.state_dict().items() if not k.startswith("graph_pointer")},
                          strict=False)
    batch = with_ptr.collate([MRMKGExample("the cat [E0] is a", answer=1, subgraph=memory_subgraph(kg))])
    with_ptr.eval(), plain.eval()
    assert torch.equal(with_ptr.rank(batch), plain.rank(batch))


def test_pointer_learns_to_pick_the_memory_node():
    """The answer is the memory neighbour of the seed; a few steps on the pointer alone find it."""
    m, kg = _model(pointer={"loss_weight": 1.0})
    exs = [MRMKGExample("the cat [E0] is a", answer=1, subgraph=memory_subgraph(kg)),
           MRMKGExample("the dog [E1] is a", answer=3,
                        subgraph=Subgraph.from_triples(kg, [1], [0.8], seeds=[1]).with_memory([(1, 1, 3, 2.0)]))]
    batch = m.collate(exs)
    opt = torch.optim.AdamW(m.graph_pointer.parameters(), lr=0.1)
    m.train()
    for _ in range(30):
        loss = m(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = m(batch)
    assert out.aux_losses["pointer"] < 0.1
    m.eval()
    assert m.rank(batch).argmax(1).tolist() == [1, 3]
    assert m.graph_pointer.feature.weight[0, 1] > 0             # "memory led here" is learnt as evidence


# ---------------------------------------------------------------------------------- copy, node, first
def test_example_copy_marks_the_tail_when_the_question_is_the_example_head():
    kg = toy_kg()
    sg = Subgraph.from_triples(kg, [0], [0.9], seeds=[0])          # cat -has-> fur
    sg.focus = np.array([0])
    plain = sg.with_example(0, 3)                                  # cat : pet :: cat : ?  -> pet
    assert plain.num_nodes == 2 and not plain.copy_mask.any()      # pet is not a node unless asked
    ex = sg.with_example(0, 3, add_copy_node=True)
    assert ex.node_ref.tolist() == [0, 2, 3] and ex.copy_mask.tolist() == [False, False, True]
    assert ex.to_pyg().node_copy.tolist() == [0, 0, 1]
    assert ex.to_dict(kg)["example"] == ["Q1", "Q4"]
    assert ex.with_memory([(0, 1, 1, 1.0)]).copy_mask.tolist() == [False, False, True, False]  # memory keeps it
    # a different question: the example tail is no answer, and no node is added
    other = sg.with_example(1, 2, add_copy_node=True)
    assert other.num_nodes == 2 and not other.copy_mask.any()
    assert Subgraph.empty().to_pyg().node_copy.numel() == 0


def test_named_node_features_and_their_validation():
    from mrmkg.errors import InputError
    from mrmkg.model.config import MRMKGConfig

    kg = toy_kg()
    sg = memory_subgraph(kg).with_example(0, 4, add_copy_node=True)   # red is a memory node already
    sg.focus = np.array([0])
    phi = node_features(Batch.from_data_list([sg.to_pyg()]), ("copy", "node", "focus"))
    torch.testing.assert_close(phi, torch.tensor([[0, 1, 1], [0, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.float32))
    with pytest.raises(ValueError, match="unknown pointer features"):
        GraphPointer(d=4, h=4, num_entities=5, features=("focus", "colour"))
    with pytest.raises(InputError, match=r"model\.pointer\.features"):
        MRMKGConfig(pointer={"features": ["focus", "colour"]})
    with pytest.raises(InputError, match=r"field 'model\.pointer\.features': expected a list"):
        MRMKGConfig.from_dict({"pointer": {"features": "focus,memory"}})
    with pytest.raises(InputError, match=r"model\.pointer\.mode"):
        MRMKGConfig(pointer={"mode": "last"})
    with pytest.raises(InputError, match=r"model\.pointer\.scale"):
        MRMKGConfig(pointer={"scale": 0.0})
    with pytest.raises(InputError, match=r"field 'model\.pointer\.pointer_mode': unknown field; PointerConfig has: features"):
        MRMKGConfig.from_dict({"pointer": {"pointer_mode": "first"}})
    with pytest.raises(InputError, match=r"model\.graph_pointer: the graph pointer's options are one section now, model\.pointer"):
        MRMKGConfig.from_dict({"graph_pointer": True})
    assert MRMKGConfig(pointer={"features": ["node", "copy"]}).pointer.features == ("node", "copy")
    assert MRMKGConfig().pointer is None and MRMKGConfig(pointer={}).pointer == PointerConfig()


def test_frequency_feature_adds_a_learned_multiple_of_log_counts():
    kg = toy_kg()
    g = Batch.from_data_list([memory_subgraph(kg).to_pyg()])              # nodes cat, fur, dog, red
    ptr = GraphPointer(d=3, h=2, num_entities=kg.num_entities, features=("frequency",), scale=3.0)
    assert ptr.feature is None and ptr.frequency_weight == 0
    cand = torch.arange(kg.num_entities)
    slot, x = torch.zeros(1, 3), torch.zeros(g.num_nodes, 2)
    with pytest.raises(ValueError, match="set_frequency"):
        ptr.bonus(slot, x, g, cand)
    counts = torch.tensor([0.0, 1.0, 3.0, 7.0, 2.0])
    ptr.set_frequency(counts)
    ptr.frequency_weight.data.fill_(2.0)
    bonus, is_node = ptr.bonus(slot, x, g, cand)
    want = torch.where(is_node[0], 3.0 * 2.0 * torch.log1p(counts), torch.zeros(5))
    torch.testing.assert_close(bonus[0], want)
    assert "frequency" not in ptr.state_dict()                           # task data, not a saved weight
    with pytest.raises(ValueError, match="counts >= 0"):
        ptr.set_frequency(torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="expected 5 counts"):
        ptr.set_frequency([1.0])


def test_relation_term_sums_the_weights_of_edges_to_the_focus():
    kg = toy_kg()
    sg = memory_subgraph(kg)          # cat -has(0)-> fur, memory cat -is a(1)-> dog, dog -has(0)-> red
    sg.focus = np.array([1])          # focus dog: cat (dog <-is a- cat), red (dog -has-> red)
    g = Batch.from_data_list([sg.to_pyg()])
    R = 4
    ptr = GraphPointer(d=3, h=2, num_entities=5, features=("relation",), num_relations=R)
    ptr.relation.weight.data = torch.arange(2.0 * R).unsqueeze(1) + 1     # forward r -> r + 1, reversed r -> R + r + 1
    assert ptr.feature is None
    # cat: edge cat -is a(1)-> dog into the focus, i.e. reversed: R + 1 + 1; fur: no edge to dog; red: 0 + 1
    torch.testing.assert_close(ptr._relation_term(g, lambda t: ptr.relation(t).squeeze(-1)),
                               torch.tensor([R + 2.0, 0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="num_relations"):
        GraphPointer(d=3, h=2, num_entities=5, features=("relation",))


def test_relation_odds_weighs_a_fixed_table_by_one_learned_weight():
    kg = toy_kg()
    sg = memory_subgraph(kg)
    sg.focus = np.array([1])          # focus dog, as above: cat reaches it by "is a" reversed, red by "has"
    g = Batch.from_data_list([sg.to_pyg()])
    R = 4
    ptr = GraphPointer(d=3, h=2, num_entities=5, features=("relation_odds",), scale=3.0, num_relations=R)
    assert ptr.relation is None and ptr.relation_odds_weight == 0
    cand = torch.arange(5)
    slot, x = torch.zeros(1, 3), torch.zeros(g.num_nodes, 2)
    with pytest.raises(ValueError, match="set_relation_odds"):
        ptr.bonus(slot, x, g, cand)
    table = torch.tensor([0.5, -1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0])   # has: 0.5, is a reversed: 2.0
    ptr.set_relation_odds(table)
    ptr.relation_odds_weight.data.fill_(0.25)
    bonus, is_node = ptr.bonus(slot, x, g, cand)
    # entities: cat 0 (node 0, reversed "is a": 2.0), fur 2 (no edge to dog), dog 1 (the focus), red 4 ("has": 0.5)
    torch.testing.assert_close(bonus[0], 3.0 * 0.25 * torch.tensor([2.0, 0.0, 0.0, 0.0, 0.5]))
    assert is_node[0].tolist() == [True, True, True, False, True]
    assert "relation_odds" not in ptr.state_dict()                       # task data, not a saved weight
    with pytest.raises(ValueError, match="expected 8 finite values"):
        ptr.set_relation_odds(torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        ptr.set_relation_odds(torch.full((8,), float("inf")))
    with pytest.raises(ValueError, match="num_relations"):
        GraphPointer(d=3, h=2, num_entities=5, features=("relation_odds",))
    # a start weight is the term's effective weight: the table x 1 from the first step, whatever the scale
    started = GraphPointer(d=3, h=2, num_entities=5, features=("relation_odds",), scale=3.0, num_relations=R,
                           odds_init=1.0)
    started.set_relation_odds(table)
    torch.testing.assert_close(started.bonus(slot, x, g, cand)[0][0], torch.tensor([2.0, 0.0, 0.0, 0.0, 0.5]))
    assert all(p.abs().sum() == 0 for n, p in started.named_parameters() if n != "relation_odds_weight")


def test_relation_at_eval_odds_replaces_the_learned_weights_only_in_evaluation():
    kg = toy_kg()
    sg = memory_subgraph(kg)
    sg.focus = np.array([1])          # focus dog: cat by "is a" reversed, red by "has"
    g = Batch.from_data_list([sg.to_pyg()])
    R = 4
    ptr = GraphPointer(d=3, h=2, num_entities=5, features=("relation",), scale=3.0, num_relations=R,
                       relation_at_eval="odds")
    ptr.relation.weight.data = torch.arange(2.0 * R).unsqueeze(1) + 1
    assert ptr.needs_relation_odds and not GraphPointer(d=3, h=2, num_entities=5, features=("relation",),
                                                         num_relations=R).needs_relation_odds
    cand, slot, x = torch.arange(5), torch.zeros(1, 3), torch.zeros(g.num_nodes, 2)
    learned = 3.0 * torch.tensor([R + 2.0, 0.0, 0.0, 0.0, 1.0])            # cat: reversed "is a", red: "has"
    torch.testing.assert_close(ptr.bonus(slot, x, g, cand)[0][0], learned)    # training: the learned weights
    ptr.eval()
    with pytest.raises(ValueError, match="set_relation_odds"):
        ptr.bonus(slot, x, g, cand)
    ptr.set_relation_odds(torch.tensor([0.5, -1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0]))
    torch.testing.assert_close(ptr.bonus(slot, x, g, cand)[0][0], torch.tensor([2.0, 0.0, 0.0, 0.0, 0.5]))  # weight 1
    ptr.train()
    torch.testing.assert_close(ptr.bonus(slot, x, g, cand)[0][0], learned)


@pytest.mark.parametrize("value,features,needle", [("mean", ["relation"], "expected learned or odds"),
                                                   ("odds", ["focus", "memory"], "has none")])
def test_relation_at_eval_validation(value, features, needle):
    from mrmkg.errors import InputError
    from mrmkg.model import MRMKGConfig

    with pytest.raises(InputError, match=needle):
        MRMKGConfig(pointer={"relation_at_eval": value, "features": features})


def _record(obj, name: str) -> list:
    """Wrap method ``name`` of ``obj`` so every return value is appended to the returned list."""
    seen, method = [], getattr(obj, name)
    setattr(obj, name, lambda *a: seen.append(method(*a)) or seen[-1])
    return seen


def _randomise(ptr, seed=0):
    g = torch.Generator().manual_seed(seed)
    for p in ptr.parameters():
        p.data.copy_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("randomised", [False, True])
def test_first_mode_puts_nodes_first_in_pointer_order(randomised):
    m, kg = _model(pointer={"mode": "first", "features": ["focus", "memory", "near", "copy", "node"]})
    if randomised:
        _randomise(m.graph_pointer)
    seen = _record(m.graph_pointer, "bonus")
    exs = [MRMKGExample("the cat [E0] is a", answer=1, subgraph=memory_subgraph(kg)),
           MRMKGExample("the red [E4] is a", answer=2, subgraph=Subgraph.from_triples(kg, [4], [0.5]))]
    m.eval()
    scores = m.rank(m.collate(exs))
    bonus, is_node = seen[-1]
    for b, ex in enumerate(exs):
        inside = sorted(set(ex.subgraph.node_ref.tolist()))
        outside = [c for c in range(scores.shape[1]) if c not in inside]
        assert is_node[b, inside].all() and not is_node[b, outside].any()
        assert scores[b, inside].min() > scores[b, outside].max()
        assert len(set(scores[b, inside].tolist())) == len(inside)      # no ties, even for a fresh pointer
        if randomised:                                                   # among nodes: the pointer's order
            assert torch.equal(scores[b, inside].argsort(), bonus[b, inside].argsort())


def test_first_mode_loss_is_the_head_and_the_pointer_cross_entropy():
    m, kg = _model(pointer={"mode": "first"}, align_weight=0.0)
    _randomise(m.graph_pointer, seed=1)
    seen, head_scores = _record(m.graph_pointer, "bonus"), _record(m.entity_head, "score")
    batch = m.collate([MRMKGExample("the cat [E0] is a", answer=1, subgraph=memory_subgraph(kg)),
                       MRMKGExample("the red [E4] is a", answer=3, subgraph=Subgraph.from_triples(kg, [4], [0.5]))])
    m.eval()
    out = m(batch)
    bonus, is_node = seen[-1]
    head = head_scores[-1].float()
    want = torch.nn.functional.cross_entropy(head, batch.answer_pos) + pointer_loss(bonus, is_node, batch.answer_pos)
    torch.testing.assert_close(out.rank_loss, want)
    assert not is_node[1, 3]                      # row 1's answer is no node: only the head's loss sees it


def test_round_trip_keeps_pointer_mode_and_features(tmp_path):
    m, kg = _model(pointer={"mode": "first", "features": ["memory", "copy", "relation", "node"], "scale": 3.0})
    _randomise(m.graph_pointer)
    m.save_pretrained(tmp_path / "c")
    m2 = MRMKG.from_pretrained(tmp_path / "c", llm=m.llm, features=m.features)
    assert m2.config.pointer == m.config.pointer and m2.config.pointer.mode == "first"
    assert m2.graph_pointer.mode == "first" and m2.graph_pointer.features == ("memory", "copy", "node")
    assert m2.graph_pointer.relation is not None and m2.graph_pointer.scale == 3.0
    batch = m.collate([MRMKGExample("the cat [E0] is a", answer=1, subgraph=memory_subgraph(kg))])
    m.eval(), m2.eval()
    assert torch.equal(m.rank(batch), m2.rank(batch))
