"""The command line's contract: user errors exit 2 with one readable message and no traceback; --version."""
from __future__ import annotations

import pytest

from test_cli_kg import run  # main(argv) -> (exit status, stdout, stderr)

from mrmkg import cli


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"mrmkg {version('mrmkg')}"


@pytest.mark.parametrize("argv,needles", [
    (["frobnicate"], ["No such command 'frobnicate'", "mrmkg --help"]),
    (["train", "--no-such-option"], ["No such option: --no-such-option", "mrmkg train --help"]),
    (["eval"], ["Missing argument 'checkpoint'"]),
    (["train", "-c", "/nonexistent/run.yaml"], ["/nonexistent/run.yaml", "not found"]),
    (["kg", "stats", "/nonexistent/graph"], ["/nonexistent/graph"]),
])
def test_user_errors_exit_2_with_a_message_and_no_traceback(argv, needles, capsys):
    rc, out, err = run(argv, capsys)
    assert rc == 2, (out, err)
    assert all(n in err for n in needles), err
    assert "Traceback" not in out + err


def test_interrupt_exits_130_without_a_traceback(monkeypatch, capsys):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", interrupted)
    rc, _, err = run(["train"], capsys)
    assert rc == 130 and err.strip() == "interrupted"
