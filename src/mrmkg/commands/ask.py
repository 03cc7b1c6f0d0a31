"""`mrmkg ask CHECKPOINT "question"`: a trained checkpoint answers a question of one's own, with the
subgraph that produced the answer (see :class:`mrmkg.pipeline.Pipeline`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mrmkg.commands.options import Checkpoint, Device, Dtype, Json, Quiet
from mrmkg.errors import InputError


def parse_analogy(text: str) -> tuple[str, str, str]:
    """``"head : tail :: question : ?"`` -> ``(head, tail, question)``; InputError when malformed."""
    left, sep, right = text.partition("::")
    pair, query = left.split(":"), right.split(":")
    if not sep or len(pair) != 2 or len(query) != 2 or query[1].strip() not in ("?", "") \
            or not all(x.strip() for x in (*pair, query[0])):
        raise InputError(f"--analogy {text!r}: expected 'head : tail :: question : ?' (entity names or ids)")
    return pair[0].strip(), pair[1].strip(), query[0].strip()


def parse_choices(text: str) -> list[str]:
    """``"A|B|C"`` -> ``["A", "B", "C"]``; InputError for fewer than two or an empty choice."""
    choices = [c.strip() for c in text.split("|")]
    if len(choices) < 2 or not all(choices):
        raise InputError(f"--choices {text!r}: expected at least two non-empty options separated by '|'")
    return choices


def ask_command(
    checkpoint: Checkpoint,
    question: str = typer.Argument("", help="the question (analogy checkpoints: may be empty, give --analogy)"),
    image: Optional[Path] = typer.Option(None, "--image", help="a picture the question is about (PNG, JPEG...)"),
    choices: Optional[str] = typer.Option(None, "--choices", help="multiple-choice options separated by '|', "
                                                                  "e.g. 'iron|wood|glass' (ScienceQA checkpoints)"),
    analogy: Optional[str] = typer.Option(None, "--analogy", help="an analogy 'head : tail :: question : ?' with "
                                                                  "entity names or ids of the graph (MARS, demo)"),
    context: str = typer.Option("", "--context", help="extra context text (ScienceQA's hint)"),
    top_k: int = typer.Option(5, "--top-k", min=1, max=1000, help="how many scored candidates to show"),
    picture: Optional[Path] = typer.Option(None, "--picture", help="also draw the retrieved subgraph to this .png "
                                                                   "or .svg file"),
    device: Device = "cpu",
    dtype: Dtype = None,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Answer a question with a trained checkpoint: the answer, the top candidates with their scores
    (or the generated text), the retrieved triples with their ids and retrieval scores, and the time
    spent encoding, retrieving and in the model."""
    if image is not None and not image.is_file():
        raise InputError("image not found", path=image)
    if not question.strip() and analogy is None:
        raise InputError("the question is empty: give a question (or --analogy for analogy checkpoints)")
    options = None if choices is None else parse_choices(choices)
    entities = None if analogy is None else parse_analogy(analogy)
    from mrmkg.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(checkpoint, device=device, dtype=dtype)
    ans = pipe(question, image=None if image is None else str(image), choices=options, analogy=entities, top_k=top_k,
               context=context)
    drawn = pipe.draw(ans, picture, title=question or analogy) if picture is not None else None
    if as_json:
        typer.echo(json.dumps({**ans.to_dict(), "picture": None if drawn is None else str(drawn)}, ensure_ascii=False))
    elif quiet:
        typer.echo(ans.answer)
    else:
        print_answer(ans, drawn)


def print_answer(ans, picture: Path | None = None, console=None) -> None:
    """The answer, its candidates or generated text, the retrieved triples and the timings, as tables."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = console or Console()
    shown = escape(ans.answer) if ans.answer else "[red](none could be read from the generated text)[/]"
    con.print(f"[bold]answer:[/] {shown}" + (f"  [dim]({escape(str(ans.answer_id))})[/]" if ans.answer_id else ""))
    if ans.text is not None and ans.text.strip() != ans.answer:
        con.print(f"[bold]generated:[/] {escape(ans.text)}")
    if ans.candidates:
        t = Table(title="top candidates", show_header=True)
        for col, just in (("#", "right"), ("id", "left"), ("name", "left"), ("score", "right")):
            t.add_column(col, justify=just)
        for i, c in enumerate(ans.candidates, 1):
            t.add_row(str(i), escape(c.id), escape(c.name), f"{c.score:.4f}")
        con.print(t)
    triples = (ans.subgraph or {}).get("triples", [])
    if triples:
        t = Table(title="retrieved subgraph (the knowledge the model read)", show_header=True)
        for col, just in (("triple", "right"), ("head", "left"), ("relation", "left"), ("tail", "left"), ("score", "right")):
            t.add_column(col, justify=just)
        for r in triples:
            t.add_row(str(r["id"]), escape(r["head_name"]), escape(r["relation_name"]), escape(r["tail_name"]),
                      f"{r['score']:.3f}")
        con.print(t)
    else:
        con.print("[dim]no triples retrieved (this checkpoint uses no knowledge, or none was found)[/]")
    memory = (ans.subgraph or {}).get("memory") or []
    if memory:
        con.print("analogy memory: " + "; ".join(escape(f"{m['head']} -{m['relation']}-> {m['tail']} (x{m['count']:g})")
                                                 for m in memory))
    tm = ans.timings
    con.print("[dim]time: " + ", ".join(f"{k} {1000 * tm[k]:.1f} ms" for k in ("encode", "retrieve", "model") if k in tm) + "[/]")
    if picture is not None:
        con.print(f"picture of the subgraph: {picture}")
