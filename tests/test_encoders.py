"""Frozen text/vision encoders, image loading, the registry and the embedding cache.

CLIP paths run on a tiny random CLIP saved with save_pretrained (no CLIP weights exist offline);
MiniLM and EfficientNet-Lite0 run on their real weights (small enough for CPU tests)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mrmkg.encoders import registry
from mrmkg.encoders.cache import cached_encode
from mrmkg.encoders.images import load_image
from mrmkg.errors import InputError

# ---------------------------------------------------------------------------------------------
# fixtures


def _tiny_clip(folder, seed: int = 0):
    """A 2-layer random CLIP (text 32-d, vision 32-d at 32x32 px with 8 px patches, projection 16)
    plus a character-level CLIP tokenizer, written like a real checkpoint folder."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=24, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return _tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four small synthetic RGB photos (different colour patterns) written as JPEG/PNG files."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        arr = rng.integers(0, 255, size=(40 + 8 * i, 48, 3), dtype=np.uint8)
        arr[..., i % 3] = 255
        p = d / f"p{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


@pytest.fixture(autouse=True)
def _fresh_registry():
    registry.clear_cache()
    yield
    registry.clear_cache()


def _unit(x):
    return np.allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# CLIP (tiny random)


def test_clip_text_shapes_norm_determinism(clip_dir):
    from mrmkg.encoders.text import ClipTextEncoder

    enc = ClipTextEncoder(clip_dir)
    texts = ["a cat", "a dog on a mat", "zebra"]
    a = enc.encode(texts)
    assert a.shape == (3, 16) and a.dtype == np.float32 and _unit(a)
    # Same input -> same output, also from a second instance and with other batch sizes (padding
    # must not leak into the pooled vector).
    b = ClipTextEncoder(clip_dir).encode(texts, batch_size=1)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a[0], a[1])
    assert enc.encode([]).shape == (0, 16)


def test_clip_text_matches_get_text_features(clip_dir):
    from transformers import AutoTokenizer, CLIPModel

    from mrmkg.encoders.text import ClipTextEncoder

    enc = ClipTextEncoder(clip_dir)
    model, tok = CLIPModel.from_pretrained(clip_dir), AutoTokenizer.from_pretrained(clip_dir)
    with torch.no_grad():
        ref = model.get_text_features(**tok(["a cat"], return_tensors="pt")).pooler_output
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    np.testing.assert_allclose(enc.encode(["a cat"]), ref, atol=1e-5)


def test_clip_vision_pooled_and_tokens(clip_dir, photos):
    from transformers import CLIPModel

    from mrmkg.encoders.vision import ClipVisionEncoder

    enc = ClipVisionEncoder(clip_dir)
    assert (enc.dim, enc.num_tokens) == (16, 16)  # (32 / 8)^2 patches
    pooled = enc.encode(photos, batch_size=3)
    assert pooled.shape == (4, 16) and pooled.dtype == np.float32 and _unit(pooled)
    tokens = enc.encode_tokens(photos)
    assert tokens.shape == (4, 16, 16) and np.isfinite(tokens).all()
    # Deterministic, batch-size independent, PIL images and paths agree.
    np.testing.assert_allclose(pooled, enc.encode([Image.open(p) for p in photos], batch_size=1), atol=1e-5)
    # pooled == normalize(get_image_features(...).pooler_output), the documented CLIP image embedding.
    model = CLIPModel.from_pretrained(clip_dir)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=enc._pixels([load_image(photos[0])])).pooler_output
    np.testing.assert_allclose(pooled[0], torch.nn.functional.normalize(ref, dim=-1)[0].numpy(), atol=1e-5)


def test_clip_vision_reads_saved_processor_config(clip_dir, photos, tmp_path):
    """A real checkpoint folder carries preprocessor_config.json; it is used (here: a different
    normalisation, which must change the vectors)."""
    from mrmkg.encoders.vision import ClipVisionEncoder

    base = ClipVisionEncoder(clip_dir)
    folder = tmp_path / "with_proc"
    shutil.copytree(clip_dir, folder)
    proc = base.processor
    proc.image_mean, proc.image_std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    proc.save_pretrained(folder)
    enc = ClipVisionEncoder(folder)
    assert list(enc.processor.image_mean) == [0.5, 0.5, 0.5]
    assert not np.allclose(enc.encode(photos[:1]), ClipVisionEncoder(clip_dir).encode(photos[:1]), atol=1e-4)


def test_hub_identity_includes_cached_revision(tmp_path, monkeypatch):
    from mrmkg.encoders import hf

    snap = tmp_path / "models--org--clip" / "snapshots" / ("ab" * 20)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, fn: str(snap / fn))
    assert hf.identity("clip-text", "org/clip") == "clip-text:org/clip@" + "ab" * 6
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, fn: None)
    assert hf.identity("clip-text", "org/clip") == "clip-text:org/clip"


def test_clip_names_identify_weights(clip_dir, tmp_path):
    from mrmkg.encoders.text import ClipTextEncoder
    from mrmkg.encoders.vision import ClipVisionEncoder

    other = _tiny_clip(tmp_path / "clip", seed=1)  # same folder name, different weights
    t1, t2 = ClipTextEncoder(clip_dir), ClipTextEncoder(other)
    assert t1.name.startswith("clip-text:") and t1.name != t2.name
    assert t1.name == ClipTextEncoder(clip_dir).name  # stable across loads
    assert ClipVisionEncoder(clip_dir).name.startswith("clip-vision:")
    assert ClipVisionEncoder(clip_dir).name != ClipVisionEncoder(other).name


def test_clip_missing_folder_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        registry.get_text_encoder(f"clip:{tmp_path}/nope")


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_caches_and_shares_clip(clip_dir):
    t = registry.get_text_encoder(f"clip:{clip_dir}")
    v = registry.get_vision_encoder(f"clip:{clip_dir}")
    assert registry.get_text_encoder(f"clip:{clip_dir}") is t
    assert t.model is v.model  # one CLIPModel for both towers
    assert all(not p.requires_grad for p in t.model.parameters()) and not t.model.training


def test_registry_unknown_names():
    with pytest.raises(InputError, match="unknown text encoder 'bert'") as e:
        registry.get_text_encoder("bert")
    assert "minilm" in str(e.value) and "clip:<id or folder>" in str(e.value)
    with pytest.raises(InputError, match="efficientnet-lite0"):
        registry.get_vision_encoder("resnet50")
    with pytest.raises(InputError, match="takes no argument"):
        registry.get_vision_encoder("efficientnet-lite0:foo")
    with pytest.raises(InputError, match="needs a model"):
        registry.get_vision_encoder("clip")
    with pytest.raises(InputError, match="non-empty"):
        registry.get_text_encoder("  ")


def test_registry_register_new_encoder():
    from mrmkg.encoders.base import TextEncoder

    class Hash(TextEncoder):
        dim = 4

        def __init__(self, arg):
            self.name = f"hash:{arg}"

        def encode(self, texts, batch_size=64, progress=False):
            return np.ones((len(texts), 4), np.float32) / 2

    registry.register_text_encoder("hash", Hash)
    try:
        assert registry.get_text_encoder("hash:x").name == "hash:x"
    finally:
        del registry.TEXT_ENCODERS["hash"]


# ---------------------------------------------------------------------------------------------
# real weights: MiniLM and EfficientNet-Lite0


@pytest.mark.weights("minilm")
def test_minilm_paraphrases_closer():
    enc = registry.get_text_encoder("minilm")
    assert enc.name == "minilm-l6-v2" and enc.dim == 384
    e = enc.encode(["A man is playing a guitar.", "Someone plays the guitar.",
                    "The stock market fell sharply today.", "Swimming pools are filled with water."])
    assert e.shape == (4, 384) and e.dtype == np.float32 and _unit(e)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3
    np.testing.assert_allclose(enc.encode(["Someone plays the guitar."]), e[1:2], atol=1e-5)
    with pytest.raises(InputError, match="single string"):
        enc.encode("not a list")


@pytest.mark.weights("efficientnet-lite0")
def test_efficientnet_real_photos_group_by_entity(data_dir):
    enc = registry.get_vision_encoder("efficientnet-lite0")
    assert (enc.dim, enc.num_tokens) == (1280, 49)
    groups = {q: sorted((data_dir / "mars" / "images" / q).iterdir()) for q in ("Q1501", "Q6574")}
    paths = [p for q in groups for p in groups[q]]
    labels = np.array([i for i, q in enumerate(groups) for _ in groups[q]])
    e = enc.encode(paths, batch_size=4)
    assert e.shape == (len(paths), 1280) and _unit(e)
    sim = e @ e.T
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(paths), dtype=bool)
    within, across = sim[same & off_diag].mean(), sim[~same].mean()
    assert within > across + 0.1, (within, across)
    # Tokens are the 7x7 map; their mean is the pooled vector before normalisation.
    tok = enc.encode_tokens(paths[:2])
    assert tok.shape == (2, 49, 1280)
    pooled = tok.mean(1)
    np.testing.assert_allclose(pooled / np.linalg.norm(pooled, axis=1, keepdims=True), e[:2], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# bad image files


@pytest.fixture
def bad_images(tmp_path):
    arr = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    good = tmp_path / "good.jpg"
    Image.fromarray(arr).save(good, quality=95)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    return {"missing": tmp_path / "missing.jpg", "truncated": truncated, "text": text, "empty": empty,
            "dir": tmp_path}


@pytest.mark.parametrize("case,reason", [("missing", "not found"), ("truncated", "truncated"),
                                         ("text", "not an image"), ("empty", "empty"),
                                         ("dir", "directory")])
def test_load_image_bad_files(bad_images, case, reason):
    path = bad_images[case]
    with pytest.raises(InputError, match=reason) as e:
        load_image(path)
    assert e.value.path == str(path) and str(path) in str(e.value)


def test_encoder_names_bad_file_in_batch(clip_dir, photos, bad_images):
    enc = registry.get_vision_encoder(f"clip:{clip_dir}")
    with pytest.raises(InputError) as e:
        enc.encode([photos[0], bad_images["truncated"], photos[1]])
    assert e.value.path == str(bad_images["truncated"])


def test_load_image_converts_to_rgb(tmp_path):
    p = tmp_path / "rgba.png"
    Image.new("RGBA", (5, 7), (10, 20, 30, 128)).save(p)
    g = tmp_path / "grey.png"
    Image.new("L", (5, 7), 99).save(g)
    for path in (p, g):
        im = load_image(path)
        assert im.mode == "RGB" and im.size == (5, 7)


# ---------------------------------------------------------------------------------------------
# embedding cache


class _Counting:
    def __init__(self, inner):
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, 0

    def encode(self, items, **kw):
        self.calls += 1
        return self.inner.encode(items, **kw)


def test_cached_encode_serves_second_call(clip_dir, photos, tmp_path):
    text = _Counting(registry.get_text_encoder(f"clip:{clip_dir}"))
    a = cached_encode(text, ["a cat", "dog"], cache_root=tmp_path)
    b = cached_encode(text, ["a cat", "dog"], cache_root=tmp_path)
    assert text.calls == 1
    np.testing.assert_array_equal(a, b)
    cached_encode(text, ["dog", "a cat"], cache_root=tmp_path)  # order is part of the key
    assert text.calls == 2

    vision = _Counting(registry.get_vision_encoder(f"clip:{clip_dir}"))
    paths = []
    for p in photos:  # private copies: one gets edited below
        paths.append(str(tmp_path / p.name))
        shutil.copy(p, paths[-1])
    a = cached_encode(vision, paths, kind="image", cache_root=tmp_path)
    b = cached_encode(vision, paths, kind="image", cache_root=tmp_path)
    assert vision.calls == 1 and a.shape == (4, 16)
    np.testing.assert_array_equal(a, b)
    # Editing an image's bytes invalidates its entry.
    Image.open(paths[0]).rotate(90).save(paths[0])
    cached_encode(vision, paths, kind="image", cache_root=tmp_path)
    assert vision.calls == 2


class _FakeText:
    """Deterministic vectors from the text, recording what it was asked to encode."""
    name, dim = "fake-text", 4

    def __init__(self):
        self.asked = []

    def encode(self, items, progress=False):
        self.asked.append(list(items))
        return np.array([[len(t), t.count("a"), ord(t[0]), 1.0] for t in items], np.float32)


def test_cached_encode_per_item_encodes_only_the_missing_items(tmp_path):
    enc = _FakeText()
    a = cached_encode(enc, ["apple", "banana"], cache_root=tmp_path, per_item=True)
    b = cached_encode(enc, ["cherry", "banana", "apple", "cherry"], cache_root=tmp_path, per_item=True)
    assert enc.asked == [["apple", "banana"], ["cherry"]]  # a new batch make-up still hits its known items
    np.testing.assert_array_equal(b, enc.encode(["cherry", "banana", "apple", "cherry"]))
    np.testing.assert_array_equal(a, b[[2, 1]])
    # a single item is the same entry as a one-item list, per item or not
    assert cached_encode(enc, ["cherry"], cache_root=tmp_path).shape == (1, 4)
    assert cached_encode(enc, ["apple", "banana"], cache_root=tmp_path, per_item=True).dtype == np.float32
    assert len(enc.asked) == 3  # the explicit encode above
