"""`mrmkg train`: run the training engine from a YAML config (see :mod:`mrmkg.engine`).

The engine (and so torch) is imported inside the command: ``mrmkg --help`` stays fast.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from mrmkg.commands.options import Device, Dtype, Json, Out, Quiet, check_out_dir, human_output
from mrmkg.errors import InputError


def _section(title: str, rows) -> list[str]:
    lines = [title]
    lines += [f"  {name} (default {default!r}): {help_}" for name, help_, default in rows]
    return lines


def fields_text(task: str | None = None) -> str:
    """Every field ``--set`` accepts, grouped by section with its default and help text: TrainConfig, the
    model (MRMKGConfig, under ``model.``) and each registered task's config (under ``task_args.``; a task
    class names it in ``config_class``). ``task``: list only that task's section."""
    from mrmkg.model.config import MRMKGConfig
    from mrmkg.tasks.registry import get_task, task_names
    from mrmkg.engine import TrainConfig
    from mrmkg.yamlconfig import field_help

    names = task_names() if task is None else [task]
    classes = {name: get_task(name) for name in names}  # an unknown --task: InputError listing the names
    own = [r for r in field_help(TrainConfig) if r[0].split(".")[0] not in ("model", "task_args")]  # own sections below
    lines = _section("train config (TrainConfig):", own)
    lines += [""] + _section("model (MRMKGConfig; --set model.FIELD=VALUE):", field_help(MRMKGConfig, "model."))
    for name, cls in classes.items():
        config_class = getattr(cls, "config_class", None)
        lines.append("")
        if config_class is None:
            lines.append(f"task_args of task {name!r}: not listed ({cls.__name__} names no config_class)")
            continue
        lines += _section(f"task_args of task {name!r} ({config_class.__name__}; --set task_args.FIELD=VALUE):",
                          field_help(config_class, "task_args."))
    return "\n".join(lines)


def _device_fields(device: str | None) -> dict:
    """``--device`` as TrainConfig fields: the engine (accelerate) places each process itself, so
    only CPU-or-GPU is a choice; a GPU index is chosen with CUDA_VISIBLE_DEVICES. ``auto`` is the GPU
    too, with the frozen LLM spread over the visible GPUs (``model.device_map``, :func:`_model_overrides`)."""
    if device is None:
        return {}
    if device == "cpu":
        return {"cpu": True}
    if device == "auto":
        return {"cpu": False}
    if device != "cuda" and device != "cuda:0":
        raise InputError(f"--device {device!r}: train places its processes itself; use --device cuda with "
                         f"CUDA_VISIBLE_DEVICES={device.split(':', 1)[1]} to train on that GPU")
    return {"cpu": False}


def _model_overrides(device: str | None, dtype: str | None) -> list[str]:
    """``--device auto`` and ``--dtype`` as ``--set`` overrides of the model section, applied after the
    config file's and the other ``--set`` values (the command line wins)."""
    from mrmkg.encoders.llm import short_dtype

    sets = [] if dtype is None else [f"model.llm_dtype={short_dtype(dtype)}"]
    if device == "auto":
        sets.append("model.device_map=auto")
    elif device is not None:
        sets.append("model.device_map=none")
    return sets


def train(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c",
        help="YAML file of TrainConfig fields (see configs/*.yaml). Without it, the defaults plus --set apply."),
    set_: Optional[List[str]] = typer.Option(
        None, "--set",
        help="Override one config field, dotted for nested ones; repeatable. The value is read as YAML: "
             "--set optim.lr=1e-4 --set task_args.prompt=kg_text --set model.graph_encoder=gat"),
    out: Out = None,
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1, help="Seed of init, data order and RNGs (same as --set seed=...)."),
    device: Device = None,
    dtype: Dtype = None,
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue from the newest complete checkpoint in the run folder, exactly where a killed run "
             "stopped (weights, optimizer, schedule, RNG states, data position). Starts fresh if there is none."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start again in a run folder that already holds checkpoints (they are deleted)."),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config as YAML and exit without training."),
    list_fields: bool = typer.Option(
        False, "--list-fields", help="List every config field (training, model, and each task's task_args) with "
                                     "its default and meaning, and exit."),
    task: Optional[str] = typer.Option(
        None, "--task", help="With --list-fields: list only this task's task_args."),
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Train MR-MKG (stage 1: task 'markg'; stage 2: task 'mars') or any Task on accelerate.

    Writes the run folder OUT (the config's output_dir): checkpoints/, final/, metrics.json, summary.json.
    Runs unchanged under `accelerate launch --multi_gpu --num_processes K -m mrmkg train ... --device cuda` (DDP, one
    GPU per process; configs/accelerate/ has DDP and FSDP launch configs, docs/scienceqa.md the commands).
    --dtype bf16 loads the frozen LLM in bfloat16 (model.llm_dtype); --device auto spreads it over the visible GPUs
    in one process (model.device_map=auto).
    Bad config files or fields exit with status 2 and name the file, line and field.
    """
    if task is not None and not list_fields:
        raise InputError("--task only restricts --list-fields; the task to train is the config's 'task' field "
                         f"(--set task={task})")
    if list_fields:
        typer.echo(fields_text(task))
        raise typer.Exit(0)
    from mrmkg.engine import load_train_config
    from mrmkg.yamlconfig import to_dict

    fields = {"output_dir": None if out is None else str(out), "seed": seed, **_device_fields(device)}
    if quiet:
        fields["progress"] = False
    cfg = load_train_config(config, [*(set_ or []), *_model_overrides(device, dtype)], sections=True, **fields)
    if print_config:
        import yaml

        typer.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
        raise typer.Exit(0)
    check_out_dir(Path(cfg.output_dir))
    import torch.distributed as dist

    from mrmkg.engine import train as run

    try:
        with human_output(as_json):
            res = run(cfg, resume=resume, overwrite=overwrite)
    finally:
        # PyTorch asks every rank to destroy its process group before exit; train() is a library call and
        # leaves that to its caller, the process.
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:  # the summary is written (and printed) by the main process
        return
    if as_json:
        typer.echo(json.dumps(json.loads((res.output_dir / "summary.json").read_text(encoding="utf-8")),
                              ensure_ascii=False))
    elif quiet:
        scores = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.metrics.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool))
        typer.echo(f"wrote {res.output_dir}: {res.global_step} steps" + (f", {scores}" if scores else ""))
