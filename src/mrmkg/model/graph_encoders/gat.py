"""``gat`` (paper Table 7): PyG ``GATConv`` with edge features, relation-aware only through them."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mrmkg.model.graph_encoders import register_graph_encoder
from mrmkg.model.graph_encoders.base import GraphEncoder

if TYPE_CHECKING:
    from mrmkg.model.config import MRMKGConfig


@register_graph_encoder("gat")
class GATEncoder(GraphEncoder):
    """``X_K [N, h]``: ``gnn_layers`` residual GATConv layers of ``gnn_heads`` concatenated heads."""

    def __init__(self, config: MRMKGConfig, text_dim: int, vision_dim: int, num_relations: int):
        super().__init__(config, text_dim, vision_dim, num_relations)
        from torch_geometric.nn import GATConv  # heavy import, only when built

        h, heads = config.gnn_hidden, config.gnn_heads
        self.add_edge_features(text_dim, config.gnn_relation_dim)
        for _ in range(config.gnn_layers):
            self.layers.append(GATConv(h, h // heads, heads=heads, concat=True, edge_dim=config.gnn_relation_dim,
                                       add_self_loops=True))

    def conv(self, layer, x, edge_index, edge_type, edge_attr):
        return layer(x, edge_index, edge_attr=edge_attr)
