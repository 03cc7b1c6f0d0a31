"""`mrmkg scienceqa ...`: check the official ScienceQA files, show prompts, score predictions."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

app = typer.Typer(help="ScienceQA: validate the official files, show Multimodal-CoT prompts, score predictions.",
                  no_args_is_help=True)

RootArg = Annotated[Path, typer.Argument(help="folder with problems.json and pid_splits.json "
                                              "(data/scienceqa of the official repository)")]
ImagesOpt = Annotated[Optional[Path], typer.Option("--images", help="folder of <split>/<pid>/image.png "
                                                                   "(default: ROOT/images, else ROOT)")]


def _console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@app.command()
def check(root: RootArg, images: ImagesOpt = None,
          check_images: Annotated[bool, typer.Option("--check-images/--no-check-images",
                                                     help="require every image file")] = True) -> None:
    """Load and validate every problem, split and image; print counts per split."""
    from rich.table import Table

    from mrmkg.tasks.scienceqa import load_scienceqa

    data = load_scienceqa(root, images_dir=images, check_images=check_images)
    t = Table(title=f"ScienceQA at {root}")
    for c in ("split", "problems", "with image", "with hint", "no context", "G1-6", "G7-12"):
        t.add_column(c, justify="left" if c == "split" else "right")
    for name in data.splits:
        ps = data.split(name)
        t.add_row(name, str(len(ps)), str(sum(p.has_image for p in ps)), str(sum(p.has_text for p in ps)),
                  str(sum(p.no_context for p in ps)), str(sum(p.grade_number <= 6 for p in ps)),
                  str(sum(p.grade_number > 6 for p in ps)))
    _console().print(t)


@app.command()
def prompts(root: RootArg, split: Annotated[str, typer.Option(help="split to show")] = "test",
            format: Annotated[Literal["QCM-LE", "QCMG-A", "QCM-A"], typer.Option(help="prompt format")] = "QCM-LE",
            use_caption: Annotated[bool, typer.Option("--caption/--no-caption", help="add captions to the context")] = False,
            limit: Annotated[int, typer.Option(help="problems to show")] = 3, images: ImagesOpt = None) -> None:
    """Print the model input, target and retrieval query of the first LIMIT problems of a split."""
    from mrmkg.tasks.scienceqa import build_input, build_target, load_scienceqa, retrieval_query

    data = load_scienceqa(root, images_dir=images, check_images=False)
    for p in data.split(split)[:limit]:
        print(f"=== pid {p.pid} ({p.subject}, {p.grade}{', image' if p.image else ''})")
        print(f"--- input\n{build_input(p, format, use_caption)}")
        print(f"--- target\n{build_target(p, format)}")
        print(f"--- retrieval query\n{retrieval_query(p, use_caption)}")


@app.command()
def score(root: RootArg,
          predictions: Annotated[Path, typer.Argument(help="predictions.jsonl ({pid, prediction}) or an official "
                                                          "{\"results\": {pid: index}} JSON file")],
          split: Annotated[Optional[str], typer.Option(help="score every problem of this split (default: exactly "
                                                            "the predicted pids)")] = "test",
          allow_missing: Annotated[bool, typer.Option("--allow-missing", help="count problems without a "
                                                                              "prediction as wrong")] = False,
          out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write metrics.json here")] = None,
          topics: Annotated[bool, typer.Option("--topics/--no-topics", help="also print per-topic accuracy")] = True,
          images: ImagesOpt = None) -> None:
    """Accuracy table in the paper's column order (NAT SOC LAN TXT IMG NO G1-6 G7-12 Average)."""
    from mrmkg.tasks.scienceqa import load_scienceqa
    from mrmkg.tasks.scienceqa_score import print_scores, score_file, write_metrics

    data = load_scienceqa(root, images_dir=images, check_images=False)
    pids = data.splits[split] if split else None
    if split and split not in data.splits:
        data.split(split)  # raises the InputError listing the splits
    s = score_file(data.problems, predictions, pids=pids, allow_missing=allow_missing)
    print_scores(s, console=_console(), topics=topics)
    if out is not None:
        write_metrics(s, out, split=split, predictions=str(predictions))
        print(f"wrote {out}")
