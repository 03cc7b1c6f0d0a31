"""`mrmkg scienceqa ...`: check the official ScienceQA files, show prompts, score predictions, evaluate a checkpoint."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from mrmkg.commands.options import (Checkpoint, Device, Dtype, GraphOverride, Json, Out, Quiet, check_out_dir,
                                    human_output)

app = typer.Typer(help="ScienceQA: validate the official files, show Multimodal-CoT prompts, evaluate checkpoints, "
                       "score predictions.",
                  no_args_is_help=True)

RootArg = Annotated[Path, typer.Argument(help="folder with problems.json and pid_splits.json "
                                              "(data/scienceqa of the official repository)")]
ImagesOpt = Annotated[Optional[Path], typer.Option("--images", help="folder of <split>/<pid>/image.png "
                                                                   "(default: ROOT/images, else ROOT)")]

#: what `scienceqa score -o DIR` writes into DIR
METRICS_FILE = "metrics.json"


def _console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@app.command()
def check(root: RootArg, images: ImagesOpt = None,
          check_images: Annotated[bool, typer.Option("--check-images/--no-check-images",
                                                     help="require every image file")] = True,
          as_json: Json = False) -> None:
    """Load and validate every problem, split and image; print counts per split."""
    from mrmkg.tasks.scienceqa.data import load_scienceqa

    data = load_scienceqa(root, images_dir=images, check_images=check_images)
    counts = {}
    for name in data.splits:
        ps = data.split(name)
        counts[name] = {"problems": len(ps), "with_image": sum(p.has_image for p in ps),
                        "with_hint": sum(p.has_text for p in ps), "no_context": sum(p.no_context for p in ps),
                        "G1-6": sum(p.grade_number <= 6 for p in ps), "G7-12": sum(p.grade_number > 6 for p in ps)}
    if as_json:
        typer.echo(json.dumps({"root": str(root), "splits": counts}, ensure_ascii=False))
        return
    from rich.table import Table

    t = Table(title=f"ScienceQA at {root}")
    for c in ("split", "problems", "with image", "with hint", "no context", "G1-6", "G7-12"):
        t.add_column(c, justify="left" if c == "split" else "right")
    for name, c in counts.items():
        t.add_row(name, *(str(v) for v in c.values()))
    _console().print(t)


@app.command()
def prompts(root: RootArg, split: Annotated[str, typer.Option(help="split to show")] = "test",
            prompt_format: Annotated[Literal["QCM-LE", "QCMG-A", "QCM-A"], typer.Option(
                "--prompt-format", help="prompt format (Multimodal-CoT): QCM-LE rationale stage, QCMG-A answer "
                                        "stage, QCM-A answer only")] = "QCM-LE",
            use_caption: Annotated[bool, typer.Option("--caption/--no-caption", help="add captions to the context")] = False,
            limit: Annotated[int, typer.Option(min=0, help="problems to show")] = 3, images: ImagesOpt = None) -> None:
    """Print the model input, target and retrieval query of the first LIMIT problems of a split."""
    from mrmkg.tasks.scienceqa.data import build_input, build_target, load_scienceqa, retrieval_query

    data = load_scienceqa(root, images_dir=images, check_images=False)
    for p in data.split(split)[:limit]:
        print(f"=== pid {p.pid} ({p.subject}, {p.grade}{', image' if p.image else ''})")
        print(f"--- input\n{build_input(p, prompt_format, use_caption)}")
        print(f"--- target\n{build_target(p, prompt_format)}")
        print(f"--- retrieval query\n{retrieval_query(p, use_caption)}")


@app.command()
def score(root: RootArg,
          predictions: Annotated[Path, typer.Argument(help="predictions.jsonl ({pid, prediction}) or an official "
                                                          "{\"results\": {pid: index}} JSON file")],
          split: Annotated[Optional[str], typer.Option(help="score every problem of this split (default: exactly "
                                                            "the predicted pids)")] = "test",
          allow_missing: Annotated[bool, typer.Option("--allow-missing", help="count problems without a "
                                                                              "prediction as wrong")] = False,
          out: Out = None,
          topics: Annotated[bool, typer.Option("--topics/--no-topics", help="also print per-topic accuracy")] = True,
          images: ImagesOpt = None,
          as_json: Json = False) -> None:
    """Accuracy table in the paper's column order (NAT SOC LAN TXT IMG NO G1-6 G7-12 Average).

    With -o DIR: writes DIR/metrics.json atomically (the folder is created; other files in it are kept)."""
    from mrmkg.tasks.scienceqa.data import load_scienceqa
    from mrmkg.tasks.scienceqa.score import print_scores, score_file, write_metrics

    if out is not None:
        check_out_dir(out)
    data = load_scienceqa(root, images_dir=images, check_images=False)
    if split:
        data.split(split)  # an unknown split: the InputError listing the splits
    pids = data.splits[split] if split else None
    s = score_file(data.problems, predictions, pids=pids, allow_missing=allow_missing)
    if as_json:
        typer.echo(json.dumps({**s.to_dict(), "split": split, "predictions": str(predictions)}, ensure_ascii=False))
    else:
        print_scores(s, console=_console(), topics=topics)
    if out is not None:
        write_metrics(s, out / METRICS_FILE, split=split, predictions=str(predictions))
        typer.echo(f"wrote {out / METRICS_FILE}", err=as_json)


@app.command("eval")
def eval_(checkpoint: Checkpoint,
          out: Out,
          split: Annotated[Optional[str], typer.Option(help="split to evaluate (default: the run's test_split)")] = None,
          batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="problems per generate call")] = 8,
          graph: GraphOverride = None,
          rationales: Annotated[Optional[str], typer.Option(
              help="answer stage: predictions.jsonl of the rationale stage ('{split}' is replaced), instead of "
                   "the run's task_args.rationales")] = None,
          root: Annotated[Optional[str], typer.Option(help="ScienceQA folder instead of the run's task_args.root")] = None,
          limit: Annotated[Optional[int], typer.Option(min=1, help="only the first problems of the split (smoke runs)")] = None,
          device: Device = "cpu",
          dtype: Dtype = None,
          as_json: Json = False,
          quiet: Quiet = False) -> None:
    """Generate for every problem of a split, parse answers strictly and score (paper's columns).

    Writes OUT (replaced atomically): predictions.jsonl, metrics.json, eval_config.yaml.
    The rationale stage (QCM-LE) writes the generated rationales the answer stage (QCMG-A) reads."""
    check_out_dir(out, marker="eval_config.yaml", what="an evaluation folder")
    from mrmkg.tasks.scienceqa.task import evaluate_scienceqa

    with human_output(as_json):
        m = evaluate_scienceqa(checkpoint, out, split=split, batch_size=batch_size,
                               kg=None if graph is None else str(graph), rationales=rationales, limit=limit,
                               root=root, progress=not quiet, device=device, dtype=dtype)
    if as_json:
        typer.echo(json.dumps(m, ensure_ascii=False))
        return
    if "rouge_l" in m:
        typer.echo(f"rouge_l={m['rouge_l']:.2f} exact_match={m['exact_match']:.2f} n={m['n']}")
    else:
        typer.echo(f"Average={m['accuracy']['Average']} n={m['total']['Average']} unparsed={m['unparsed']}")
    if not quiet:
        typer.echo(f"wrote {out}/predictions.jsonl and {out}/metrics.json")
