"""The ``mrmkg`` command line. Each command group lives in ``mrmkg.commands.<name>`` and exposes
a typer app (a group) or a function (a single command); this file only wires them together and
turns user errors into one line on stderr and exit status 2, never a traceback."""
from __future__ import annotations

import importlib
import sys

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
                                       help="Print the installed mrmkg version and exit.")) -> None:
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app; user errors (bad input, bad usage) exit 2 with one line, no traceback."""
    try:
        rc = app(args=argv, prog_name="mrmkg", standalone_mode=False)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e.filename or e}: file not found", file=sys.stderr)
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
    return rc if isinstance(rc, int) else 0


def _entry() -> None:  # console-script target
    sys.exit(main())


if __name__ == "__main__":
    _entry()
