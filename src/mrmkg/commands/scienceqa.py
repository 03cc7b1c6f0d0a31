"""`mrmkg scienceqa ...`: check the official ScienceQA files, show prompts, score predictions, evaluate a checkpoint."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

app = typer.Typer(help="ScienceQA: validate the official files, show Multimodal-CoT prompts, evaluate checkpoints, "
                       "score predictions.",
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

    from mrmkg.tasks.scienceqa.data import load_scienceqa

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
    from mrmkg.tasks.scienceqa.data import build_input, build_target, load_scienceqa, retrieval_query

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
    from mrmkg.tasks.scienceqa.data import load_scienceqa
    from mrmkg.tasks.scienceqa.score import print_scores, score_file, write_metrics

    data = load_scienceqa(root, images_dir=images, check_images=False)
    pids = data.splits[split] if split else None
    if split and split not in data.splits:
        data.split(split)  # raises the InputError listing the splits
    s = score_file(data.problems, predictions, pids=pids, allow_missing=allow_missing)
    print_scores(s, console=_console(), topics=topics)
    if out is not None:
        write_metrics(s, out, split=split, predictions=str(predictions))
        print(f"wrote {out}")


@app.command("eval")
def eval_(checkpoint: Annotated[Path, typer.Argument(help="run folder of `mrmkg train` (task: scienceqa), its final/ "
                                                          "folder, or a model folder")],
          out: Annotated[Path, typer.Option("--out", "-o", help="output folder, replaced atomically: "
                                                                "predictions.jsonl, metrics.json, eval_config.yaml")],
          split: Annotated[Optional[str], typer.Option(help="split to evaluate (default: the run's test_split)")] = None,
          batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="problems per generate call")] = 8,
          kg: Annotated[Optional[str], typer.Option("--kg", help="graph folder instead of the run's task_args.kg")] = None,
          rationales: Annotated[Optional[str], typer.Option(
              help="answer stage: predictions.jsonl of the rationale stage ('{split}' is replaced), instead of "
                   "the run's task_args.rationales")] = None,
          root: Annotated[Optional[str], typer.Option(help="ScienceQA folder instead of the run's task_args.root")] = None,
          limit: Annotated[Optional[int], typer.Option(help="only the first problems of the split (smoke runs)")] = None,
          progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True) -> None:
    """Generate for every problem of a split, parse answers strictly and score (paper's columns).

    The rationale stage (QCM-LE) writes the generated rationales the answer stage (QCMG-A) reads."""
    from mrmkg.tasks.scienceqa.task import evaluate_scienceqa

    m = evaluate_scienceqa(checkpoint, out, split=split, batch_size=batch_size, kg=kg, rationales=rationales,
                           limit=limit, root=root, progress=progress)
    if "rouge_l" in m:
        print(f"rouge_l={m['rouge_l']:.2f} exact_match={m['exact_match']:.2f} n={m['n']}")
    else:
        print(f"Average={m['accuracy']['Average']} n={m['total']['Average']} unparsed={m['unparsed']}")
    print(f"wrote {out}/predictions.jsonl and {out}/metrics.json")
