"""``none`` (paper Table 7): node initialisation only, no message passing."""
from __future__ import annotations

from mrmkg.model.graph_encoders import register_graph_encoder
from mrmkg.model.graph_encoders.base import GraphEncoder


@register_graph_encoder("none")
class NoGraphEncoder(GraphEncoder):
    """``X_K [N, h]`` = the initial node features (``self.layers`` stays empty)."""
