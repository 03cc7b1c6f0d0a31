"""Config files: every shipped one validates and each overlay says what it means; ``base:`` composition,
its errors (with the file and line of the value at fault), ``--set`` precedence, and the files refused
before anything is built (aliases, size, encoding, bad numbers)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mrmkg.cli import main as cli_main
from mrmkg.errors import InputError
from mrmkg.engine import load_train_config
from mrmkg.yamlconfig import MAX_CONFIG_BYTES, from_dict, load_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml"))
BASES = sorted(p.name for p in (CONFIGS / "base").glob("*.yaml"))


def _flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: dotted leaves, to compare configs key by key."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _diff(a: str, b: str) -> dict:
    """The dotted keys where shipped configs ``a`` and ``b`` differ, with (a's, b's) value."""
    fa, fb = _flat(load_yaml(CONFIGS / a)[0]), _flat(load_yaml(CONFIGS / b)[0])
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------- shipped configs
def test_the_shipped_config_names_are_kept():
    """README, docs, scripts and the research log cite these files by name."""
    mars = [f"mars-smollm2-cpu{v}.yaml" for v in ("", "-question", "-kg-text", "-rgat-noalign", "-kg-text-graph",
                                                   "-pointer")]
    sqa = [f"scienceqa-{m}-{s}.yaml" for m in ("flan-t5-xl", "flan-t5-xxl", "flan-ul2", "smollm2-cpu")
           for s in ("stage1", "rationale", "answer")]
    assert set(mars + sqa + ["demo.yaml", "markg-smollm2-cpu-pretrain.yaml"]) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates(name):
    """Each top-level config loads with its bases, and its task_args and model sections are valid for its task."""
    data, _ = load_yaml(CONFIGS / name)
    assert "base" not in data
    if name == "demo.yaml":
        from mrmkg.demo import DemoConfig

        from_dict(DemoConfig, *load_yaml(CONFIGS / name))
        return
    from mrmkg.model.config import MRMKGConfig
    from mrmkg.tasks.registry import get_task

    cfg = load_train_config(CONFIGS / name)
    from_dict(get_task(cfg.task).config_class, cfg.task_args, prefix="task_args.")
    MRMKGConfig.from_dict(dict(cfg.model))


def test_every_shipped_run_has_its_own_output_dir():
    """An overlay that forgot its output_dir would write into its base's run folder."""
    dirs = [load_yaml(CONFIGS / name)[0]["output_dir" if name != "demo.yaml" else "out"] for name in SHIPPED]
    assert len(set(dirs)) == len(dirs) == len(SHIPPED)


def test_every_base_is_used_and_none_is_a_top_level_name():
    used = set()
    for name in SHIPPED + [f"base/{b}" for b in BASES]:
        raw = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
        bases = raw.get("base", [])
        for b in [bases] if isinstance(bases, str) else bases:
            used.add((CONFIGS / name).parent.joinpath(b).resolve())
    assert {(CONFIGS / "base" / b).resolve() for b in BASES} <= used
    assert not set(BASES) & set(SHIPPED)


@pytest.mark.parametrize("stage", ["stage1", "rationale", "answer"])
def test_the_flan_configs_differ_only_in_the_model_and_its_run_paths(stage):
    xl = f"scienceqa-flan-t5-xl-{stage}.yaml"
    for model in ("t5-xxl", "ul2"):
        diff = _diff(xl, f"scienceqa-flan-{model}-{stage}.yaml")
        want = {"model.llm": ("google/flan-t5-xl", f"google/flan-{model}"),
                "output_dir": (f"runs/scienceqa-flan-t5-xl-{stage}", f"runs/scienceqa-flan-{model}-{stage}")}
        if stage != "stage1":
            want["init_from"] = ("runs/scienceqa-flan-t5-xl-stage1/final", f"runs/scienceqa-flan-{model}-stage1/final")
        if stage == "answer":
            want["task_args.rationales"] = tuple(f"runs/scienceqa-flan-{m}-rationale/eval-{{split}}/predictions.jsonl"
                                                 for m in ("t5-xl", model))
        assert diff == want


def test_the_answer_stage_is_the_rationale_stage_with_the_answer_prompt():
    for model in ("flan-t5-xl", "smollm2-cpu"):
        n_new = 64 if model.startswith("flan") else 16
        diff = _diff(f"scienceqa-{model}-rationale.yaml", f"scienceqa-{model}-answer.yaml")
        run = model.replace("-cpu", "")
        assert diff.pop("output_dir") == (f"runs/scienceqa-{run}-rationale", f"runs/scienceqa-{run}-answer")
        assert diff == {
            "task_args.prompt.format": ("QCM-LE", "QCMG-A"),
            "task_args.max_new_tokens": (512 if model.startswith("flan") else 128, n_new),
            "model.max_target_tokens": (512 if model.startswith("flan") else 128, n_new),
            "task_args.answer_fallback": (None, "none"),
            "task_args.rationales": (None, f"runs/scienceqa-{run}-rationale/eval-{{split}}/predictions.jsonl")}


def test_the_question_rung_is_the_mars_config_without_the_kg():
    diff = _diff("mars-smollm2-cpu.yaml", "mars-smollm2-cpu-question.yaml")
    assert diff.pop("output_dir") == ("runs/mars-smollm2-cpu", "runs/mars-smollm2-cpu-question")
    assert diff.pop("task_args.prompt") == ("kg_graph", "question") and diff.pop("model.use_kg") == (None, False)
    # what the full model adds to the shared base, and nothing else
    assert set(diff) == {"grad_accum", "optim.max_grad_norm", "task_args.data_dir", "task_args.entity_tokens",
                         "task_args.retrieval_query", "task_args.n", "task_args.N", "model.graph_encoder",
                         "model.gnn_layers", "model.adapter_length", "model.align_weight"}
    assert all(new is None for _, new in diff.values())


def test_print_config_shows_the_resolved_config(capsys):
    assert cli_main(["train", "-c", str(CONFIGS / "scienceqa-flan-t5-xxl-answer.yaml"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert "base" not in printed
    assert printed["model"]["llm"] == "google/flan-t5-xxl" and printed["model"]["align_margin"] == 1.0
    assert printed["task_args"]["prompt"] == {"use_caption": False, "retrieval": "text", "format": "QCMG-A"}
    assert printed["optim"]["lr"] == 4e-5 and printed["cpu"] is False and printed["epochs"] == 3


# ---------------------------------------------------------------------------------- base: composition
def test_bases_chain_and_merge(tmp_path):
    _write(tmp_path, {
        "shared/root.yaml": "seed: 1\noptim: {lr: 0.1, eps: 1.0e-6}\ninit_skip: [a, b]\nmodel: {x: 1, y: {p: 1}}\n",
        "shared/mid.yaml": "base: root.yaml\noptim: {lr: 0.2}\nmodel: {y: {q: 2}}\n",  # relative to shared/
        "shared/other.yaml": "seed: 2\nepochs: 5\n",
        "run.yaml": "base: [shared/mid.yaml, shared/other.yaml]\ninit_skip: [c]\nmodel: {x: 3}\nepochs: 7\n",
    })
    data, _ = load_yaml(tmp_path / "run.yaml")
    assert data == {"seed": 2,                                  # the later base wins over the earlier
                    "optim": {"lr": 0.2, "eps": 1e-6},          # mappings merge key by key
                    "init_skip": ["c"],                         # a list replaces
                    "model": {"x": 3, "y": {"p": 1, "q": 2}},   # recursively
                    "epochs": 7}                                # the file itself wins over its bases
    cfg = load_train_config(tmp_path / "run.yaml")
    assert (cfg.seed, cfg.optim.lr, cfg.optim.eps, cfg.init_skip, cfg.epochs) == (2, 0.2, 1e-6, ["c"], 7)


def test_a_base_shared_twice_is_read_once_and_left_unchanged(tmp_path):
    _write(tmp_path, {"a.yaml": "model: {x: [1]}\n", "b.yaml": "base: a.yaml\nmodel: {y: 2}\n",
                      "c.yaml": "base: a.yaml\nmodel: {z: 3}\n", "d.yaml": "base: [b.yaml, c.yaml]\n"})
    data, _ = load_yaml(tmp_path / "d.yaml")
    assert data == {"model": {"x": [1], "y": 2, "z": 3}}
    data["model"]["x"].append(2)  # the caller's copy: loading again is unaffected
    assert load_yaml(tmp_path / "d.yaml")[0] == {"model": {"x": [1], "y": 2, "z": 3}}


@pytest.mark.parametrize("files,at,needle", [
    ({"a.yaml": "seed: 1\nbase: a.yaml\n"}, ("a.yaml", 2), "base files form a cycle"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "\n\nbase: a.yaml\n"}, ("b.yaml", 3), "base files form a cycle"),
    ({"a.yaml": "# x\nbase: nope.yaml\n"}, ("a.yaml", 2), "base file 'nope.yaml' not found"),
    ({"a.yaml": "base: 3\n"}, ("a.yaml", 1), "'base' must be a file name or a list of file names"),
    ({"a.yaml": "base: []\n"}, ("a.yaml", 1), "'base' must be a file name"),
    ({"a.yaml": "base:\n"}, ("a.yaml", 1), "'base' must be a file name"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "- 1\n"}, ("b.yaml", None), "expected a mapping of config fields"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "x: [1\n"}, ("b.yaml", 2), "not valid YAML"),
])
def test_bad_bases_name_the_file_and_line(tmp_path, files, at, needle):
    _write(tmp_path, files)
    with pytest.raises(InputError) as e:
        load_train_config(tmp_path / "a.yaml")
    assert (e.value.path, e.value.line) == (str(tmp_path / at[0]), at[1]) and needle in str(e.value)


@pytest.mark.parametrize("overlay,key,at", [
    ("base: base.yaml\n", "optim.lr", ("base.yaml", 3)),                        # the value is the base's
    ("base: base.yaml\noptim: {lr: 0.1, eps: x}\n", "optim.eps", ("run.yaml", 2)),  # the overlay's
    ("base: base.yaml\noptim:\n  lr: x\n", "optim.lr", ("run.yaml", 3)),       # the overlay replaced the base's
    ("base: base.yaml\noptim: {lr: 0.1}\nmodel: 3\n", "model", ("run.yaml", 3)),  # a section replaced by a scalar
    ("base: base.yaml\noptim: {lr: 0.1}\ninit_skip: [a, 3, []]\n", "init_skip[2]", ("run.yaml", 3)),
])
def test_an_error_names_the_file_and_line_where_the_value_was_written(tmp_path, overlay, key, at):
    _write(tmp_path, {"base.yaml": "seed: 0\noptim:\n  lr: fast\nmodel: {x: 1}\n", "run.yaml": overlay})
    with pytest.raises(InputError) as e:
        load_train_config(tmp_path / "run.yaml")
    assert f"field '{key}'" in str(e.value) and (e.value.path, e.value.line) == (str(tmp_path / at[0]), at[1])


def test_set_overrides_apply_last(tmp_path):
    _write(tmp_path, {"base.yaml": "seed: 1\noptim: {lr: 0.1, eps: 1.0e-6}\n",
                      "run.yaml": "base: base.yaml\nseed: 2\noptim: {lr: 0.2}\n"})
    cfg = load_train_config(tmp_path / "run.yaml", ["seed=3", "optim.lr=0.3", "optim.eps=1.0e-7"])
    assert (cfg.seed, cfg.optim.lr, cfg.optim.eps) == (3, 0.3, 1e-7)
    with pytest.raises(InputError) as e:
        load_train_config(tmp_path / "run.yaml", ["optim.eps=-1"])
    assert str(e.value) == "--set optim.eps: must be >= 0, got -1.0"
    with pytest.raises(InputError, match="unknown field"):
        load_train_config(tmp_path / "run.yaml", ["base=other.yaml"])  # `base` is a file's key, not a field


# ---------------------------------------------------------------------------------- files refused
@pytest.mark.parametrize("text,line", [
    ("optim: &o {lr: 0.1}\nmodel: *o\n", 2),
    ("a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, *b]\n", 2),   # the start of an alias bomb
    ("o: &o {lr: 0.1}\noptim:\n  <<: *o\n", 3),            # a merge key is an alias too
])
def test_yaml_aliases_are_refused(tmp_path, text, line):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(InputError, match=r"aliases \(\*name\) are not allowed") as e:
        load_train_config(p)
    assert (e.value.path, e.value.line) == (str(p), line)


def test_an_alias_bomb_exits_2_at_once(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")  # 9**9 = 387 M strings if the aliases were followed
    assert cli_main(["train", "-c", str(p), "--print-config"]) == 2
    assert f"{p}:2: YAML aliases" in capsys.readouterr().err


def test_files_over_the_size_cap_are_refused(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("seed: 0\n" + "#" * (MAX_CONFIG_BYTES - 9) + "\n")  # exactly the cap: read
    assert load_train_config(p).seed == 0
    p.write_text("seed: 0\n" + "#" * (MAX_CONFIG_BYTES - 8) + "\n")
    with pytest.raises(InputError, match="config file larger than 1,048,576 bytes") as e:
        load_train_config(p)
    assert e.value.path == str(p)


def test_non_utf8_files_are_refused_with_file_and_line(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"seed: 0\noutput_dir: caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8 text") as e:
        load_train_config(p)
    assert (e.value.path, e.value.line) == (str(p), 2)
    _write(tmp_path, {"run.yaml": "base: c.yaml\n"})  # in a base file too
    assert cli_main(["train", "-c", str(tmp_path / "run.yaml"), "--print-config"]) == 2
    assert f"{p}:2: not UTF-8 text" in capsys.readouterr().err


def test_deeply_nested_files_are_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputError, match="nested too deeply"):
        load_train_config(p)


def test_python_tags_stay_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("output_dir: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(InputError, match="not valid YAML") as e:
        load_train_config(p)
    assert e.value.line == 1


@pytest.mark.parametrize("override,needle", [
    ("optim.lr=-0.5", "--set optim.lr: must be >= 0, got -0.5"),
    ("optim.lr=.nan", "--set optim.lr: expected a finite number, got nan"),
    ("optim.lr=.inf", "--set optim.lr: expected a finite number, got inf"),
    ("optim.betas=[0.9]", "--set optim.betas: expected a list of 2 values, got 1"),
    ("optim.betas=[0.9, 1]", "--set optim.betas[1]: must be < 1, got 1.0"),
    ("optim.warmup_ratio=2", "--set optim.warmup_ratio: must be <= 1, got 2.0"),
    ("epochs=0", "--set epochs: must be >= 1, got 0"),
    ("seed=-1", "--set seed: must be >= 0, got -1"),
])
def test_bad_numbers_fail_at_print_config(capsys, override, needle):
    rc = cli_main(["train", "-c", str(CONFIGS / "mars-smollm2-cpu.yaml"), "--set", override, "--print-config"])
    captured = capsys.readouterr()
    assert rc == 2 and needle in captured.err and not captured.out and "Traceback" not in captured.err


def test_bad_numbers_in_a_file_name_its_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("base: " + str(CONFIGS / "mars-smollm2-cpu.yaml") + "\noptim:\n  lr: .nan\n")
    with pytest.raises(InputError, match="field 'optim.lr': expected a finite number") as e:
        load_train_config(p)
    assert (e.value.path, e.value.line) == (str(p), 3)


@pytest.mark.parametrize("section,needle", [
    ("model:\n  align_weight: .nan\n", "field 'model.align_weight': expected a finite number, got nan"),
    ("model:\n  pointer:\n    scale: big\n", "field 'model.pointer.scale': expected a float, got 'big'"),
    ("model:\n  graph_encoder: transformer\n", "graph_encoder"),
    ("task_args:\n  memory_keep_gold: .inf\n", "field 'task_args.memory_keep_gold': expected a finite number"),
    ("task_args:\n  prompt: kg_video\n", "field 'task_args.prompt': expected one of"),
])
def test_model_and_task_sections_are_checked_when_the_config_is_read(tmp_path, section, needle):
    """`mrmkg train` checks the model and task sections, with file and line, before any model loads."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base: {CONFIGS / 'mars-smollm2-cpu.yaml'}\n" + section)
    with pytest.raises(InputError, match=re.escape(needle)) as e:
        load_train_config(cfg, sections=True)
    assert e.value.path is not None
