"""Named node features of the graph pointer: ``phi_j`` in :mod:`mrmkg.model.extensions.pointer`.

Each feature is ``fn(graph) -> [N]`` on a PyG batch of subgraphs (``node_focus``, ``edge_memory``,
``edge_score``, ``node_copy``: the MARS analogy memory and copy node of ``mrmkg.kg.subgraph``);
``PointerConfig.features`` picks the columns by name.
"""
from __future__ import annotations

import torch

from mrmkg.kg.subgraph import ENTITY


def _focus(graph) -> torch.Tensor:
    return graph.node_focus.float()


def _memory(graph) -> torch.Tensor:
    mem = graph.edge_memory.bool()
    counts = torch.zeros(graph.node_kind.shape[0], device=mem.device)
    return torch.log1p(counts.index_add(0, graph.edge_index[1][mem], graph.edge_score[mem].float()))


def _near(graph) -> torch.Tensor:
    src, dst = graph.edge_index
    focus = graph.node_focus
    kg_edge = ~graph.edge_memory.bool() & (graph.node_kind[src] == ENTITY) & (graph.node_kind[dst] == ENTITY)
    near = torch.zeros(graph.node_kind.shape[0], device=focus.device)
    s, t = src[kg_edge], dst[kg_edge]
    near[t[focus[s] > 0]] = 1.0
    near[s[focus[t] > 0]] = 1.0
    return near


def _copy(graph) -> torch.Tensor:
    copy = getattr(graph, "node_copy", None)  # graphs built before ``Subgraph.example`` existed have none
    return torch.zeros(graph.node_kind.shape[0], device=graph.node_kind.device) if copy is None else copy.float()


def _node(graph) -> torch.Tensor:
    return torch.ones(graph.node_kind.shape[0], device=graph.node_kind.device)


def _retrieval(graph) -> torch.Tensor:
    # the best retrieval score among the MMKG triples that brought j in (memory edges carry counts, not
    # scores; a node only memory edges reach gets 0, as does one whose triples all scored below 0)
    src, dst = graph.edge_index
    kg_edge = ~graph.edge_memory.bool()
    score = graph.edge_score.float()[kg_edge]
    out = torch.zeros(graph.node_kind.shape[0], device=src.device)
    out = out.scatter_reduce(0, src[kg_edge], score, reduce="amax")
    return out.scatter_reduce(0, dst[kg_edge], score, reduce="amax")


#: pointer feature name -> ``fn(graph) -> [N]``; ``PointerConfig.features`` picks the columns
FEATURES = {"focus": _focus, "memory": _memory, "near": _near, "copy": _copy, "node": _node,
            "retrieval": _retrieval}
DEFAULT_FEATURES = ("focus", "memory", "near")
#: every name ``PointerConfig.features`` accepts: the graph's columns, the learned ``relation``
#: term and the task-supplied ``relation_odds`` and ``frequency`` terms
ALL_FEATURES = (*FEATURES, "relation", "relation_odds", "frequency")


def node_features(graph, names=DEFAULT_FEATURES) -> torch.Tensor:
    """``phi [N, len(names)]`` for a PyG batch with ``node_focus``, ``edge_memory``, ``edge_score``
    (and ``node_copy`` for ``copy``), one column per name of :data:`FEATURES`."""
    return torch.stack([FEATURES[n](graph) for n in names], dim=1)
