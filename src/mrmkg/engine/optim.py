"""The optimizer (AdamW, no decay on 1-d parameters) and the learning-rate schedule of a run."""
from __future__ import annotations

import math

import torch

from mrmkg.engine.config import OptimConfig
from mrmkg.errors import InputError

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters: matrices and embeddings decayed, biases and norm weights
    (1-d) not."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=cfg.fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    """``cfg.scheduler`` (a name ``transformers.get_scheduler`` knows) over ``total_steps`` optimizer
    steps, after ``warmup_steps`` (or ``warmup_ratio`` of them)."""
    from transformers import get_scheduler

    warmup = cfg.warmup_steps or int(math.ceil(cfg.warmup_ratio * total_steps))
    try:
        return get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    except (ValueError, KeyError) as e:
        raise InputError(f"field 'optim.scheduler': {e}") from None
