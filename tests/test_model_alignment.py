"""Cross-modal triplet alignment loss (Eq. 6) on toy cases."""
from __future__ import annotations

import pytest
import torch

from mrmkg.model.alignment import image_entity_pairs, sample_anchors, triplet_alignment_loss

# one subgraph: entities 0,1,2 and image nodes 3 (of 0), 4 (of 1)
KIND = torch.tensor([0, 0, 0, 1, 1])
EDGES = torch.tensor([[0, 1, 3, 4], [1, 2, 0, 1]])
BATCH = torch.zeros(5, dtype=torch.long)


def separated():
    x = torch.tensor([[0.0, 0], [10, 0], [0, 10], [0, 0], [10, 0]])  # images sit on their entities
    return x


@pytest.mark.parametrize("neg", ["mean", "hardest"])
def test_zero_when_perfectly_separated(neg):
    assert triplet_alignment_loss(separated(), KIND, EDGES, BATCH, margin=1.0, negatives=neg).item() == 0.0


@pytest.mark.parametrize("neg", ["mean", "hardest"])
def test_positive_otherwise_and_gradients(neg):
    x = separated()
    x[3] = torch.tensor([10.0, 0])  # image of entity 0 sits on entity 1
    x.requires_grad_(True)
    loss = triplet_alignment_loss(x, KIND, EDGES, BATCH, margin=1.0, negatives=neg)
    assert loss.item() > 0
    loss.backward()
    assert x.grad[3].abs().sum() > 0


def test_exact_value_and_hardest_at_least_mean():
    x = torch.tensor([[0.0, 0], [3, 0], [0, 4], [1, 0], [3, 0]])
    # anchor 3: d_ap=1, d_an = 2 (node1), sqrt(17) (node2); anchor 4: d_ap=0, d_an=3, 5
    m = 2.5
    a3 = [max(1 - 2 + m, 0), max(1 - 17 ** 0.5 + m, 0)]
    a4 = [max(0 - 3 + m, 0), max(0 - 5 + m, 0)]
    expect_mean = sum(a3) / 2 + sum(a4) / 2
    got = triplet_alignment_loss(x, KIND, EDGES, BATCH, margin=m, negatives="mean")
    assert got.item() == pytest.approx(expect_mean, rel=1e-5)
    hard = triplet_alignment_loss(x, KIND, EDGES, BATCH, margin=m, negatives="hardest")
    assert hard.item() == pytest.approx(max(a3) + max(a4), rel=1e-5)
    assert hard.item() >= got.item()


def test_no_images_or_no_negatives_gives_zero():
    x = torch.randn(3, 2, requires_grad=True)
    assert triplet_alignment_loss(x, torch.tensor([0, 0, 0]), torch.tensor([[0, 1], [1, 2]]), torch.zeros(3, dtype=torch.long)).item() == 0
    # an image whose entity is the only entity: no negative
    x = torch.randn(2, 2)
    assert triplet_alignment_loss(x, torch.tensor([0, 1]), torch.tensor([[1], [0]]), torch.zeros(2, dtype=torch.long)).item() == 0


def test_anchor_sampling_is_seeded_and_capped():
    pairs = torch.tensor([[10, 11, 12, 13, 14, 15], [0, 1, 2, 5, 6, 7]])
    batch = torch.zeros(20, dtype=torch.long)
    batch[13:] = 1
    a = sample_anchors(pairs, batch, 2, torch.Generator().manual_seed(0))
    b = sample_anchors(pairs, batch, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape[1] == 4
    assert (batch[a[0]] == 0).sum() == 2 and (batch[a[0]] == 1).sum() == 2
    assert sample_anchors(pairs, batch, 10, None).shape[1] == 6


def test_pairs_found_per_image_node():
    p = image_entity_pairs(KIND, EDGES)
    assert p.tolist() == [[3, 4], [0, 1]]


def test_subgraphs_do_not_share_negatives():
    # two subgraphs with one entity + its image each: no negatives within either -> 0
    kind = torch.tensor([0, 1, 0, 1])
    edges = torch.tensor([[1, 3], [0, 2]])
    batch = torch.tensor([0, 0, 1, 1])
    x = torch.zeros(4, 2)
    assert triplet_alignment_loss(x, kind, edges, batch).item() == 0
