"""The command line's grammar: one word and one help text per concept, shared by every command.

============  ====================================================================================
concept       form
============  ====================================================================================
checkpoint    ``CHECKPOINT``, the first positional argument of a command that loads a trained model
              (``mrmkg eval CHECKPOINT``, ``mrmkg ask CHECKPOINT``, ``mrmkg scienceqa eval CHECKPOINT``)
graph         ``GRAPH`` positional when the command is about the graph itself (``kg stats GRAPH``,
              ``kg retrieve GRAPH QUERY``, ``stage1 kg-qa GRAPH``); ``--graph DIR`` when it only
              chooses or overrides the graph a checkpoint or evaluation recorded
output        ``-o/--out DIR``: always a folder, never a file; each command's description names the
              files inside. A command that replaces the folder builds it under a temporary name and
              renames it when complete (:func:`mrmkg.fileio.atomic_dir`), after
              :func:`check_out_dir` has refused a folder that is not an earlier output of it.
input format  ``--format`` (``kg build``); the prompt format of ScienceQA is ``--prompt-format``
device        ``--device cpu|cuda|cuda:N`` on every command that runs a trained model
dtype         ``--dtype bf16|fp16|fp32`` on every command that runs a model: the dtype the frozen models
              load in (the trained parts stay float32)
JSON          ``--json`` on every command that prints a result: one JSON object per line on
              stdout, everything else on stderr
quiet         ``--quiet/-q`` on every long command: no progress bars, no tables, only the
              essential result line
============  ====================================================================================

Commands import the aliases below (``def cmd(checkpoint: Checkpoint, out: Out, ...)``) so a word
cannot drift between commands. Nothing heavy is imported here: ``mrmkg --help`` must not load torch.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from mrmkg.devices import check_device
from mrmkg.errors import InputError

__all__ = ["Checkpoint", "Graph", "GraphOverride", "Out", "Device", "Dtype", "Json", "Quiet",
           "check_device", "check_dtype", "check_out_dir", "human_output"]

DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}


def check_dtype(value: Optional[str]) -> Optional[str]:
    """``--dtype`` -> the torch dtype name (``bfloat16``, ``float16``, ``float32``), or None when not given."""
    if value is None:
        return None
    name = DTYPES.get(value.strip().lower())
    if name is None:
        # InputError (not typer.BadParameter) so that the CLI says it in one line, as --device does
        raise InputError(f"--dtype {value!r}: expected bf16, fp16 or fp32")
    return name


Checkpoint = Annotated[Path, typer.Argument(
    metavar="CHECKPOINT", show_default=False,
    help="trained checkpoint: a run folder of `mrmkg train`, its final/ folder, or a model folder")]

Graph = Annotated[Path, typer.Argument(
    metavar="GRAPH", show_default=False, help="a graph folder written by `mrmkg kg build`")]

GraphOverride = Annotated[Optional[Path], typer.Option(
    "--graph", metavar="DIR", show_default=False,
    help="graph folder to use instead of the one the checkpoint or evaluation recorded "
         "(e.g. when it was made on another machine)")]

Out = Annotated[Path, typer.Option(
    "--out", "-o", metavar="DIR", show_default=False,
    help="output folder (never a file); the command's description lists what it writes there")]

Device = Annotated[Optional[str], typer.Option(
    "--device", metavar="DEVICE", callback=check_device,
    help="where the model runs: cpu, cuda or cuda:N (results agree up to float rounding), or auto: the frozen "
         "LLM spread over every visible GPU by accelerate's device_map='auto' (a model larger than one card)")]

Dtype = Annotated[Optional[str], typer.Option(
    "--dtype", metavar="DTYPE", callback=check_dtype,
    help="dtype the frozen models load in: bf16, fp16 or fp32 (default: the config's, else fp32); "
         "bf16 halves their memory, the trained parts stay fp32")]

Json = Annotated[bool, typer.Option(
    "--json", help="print the result as JSON on stdout (one object per line) instead of text and tables; "
                   "everything else goes to stderr")]

Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="no progress bars and no tables: print only the essential result line")]


def check_out_dir(out: Path, marker: str | None = None, what: str = "an output of this command") -> Path:
    """Refuse, before any work, an ``-o/--out`` that cannot become the output folder.

    ``out`` must be a folder or not exist, and its first existing ancestor a folder where a (removed at
    once) temporary folder can be made. With
    ``marker`` (a file every output of the command holds), a non-empty folder without it is refused:
    the command replaces the whole folder, and this one is not ``what`` (an earlier output of it).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("-o/--out must be a folder, and a file of that name exists", path=out)
    if marker is not None and out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise InputError(f"-o/--out is a non-empty folder that is not {what} (it has no {marker}); refusing to "
                         "replace it (choose a new or empty folder)", path=out)
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"-o/--out cannot be created: {parent} is not a folder", path=out)
    try:  # really write there: permission bits do not tell (root, read-only mounts, /proc)
        probe = tempfile.mkdtemp(dir=parent, prefix=".mrmkg-probe-")
    except OSError as e:
        raise InputError(f"-o/--out cannot be created: cannot write in {parent} ({e.strerror or e})", path=out) from None
    os.rmdir(probe)
    return out


@contextlib.contextmanager
def human_output(as_json: bool) -> Iterator[None]:
    """With ``--json``, send what the library prints for people (tables, summaries) to stderr, so that
    stdout carries only the JSON printed after this block."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield
