"""The string-keyed task registry: ``task: mars`` in a config names a class registered here.

A task is one folder under ``mrmkg/tasks/`` whose ``__init__.py`` maps task names to
``"module:Class"`` (``TASKS = {"mars": "mrmkg.tasks.mars.task:MarsTask"}``): the folder is found by
scanning the package, and the class is imported only when the task is used. Plugins from other
packages register through the ``mrmkg.tasks`` entry-point group. A config can only name a
registered task: it never imports an arbitrary module.
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

import mrmkg.tasks as _tasks
from mrmkg.errors import InputError

__all__ = ["builtin_tasks", "task_names", "get_task", "make_task"]


def builtin_tasks() -> dict[str, str]:
    """Task name -> ``"module:Class"`` of every task folder of the ``mrmkg.tasks`` package."""
    out: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(_tasks.__path__), key=lambda m: m.name):
        if info.ispkg:
            out.update(getattr(importlib.import_module(f"{_tasks.__name__}.{info.name}"), "TASKS", {}))
    return out


def _plugins() -> dict:
    return {ep.name: ep for ep in entry_points(group="mrmkg.tasks")}


def task_names() -> list[str]:
    """Every task a config may name: the built-in ones, then installed plugins."""
    builtin = builtin_tasks()
    return list(builtin) + sorted(n for n in _plugins() if n not in builtin)


def get_task(name: str) -> type:
    """The task class registered as ``name``; InputError listing the known names otherwise."""
    builtin = builtin_tasks()
    if name in builtin:
        mod, attr = builtin[name].split(":", 1)
        return getattr(importlib.import_module(mod), attr)
    plugin = _plugins().get(name)
    if plugin is None:
        raise InputError(f"field 'task': unknown task {name!r}; expected one of {', '.join(task_names())}")
    return plugin.load()


def make_task(config):
    """Instantiate ``config.task`` with ``config.task_args`` (``config``: a TrainConfig)."""
    return get_task(config.task).from_config(dict(config.task_args), config)
