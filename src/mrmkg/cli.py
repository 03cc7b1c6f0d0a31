"""The ``mrmkg`` command line. Each command group lives in ``mrmkg.commands.<name>`` and exposes
a typer app (a group) or a function (a single command); the words they share (checkpoint, graph,
``-o/--out``, ``--device``, ``--json``, ``--quiet``) come from :mod:`mrmkg.commands.options`.

This file only wires them together and turns failures into one line on stderr:

* bad input (:class:`~mrmkg.errors.InputError`, a usage error, a missing file or a path that cannot be
  read or written): the cause, exit status 2, no traceback;
* anything else (a bug, a library failure): ``error: mrmkg <command>: <type>: <message>`` and where to
  get the traceback (``--debug`` or ``MRMKG_DEBUG=1``, which re-raise it), exit status 1.

Importing this module (and so ``mrmkg --help``) loads no torch, transformers or FAISS: command
modules import them inside the command bodies.
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings

import typer

from mrmkg.errors import InputError

app = typer.Typer(
    name="mrmkg",
    help="Multimodal reasoning with a multimodal knowledge graph (MR-MKG) on a frozen language model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("mrmkg")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown (not installed)"
        typer.echo(f"mrmkg {v}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the installed mrmkg version and exit."),
          debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error instead "
                                                            "of one line (same as MRMKG_DEBUG=1).")) -> None:
    """Multimodal reasoning with a multimodal knowledge graph (MR-MKG) on a frozen language model."""


# (module under mrmkg.commands, attribute, command name, is_group)
COMMANDS = [
    ("kg", "app", "kg", True),
    ("scienceqa", "app", "scienceqa", True),
    ("stage1", "app", "stage1", True),
    ("train", "train", "train", False),
    ("eval", "eval_command", "eval", False),
    ("ask", "ask_command", "ask", False),
    ("serve", "serve_command", "serve", False),
    ("explain", "explain_command", "explain", False),
    ("demo", "demo", "demo", False),
]

for _mod, _attr, _name, _group in COMMANDS:
    _obj = getattr(importlib.import_module(f"mrmkg.commands.{_mod}"), _attr)
    if _group:
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name)(_obj)

_GROUPS = {name for _, _, name, group in COMMANDS if group}

#: OSErrors about a path the user gave (or one derived from it): bad input, not a bug
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _command_of(argv: list[str]) -> tuple[str, bool]:
    """(``"kg build"``-style command name, whether ``--debug`` was given) from the arguments."""
    words, debug = [], False
    for a in argv:
        if a.startswith("-"):
            if not words:
                debug = debug or a == "--debug"
            continue
        words.append(a)
        if len(words) == 2 or words[0] not in _GROUPS:
            break
    return " ".join(words) or "(no command)", debug


def _path_error(e: OSError) -> str:
    what = "file not found" if isinstance(e, FileNotFoundError) else (e.strerror or type(e).__name__).lower()
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {what}" if paths else f"{what}: {e}"


def _one_line_warnings(fmt):
    """``warnings.formatwarning`` that prints mrmkg's own warnings about the user's files (an unverified
    graph folder or checkpoint) as one ``warning: ...`` line instead of Python's file:line and source
    (formatting only: warnings still go through filters and ``catch_warnings`` as usual)."""
    from mrmkg.manifest import UnverifiedArtifactWarning

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, UnverifiedArtifactWarning):
            return f"warning: {message}\n"
        return fmt(message, category, filename, lineno, line)
    return formatwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app; user errors (bad input, bad usage) exit 2 with one line, no traceback;
    unexpected errors exit 1 with one line naming the command (``--debug`` / MRMKG_DEBUG=1 re-raise)."""
    args = list(sys.argv[1:] if argv is None else argv)
    command, debug = _command_of(args)
    debug = debug or os.environ.get("MRMKG_DEBUG", "").strip() not in ("", "0")
    fmt = warnings.formatwarning
    warnings.formatwarning = _one_line_warnings(fmt)
    try:
        return _run(args, command, debug)
    finally:
        warnings.formatwarning = fmt


def _check_utf8(args: list[str]) -> None:
    """Refuse an argument that is not valid UTF-8 (its bytes reach Python as lone surrogates): every
    command treats its arguments as text (questions, choices, hosts, names) or writes them into UTF-8
    JSON/YAML (paths in eval_config.yaml, metrics.json), where they would fail later and obscurely."""
    for i, a in enumerate(args, 1):
        try:
            a.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(a).decode("utf-8", "backslashreplace")
            raise InputError(f"argument {i} ('{shown}') is not valid UTF-8: mrmkg reads its arguments, file names "
                             "included, as UTF-8 text") from None


def _run(args: list[str], command: str, debug: bool) -> int:
    try:
        _check_utf8(args)
        rc = app(args=args, prog_name="mrmkg", standalone_mode=False)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _PATH_ERRORS as e:
        print(f"error: {_path_error(e)}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except typer.Abort:
        return 1
    except typer.TyperException as e:  # usage errors (missing option, bad value); typer vendors click
        show = getattr(e, "show", None)
        if show:
            show()
        else:
            print(f"error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2) or 2)
    except SystemExit as e:
        return int(e.code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the last resort: a bug or a library failure, in one line unless asked
        if debug:
            raise
        message = " ".join(str(e).split()) or "(no message)"
        print(f"error: mrmkg {command}: {type(e).__name__}: {message} "
              "(run again with --debug or MRMKG_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return rc if isinstance(rc, int) else 0


def _entry() -> None:  # console-script target
    sys.exit(main())


if __name__ == "__main__":
    _entry()
