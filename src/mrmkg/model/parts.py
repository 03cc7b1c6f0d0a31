"""The trainable modules of MR-MKG (theta_a), built from a config for an LLM of width ``d``.

Shared by :class:`mrmkg.model.mrmkg.MRMKG` and the weight-free parameter counter
(:func:`mrmkg.model.params.count_trainable_parameters`). Each part's name is its attribute on the
model and the prefix of its weights in ``model.safetensors``.
"""
from __future__ import annotations

from mrmkg.model.adapters import AttentionAdapter
from mrmkg.model.config import MRMKGConfig
from mrmkg.model.entity_head import EntityHead
from mrmkg.model.extensions.pointer import GraphPointer
from mrmkg.model.graph_encoders import graph_encoder_class

#: the parts, in build order (the order their parameters draw from the seeded RNG)
PARTS = ("graph_encoder", "knowledge_adapter", "visual_adapter", "entity_head", "graph_pointer")


def build_trainable_parts(config: MRMKGConfig, d: int, text_dim: int, vision_dim: int, num_relations: int,
                          num_entities: int, image_token_dim: int, entity_init_std: float = 0.02) -> dict:
    """``{part name: module or None}`` (absent parts are None): the graph encoder and knowledge adapter
    (``use_kg``), the visual adapter (``use_image`` and image tokens), the entity head, and the graph
    pointer, the model's score hook (``pointer`` section, with the entity head and ``use_kg``)."""
    parts = dict.fromkeys(PARTS)
    if config.use_kg:
        parts["graph_encoder"] = graph_encoder_class(config.graph_encoder)(config, text_dim, vision_dim, num_relations)
        parts["knowledge_adapter"] = AttentionAdapter(config.gnn_hidden, d, config.adapter_length,
                                                      config.adapter_projections, gate=config.knowledge_gate)
    if config.use_image and image_token_dim > 0:
        parts["visual_adapter"] = AttentionAdapter(image_token_dim, d, config.adapter_length,
                                                   config.adapter_projections)
    if config.entity_head:
        parts["entity_head"] = EntityHead(config.num_entity_tokens or num_entities,
                                          config.num_relation_tokens or num_relations, d, init_std=entity_init_std)
        if config.pointer is not None and config.use_kg:
            parts["graph_pointer"] = GraphPointer.from_config(config.pointer, d, config.gnn_hidden,
                                                              config.num_entity_tokens or num_entities, num_relations)
    return parts
