"""The training configuration: YAML plus overrides, errors naming file, line and field, the CLI's
handling of bad configs, and a config read without importing torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from engine_toy import cli_env
from mrmkg.cli import main as cli_main
from mrmkg.engine import load_train_config
from mrmkg.errors import InputError


def test_config_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("task: mars\nseed: 3\noptim:\n  lr: 2e-5\n  scheduler: cosine\nmodel:\n  n_triples: 10\n")
    cfg = load_train_config(p, ["optim.lr=0.001", "model.n_triples=20", "task_args.prompt=kg_text"])
    assert cfg.seed == 3 and cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.scheduler == "cosine"
    assert cfg.optim.weight_decay == 0.01  # the paper's default survives
    assert cfg.model == {"n_triples": 20} and cfg.task_args == {"prompt": "kg_text"}


@pytest.mark.parametrize("text,line,needle", [
    ("seed: 1\noptim:\n  lr: fast\n", 3, "optim.lr"),
    ("seed: 1\nbatchsize: 4\n", 2, "unknown field"),
    ("precision: fp16\n", 1, "'bf16', 'fp32'"),
    ("epochs: 0\n", 1, "field 'epochs': must be >= 1, got 0"),
])
def test_config_errors_name_file_line_field(tmp_path, text, line, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_train_config(p)
    assert str(p) in str(e.value) and needle in str(e.value)
    assert e.value.line == line


def test_cli_bad_config_exits_2(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  warmup_steps: many\n")
    assert cli_main(["train", "--config", str(p)]) == 2
    assert f"{p}:2" in capsys.readouterr().err
    assert cli_main(["train", "--set", "nonsense"]) == 2
    assert cli_main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_cli_help_lists_fields(capsys):
    assert cli_main(["train", "--list-fields"]) == 0
    out = capsys.readouterr().out
    for name in ("optim.lr", "optim.weight_decay", "grad_accum", "checkpoint_every", "precision", "init_from"):
        assert name in out


def test_reading_a_config_does_not_import_torch(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 3\n")
    code = (f"import sys; from mrmkg.engine import load_train_config; assert load_train_config({str(p)!r}).seed == 3; "
            "print(sorted(m for m in ('torch', 'accelerate', 'transformers') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
