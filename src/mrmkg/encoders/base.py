"""The frozen-encoder interfaces. Implementations live beside this file; pick one by name with
:func:`mrmkg.encoders.registry.get_text_encoder` / ``get_vision_encoder`` / ``load_llm``.

All encoders are frozen (``eval()``, no gradients) and deterministic. ``name`` is a stable string
that identifies the weights and preprocessing; it keys the on-disk embedding cache, so two
encoders with the same ``name`` must give the same vectors.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence, Union

import numpy as np

ImageLike = Union[str, Path, "PIL.Image.Image"]  # noqa: F821


class TextEncoder(ABC):
    name: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """float32 ``[len(texts), dim]``, L2-normalised rows."""


class VisionEncoder(ABC):
    name: str
    dim: int         # width of pooled features and of each visual token
    num_tokens: int  # visual tokens per image returned by encode_tokens

    @abstractmethod
    def encode(self, images: Sequence[ImageLike], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Pooled image features, float32 ``[len(images), dim]``, L2-normalised rows."""

    @abstractmethod
    def encode_tokens(self, images: Sequence[ImageLike], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Visual token features (patches / feature-map cells), float32 ``[len(images), num_tokens, dim]``."""
