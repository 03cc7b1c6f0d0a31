"""`mrmkg demo`: the built-in world end to end (what `make demo` runs); see :mod:`mrmkg.demo`."""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from mrmkg.commands.options import Json, Out, Quiet, check_out_dir, human_output


def demo(
    out: Out = None,
    fresh: bool = typer.Option(False, "--fresh", help="Rebuild the world and index and retrain every rung "
                                                      "instead of reusing the cached ones."),
    quick: bool = typer.Option(False, "--quick", help="A small world and a few steps per rung: checks that "
                                                      "everything runs (numbers are not meaningful)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of DemoConfig fields "
                                                                       "(see configs/demo.yaml)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override one DemoConfig field, e.g. "
                                                                 "--set steps=60 --set rungs=\\[no_kg,pretrain]; repeatable."),
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Generate the demo world, index it, train and evaluate the MR-MKG ablation ladder, print the table,
    answer three sample questions with their retrieved subgraphs and draw one of them.

    Writes into OUT (default runs/demo): metrics.json, table.md, predictions/, subgraph.png, runs/.
    runs/ caches the rungs for the next run (unless --fresh); --json prints metrics.json's content."""
    from mrmkg.demo import DemoConfig, quick_config, run_demo
    from mrmkg.yamlconfig import Source, apply_overrides, from_dict, load_yaml, to_dict

    base = quick_config() if quick else DemoConfig()
    data, src = load_yaml(config) if config is not None else ({}, Source())
    data = {**to_dict(base), **data}
    apply_overrides(data, list(set_ or []), src)
    cfg = from_dict(DemoConfig, data, src)
    if out is not None:
        cfg = replace(cfg, out=str(out))
    if quiet:
        cfg = replace(cfg, progress=False)
    check_out_dir(Path(cfg.out))
    # --quiet: the demo's report (tables, sample answers) is dropped; --json: it goes to stderr
    with contextlib.redirect_stdout(io.StringIO()) if quiet else human_output(as_json):
        summary = run_demo(cfg, fresh=fresh)
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    elif quiet:
        overall = ", ".join(f"{name} {100 * r['metrics']['overall']:.1f}%" for name, r in summary["rungs"].items()
                            if "overall" in r.get("metrics", {}))
        typer.echo(f"wrote {cfg.out}/metrics.json ({cfg.eval_split} accuracy: {overall})")
