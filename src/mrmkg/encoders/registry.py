"""Encoders chosen by name (the strings that appear in configs and on the command line).

Text: ``"minilm"`` (all-MiniLM-L6-v2, offline default), ``"clip:<hub id or folder>"``.
Vision: ``"efficientnet-lite0"`` (offline default), ``"clip:<hub id or folder>"``.
LLM: see :func:`mrmkg.encoders.llm.load_llm` (re-exported here).

A name is ``"<key>"`` or ``"<key>:<argument>"``; ``<key>`` looks up a factory in
``TEXT_ENCODERS`` / ``VISION_ENCODERS`` that receives the argument (``None`` when absent). New
encoders register with :func:`register_text_encoder` / :func:`register_vision_encoder`.

Encoders are cached in-process by name: building an index and then a retriever in one process
loads MiniLM once. Frozen encoders are never mutated, so sharing them is safe (unlike LLMs, see
``load_llm``). A CLIP model named for both text and vision is also loaded once.
"""
from __future__ import annotations

import threading
from typing import Callable

from mrmkg.encoders.base import TextEncoder, VisionEncoder
from mrmkg.encoders.llm import GGUF_LLMS, register_gguf_llm, load_llm  # noqa: F401  (re-exports)
from mrmkg.errors import InputError

TextFactory = Callable[[str | None], TextEncoder]
VisionFactory = Callable[[str | None], VisionEncoder]

_lock = threading.Lock()
_text_cache: dict[str, TextEncoder] = {}
_vision_cache: dict[str, VisionEncoder] = {}
_clip_models: dict[str, object] = {}


def _shared_clip(arg: str | None):
    """One CLIPModel per id/folder, shared by its text and vision encoders."""
    if not arg:
        raise InputError("a CLIP encoder needs a model: 'clip:<hub id or folder>', "
                         "e.g. clip:openai/clip-vit-base-patch32")
    from mrmkg.encoders.hf import load_clip, resolve

    key = resolve(arg)
    if key not in _clip_models:
        _clip_models[key] = load_clip(key)
    return _clip_models[key]


def _no_arg(kind: str, key: str, arg: str | None) -> None:
    if arg:
        raise InputError(f"{kind} encoder {key!r} takes no argument, got {key}:{arg}")


def _minilm(arg: str | None) -> TextEncoder:
    from mrmkg.encoders.text import MiniLMTextEncoder

    return MiniLMTextEncoder(arg or None)  # "minilm:<folder>" = another MiniLM-style folder


def _clip_text(arg: str | None) -> TextEncoder:
    from mrmkg.encoders.text import ClipTextEncoder

    return ClipTextEncoder(arg, model=_shared_clip(arg))


def _efficientnet(arg: str | None) -> VisionEncoder:
    from mrmkg.encoders.vision import EfficientNetLite0Encoder

    _no_arg("vision", "efficientnet-lite0", arg)
    return EfficientNetLite0Encoder()


def _clip_vision(arg: str | None) -> VisionEncoder:
    from mrmkg.encoders.vision import ClipVisionEncoder

    return ClipVisionEncoder(arg, model=_shared_clip(arg))


TEXT_ENCODERS: dict[str, TextFactory] = {"minilm": _minilm, "clip": _clip_text}
VISION_ENCODERS: dict[str, VisionFactory] = {"efficientnet-lite0": _efficientnet, "clip": _clip_vision}


def register_text_encoder(key: str, factory: TextFactory) -> None:
    """``get_text_encoder("<key>[:arg]")`` will call ``factory(arg or None)``."""
    TEXT_ENCODERS[key] = factory


def register_vision_encoder(key: str, factory: VisionFactory) -> None:
    """``get_vision_encoder("<key>[:arg]")`` will call ``factory(arg or None)``."""
    VISION_ENCODERS[key] = factory


def _split(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"encoder name must be a non-empty string, got {name!r}")
    key, sep, arg = name.strip().partition(":")
    return key.strip().lower(), (arg.strip() or None) if sep else None


def _get(name: str, registry: dict, cache: dict, kind: str):
    key, arg = _split(name)
    if key not in registry:
        known = ", ".join(f"{k}:<id or folder>" if k == "clip" else k for k in sorted(registry))
        raise InputError(f"unknown {kind} encoder {name!r}; known: {known}")
    cache_key = f"{key}:{arg}" if arg else key
    with _lock:
        if cache_key not in cache:
            cache[cache_key] = registry[key](arg)
        return cache[cache_key]


def get_text_encoder(name: str = "minilm") -> TextEncoder:
    """A frozen text encoder by name (cached in-process). Raises InputError for unknown names."""
    return _get(name, TEXT_ENCODERS, _text_cache, "text")


def get_vision_encoder(name: str = "efficientnet-lite0") -> VisionEncoder:
    """A frozen vision encoder by name (cached in-process). Raises InputError for unknown names."""
    return _get(name, VISION_ENCODERS, _vision_cache, "vision")


def clear_cache() -> None:
    """Forget every cached encoder (tests; freeing memory)."""
    with _lock:
        _text_cache.clear()
        _vision_cache.clear()
        _clip_models.clear()
