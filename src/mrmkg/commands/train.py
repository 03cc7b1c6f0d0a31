"""`mrmkg train`: run the training engine from a YAML config (see :mod:`mrmkg.engine`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mrmkg.engine import TrainConfig, load_train_config
from mrmkg.yamlconfig import field_help, to_dict


def _fields_text() -> str:
    rows = [f"  {name} (default {default!r}): {help_}" for name, help_, default in field_help(TrainConfig)]
    return "\n".join(rows)


def train(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c",
        help="YAML file of TrainConfig fields (see configs/*.yaml). Without it, the defaults plus --set apply."),
    set_: Optional[List[str]] = typer.Option(
        None, "--set",
        help="Override one config field, dotted for nested ones; repeatable. The value is read as YAML: "
             "--set optim.lr=1e-4 --set task_args.prompt=kg_text --set model.graph_encoder=gat"),
    output_dir: Optional[str] = typer.Option(
        None, "--output-dir", "-o", help="Run folder (same as --set output_dir=...): checkpoints/, final/, metrics.json."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of init, data order and RNGs (same as --set seed=...)."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue from the newest complete checkpoint in the run folder, exactly where a killed run "
             "stopped (weights, optimizer, schedule, RNG states, data position). Starts fresh if there is none."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start again in a run folder that already holds checkpoints (they are deleted)."),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config as YAML and exit without training."),
    list_fields: bool = typer.Option(
        False, "--list-fields", help="List every config field with its default and meaning, and exit."),
) -> None:
    """Train MR-MKG (stage 1: task 'markg'; stage 2: task 'mars') or any Task on accelerate.

    Runs unchanged under `accelerate launch --num_processes K -m mrmkg train ...` (DDP).
    Bad config files or fields exit with status 2 and name the file, line and field.
    """
    if list_fields:
        typer.echo(_fields_text())
        raise typer.Exit(0)
    cfg = load_train_config(config, set_ or [], output_dir=output_dir, seed=seed)
    if print_config:
        import yaml

        typer.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
        raise typer.Exit(0)
    import torch.distributed as dist

    from mrmkg.engine import train as run

    try:
        run(cfg, resume=resume, overwrite=overwrite)
    finally:
        # PyTorch asks every rank to destroy its process group before exit; train() is a library call and
        # leaves that to its caller, the process.
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
