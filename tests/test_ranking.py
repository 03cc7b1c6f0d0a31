"""Honest ranking: MarT's tie rule (stable descending sort), tied golds counted, non-finite scores refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrmkg.errors import InputError
from mrmkg.metrics.ranking import NonFiniteScoreError, gold_ranks, ranking_metrics


def test_ties_rank_as_the_golds_position_after_a_stable_descending_sort():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1],   # gold 0: 0.9 higher, tie with col 2 after it -> 2
                           [0.5, 0.9, 0.5, 0.1],   # gold 2: 0.9 higher, tie with col 0 before it -> 3
                           [0.3, 0.3, 0.3, 0.3],   # gold 3 of four tied -> 4
                           [0.1, 0.2, 0.3, 0.4]])  # no tie, gold lowest -> 4
    gold = [0, 2, 3, 0]
    ranks, tied = gold_ranks(scores, gold, return_ties=True)
    assert ranks.tolist() == [2, 3, 4, 4]
    assert tied.tolist() == [True, True, True, False]
    # the same as MarT's double sort, made stable
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    pos = torch.sort(order, dim=1, stable=True).indices
    assert ranks.tolist() == (pos[torch.arange(4), torch.tensor(gold)] + 1).tolist()
    m = ranking_metrics(ranks, tied)
    assert m["tied"] == 3 and m["n"] == 4
    assert m["hits@1"] == 0.0 and m["hits@3"] == pytest.approx(2 / 4)
    assert "tied" not in ranking_metrics(ranks)


def test_random_scores_match_a_stable_sort():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, size=(50, 7)).astype(np.float32)  # many ties
    g = rng.integers(0, 7, size=50)
    order = np.argsort(-s, axis=1, kind="stable")
    expect = [int(np.flatnonzero(order[i] == g[i])[0]) + 1 for i in range(50)]
    assert gold_ranks(s, g).tolist() == expect


def test_masked_minus_inf_candidates_are_allowed():
    s = torch.tensor([[0.2, float("-inf"), 0.7]])
    assert gold_ranks(s, [0]).tolist() == [2]


@pytest.mark.parametrize("bad, what", [(float("nan"), "NaN"), (float("inf"), r"\+inf")])
def test_non_finite_scores_name_the_example(bad, what):
    s = torch.tensor([[0.1, 0.2], [0.3, bad]])
    with pytest.raises(NonFiniteScoreError, match=rf"example 'q2' \(row 1\).*{what}") as e:
        gold_ranks(s, [0, 0], ids=["q1", "q2"])
    assert isinstance(e.value, InputError) and e.value.row == 1 and e.value.example_id == "q2"
    with pytest.raises(NonFiniteScoreError, match="row 1"):
        gold_ranks(s, [0, 0])


def test_a_masked_gold_ranks_after_every_allowed_candidate():
    s = torch.tensor([[float("-inf"), 0.1, float("-inf"), 0.3]])
    assert gold_ranks(s, [0]).tolist() == [3] and gold_ranks(s, [2]).tolist() == [4]
