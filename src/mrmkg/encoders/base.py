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
    def encode(self, images: Sequence[ImageLike], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Pooled image features, float32 ``[len(images), dim]``, L2-normalised rows. ``batch_size``:
        None = the encoder's own best (its ``default_batch_size``)."""

    @abstractmethod
    def encode_tokens(self, images: Sequence[ImageLike], batch_size: int | None = None,
                      progress: bool = False) -> np.ndarray:
        """Visual token features (patches / feature-map cells), float32 ``[len(images), num_tokens, dim]``."""


class LLMBundle:
    """A frozen language model with its tokenizer.

    ``kind`` is ``"causal"`` (decoder-only: SmolLM2, LLaMA, Gemma) or ``"seq2seq"`` (T5, UL2).
    ``name`` is the registry name, HF id or folder it was loaded from (stored with checkpoints so
    that ``from_pretrained`` can find the same frozen model again).
    """

    def __init__(self, model, tokenizer, kind: str, name: str):
        if kind not in ("causal", "seq2seq"):
            raise ValueError(f"kind must be 'causal' or 'seq2seq', not {kind!r}")
        self.model, self.tokenizer, self.kind, self.name = model, tokenizer, kind, name

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        cfg = getattr(cfg, "get_text_config", lambda: cfg)()
        return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model"))

    def __repr__(self) -> str:
        return f"LLMBundle(name={self.name!r}, kind={self.kind!r}, hidden_size={self.hidden_size})"
