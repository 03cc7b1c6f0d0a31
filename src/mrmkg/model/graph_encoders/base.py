"""What every graph encoder shares (paper Eq. 3, ``X_K = f(G)``) and the registry that names them.

Node initialisation (all encoders)::

    x_v = Linear(d_t -> h)(entity_emb[node_ref_v])   for entity nodes (node_kind 0)
    x_v = Linear(d_v -> h)(image_emb[node_ref_v])    for image nodes  (node_kind 1)

With ``reverse_edges`` (default) every edge ``u -> v`` of type ``r`` gets a twin ``v -> u`` of type
``r + R`` so heads also receive messages (retrieval stores triples head -> tail only); relation-aware
encoders therefore see ``2R`` relation types. Encoders that use edge features get
``e_uv = Linear(d_t -> h_e)(relation_emb[edge_type_uv]) + dir`` (``dir`` a learned vector for forward vs
reverse edges; :meth:`GraphEncoder.add_edge_features`).

Every encoder is ``gnn_layers`` deep with residual connections ``x <- x + dropout(gelu(conv(x)))``, so a
node without incoming edges keeps its initial feature. A subclass appends its layers to ``self.layers``
and says how one layer is called (:meth:`GraphEncoder.conv`); ``@register_graph_encoder(name)``
(mrmkg.model.graph_encoders) makes it buildable by name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from mrmkg.model.features import KGFeatures

if TYPE_CHECKING:  # annotations only: the config validates names against this package's registry
    from mrmkg.model.config import MRMKGConfig

ENTITY, IMAGE = 0, 1

class GraphEncoder(nn.Module):
    """Encode batched subgraphs into per-node embeddings ``X_K [N, h]``.

    Args:
        config: uses ``gnn_*``, ``reverse_edges``, ``dropout``.
        text_dim: ``d_t`` of entity/relation features. vision_dim: ``d_v`` of image-node features (0 = none).
        num_relations: R, relation types of the KG including "image of".
    """

    name = ""   #: the registered name (set by ``register_graph_encoder``)

    def __init__(self, config: MRMKGConfig, text_dim: int, vision_dim: int, num_relations: int):
        super().__init__()
        self.reverse_edges = config.reverse_edges
        self.num_relations = num_relations
        self.dropout = config.dropout
        self.hidden = config.gnn_hidden
        self.entity_proj = nn.Linear(text_dim, self.hidden)
        self.image_proj = nn.Linear(vision_dim, self.hidden) if vision_dim > 0 else None
        self.layers = nn.ModuleList()
        self.relation_proj = None   # set by encoders that use edge features (add_edge_features)

    def add_edge_features(self, text_dim: int, relation_dim: int) -> None:
        """Give this encoder relation edge features ``[E', h_e]`` (``relation_proj`` and ``direction``)."""
        self.relation_proj = nn.Linear(text_dim, relation_dim)
        self.direction = nn.Parameter(torch.zeros(2, relation_dim))

    @property
    def num_edge_types(self) -> int:
        """Relation types the layers see: ``R``, or ``2R`` with reverse edges."""
        return self.num_relations * (2 if self.reverse_edges else 1)

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
        """Add reverse edges (if configured) and build edge features: ``([2, E'], [E'], [E', h_e] | None)``."""
        direction = torch.zeros_like(edge_type)
        if self.reverse_edges:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
            direction = torch.cat([direction, torch.ones_like(edge_type)])
            edge_type = torch.cat([edge_type, edge_type + self.num_relations])
        attr = None
        if self.relation_proj is not None:
            base = edge_type % self.num_relations
            attr = self.relation_proj(features.relation_emb[base]) + self.direction[direction]
        return edge_index, edge_type, attr

    def conv(self, layer: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor,
             edge_attr: torch.Tensor | None) -> torch.Tensor:
        """One message-passing layer: ``x [N, h] -> [N, h]``."""
        raise NotImplementedError

    def forward(self, graph, features: KGFeatures) -> torch.Tensor:
        """``graph``: PyG Batch/Data with ``node_kind [N]``, ``node_ref [N]``, ``edge_index [2,E]``,
        ``edge_type [E]``. Returns ``X_K [N, h]``."""
        x = self.init_nodes(graph.node_kind, graph.node_ref, features)
        if not self.layers or x.shape[0] == 0:
            return x
        edge_index, edge_type, attr = self.edges(graph.edge_index, graph.edge_type, features)
        for layer in self.layers:
            y = self.conv(layer, x, edge_index, edge_type, attr)
            x = x + F.dropout(F.gelu(y.to(x.dtype)), self.dropout, self.training)
        return x
