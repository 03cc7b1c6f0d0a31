"""The string-keyed task registry: ``task: mars`` in a config names a class registered here.

Built-in tasks are listed by import path (imported only when used, so that naming a task costs
nothing); plugins from other packages register through the ``mrmkg.tasks`` entry-point group.
A config can only name a registered task: it never imports an arbitrary module.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from mrmkg.errors import InputError

__all__ = ["TASKS", "task_names", "get_task", "make_task"]

#: built-in task name -> "module:Class"
TASKS: dict[str, str] = {
    "mars": "mrmkg.tasks.mars:MarsTask",
    "markg": "mrmkg.tasks.mars:MarKGPretrainTask",
    "scienceqa": "mrmkg.tasks.scienceqa_task:ScienceQATask",
    "stage1": "mrmkg.tasks.stage1_task:Stage1Task",
    "demo": "mrmkg.tasks.demo_task:DemoTask",
    "demo_stage1": "mrmkg.tasks.demo_task:DemoStage1Task",
}


def _plugins() -> dict:
    return {ep.name: ep for ep in entry_points(group="mrmkg.tasks")}


def task_names() -> list[str]:
    """Every task a config may name: the built-in ones, then installed plugins."""
    return list(TASKS) + sorted(n for n in _plugins() if n not in TASKS)


def get_task(name: str) -> type:
    """The task class registered as ``name``; InputError listing the known names otherwise."""
    if name in TASKS:
        mod, attr = TASKS[name].split(":", 1)
        return getattr(importlib.import_module(mod), attr)
    plugin = _plugins().get(name)
    if plugin is None:
        raise InputError(f"field 'task': unknown task {name!r}; expected one of {', '.join(task_names())}")
    return plugin.load()


def make_task(config):
    """Instantiate ``config.task`` with ``config.task_args`` (``config``: a TrainConfig)."""
    return get_task(config.task).from_config(dict(config.task_args), config)
