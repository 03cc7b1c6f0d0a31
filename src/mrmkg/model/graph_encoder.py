"""The knowledge-graph encoder (paper Eq. 3, ``X_K = f_RGAT(G)``) and its Table 7 alternatives.

Node initialisation (all variants)::

    x_v = Linear(d_t -> h)(entity_emb[node_ref_v])   for entity nodes (node_kind 0)
    x_v = Linear(d_v -> h)(image_emb[node_ref_v])    for image nodes  (node_kind 1)

Relations enter as edge features: ``e_uv = Linear(d_t -> h_e)(relation_emb[edge_type_uv]) + dir``,
where ``dir`` is a learned vector for forward vs reverse edges. With ``reverse_edges`` (default)
every edge ``u -> v`` of type ``r`` gets a twin ``v -> u`` of type ``r + R`` so heads also receive
messages (retrieval stores triples head -> tail only); RGAT therefore has ``2R`` relation types.

Variants (``config.graph_encoder``), each ``gnn_layers`` deep with residual connections
``x <- x + dropout(gelu(conv(x)))`` (a node without incoming edges keeps its initial feature):

* ``rgat``: PyG ``RGATConv`` (Busbridge et al. 2019; across-relation additive attention) with
  ``edge_dim = h_e``. Per-relation weights use a block-diagonal decomposition
  (``gnn_num_blocks``, default 8: ``8 * (h/8)^2`` weights per relation type, so MarKG's 386
  directed types cost ~3.2M parameters per layer at h=256 instead of 25M) or a basis
  decomposition (``gnn_num_bases``).
* ``gat``: PyG ``GATConv`` with ``edge_dim`` (relation-aware only through edge features).
* ``gcn``: PyG ``GCNConv`` (relation-blind).
* ``none``: node initialisation only (no message passing).

Output: ``X_K [N_total, h]`` for all nodes of a PyG ``Batch``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrmkg.model.config import MRMKGConfig
from mrmkg.model.features import KGFeatures

ENTITY, IMAGE = 0, 1


class GraphEncoder(nn.Module):
    """Encode batched subgraphs into per-node embeddings.

    Args:
        config: uses ``graph_encoder``, ``gnn_*``, ``reverse_edges``, ``dropout``.
        text_dim: ``d_t`` of entity/relation features. vision_dim: ``d_v`` of image-node features (0 = none).
        num_relations: R, relation types of the KG including "image of".
    """

    def __init__(self, config: MRMKGConfig, text_dim: int, vision_dim: int, num_relations: int):
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv, RGATConv

        h, he = config.gnn_hidden, config.gnn_relation_dim
        self.kind = config.graph_encoder
        self.reverse_edges = config.reverse_edges
        self.num_relations = num_relations
        self.dropout = config.dropout
        self.hidden = h
        self.entity_proj = nn.Linear(text_dim, h)
        self.image_proj = nn.Linear(vision_dim, h) if vision_dim > 0 else None
        self.layers = nn.ModuleList()
        if self.kind in ("rgat", "gat"):
            self.relation_proj = nn.Linear(text_dim, he)
            self.direction = nn.Parameter(torch.zeros(2, he))
        n_types = num_relations * (2 if self.reverse_edges else 1)
        heads = config.gnn_heads
        for _ in range(config.gnn_layers if self.kind != "none" else 0):
            if self.kind == "rgat":
                blocks = config.gnn_num_blocks or None
                bases = None if blocks else (config.gnn_num_bases or None)
                conv = RGATConv(h, h // heads, n_types, num_bases=bases, num_blocks=blocks,
                                heads=heads, concat=True, edge_dim=he)
                # PyG 2.8's reset_parameters computes l2's init but discards it, leaving
                # torch.empty garbage (sometimes NaN) that breaks determinism of saved weights.
                with torch.no_grad():
                    conv.l2.fill_(1.0 / conv.out_channels)
            elif self.kind == "gat":
                conv = GATConv(h, h // heads, heads=heads, concat=True, edge_dim=he, add_self_loops=True)
            else:
                conv = GCNConv(h, h, add_self_loops=True)
            self.layers.append(conv)

    def init_nodes(self, node_kind: torch.Tensor, node_ref: torch.Tensor, features: KGFeatures) -> torch.Tensor:
        """``[N] kinds, [N] refs -> [N, h]`` initial node features."""
        ent = (node_kind == ENTITY).nonzero().squeeze(1)
        img = (node_kind == IMAGE).nonzero().squeeze(1)
        xe = self.entity_proj(features.entity_emb[node_ref[ent]])
        x = xe.new_zeros(node_kind.shape[0], self.hidden).index_copy(0, ent, xe)
        if img.numel():
            if self.image_proj is None:
                raise ValueError("subgraph has image nodes but the KG features have no image embeddings")
            x = x.index_copy(0, img, self.image_proj(features.image_emb[node_ref[img]]).to(x.dtype))
        return x

    def edges(self, edge_index: torch.Tensor, edge_type: torch.Tensor, features: KGFeatures):
        """Add reverse edges (if configured) and build edge features ``[E', h_e]``."""
        direction = torch.zeros_like(edge_type)
        if self.reverse_edges:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
            direction = torch.cat([direction, torch.ones_like(edge_type)])
            edge_type = torch.cat([edge_type, edge_type + self.num_relations])
        attr = None
        if self.kind in ("rgat", "gat"):
            base = edge_type % self.num_relations
            attr = self.relation_proj(features.relation_emb[base]) + self.direction[direction]
        return edge_index, edge_type, attr

    def forward(self, graph, features: KGFeatures) -> torch.Tensor:
        """``graph``: PyG Batch/Data with ``node_kind [N]``, ``node_ref [N]``, ``edge_index [2,E]``,
        ``edge_type [E]``. Returns ``X_K [N, h]``."""
        x = self.init_nodes(graph.node_kind, graph.node_ref, features)
        if not self.layers or x.shape[0] == 0:
            return x
        edge_index, edge_type, attr = self.edges(graph.edge_index, graph.edge_type, features)
        for conv in self.layers:
            if self.kind == "rgat":
                y = conv(x, edge_index, edge_type, edge_attr=attr)
            elif self.kind == "gat":
                y = conv(x, edge_index, edge_attr=attr)
            else:
                y = conv(x, edge_index)
            x = x + F.dropout(F.gelu(y.to(x.dtype)), self.dropout, self.training)
        return x
