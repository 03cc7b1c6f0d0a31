"""Hostile input against the CLI (issue 25): crafted and damaged checkpoints on `mrmkg eval` / `ask`,
and the telling cases of the wider campaign (research/hostile/campaign.py). Each gets exit status 2
and one line naming the file or the value, never a traceback. Cheap artifacts only: a checkpoint
folder of a ScienceQA task without a graph (its features are empty, so a crafted mrmkg.json is read
before any model loads) and, for the weights, a tiny random LLaMA."""
from __future__ import annotations

import json

import pytest
import yaml

from mrmkg.cli import main
from mrmkg.manifest import CHECKSUMS, write_checksums
from sqa_fixture import scienceqa_root


pytestmark = pytest.mark.filterwarnings("ignore::mrmkg.manifest.UnverifiedArtifactWarning")


def _one_error_line(capsys) -> str:
    """The one ``error:`` line on stderr (besides warnings and a model's loading bar), no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def _checkpoint(root, task_args=None, model=None):
    """``root/run/final`` with a train_config.yaml of a graph-less ScienceQA task; returns the model folder."""
    final = root / "run" / "final"
    (final / "model").mkdir(parents=True)
    cfg = {"task": "scienceqa", "task_args": {"root": str(scienceqa_root()), "prompt": {"retrieval": "none"},
                                              **(task_args or {})}}
    if model:
        cfg["model"] = model
    (final / "train_config.yaml").write_text(yaml.safe_dump(cfg))
    return final / "model"


COMMANDS = {"eval": ["eval", "{run}", "-o", "{tmp}/evout"], "ask": ["ask", "{run}", "Which?", "--choices", "a|b"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "no-manifest"])
@pytest.mark.parametrize("meta,reason", [
    ({"format_version": 2}, "mrmkg.json (no 'config' key)"),
    ([1, 2], "mrmkg.json (a JSON list, expected an object)"),
    ({}, "mrmkg.json ('format_version' is None, expected 2)"),
    ({"format_version": "2"}, "mrmkg.json ('format_version' is '2', expected 2)"),
    ({"format_version": 2, "config": {}, "frozen": {"llm": 3}, "dims": {}}, "mrmkg.json ('llm' is int, expected str)"),
    ({"format_version": 2, "config": {}, "frozen": {"llm": "x"}, "dims": {"d": -1}}, "mrmkg.json (dims.d is -1"),
    ({"format_version": 2, "config": {}, "frozen": {"llm": "x"},
      "dims": dict(d=8, text_dim=4, vision_dim=0, num_entities=0, num_relations=0, image_token_dim=None)},
     "model.safetensors (not a valid safetensors file"),
    ({"format_version": 1}, "mrmkg.json: checkpoint format 1 is older than this mrmkg's format 2"),
])
def test_crafted_mrmkg_json_on_eval_and_ask(tmp_path, capsys, command, manifest, meta, reason):
    """Issue 25: `model/mrmkg.json` of `{"format_version": 1}`, `[1, 2]`, `{}`... -> exit 2, one line naming
    the file; with a manifest a stranger wrote to match, the content checks still catch it."""
    model = _checkpoint(tmp_path)
    (model / "mrmkg.json").write_text(json.dumps(meta))
    (model / "model.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}garbage")
    if manifest:
        write_checksums(model, ["mrmkg.json", "model.safetensors"], kind="model")
    argv = [a.replace("{run}", str(tmp_path / "run")).replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert reason in line, line
    if "older" not in reason:
        assert line.startswith(f"error: checkpoint {model} is damaged: "), line
    assert not (tmp_path / "evout").exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A real model folder (``save_pretrained`` of a graph-less ScienceQA model on a tiny random LLaMA)."""
    from mrmkg.engine import TrainConfig
    from mrmkg.tasks.registry import make_task
    from test_model_common import save_tiny_llm

    root = tmp_path_factory.mktemp("tiny")
    model_args = {"llm": save_tiny_llm("llama", root / "llm"), "dtype": "fp32", "gnn_hidden": 16, "gnn_heads": 2,
                  "gnn_relation_dim": 8, "use_kg": False, "max_prompt_tokens": 96, "max_target_tokens": 8}
    model_dir = _checkpoint(root, model=model_args)
    cfg = yaml.safe_load((model_dir.parent / "train_config.yaml").read_text())
    task = make_task(TrainConfig(task="scienceqa", task_args=cfg["task_args"], model=model_args))
    task.build_model().save_pretrained(model_dir)
    write_checksums(model_dir.parent, ["train_config.yaml"], kind="final")  # as write_final does
    return root


def _copy(src, tmp_path):
    import shutil

    shutil.copytree(src, tmp_path / "c")
    cfg = tmp_path / "c" / "run" / "final" / "train_config.yaml"
    cfg.write_text(cfg.read_text().replace(str(src), str(tmp_path / "c")))
    write_checksums(cfg.parent, ["train_config.yaml"], kind="final")  # the copy's own config, intact
    return tmp_path / "c" / "run", tmp_path / "c" / "run" / "final" / "model"


def _truncate(model):
    p = model / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-100])


def _other_tensors(model):
    from safetensors.torch import load_file, save_file

    state = load_file(str(model / "model.safetensors"))
    name = sorted(state)[0]
    state[name + ".extra"] = state.pop(name)
    save_file(state, str(model / "model.safetensors"))


def _other_shape(model):
    from safetensors.torch import load_file, save_file

    state = load_file(str(model / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name].flatten()[:-1].clone()
    save_file(state, str(model / "model.safetensors"))


@pytest.mark.parametrize("damage,manifest,reason", [
    (_truncate, "keep", "model.safetensors ({n} bytes, the manifest says"),
    (_truncate, "rewrite", "model.safetensors (not a valid safetensors file"),
    (_truncate, "drop", "model.safetensors (not a valid safetensors file"),
    (_other_tensors, "keep", "model.safetensors ({n} bytes, the manifest says"),
    (_other_tensors, "rewrite", "the tensors are not the model's trainable parameters: missing"),
    (_other_shape, "rewrite", "has shape"),
    (lambda m: (m / CHECKSUMS).write_text("[]"), "keep", "checksums.json (expected"),
    (lambda m: (m / "model.safetensors").unlink(), "keep", "not an MR-MKG checkpoint"),
])
def test_damaged_weights_on_eval(tiny_checkpoint, tmp_path, capsys, damage, manifest, reason):
    """The weights of a real checkpoint truncated or replaced: refused by the manifest, or (a manifest
    rewritten to match, or none) by the safetensors header against the model's trainable parameters."""
    run, model = _copy(tiny_checkpoint, tmp_path)
    damage(model)
    if manifest == "rewrite":
        write_checksums(model, ["mrmkg.json", "model.safetensors"], kind="model")
    elif manifest == "drop":
        (model / CHECKSUMS).unlink()
    assert main(["eval", str(run), "-o", str(tmp_path / "evout")]) == 2
    line = _one_error_line(capsys)
    if "{n}" in reason:
        reason = reason.format(n=(model / "model.safetensors").stat().st_size)
    assert reason in line, line
    assert not (tmp_path / "evout").exists()


def test_an_intact_checkpoint_verifies_and_loads(tiny_checkpoint, tmp_path):
    """The same folder untouched: its manifest matches and the model loads (the tests above fail for
    the damage, not for the folder)."""
    import warnings

    from mrmkg.manifest import UnverifiedArtifactWarning
    from mrmkg.pipeline import Pipeline

    run, model = _copy(tiny_checkpoint, tmp_path)
    assert json.loads((model / CHECKSUMS).read_text())["kind"] == "model"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedArtifactWarning)
        pipe = Pipeline.from_pretrained(run)
    assert pipe.model is not None


@pytest.mark.parametrize("argv", [["ask", "{bad}", "What?"], ["ask", "run", "{bad}"], ["serve", "run", "--host", "{bad}"],
                                  ["{bad}"], ["scienceqa", "score", "r", "p", "--out", "{bad}"]])
def test_arguments_that_are_not_utf8_are_one_line(capsys, argv):
    """A question, a host or a path whose bytes are not UTF-8 (they reach Python as lone surrogates)
    -> exit 2 naming the argument, before any command runs (the campaign found a tokenizer TypeError
    for `ask` and a UnicodeEncodeError for `serve --host`)."""
    bad = b"caf\xe9\xff".decode("utf-8", "surrogateescape")
    assert main([a.replace("{bad}", bad) for a in argv]) == 2
    line = _one_error_line(capsys)
    assert "('caf\\xe9\\xff') is not valid UTF-8" in line, line


@pytest.mark.parametrize("extra,reason", [
    (["Which?", "--choices", "|".join("abcdef")], "give at most 5 choices, not 6"),
    (["--analogy", "a : b :: c : ?"], "not analogies (--analogy is for MARS and demo checkpoints)"),
])
def test_ask_a_scienceqa_checkpoint_what_it_cannot_answer(tiny_checkpoint, capsys, extra, reason):
    """The campaign's `ask --choices` with more options than letters (an IndexError before) and
    `--analogy` on a ScienceQA model (\"the question is empty\" before)."""
    assert main(["ask", str(tiny_checkpoint / "run"), *extra]) == 2
    assert reason in _one_error_line(capsys)


def test_scienceqa_eval_rationales_on_a_checkpoint_that_is_not_an_answer_stage(tiny_checkpoint, tmp_path, capsys):
    """--rationales was silently ignored for a QCM-A checkpoint; it is refused, and nothing is written."""
    out = tmp_path / "out"
    assert main(["scienceqa", "eval", str(tiny_checkpoint / "run"), "-o", str(out), "--rationales",
                 str(tmp_path / "r.jsonl"), "-q"]) == 2
    assert "--rationales feeds the answer stage (prompt format QCMG-A)" in _one_error_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- the campaign's last tracebacks (s18-hostile2)
@pytest.mark.parametrize("text,line,reason", [
    ("[" * 100_000, 1, "JSON nested too deeply to read"),
    ('{"a": 1}\n{"a": [1,\n', 2, "not valid JSON at column"),
])
def test_json_too_deep_or_invalid_is_an_input_error_with_file_and_line(tmp_path, text, line, reason):
    """fileio.parse_json, under every JSON loader: a line of 100,000 `[` was a RecursionError."""
    from mrmkg.errors import InputError
    from mrmkg.fileio import read_json, read_jsonl

    p = tmp_path / "x.jsonl"
    p.write_text(text)
    with pytest.raises(InputError, match=reason) as e:
        list(read_jsonl(p))
    assert (e.value.path, e.value.line) == (str(p), line)
    with pytest.raises(InputError, match=reason):  # the whole text as one JSON document
        read_json(p)


def test_jsonl_graph_deep_nesting_and_no_triple(tmp_path):
    """`kg build` of a .jsonl graph: a deeply nested line names its line; a graph with no triple says
    what a triple looks like in JSON Lines (not head<TAB>relation<TAB>tail)."""
    from mrmkg.errors import InputError
    from mrmkg.kg.io import load_jsonl

    p = tmp_path / "g.jsonl"
    p.write_text('{"type": "entity", "id": "a", "name": "A"}\n' + "[" * 100_000 + "\n")
    with pytest.raises(InputError, match=r"g\.jsonl:2: JSON nested too deeply"):
        load_jsonl(p)
    p.write_text('{"type": "entity", "id": "a", "name": "A"}\n')
    with pytest.raises(InputError, match=r'no triples left .*expected lines \{"type": "triple", "head"'):
        load_jsonl(p)


@pytest.mark.parametrize("loader", ["mrmkg.json", "pid_splits.json", "scene_graphs.json"])
def test_json_files_not_utf8_or_too_deep(tmp_path, loader):
    """The whole-file JSON loaders this campaign reached: mrmkg.json (MRMKGConfig.load), ScienceQA's
    files and Visual Genome's (scene_graphs.json = `[\\xff]` was a UnicodeDecodeError)."""
    from mrmkg.errors import InputError
    from mrmkg.model.config import MRMKGConfig
    from mrmkg.tasks.kgqa.vg import _load_json
    from mrmkg.tasks.scienceqa.data import load_pid_splits

    load = {"mrmkg.json": MRMKGConfig.load, "pid_splits.json": load_pid_splits,
            "scene_graphs.json": lambda p: _load_json(p, "scene_graphs.json")}[loader]
    p = tmp_path / loader
    for data, reason in [(b"[\xff]", "bytes that are not UTF-8 at column 2"),
                         (b"\n" + b"[" * 100_000, "JSON nested too deeply")]:
        p.write_bytes(data)
        with pytest.raises(InputError, match=reason) as e:
            load(p)
        assert e.value.path == str(p)


@pytest.mark.parametrize("model,damaged", [("plain", "final/model is damaged: model.safetensors (not a valid "
                                                      "safetensors file"),
                                           ("bare", "final is damaged: trainable.safetensors (140 bytes, the manifest")])
def test_init_from_garbage_weights_names_the_file(tmp_path, model, damaged):
    """init_from a run whose weights are garbage was a SafetensorError: the folder's manifest (final/ has
    one since s18-hostile2) or, without one, the safetensors header names the file."""
    from engine_toy import toy_config
    from mrmkg.engine import train
    from mrmkg.errors import InputError

    a = train(toy_config(tmp_path / "a", epochs=1, task_args={"model": model}))
    weights = a.output_dir / "final" / ("model/model.safetensors" if model == "plain" else "trainable.safetensors")
    weights.write_bytes(b"garbage" * 20)
    with pytest.raises(InputError, match="point field 'init_from' at another run") as e:
        train(toy_config(tmp_path / "b", epochs=1, init_from=str(a.output_dir)))
    assert f"checkpoint {a.output_dir}/{damaged}" in str(e.value), e.value
    assert not (tmp_path / "b" / "run" / "final").exists()


def test_final_folder_verifies_itself(tmp_path, capsys):
    """final/ holds train_config.yaml (it rebuilds the task whenever the run loads) and, for a model
    without save_pretrained, the weights: its checksums.json is checked by resolve_checkpoint."""
    from mrmkg.manifest import DamagedCheckpointError
    from mrmkg.pipeline import verify_final

    final = tmp_path / "final"
    final.mkdir()
    (final / "train_config.yaml").write_text("task: toy\n")
    write_checksums(final, ["train_config.yaml"], kind="final")
    verify_final(final)  # intact
    (final / "train_config.yaml").write_text("task: tox\n")  # same size, other content
    with pytest.raises(DamagedCheckpointError, match="train_config.yaml .content differs from the manifest"):
        verify_final(final)


def test_serve_logs_a_bad_checkpoint_in_one_line(tiny_checkpoint, tmp_path, caplog):
    """A damaged checkpoint: the server log said the right thing after the InputError's traceback; now one
    line (a real bug still gets its traceback)."""
    import logging

    from mrmkg.serve.app import Service
    from mrmkg.serve.config import ServeConfig
    from mrmkg.serve.metrics import Metrics

    run, model = _copy(tiny_checkpoint, tmp_path)
    (model / "mrmkg.json").write_text("{}")
    service = Service(ServeConfig(), Metrics())
    try:
        with caplog.at_level(logging.ERROR, logger="mrmkg.serve"):
            service.load(str(run), "cpu")
    finally:
        service.executor.shutdown()
    assert f"checkpoint {model} is damaged: mrmkg.json (2 bytes" in service.load_error
    [record] = [r for r in caplog.records if r.name == "mrmkg.serve"]
    assert record.exc_info is None and service.load_error in record.getMessage()


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e400"])
def test_serve_refuses_a_timeout_that_is_not_a_finite_positive_number(capsys, value):
    assert main(["serve", "nowhere", "--timeout", value]) == 2
    assert "Invalid value for '--timeout'" in capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("timeout_s", float("inf")), ("timeout_s", float("nan")),
                                         ("max_wait_ms", float("nan")), ("max_wait_ms", -1.0)])
def test_serve_config_refuses_non_finite_numbers(field, value):
    from mrmkg.errors import InputError
    from mrmkg.serve.config import ServeConfig

    with pytest.raises(InputError, match="must be a finite number"):
        ServeConfig(**{field: value})


@pytest.mark.parametrize("argv,option", [
    (["stage1", "kg-qa", "G", "-o", "X", "--max-answers", "0"], "--max-answers"),
    (["stage1", "kg-qa", "G", "-o", "X", "--max-triples", "-1"], "--max-triples"),
    (["stage1", "kg-qa", "G", "-o", "X", "--max-instances", "-1"], "--max-instances"),
    (["stage1", "kg-qa", "G", "-o", "X", "--seed", "-1"], "--seed"),
    (["stage1", "vg", "V", "-o", "X", "--max-instances", "-1"], "--max-instances"),
    (["stage1", "vg", "V", "-o", "X", "--max-triples", "0"], "--max-triples"),
    (["kg", "retrieve", "G", "q", "-n", "0"], "-n"),
    (["kg", "retrieve", "G", "q", "--hops", "-1"], "--hops"),
    (["kg", "retrieve", "G", "q", "--min-score", "inf"], "--min-score"),
    (["kg", "build", "S", "-o", "X", "--exact-max", "0"], "--exact-max"),
    (["train", "--seed", "-1"], "--seed"),
])
def test_numeric_options_out_of_range_are_usage_errors(capsys, argv, option):
    """Counts >= 1 (or >= 0), seeds in [0, 2**32), finite floats: refused by the option, before anything
    is read (stage1's were ValueErrors from inside, or silently accepted)."""
    assert main(argv) == 2
    assert f"Invalid value for '{option}'" in capsys.readouterr().err


@pytest.mark.parametrize("config,kw,name", [("KGQAConfig", {"max_answers": 0}, "max_answers"),
                                            ("KGQAConfig", {"max_instances": -1}, "max_instances"),
                                            ("KGQAConfig", {"seed": -1}, "seed"),
                                            ("VGConfig", {"max_instances": -1}, "max_instances"),
                                            ("VGConfig", {"images_per_entity": -1}, "images_per_entity")])
def test_stage1_configs_check_their_bounds(config, kw, name):
    """The library path too (yamlconfig.check_bounds in __post_init__): an InputError naming the field."""
    from mrmkg.errors import InputError
    from mrmkg.tasks.kgqa import data, vg

    cls = getattr(data if config == "KGQAConfig" else vg, config)
    with pytest.raises(InputError, match=f"field '{name}': must be >= "):
        cls(**kw)
