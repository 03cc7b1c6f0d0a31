"""The engine tests' toy task, registered as the plugin task ``toy`` by
tests/mrmkg_test_tasks-0.0.dist-info (subprocesses import it with PYTHONPATH=tests), and the helpers
the engine tests share."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


class BareToyModel(torch.nn.Module):
    """A frozen random projection (like the frozen LLM) and a trainable classifier with dropout."""

    def __init__(self, d: int, classes: int, dropout: float):
        super().__init__()
        self.frozen = torch.nn.Linear(d, d)
        self.frozen.requires_grad_(False)
        self.drop = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(d, classes)

    def forward(self, batch):
        x, y = batch
        logits = self.head(self.drop(self.frozen(x)))
        return SimpleNamespace(loss=F.cross_entropy(logits.float(), y))


class ToyModel(BareToyModel):
    """The toy model with a ``save_pretrained`` that writes the trainable weights, as MR-MKG's does."""

    def save_pretrained(self, directory):
        from safetensors.torch import save_file

        Path(directory).mkdir(parents=True, exist_ok=True)
        trainable = {n: p.detach().contiguous() for n, p in self.named_parameters() if p.requires_grad}
        save_file(trainable, str(Path(directory) / "model.safetensors"))


class WrappedToyModel(torch.nn.Module):
    """The toy model inside a wrapper (its parameters are ``mrmkg.head.weight``, ...), whose
    ``save_pretrained`` writes the inner model's names, as the MARS and demo tasks' wrappers do."""

    def __init__(self, inner: ToyModel):
        super().__init__()
        self.mrmkg = inner

    def forward(self, batch):
        return self.mrmkg(batch)

    def save_pretrained(self, directory):
        self.mrmkg.save_pretrained(directory)


class ToyTask:
    """Linearly separable-ish 3-class data; ``delay`` slows collate so a kill lands mid-run;
    ``model``: ``plain``, ``bare`` (no save_pretrained) or ``wrapped``."""

    def __init__(self, n: int = 96, d: int = 8, classes: int = 3, dropout: float = 0.1, delay: float = 0.0,
                 model: str = "plain"):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, d, generator=g)
        w = torch.randn(d, classes, generator=g)
        self.y = (self.x @ w).argmax(-1)
        self.d, self.classes, self.dropout, self.delay, self.model = d, classes, dropout, delay, model

    @classmethod
    def from_config(cls, args, config):
        return cls(**args)

    def build_model(self):
        if self.model == "bare":
            return BareToyModel(self.d, self.classes, self.dropout)
        model = ToyModel(self.d, self.classes, self.dropout)
        return WrappedToyModel(model) if self.model == "wrapped" else model

    def train_examples(self):
        return list(range(len(self.y)))

    def collate(self, examples):
        if self.delay:
            time.sleep(self.delay)
        idx = torch.tensor(examples)
        return self.x[idx], self.y[idx]

    def evaluate(self, model, batch_size):
        model.eval()
        model = getattr(model, "mrmkg", model)
        with torch.no_grad():
            logits = model.head(model.frozen(self.x))
            loss = F.cross_entropy(logits, self.y).item()
        return {"accuracy": float((logits.argmax(-1) == self.y).float().mean()), "loss": loss}


def toy_config(tmp_path: Path, **over):
    """A TrainConfig of the toy task, output in ``tmp_path/run``; ``over``: ``--set`` overrides."""
    from mrmkg.engine import load_train_config

    base = {"task": "toy", "output_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 8,
            "precision": "fp32", "progress": False, "optim": {"lr": 0.05, "warmup_steps": 2}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(base))
    return load_train_config(p, [f"{k}={json.dumps(v)}" for k, v in over.items()])


def final_weights(run: Path) -> dict:
    """The trained weights in a run's final/ folder (model/ or trainable.safetensors)."""
    from safetensors.torch import load_file

    final = Path(run) / "final"
    path = final / "model" / "model.safetensors"
    return load_file(str(path if path.is_file() else final / "trainable.safetensors"))


def cli_env() -> dict:
    """The environment of a ``python -m mrmkg`` subprocess that can import the toy task."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO / "src")]))
