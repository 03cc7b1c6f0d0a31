"""The command line's contract: user errors exit 2 with one readable message and no traceback; anything
else one line naming the command (exit 1, --debug for the traceback); --version; one grammar (the same
word, the same help text, in every command); `mrmkg --help` loads no torch."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer.main
import yaml

from sqa_fixture import scienceqa_root
from test_cli_kg import run  # main(argv) -> (exit status, stdout, stderr)

from mrmkg import cli
from mrmkg.commands import options

FIX = scienceqa_root()
SRC = Path(__file__).resolve().parents[1] / "src"


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"mrmkg {version('mrmkg')}"


@pytest.mark.parametrize("argv,needles", [
    (["frobnicate"], ["No such command 'frobnicate'", "mrmkg --help"]),
    (["train", "--no-such-option"], ["No such option: --no-such-option", "mrmkg train --help"]),
    (["eval"], ["Missing argument 'CHECKPOINT'"]),
    (["scienceqa", "eval"], ["Missing argument 'CHECKPOINT'"]),
    (["train", "-c", "/nonexistent/run.yaml"], ["/nonexistent/run.yaml", "not found"]),
    (["kg", "stats", "/nonexistent/graph"], ["/nonexistent/graph"]),
    (["scienceqa", "score", str(FIX), str(FIX / "predictions_test.jsonl"), "--split", "nope"], ["'nope'"]),
    (["scienceqa", "prompts", str(FIX), "--limit", "-1"], ["--limit", "greater than or equal to 0"]),
    (["scienceqa", "eval", "/nonexistent/run", "-o", "/nonexistent/o", "--device", "gpu7"],
     ["--device 'gpu7'", "expected cpu, cuda or cuda:N"]),
    (["train", "--print-config", "--device", "cuda:x"], ["expected cpu, cuda or cuda:N"]),
    (["train", "--list-fields", "--task", "nope"], ["unknown task 'nope'", "mars"]),
    (["train", "--task", "mars"], ["--task only restricts --list-fields"]),
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


# ------------------------------------------------------------------------------ the last resort
@pytest.fixture
def stats_fails(monkeypatch):
    """`mrmkg kg stats` raising what a library bug would raise."""
    from mrmkg.kg.graph import MMKG

    def load(path, *args, **kwargs):
        raise RuntimeError(f"index out of range\nwhile reading {path}")

    monkeypatch.setattr(MMKG, "load", load)
    monkeypatch.delenv("MRMKG_DEBUG", raising=False)


def test_an_unexpected_error_is_one_line_naming_the_command_and_exits_1(stats_fails, capsys):
    rc, out, err = run(["kg", "stats", "/some/graph"], capsys)
    assert rc == 1 and out == ""
    assert err == ("error: mrmkg kg stats: RuntimeError: index out of range while reading /some/graph "
                   "(run again with --debug or MRMKG_DEBUG=1 for the traceback)\n")


def test_debug_and_MRMKG_DEBUG_reraise_for_the_traceback(stats_fails, monkeypatch, capsys):
    with pytest.raises(RuntimeError, match="index out of range"):
        cli.main(["--debug", "kg", "stats", "/some/graph"])
    monkeypatch.setenv("MRMKG_DEBUG", "1")
    with pytest.raises(RuntimeError, match="index out of range"):
        cli.main(["kg", "stats", "/some/graph"])
    monkeypatch.setenv("MRMKG_DEBUG", "0")
    assert cli.main(["kg", "stats", "/some/graph"]) == 1


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied", "/srv/graph/graph.json"),
                                   IsADirectoryError(21, "Is a directory", "/srv/graph/graph.json"),
                                   NotADirectoryError(20, "Not a directory", "/srv/graph/graph.json"),
                                   FileExistsError(17, "File exists", "/srv/graph/graph.json")])
def test_a_path_that_cannot_be_used_exits_2_naming_it(error, monkeypatch, capsys):
    from mrmkg.kg.graph import MMKG

    def load(path, *args, **kwargs):
        raise error

    monkeypatch.setattr(MMKG, "load", load)
    rc, _, err = run(["kg", "stats", "/srv/graph"], capsys)
    assert rc == 2 and err == f"error: /srv/graph/graph.json: {error.strerror.lower()}\n"


def test_an_output_folder_that_cannot_be_one_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, needle in ((tmp_path / "file", "must be a folder"), (tmp_path / "file" / "sub", "is not a folder")):
        rc, _, err = run(["scienceqa", "score", str(FIX), str(FIX / "predictions_test.jsonl"), "-o", str(out)], capsys)
        assert rc == 2 and str(out) in err and needle in err and "Traceback" not in err


# ------------------------------------------------------------------------------ one grammar
# typer vendors its own click: parameters are told apart by param_type_name, not isinstance(click.Option)
def _commands(cmd=None, path=()):
    """(command path, click command) of every leaf command of the app."""
    cmd = cmd or typer.main.get_command(cli.app)
    subs = getattr(cmd, "commands", None)
    if not subs:
        yield " ".join(path), cmd
        return
    for name, sub in subs.items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands())
SHARED = {"--out": ("-o",), "--graph": (), "--device": (), "--json": (), "--quiet": ("-q",)}
RETIRED = ("--output-dir", "--kg", "--checkpoint", "--progress", "--no-progress")
PENDING: set = set()  # commands not yet on options.py (strict xfail): none


def _shared_help(name):
    alias = {"--out": options.Out, "--graph": options.GraphOverride, "--device": options.Device,
             "--json": options.Json, "--quiet": options.Quiet}[name]
    return alias.__metadata__[0].help


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="eval.py and "
                                  "ask.py are the lead's; they adopt options.py")) if p in PENDING else p for p in COMMANDS])
def test_every_command_speaks_the_grammar(path):
    cmd = COMMANDS[path]
    for p in cmd.params:
        if p.param_type_name == "option":
            assert p.help, f"{path} {p.opts} has no help text"
            assert not set(p.opts + p.secondary_opts) & set(RETIRED), f"{path}: {p.opts} is retired"
            name = next((o for o in p.opts if o in SHARED), None)
            if name is not None:
                assert set(SHARED[name]) <= set(p.opts), f"{path} {name}: expected also {SHARED[name]}"
                assert p.help == _shared_help(name), f"{path} {name}: its help is not the shared one"
        elif p.param_type_name == "argument":
            assert getattr(p, "help", None), f"{path} argument {p.name} has no help text"
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    if any(p.name == "checkpoint" for p in cmd.params):
        assert args and args[0].name == "checkpoint", f"{path}: CHECKPOINT is not the first argument"


@pytest.mark.parametrize("path,flags", [
    ("kg build", {"--out", "--quiet"}), ("kg stats", {"--json"}), ("kg retrieve", {"--json"}),
    ("scienceqa check", {"--json"}), ("scienceqa score", {"--out", "--json"}),
    ("scienceqa eval", {"--out", "--graph", "--device", "--json", "--quiet"}),
    ("stage1 vg", {"--out"}), ("stage1 kg-qa", {"--out"}),
    ("train", {"--out", "--device", "--json", "--quiet"}), ("explain", {"--graph", "--json"}),
    ("demo", {"--out", "--json", "--quiet"}),
    ("eval", {"--out", "--graph", "--device", "--json", "--quiet"}), ("ask", {"--device", "--json", "--quiet"}),
])
def test_the_shared_options_are_where_the_grammar_puts_them(path, flags):
    opts = {o for p in COMMANDS[path].params for o in p.opts}
    assert flags <= opts, sorted(flags - opts)


def test_help_loads_no_heavy_library():
    """`mrmkg --help` and every command's --help import no torch, transformers, FAISS or numpy (speed:
    benchmarks/cli_help.py)."""
    code = (
        "import contextlib, io, sys\n"
        "import typer.main\n"
        "from mrmkg import cli\n"
        "def paths(cmd, path=()):\n"
        "    yield list(path)\n"
        "    for name, sub in (getattr(cmd, 'commands', None) or {}).items():\n"
        "        yield from paths(sub, (*path, name))\n"
        "for p in paths(typer.main.get_command(cli.app)):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert cli.main(p + ['--help']) == 0, p\n"
        "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'numpy', 'accelerate', 'PIL', 'safetensors')\n"
        "             if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


# ------------------------------------------------------------------------------ train
def test_train_options_map_onto_the_config(tmp_path, capsys):
    rc, out, _ = run(["train", "--print-config", "-o", str(tmp_path / "run"), "--device", "cpu", "-q"], capsys)
    cfg = yaml.safe_load(out)
    assert rc == 0 and cfg["output_dir"] == str(tmp_path / "run") and cfg["cpu"] is True and cfg["progress"] is False
    if torch.cuda.is_available():
        rc, out, _ = run(["train", "--print-config", "--device", "cuda"], capsys)
        assert rc == 0 and yaml.safe_load(out)["cpu"] is False
    else:
        rc, _, err = run(["train", "--print-config", "--device", "cuda"], capsys)
        assert rc == 2 and "no CUDA GPU is visible" in err


def test_list_fields_covers_training_model_and_task_fields(capsys):
    from mrmkg.tasks.registry import get_task

    rc, out, _ = run(["train", "--list-fields"], capsys)
    assert rc == 0
    for name in ("optim.lr", "grad_accum", "model.graph_encoder", "model.gnn_layers", "model.llm"):
        assert f"  {name} (default " in out
    for task in ("mars", "markg", "scienceqa", "stage1", "demo", "demo_stage1"):
        fields = dataclasses.fields(get_task(task).config_class)
        assert f"task_args of task {task!r} ({get_task(task).config_class.__name__}" in out
        assert f"  task_args.{fields[0].name} (default " in out
    assert "task_args of task 'toy': not listed (ToyTask names no config_class)" in out
    rc, out, _ = run(["train", "--list-fields", "--task", "scienceqa"], capsys)
    assert rc == 0 and "task_args of task 'scienceqa'" in out and "task 'mars'" not in out


TOY = ["train", "--set", "task=toy", "--set", "epochs=1", "--set", "batch_size=8", "--set", "precision=fp32",
       "--set", "optim.warmup_steps=1"]


def test_train_json_prints_the_summary_and_quiet_one_line(tmp_path, capsys):
    rc, out, _ = run([*TOY, "-o", str(tmp_path / "a"), "--json"], capsys)
    assert rc == 0
    summary = json.loads(out)  # stdout holds the JSON only
    assert summary == json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["task"] == "toy" and summary["steps"] == 96 // 8
    rc, out, err = run([*TOY, "-o", str(tmp_path / "b"), "-q"], capsys)
    assert rc == 0 and err == ""
    assert out.startswith(f"wrote {tmp_path / 'b'}: 12 steps, accuracy=") and len(out.splitlines()) == 1


# ------------------------------------------------------------------------------ scienceqa, explain
def test_scienceqa_check_and_score_json(tmp_path, capsys):
    rc, out, _ = run(["scienceqa", "check", str(FIX), "--json"], capsys)
    assert rc == 0 and json.loads(out)["splits"]["test"]["problems"] == 12
    rc, out, err = run(["scienceqa", "score", str(FIX), str(FIX / "predictions_test.jsonl"), "--json",
                        "-o", str(tmp_path / "m")], capsys)
    j = json.loads(out)
    assert rc == 0 and j["accuracy"]["Average"] == 58.33 and j["split"] == "test"
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["accuracy"] == j["accuracy"]
    assert f"wrote {tmp_path / 'm' / 'metrics.json'}" in err


@pytest.mark.parametrize("recorded,named", [({"task": "scienceqa"}, "'scienceqa'"), ({}, "'non-MARS'")])
def test_explain_says_it_reads_only_mars_evaluations_yet(tmp_path, capsys, recorded, named):
    """An evaluation of another task's checkpoint (it records its task, or a split name and no MARS split
    file) gets one line naming what explain reads, never a request for a graph and a split file."""
    (tmp_path / "eval_config.yaml").write_text(yaml.safe_dump({"checkpoint": "runs/x", "split": "test", **recorded,
                                                               "batch_size": 8, "task_args": {"root": "x"}}))
    (tmp_path / "predictions.jsonl").write_text(json.dumps({"pid": "1", "prediction": 0}) + "\n")
    rc, _, err = run(["explain", str(tmp_path)], capsys)
    assert rc == 2 and f"evaluation of a {named} checkpoint" in err and "reads evaluations of MARS checkpoints" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ --json and --quiet around a library call
def test_scienceqa_eval_json_and_quiet_around_the_evaluation(monkeypatch, tmp_path, capsys):
    import mrmkg.tasks.scienceqa.task as sqa_task

    calls = []

    def evaluate(checkpoint, out, **kw):
        calls.append(kw)
        print("the scores table")  # what evaluate_scienceqa prints for people
        return {"accuracy": {"Average": 50.0}, "total": {"Average": 2}, "unparsed": 0}

    monkeypatch.setattr(sqa_task, "evaluate_scienceqa", evaluate)
    rc, out, err = run(["scienceqa", "eval", str(tmp_path / "run"), "-o", str(tmp_path / "e"), "--json",
                        "--graph", str(tmp_path / "g")], capsys)
    assert rc == 0 and json.loads(out)["accuracy"] == {"Average": 50.0} and "the scores table" in err
    assert calls[-1]["kg"] == str(tmp_path / "g") and calls[-1]["device"] == "cpu" and calls[-1]["progress"] is True
    rc, out, err = run(["scienceqa", "eval", str(tmp_path / "run"), "-o", str(tmp_path / "e"), "-q"], capsys)
    assert rc == 0 and calls[-1]["progress"] is False
    assert out.splitlines()[-1] == "Average=50.0 n=2 unparsed=0" and "wrote" not in out


def test_demo_json_and_quiet(monkeypatch, tmp_path, capsys):
    import mrmkg.demo

    seen = []

    def run_demo(cfg, fresh=False, **kw):
        seen.append(cfg)
        print("the ladder table")  # what the demo prints for people
        return {"rungs": {"no_kg": {"metrics": {"overall": 0.25}}, "full": {"metrics": {"overall": 0.5}}}}

    monkeypatch.setattr(mrmkg.demo, "run_demo", run_demo)
    rc, out, err = run(["demo", "--quick", "-o", str(tmp_path / "d"), "--json"], capsys)
    assert rc == 0 and json.loads(out)["rungs"]["full"]["metrics"]["overall"] == 0.5 and "the ladder table" in err
    assert seen[-1].out == str(tmp_path / "d")
    rc, out, err = run(["demo", "--quick", "-o", str(tmp_path / "d"), "-q"], capsys)
    assert rc == 0 and seen[-1].progress is False and err == ""
    assert out == f"wrote {tmp_path / 'd'}/metrics.json (test accuracy: no_kg 25.0%, full 50.0%)\n"
