"""`mrmkg explain`: the examples of an `mrmkg eval` folder in names (see :mod:`mrmkg.explain`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from mrmkg.commands.options import GraphOverride, Json
from mrmkg.errors import InputError


def _refuse_other_tasks(eval_dir: Path) -> None:
    """An evaluation of a ScienceQA, demo or stage-1 checkpoint (it records a split name, not a MARS split
    file) is not one explain reads yet: say so, instead of asking for a graph and a split file."""
    from mrmkg.yamlconfig import load_yaml

    cfg_path = eval_dir / "eval_config.yaml"
    if not cfg_path.is_file():
        return
    cfg, _ = load_yaml(cfg_path)
    task = cfg.get("task", "mars" if "split_file" in cfg else None)
    if task != "mars":
        raise InputError(f"this is an evaluation of a {task or 'non-MARS'!r} checkpoint: `mrmkg explain` reads "
                         "evaluations of MARS checkpoints for now (others: read their predictions.jsonl, or ask "
                         "one question with `mrmkg ask CHECKPOINT ... --json`, which shows the subgraph)", path=eval_dir)


def explain_command(
    eval_dir: Path = typer.Argument(..., help="Output folder of `mrmkg eval` (predictions.jsonl, eval_config.yaml)."),
    ids: Optional[List[str]] = typer.Argument(None, help="Example ids to show (e.g. dev-2); default: the first "
                                                         "--limit examples."),
    limit: int = typer.Option(3, "--limit", min=1, help="How many examples to show when no ids are given."),
    wrong: bool = typer.Option(False, "--wrong", help="Without ids: only examples whose gold answer is not ranked first."),
    versus: Optional[Path] = typer.Option(None, "--versus", help="Another `mrmkg eval` folder over the same examples: "
                                                                 "show only the examples this run ranks first and "
                                                                 "that one does not (with --wrong: the reverse)."),
    summary: bool = typer.Option(False, "--summary", help="Instead of examples: how often the retrieved knowledge names "
                                                          "the gold answer, and the metrics with and without it "
                                                          "(is retrieval or ranking the bottleneck?)."),
    as_json: Json = False,
    picture: Optional[Path] = typer.Option(None, "--picture", help="Also draw the first shown example's subgraph "
                                                                   "(retrieved triples and memory edges) to this "
                                                                   ".png or .svg file."),
    graph: GraphOverride = None,
    split_file: Optional[str] = typer.Option(None, "--split", help="Split file to use instead of the one "
                                                                        "recorded in eval_config.yaml."),
) -> None:
    """Show, per example of an evaluation: the analogy, the gold answer's rank, the top 10 and the knowledge
    the model saw (retrieved triples with scores, analogy memory, copy node). Reads the folder only: runs no model."""
    from mrmkg.evaluate import read_predictions
    from mrmkg.explain import coverage_summary, explain, open_eval, print_coverage, print_explanation, select, subgraph_of

    _refuse_other_tasks(eval_dir)
    folder = open_eval(eval_dir, graph=None if graph is None else str(graph), split_file=split_file)
    if summary:
        cov = coverage_summary(folder)
        typer.echo(json.dumps(cov)) if as_json else print_coverage(cov)
        return
    other = read_predictions(versus) if versus is not None else None
    chosen = select(folder.predictions, ids or (), limit=limit, wrong=wrong, versus=other)
    for p in chosen:
        e = explain(folder, p)
        if as_json:
            typer.echo(json.dumps(e, ensure_ascii=False))
        else:
            print_explanation(e)
    if picture is not None and chosen:
        from mrmkg.viz import render_subgraph

        p = chosen[0]
        sg = subgraph_of(folder, p)
        path = render_subgraph(folder.kg, sg, picture, title=f"{p['id']}: {sg.query} (gold rank {p['rank']})")
        typer.echo(f"picture: {path}", err=as_json)
