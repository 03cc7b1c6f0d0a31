"""Cross-modal alignment (paper Eq. 6): a Euclidean triplet loss between image nodes and the
entity (text) nodes they depict.

For every subgraph of a batch:

* anchor ``a``: an image node (node_kind 1) with an "image of" edge to an entity node of the same
  subgraph; up to ``M`` anchors are sampled per subgraph with a seeded ``torch.Generator``;
* positive ``p``: that entity node;
* negatives ``n``: every *other* entity node of the same subgraph (anchors without one are skipped).

``hinge(a, n) = max(d(a, p) - d(a, n) + alpha, 0)`` with ``d`` the Euclidean distance. Negatives are
aggregated per anchor by ``"mean"`` (average hinge over all negatives) or ``"hardest"`` (the closest
negative only); anchors are *summed* within a subgraph (Eq. 6 sums over i = 1..M) and subgraphs are
averaged over those of the batch that have at least one usable anchor (0 when none has).

Which embeddings: the caller passes per-node rows -- graph-encoder outputs ``X_K`` or the knowledge
adapter's linear outputs ``H_K`` (``config.align_on``); Eq. 5's ``H'_K`` has one row per query
token, not per node, so it cannot be used.
"""
from __future__ import annotations

import torch

ENTITY, IMAGE = 0, 1


def image_entity_pairs(node_kind: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """``[2, A]`` (image node, its entity node) from edges image -> entity, one per image node."""
    src, dst = edge_index
    keep = (node_kind[src] == IMAGE) & (node_kind[dst] == ENTITY)
    src, dst = src[keep], dst[keep]
    if src.numel() == 0:
        return edge_index.new_zeros(2, 0)
    # first edge per image node (an image belongs to one entity)
    order = torch.argsort(src, stable=True)
    src, dst = src[order], dst[order]
    first = torch.ones_like(src, dtype=torch.bool)
    first[1:] = src[1:] != src[:-1]
    return torch.stack([src[first], dst[first]])


def sample_anchors(pairs: torch.Tensor, batch: torch.Tensor, max_per_graph: int,
                   generator: torch.Generator | None) -> torch.Tensor:
    """Keep at most ``max_per_graph`` random pairs per subgraph: ``[2, A] -> [2, A']``."""
    if pairs.shape[1] == 0 or max_per_graph <= 0:
        return pairs[:, :0]
    g = batch[pairs[0]]
    key = torch.rand(pairs.shape[1], generator=generator).to(pairs.device)
    order = torch.argsort(g.double() * 2.0 + key.double())  # group by graph, random within
    g_sorted = g[order]
    idx = torch.arange(g_sorted.numel(), device=pairs.device)
    start = torch.ones_like(g_sorted, dtype=torch.bool)
    start[1:] = g_sorted[1:] != g_sorted[:-1]
    group_start = torch.cummax(torch.where(start, idx, torch.zeros_like(idx)), dim=0).values
    rank = idx - group_start
    chosen = order[rank < max_per_graph]
    return pairs[:, torch.sort(chosen).values]


def triplet_alignment_loss(x: torch.Tensor, node_kind: torch.Tensor, edge_index: torch.Tensor,
                           batch: torch.Tensor, margin: float = 1.0, max_anchors: int = 4,
                           negatives: str = "mean", generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 6 over a batch of subgraphs.

    Args:
        x: ``[N, k]`` per-node embeddings. node_kind: ``[N]`` (0 entity, 1 image).
        edge_index: ``[2, E]`` (head -> tail; image-of edges go image -> entity).
        batch: ``[N]`` subgraph index of every node.
    Returns a scalar fp32 loss (0 when no subgraph has an anchor with a negative).
    """
    if negatives not in ("mean", "hardest"):
        raise ValueError(f"negatives must be 'mean' or 'hardest', not {negatives!r}")
    zero = x.float().sum() * 0.0
    pairs = sample_anchors(image_entity_pairs(node_kind, edge_index), batch, max_anchors, generator)
    if pairs.shape[1] == 0:
        return zero
    xf = x.float()
    a, p = pairs
    ga = batch[a]

    def dist(u, v):  # Euclidean, with an epsilon so the gradient at 0 is finite
        return ((u - v).pow(2).sum(-1) + 1e-12).sqrt()

    d_ap = dist(xf[a], xf[p])                                   # [A]
    d_an = dist(xf[a][:, None, :], xf[None, :, :])              # [A, N]
    nodes = torch.arange(x.shape[0], device=x.device)
    neg = (batch[None, :] == ga[:, None]) & (node_kind[None, :] == ENTITY) & (nodes[None, :] != p[:, None])
    has_neg = neg.any(dim=1)
    if negatives == "mean":
        hinge = torch.relu(d_ap[:, None] - d_an + margin) * neg
        per_anchor = hinge.sum(1) / neg.sum(1).clamp_min(1)
    else:
        closest = d_an.masked_fill(~neg, float("inf")).min(dim=1).values
        per_anchor = torch.relu(d_ap - torch.where(has_neg, closest, d_ap) + margin) * has_neg
    num_graphs = int(batch.max().item()) + 1 if batch.numel() else 0
    per_graph = torch.zeros(num_graphs, device=x.device).index_add(0, ga, per_anchor)
    used = torch.zeros(num_graphs, dtype=torch.bool, device=x.device).index_fill(0, ga[has_neg], True)
    if not used.any():
        return zero
    return per_graph[used].mean() + zero
