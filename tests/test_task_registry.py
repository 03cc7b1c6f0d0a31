"""A new task is one folder: dropping a package with a ``TASKS`` mapping next to the built-in task
folders registers it, and `mrmkg train` trains it by name; a config can name only registered tasks."""
from __future__ import annotations

import json
import textwrap

import pytest

import mrmkg.tasks
from mrmkg.cli import main
from mrmkg.errors import InputError
from mrmkg.tasks.registry import builtin_tasks, get_task, task_names

TOY_INIT = '''
"""A toy task: three-class data, a linear head on a frozen projection."""

TASKS = {"toyfolder": "mrmkg.tasks.toyfolder.task:ToyFolderTask"}
'''

TOY_TASK = '''
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mrmkg.tasks.base import Task


@dataclass
class ToyConfig:
    n: int = field(default=48, metadata={"help": "examples"})


class ToyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = torch.nn.Linear(4, 4).requires_grad_(False)
        self.head = torch.nn.Linear(4, 3)


class ToyFolderTask(Task):
    name = "toyfolder"
    config_class = ToyConfig

    def __init__(self, config, model_args=None, seed=0):
        super().__init__(config, model_args, seed)
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(config.n, 4, generator=g)
        self.y = (self.x @ torch.randn(4, 3, generator=g)).argmax(-1)

    def build_model(self):
        return ToyModel()

    def make_train_examples(self):
        return list(range(len(self.y)))

    def collate(self, examples):
        return self.x[examples], self.y[examples]

    def loss(self, model, batch):
        x, y = batch
        return F.cross_entropy(model.head(model.frozen(x)), y)

    def evaluate(self, model, batch_size=16):
        with torch.no_grad():
            return {"accuracy": float((model.head(model.frozen(self.x)).argmax(-1) == self.y).float().mean())}
'''


@pytest.fixture
def toy_folder(tmp_path, monkeypatch):
    """One folder with the toy task, placed beside the built-in task folders."""
    pkg = tmp_path / "tasks" / "toyfolder"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(TOY_INIT))
    (pkg / "task.py").write_text(textwrap.dedent(TOY_TASK))
    monkeypatch.setattr(mrmkg.tasks, "__path__", [*mrmkg.tasks.__path__, str(tmp_path / "tasks")])
    return pkg


def test_builtin_task_folders_are_found():
    assert {"mars", "markg", "scienceqa", "stage1", "demo", "demo_stage1"} <= set(builtin_tasks())
    assert get_task("mars").__name__ == "MarsTask" and get_task("mars").name == "mars"
    for name in builtin_tasks():
        cls = get_task(name)
        assert cls.name == name and hasattr(cls, "config_class")


def test_a_task_is_one_folder(toy_folder, tmp_path, capsys):
    assert "toyfolder" in task_names()
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(json.dumps({"task": "toyfolder", "task_args": {"n": 48}, "epochs": 2, "batch_size": 8,
                               "precision": "fp32", "optim": {"lr": 0.1}}))
    assert main(["train", "-c", str(cfg), "-o", str(tmp_path / "run"), "--set", "progress=false"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.5  # it learned, through the engine, by name


def test_a_config_names_only_registered_tasks(tmp_path):
    for name in ("no_such_task", "json:loads", "os:system"):
        with pytest.raises(InputError, match=f"unknown task '{name}'; expected one of demo"):
            get_task(name)
