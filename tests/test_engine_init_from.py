"""init_from: a run starts from another's weights, matched by name and shape, across the prefix a
wrapper model adds; init_skip leaves tensors at their init; it fails, naming the file, when it
would load nothing or when the source holds tensors the model cannot take."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from engine_toy import final_weights, toy_config
from mrmkg.engine import train
from mrmkg.errors import InputError

TINY = {"epochs": 1, "max_steps": 1, "optim": {"lr": 1e-12, "warmup_steps": 0}}  # keeps the loaded weights


def _close(a: dict, b: dict, names) -> None:
    for k in names:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_init_from_loads_matching_weights(tmp_path, capsys):
    a = train(toy_config(tmp_path / "a", epochs=1))
    capsys.readouterr()
    b = train(toy_config(tmp_path / "b", **TINY, init_from=str(a.output_dir)))
    _close(final_weights(a.output_dir), final_weights(b.output_dir), ["head.weight", "head.bias"])
    line = capsys.readouterr().out
    assert f"init_from {a.output_dir / 'final' / 'model' / 'model.safetensors'}: loaded 2 tensors, kept init for 0" in line
    summary = json.loads((b.output_dir / "summary.json").read_text())
    assert summary["init_from"] == {"file": str(a.output_dir / "final" / "model" / "model.safetensors"),
                                    "loaded": 2, "kept_init": 0, "kept_init_names": [], "excluded": 0}


def test_init_skip_keeps_the_init_of_the_named_tensors(tmp_path, capsys):
    a = train(toy_config(tmp_path / "a", epochs=1))
    fresh = train(toy_config(tmp_path / "fresh", **TINY))
    capsys.readouterr()
    b = train(toy_config(tmp_path / "b", **TINY, init_from=str(a.output_dir), init_skip=["head.bias"]))
    assert "loaded 1 tensors, kept init for 1 (excluded by init_skip: 1): head.bias" in capsys.readouterr().out
    wa, wb, wf = final_weights(a.output_dir), final_weights(b.output_dir), final_weights(fresh.output_dir)
    _close(wb, wa, ["head.weight"])
    _close(wb, wf, ["head.bias"])
    assert not torch.allclose(wb["head.bias"], wa["head.bias"], atol=1e-3)
    summary = json.loads((b.output_dir / "summary.json").read_text())["init_from"]
    assert (summary["kept_init"], summary["kept_init_names"], summary["excluded"]) == (1, ["head.bias"], 1)


@pytest.mark.parametrize("src_model,src_where,dst_model", [
    ("wrapped", "final", "wrapped"),      # final/model has the inner names, the model the wrapper's
    ("wrapped", "checkpoint", "plain"),   # a wrapper's checkpoint into a plain model
    ("plain", "final", "wrapped"),
    ("bare", "final", "wrapped"),         # final/trainable.safetensors
])
def test_init_from_matches_names_across_a_wrapper_prefix(tmp_path, capsys, src_model, src_where, dst_model):
    a = train(toy_config(tmp_path / "a", epochs=1, task_args={"model": src_model}))
    src = a.output_dir if src_where == "final" else a.output_dir / "checkpoints" / f"step-{a.global_step:08d}"
    capsys.readouterr()
    b = train(toy_config(tmp_path / "b", **TINY, task_args={"model": dst_model}, init_from=str(src)))
    assert "loaded 2 tensors, kept init for 0" in capsys.readouterr().out
    _close(final_weights(a.output_dir), final_weights(b.output_dir), ["head.weight", "head.bias"])


def _source(tmp_path, state: dict):
    folder = tmp_path / "src"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize("change,needles", [
    ({"extra.weight": torch.zeros(2)}, ["1 tensors the model does not have (extra.weight)"]),
    ({"head.bias": torch.zeros(5)}, ["1 of another shape (head.bias (5,) (model: (3,)))"]),
    ({"drop.weight": torch.zeros(1), "head.weight": torch.zeros(4, 4)},
     ["1 tensors the model does not have (drop.weight)", "1 of another shape (head.weight (4, 4)"]),
])
def test_init_from_refuses_tensors_the_model_cannot_take(tmp_path, change, needles):
    src = _source(tmp_path, {"head.weight": torch.zeros(3, 8), "head.bias": torch.zeros(3), **change})
    with pytest.raises(InputError) as e:
        train(toy_config(tmp_path, **TINY, init_from=str(src)))
    assert str(src / "model.safetensors") in str(e.value) and "field 'init_from'" in str(e.value)
    assert all(n in str(e.value) for n in needles)
    assert not (tmp_path / "run" / "final").exists()


def test_init_skip_leaves_out_what_the_model_cannot_take(tmp_path, capsys):
    src = _source(tmp_path, {"head.weight": torch.ones(3, 8), "extra.weight": torch.zeros(2)})
    train(toy_config(tmp_path, **TINY, init_from=str(src), init_skip=["extra."]))
    assert "loaded 1 tensors, kept init for 1 (excluded by init_skip: 1): head.bias" in capsys.readouterr().out
    _close(final_weights(tmp_path / "run"), {"head.weight": torch.ones(3, 8)}, ["head.weight"])


@pytest.mark.parametrize("state,skip,needle", [
    ({"other.weight": torch.zeros(3, 8)}, [], "1 tensors the model does not have (other.weight)"),
    ({}, [], "nothing to load (the file holds no tensors)"),
    ({"head.bias": torch.zeros(3)}, ["head."], "nothing to load (init_skip excludes all 1 tensors)"),
    ({"head.bias": torch.zeros(3)}, ["mrmkg.head."], "field 'init_skip': ['mrmkg.head.'] match no tensor"),
])
def test_init_from_fails_when_it_would_load_nothing(tmp_path, state, skip, needle):
    src = _source(tmp_path, state)
    with pytest.raises(InputError) as e:
        train(toy_config(tmp_path, **TINY, init_from=str(src), init_skip=skip))
    assert needle in str(e.value) and str(src / "model.safetensors") in str(e.value)


def test_init_from_a_folder_without_weights_names_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as e:
        train(toy_config(tmp_path, **TINY, init_from=str(tmp_path / "empty")))
    assert "field 'init_from': no model.safetensors or trainable.safetensors" in str(e.value)
    assert str(tmp_path / "empty") in str(e.value)


def test_a_resumed_run_takes_its_weights_from_the_checkpoint(tmp_path, capsys):
    import shutil

    a = train(toy_config(tmp_path / "a", epochs=1))
    over = {"epochs": 1, "checkpoint_every": 4, "keep_checkpoints": 5, "init_from": str(a.output_dir)}
    full = train(toy_config(tmp_path / "full", **over))
    step = "step-00000004"
    shutil.copytree(full.output_dir / "checkpoints" / step, tmp_path / "part" / "run" / "checkpoints" / step)
    capsys.readouterr()
    part = train(toy_config(tmp_path / "part", **over), resume=True)
    out = capsys.readouterr().out
    assert "resumed from" in out and "init_from" not in out
    assert json.loads((part.output_dir / "summary.json").read_text())["init_from"] is None
    wf, wp = final_weights(full.output_dir), final_weights(part.output_dir)
    assert all(torch.equal(wf[k], wp[k]) for k in wf) and part.metrics == full.metrics
