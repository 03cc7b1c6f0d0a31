"""``KGFeatures``: the frozen node / relation / image-node embeddings of one knowledge graph.

They come from the graph's index (engineer IDX's ``KGIndex``: ``entity_emb [E, d_t]``,
``relation_emb [R, d_t]`` with R counting the reserved "image of" relation, ``image_emb [I, d_v]``),
are registered as non-persistent buffers (moved with ``.to()``, never saved by
``save_pretrained``: a checkpoint stays small and the graph's index stays the one source), and
never receive gradients.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _as_tensor(a, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.array(a, dtype=np.float32) if not isinstance(a, torch.Tensor) else a)  # copy: index arrays are read-only mmaps
    t = t.detach().float()
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    return t


class KGFeatures(nn.Module):
    """Frozen KG embeddings.

    Args:
        entity_emb: ``[E, d_t]`` entity (text) node features.
        relation_emb: ``[R, d_t]`` relation features, R including "image of" (the last row).
        image_emb: ``[I, d_v]`` image-node features; ``(0, d_v)`` or ``(0, 0)`` when the graph has none.
    """

    def __init__(self, entity_emb, relation_emb, image_emb=None):
        super().__init__()
        ent = _as_tensor(entity_emb, "entity_emb")
        rel = _as_tensor(relation_emb, "relation_emb")
        img = _as_tensor(image_emb if image_emb is not None else np.zeros((0, 0), np.float32), "image_emb")
        if ent.shape[1] != rel.shape[1]:
            raise ValueError(f"entity_emb width {ent.shape[1]} != relation_emb width {rel.shape[1]}")
        self.register_buffer("entity_emb", ent, persistent=False)
        self.register_buffer("relation_emb", rel, persistent=False)
        self.register_buffer("image_emb", img, persistent=False)

    @classmethod
    def from_index(cls, index) -> "KGFeatures":
        """From a ``mrmkg.kg.index.KGIndex`` (its ``entity_emb``, ``relation_emb``, ``image_emb``)."""
        return cls(np.asarray(index.entity_emb), np.asarray(index.relation_emb), np.asarray(index.image_emb))

    @classmethod
    def random(cls, num_entities: int, num_relations: int, num_images: int, text_dim: int, vision_dim: int,
               seed: int = 0) -> "KGFeatures":
        """L2-normalised random features (tests, benchmarks, parameter counting)."""
        g = torch.Generator().manual_seed(seed)

        def rnd(n, d):
            x = torch.randn(n, d, generator=g)
            return x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)

        return cls(rnd(num_entities, text_dim), rnd(num_relations, text_dim), rnd(num_images, vision_dim))

    @property
    def num_entities(self) -> int:
        return int(self.entity_emb.shape[0])

    @property
    def num_relations(self) -> int:
        return int(self.relation_emb.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.image_emb.shape[0])

    @property
    def text_dim(self) -> int:
        return int(self.entity_emb.shape[1])

    @property
    def vision_dim(self) -> int:
        return int(self.image_emb.shape[1])

    @property
    def image_of(self) -> int:
        """Index of the reserved "image of" relation (the last one)."""
        return self.num_relations - 1

    def extra_repr(self) -> str:
        return (f"entities={self.num_entities}, relations={self.num_relations}, images={self.num_images}, "
                f"text_dim={self.text_dim}, vision_dim={self.vision_dim}")
