"""Parameter accounting: the report printed at model build (trainable / frozen / % of the LLM, per
part of :data:`mrmkg.model.parts.PARTS`) and a weight-free count of the trainable parameters for any
LLM config (e.g. FLAN-T5-XL/XXL built from a hand-written ``T5Config``), to compare with the paper's
Table 1 (77M / 248M)."""
from __future__ import annotations

import torch
from torch import nn

from mrmkg.model.config import MRMKGConfig
from mrmkg.model.parts import PARTS, build_trainable_parts


def _count(m: nn.Module | None) -> int:
    return 0 if m is None else sum(p.numel() for p in m.parameters())


def parameter_report(model) -> dict:
    """``{"trainable", "frozen", "llm", "percent_of_llm", "parts": {name: count}}`` of an ``MRMKG``."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    llm = sum(p.numel() for p in model.lm.parameters())
    parts = {k: _count(getattr(model, k, None)) for k in PARTS}
    return {"trainable": trainable, "frozen": frozen, "llm": llm,
            "percent_of_llm": 100.0 * trainable / max(llm, 1), "parts": parts}


def format_count(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def print_parameter_report(model, console=None) -> dict:
    """Print the report as a rich table (to ``console`` or stderr); returns the dict."""
    from rich.console import Console
    from rich.table import Table

    r = parameter_report(model)
    t = Table(title=f"MR-MKG parameters (LLM {model.llm.name}, {model.kind})")
    t.add_column("part")
    t.add_column("parameters", justify="right")
    t.add_column("trainable")
    for k, v in r["parts"].items():
        if v:
            t.add_row(k, format_count(v), "yes")
    t.add_row("frozen LLM", format_count(r["llm"]), "no")
    t.add_row("total trainable", format_count(r["trainable"]), f"{r['percent_of_llm']:.2f}% of the LLM")
    (console or Console(stderr=True)).print(t)
    return r


def count_trainable_parameters(config: MRMKGConfig, llm_config, text_dim: int = 384, vision_dim: int = 1280,
                               num_relations: int = 193, num_entities: int = 0,
                               image_token_dim: int | None = None) -> dict:
    """Trainable-parameter count of MR-MKG for an LLM *config* (no weights are created: the
    modules are built on the meta device). ``llm_config`` is any HF config with ``hidden_size`` or
    ``d_model``. Returns ``{"total": n, "d": d, "parts": {name: n}}``."""
    cfg = getattr(llm_config, "get_text_config", lambda: llm_config)()
    d = int(getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model"))
    with torch.device("meta"):
        parts = build_trainable_parts(config, d, text_dim, vision_dim, num_relations, num_entities,
                                      vision_dim if image_token_dim is None else image_token_dim)
    counts = {k: _count(v) for k, v in parts.items()}
    return {"total": sum(counts.values()), "d": d, "parts": counts}
