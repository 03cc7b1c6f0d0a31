"""``gcn`` (paper Table 7): PyG ``GCNConv``, relation-blind (edge types and features unused)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mrmkg.model.graph_encoders import register_graph_encoder
from mrmkg.model.graph_encoders.base import GraphEncoder

if TYPE_CHECKING:
    from mrmkg.model.config import MRMKGConfig


@register_graph_encoder("gcn")
class GCNEncoder(GraphEncoder):
    """``X_K [N, h]``: ``gnn_layers`` residual GCNConv layers."""

    def __init__(self, config: MRMKGConfig, text_dim: int, vision_dim: int, num_relations: int):
        super().__init__(config, text_dim, vision_dim, num_relations)
        from torch_geometric.nn import GCNConv  # heavy import, only when built

        for _ in range(config.gnn_layers):
            self.layers.append(GCNConv(config.gnn_hidden, config.gnn_hidden, add_self_loops=True))

    def conv(self, layer, x, edge_index, edge_type, edge_attr):
        return layer(x, edge_index)
