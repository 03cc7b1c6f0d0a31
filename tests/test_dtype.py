"""The paper's models on the hardware they need, on CPU with tiny random LLaMA and FLAN-T5 configs through
the same code paths: the frozen LLM in bf16/fp16 (half the parameter bytes, trained parts float32),
``device_map="auto"`` (everything on the CPU here), batched generation equal to one-by-one generation,
``--dtype`` / ``--device`` on the commands, and the engine's per-process device placement under
``accelerate launch``. The GPU side of the same paths runs in scripts/cuda_check.sh."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from mrmkg.cli import main
from mrmkg.encoders.llm import load_llm, parameter_bytes, short_dtype
from mrmkg.errors import InputError
from mrmkg.model import MRMKG, MRMKGExample
from mrmkg.pipeline import Pipeline
from mrmkg.tasks.base import Task
from sqa_fixture import scienceqa_root
from test_model_common import save_tiny_llm, small_config, tiny_llm, toy_features, toy_kg, toy_subgraph
from test_scienceqa_train import graph_dir  # noqa: F401 (a fixture: the science MMKG indexed with MiniLM)

KINDS = ["llama", "t5"]


@pytest.fixture(scope="module")
def llm_dirs(tmp_path_factory) -> dict[str, str]:
    """Tiny random LLaMA and T5 (FLAN-T5's architecture) saved as fp32 folders ``load_llm`` reads."""
    return {kind: save_tiny_llm(kind, tmp_path_factory.mktemp(f"tiny-{kind}")) for kind in KINDS}


# ------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("half", ["bf16", "fp16"])
def test_half_precision_loading_halves_parameter_bytes(kind, half, llm_dirs):
    full = load_llm(llm_dirs[kind])
    low = load_llm(llm_dirs[kind], dtype=half)
    want = {"bf16": torch.bfloat16, "fp16": torch.float16}[half]
    assert {p.dtype for p in full.model.parameters()} == {torch.float32}
    # transformers keeps a few modules in fp32 on purpose in fp16 (T5's feed-forward output `wo`, which
    # overflows in fp16); in bf16 every weight is halved
    keep = set(getattr(low.model, "_keep_in_fp32_modules", None) or []) if half == "fp16" else set()
    kept = {n for n, p in low.model.named_parameters() if p.dtype == torch.float32}
    assert all(keep & set(n.split(".")) for n in kept), kept
    assert {p.dtype for n, p in low.model.named_parameters() if n not in kept} == {want}
    assert (kept != set()) == (kind == "t5" and half == "fp16")
    kept_bytes = sum(p.numel() * 4 for n, p in low.model.named_parameters() if n in kept)
    assert (parameter_bytes(low.model) - kept_bytes) * 2 == parameter_bytes(full.model) - kept_bytes
    # the same weights, rounded once
    for (n, a), (_, b) in zip(full.model.named_parameters(), low.model.named_parameters()):
        torch.testing.assert_close(b, a.to(b.dtype), msg=n)


def test_dtype_words():
    assert [short_dtype(x) for x in ("bfloat16", "bf16", "half", "float32", torch.float16)] == \
        ["bf16", "bf16", "fp16", "fp32", "fp16"]
    with pytest.raises(InputError, match="unknown dtype"):
        short_dtype("int8")


@pytest.mark.parametrize("kind", KINDS)
def test_device_map_auto_places_every_layer_and_changes_nothing(kind, llm_dirs, monkeypatch):
    import transformers.modeling_utils as mu

    maps = []

    def spy(*args, **kwargs):  # transformers' own placement (accelerate's infer_auto_device_map), recorded
        maps.append(real(*args, **kwargs))
        return maps[-1]

    real = mu._get_device_map
    monkeypatch.setattr(mu, "_get_device_map", spy)
    plain = load_llm(llm_dirs[kind])
    assert maps == []
    auto = load_llm(llm_dirs[kind], device_map="auto")
    assert len(maps) == 1 and maps[0]  # placed by accelerate: a module -> device map (one GPU or the CPU here)
    if len(set(maps[0].values())) > 1:  # several devices: dispatched with hooks, the map recorded on the model
        assert auto.model.hf_device_map == maps[0]
    dev = auto.model.get_input_embeddings().weight.device
    ids = plain.tokenizer(["the cat sat on the mat"], return_tensors="pt").input_ids
    with torch.no_grad():
        if kind == "t5":
            a = plain.model(input_ids=ids, decoder_input_ids=ids[:, :2]).logits
            b = auto.model(input_ids=ids.to(dev), decoder_input_ids=ids[:, :2].to(dev)).logits
        else:
            a, b = plain.model(input_ids=ids).logits, auto.model(input_ids=ids.to(dev)).logits
    torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)  # a GPU, where one is visible, rounds otherwise


# ------------------------------------------------------------------------------ the model around a half LLM
def _examples(kg):
    rng = np.random.default_rng(0)
    return [
        MRMKGExample("what is the cat ? the answer is", "fur", subgraph=toy_subgraph(kg),
                     image_tokens=rng.random((3, 10), dtype=np.float32)),
        MRMKGExample("the dog", "pet", subgraph=None, image_tokens=None),
        MRMKGExample("a red bird what color is it on the mat", "red blue red", subgraph=toy_subgraph(kg, (4,)),
                     image_tokens=rng.random((1, 10), dtype=np.float32)),
        MRMKGExample("sun", "yes", subgraph=None, image_tokens=rng.random((2, 10), dtype=np.float32)),
    ]


def _model(kind, llm, **cfg):
    kg = toy_kg()
    return MRMKG(small_config(**cfg), llm, toy_features(kg), report=False), kg


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("autocast", ["fp32", "bf16"])
def test_bf16_llm_trains_float32_parts(kind, autocast, llm_dirs):
    m, kg = _model(kind, load_llm(llm_dirs[kind], dtype="bf16"), dtype=autocast)
    assert m.lm.dtype == torch.bfloat16
    trained = m.trainable_parameters()
    assert trained and {p.dtype for p in trained} == {torch.float32}
    m.train()
    out = m(m.collate(_examples(kg)))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in trained if p.grad is not None]
    assert grads and {g.dtype for g in grads} == {torch.float32}
    for part in (m.graph_encoder, m.knowledge_adapter, m.visual_adapter):  # the gradient crosses the bf16 LLM
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert all(p.grad is None for p in m.lm.parameters())
    m.eval()
    assert len(m.generate(m.collate(_examples(kg)), max_new_tokens=3)) == 4


def test_fp16_llm_autocasts_in_float16(llm_dirs):
    m, kg = _model("llama", load_llm(llm_dirs["llama"], dtype="fp16"), dtype="bf16")
    with m._autocast():
        assert torch.get_autocast_dtype("cpu") == torch.float16
    assert torch.isfinite(m(m.collate(_examples(kg))).loss)


# ------------------------------------------------------------------------------ batched generation
class _GenerateTask(Task):
    """The least a generative task gives the Pipeline: collate (the base's), max_new_tokens, read_output."""

    name = "gen-test"
    output = "generate"


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_generates_a_batch_as_each_example_alone(kind):
    m, kg = _model(kind, tiny_llm(kind), dtype="fp32")
    exs = _examples(kg)
    task = _GenerateTask(SimpleNamespace(max_new_tokens=6))
    pipe = Pipeline(task, m)
    together = [a.text for a in pipe.predict(exs, batch_size=4)]
    alone = [a.text for a in pipe.predict(exs, batch_size=1)]
    assert together == alone
    assert len(set(together)) > 1  # the tiny model does not say the same thing whatever the prompt
    batch = m.collate(exs)
    assert batch.text_mask.sum(1).unique().numel() > 1  # prompts of different lengths: padding is exercised
    enc = m.encode(batch, left=m.kind == "causal")
    if m.kind == "causal":
        # decoder-only: left padding, every row ends in a real token, the mask hides the pads
        assert enc.attention_mask[:, -1].all() and not enc.attention_mask[:, 0].all()
        # positions count real tokens only, so a padded row sees the positions it sees alone
        assert (enc.position_ids[:, -1] == enc.attention_mask.sum(1) - 1).all()
    else:
        assert enc.attention_mask[:, 0].all() and not enc.attention_mask[:, -1].all()  # encoder: right padding


# ------------------------------------------------------------------------------ the commands
SQA_MODEL = dict(gnn_hidden=16, gnn_heads=2, gnn_relation_dim=8, gnn_num_blocks=4, dropout=0.0, dtype="fp32",
                 max_prompt_tokens=96, max_target_tokens=24, seed=0)


@pytest.fixture(scope="module")
def sqa_run(tmp_path_factory, llm_dirs, graph_dir) -> Path:  # noqa: F811
    """A 2-step ScienceQA run on the tiny LLaMA with the science graph (no images), trained by
    `mrmkg train --dtype bf16`."""
    d = tmp_path_factory.mktemp("sqa")
    cfg = d / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "task": "scienceqa", "model": {**SQA_MODEL, "llm": llm_dirs["llama"]},
        "task_args": {"root": str(scienceqa_root()), "kg": str(graph_dir), "retrieval": {"n": 3, "N": 4},
                      "prompt": {"format": "QCM-A", "with_image": False}, "max_new_tokens": 4, "limit": 4},
        "seed": 0, "epochs": 1, "max_steps": 2, "batch_size": 2, "precision": "fp32", "progress": False,
        "eval_at_end": False, "log_with": "none"}))
    assert main(["train", "-c", str(cfg), "-o", str(d / "run"), "--device", "cpu", "--dtype", "bf16", "-q"]) == 0
    return d / "run"


@pytest.mark.weights("minilm")
def test_train_dtype_flag_records_the_llm_dtype_and_keeps_weights_float32(sqa_run):
    from safetensors.torch import load_file

    meta = json.loads((sqa_run / "final" / "model" / "mrmkg.json").read_text())
    assert meta["config"]["llm_dtype"] == "bf16" and meta["config"]["device_map"] == "none"
    assert yaml.safe_load((sqa_run / "final" / "train_config.yaml").read_text())["model"]["llm_dtype"] == "bf16"
    weights = load_file(str(sqa_run / "final" / "model" / "model.safetensors"))
    assert weights and {t.dtype for t in weights.values()} == {torch.float32}


def _eval(run: Path, out: Path, *flags) -> tuple[dict, dict]:
    rc = main(["scienceqa", "eval", str(run), "-o", str(out), "--split", "test", "--batch-size", "3", "--json", "-q",
               *flags])
    assert rc == 0
    return (json.loads((out / "metrics.json").read_text()),
            yaml.safe_load((out / "eval_config.yaml").read_text()))


@pytest.mark.weights("minilm")
def test_scienceqa_eval_device_and_dtype(sqa_run, tmp_path, capsys):
    m16, c16 = _eval(sqa_run, tmp_path / "bf16", "--device", "cpu", "--dtype", "bf16")
    assert c16["llm_dtype"] == "bf16" and c16["device"] == "cpu" and c16["device_map"] == "none"
    assert m16["total"]["Average"] == 4
    # the run's dtype is the default; --dtype fp32 overrides it; --device auto goes through device_map
    _, c_default = _eval(sqa_run, tmp_path / "default")
    assert c_default["llm_dtype"] == "bf16"
    _, c32 = _eval(sqa_run, tmp_path / "fp32", "--dtype", "fp32")
    assert c32["llm_dtype"] == "fp32"
    m_auto, c_auto = _eval(sqa_run, tmp_path / "auto", "--device", "auto", "--dtype", "bf16")
    assert c_auto["device_map"] == "auto" and c_auto["llm_dtype"] == "bf16"
    preds = [(tmp_path / d / "predictions.jsonl").read_text() for d in ("bf16", "default", "auto")]
    assert preds[0] == preds[1]  # same dtype, same generations
    if not torch.cuda.is_available():
        assert preds[2] == preds[0]  # auto on a CPU-only machine is the CPU
    capsys.readouterr()


@pytest.mark.parametrize("argv", [
    ["scienceqa", "eval", "{run}", "-o", "{tmp}/e", "--dtype", "int8"],
    ["eval", "{run}", "-o", "{tmp}/e", "--dtype", "bf17"],
    ["ask", "{run}", "What?", "--dtype", "fp8"],
    ["train", "--print-config", "--dtype", "double"],
    ["serve", "{run}", "--dtype", "q4"],
])
def test_a_bad_dtype_exits_2_with_one_line(argv, tmp_path, capsys):
    argv = [a.format(run=tmp_path / "no-run", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --dtype") and "expected bf16, fp16 or fp32" in err
    assert not (tmp_path / "e").exists()


def test_every_command_that_runs_a_model_takes_device_and_dtype():
    import typer.main

    from mrmkg.cli import app

    group = typer.main.get_command(app)
    for path in (["train"], ["eval"], ["ask"], ["serve"], ["scienceqa", "eval"]):
        cmd = group
        for word in path:
            cmd = cmd.commands[word]
        opts = {o for p in cmd.params for o in p.opts}
        assert {"--device", "--dtype"} <= opts, path


def test_train_device_and_dtype_become_config_fields(tmp_path, capsys):
    assert main(["train", "--print-config", "--dtype", "bfloat16", "--device", "auto", "--set", "model.llm_dtype=fp16"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["llm_dtype"] == "bf16" and cfg["model"]["device_map"] == "auto" and cfg["cpu"] is False
    (tmp_path / "c.yaml").write_text("model:\n  llm_dtype: fp16\n")
    assert main(["train", "--print-config", "-c", str(tmp_path / "c.yaml")]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["llm_dtype"] == "fp16"  # the config's, no flag
    (tmp_path / "bad.yaml").write_text("model:\n  llm_dtype: int4\n")
    assert main(["train", "--print-config", "-c", str(tmp_path / "bad.yaml")]) == 2
    assert "llm_dtype" in capsys.readouterr().err


# ------------------------------------------------------------------------------ one GPU per process
def test_engine_loads_the_llm_on_its_process_device(monkeypatch):
    """Under `accelerate launch --multi_gpu` each process's Accelerator device is its own GPU (cuda:LOCAL_RANK);
    the engine hands it to the task, whose frozen LLM then loads straight there. Shown with a stand-in
    Accelerator whose device is cuda:1, on CPU: the task's llm_device is what the LLM loader receives."""
    from mrmkg.engine import loop
    from mrmkg.tasks import base

    seen = {}

    class Stop(Exception):
        pass

    class FakeAccelerator:
        device = torch.device("cuda", 1)
        distributed_type = SimpleNamespace(value="MULTI_GPU")
        process_index, num_processes, is_main_process = 1, 2, False

    def fake_load_llm(name, dtype=None, progress=True, device_map=None):
        seen.update(name=name, dtype=dtype, device_map=device_map)
        raise Stop

    monkeypatch.setattr(loop, "_accelerator", lambda config, clear_checkpoints: FakeAccelerator())
    monkeypatch.setattr(base, "load_llm", fake_load_llm)
    base._LLMS.clear()

    class OneTask(Task):
        name = "one"

        def features(self):
            return toy_features(toy_kg())

    from mrmkg.engine import TrainConfig

    task = OneTask(SimpleNamespace(), {"llm": "some-llm", "llm_dtype": "bf16", "use_kg": False})
    with pytest.raises(Stop):
        loop.train(TrainConfig(output_dir="/nonexistent/never-written", progress=False, log_with="none"), task=task)
    assert task.llm_device == "cuda:1"
    assert seen == {"name": "some-llm", "dtype": "bf16", "device_map": "cuda:1"}


def test_accelerate_configs_parse_and_fsdp_refuses_evaluation_during_training(monkeypatch, tmp_path):
    """configs/accelerate/*.yaml are accelerate launch configs (DDP; FSDP2 sharding the frozen model); a
    sharded run cannot evaluate on one process, so the engine says so before loading anything."""
    from accelerate.commands.config.config_args import load_config_from_file

    from mrmkg.engine import TrainConfig, loop

    root = Path(__file__).resolve().parent.parent / "configs" / "accelerate"
    ddp, fsdp = (load_config_from_file(str(root / f"{n}.yaml")) for n in ("ddp", "fsdp"))
    assert ddp.distributed_type.value == "MULTI_GPU" and not ddp.use_cpu and ddp.mixed_precision == "no"
    assert fsdp.distributed_type.value == "FSDP" and fsdp.fsdp_config["fsdp_version"] == 2
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "T5Block"

    class FakeAccelerator:
        device = torch.device("cuda", 0)
        distributed_type = SimpleNamespace(value="FSDP")
        process_index, num_processes, is_main_process = 0, 2, True

    monkeypatch.setattr(loop, "_accelerator", lambda config, clear_checkpoints: FakeAccelerator())
    with pytest.raises(InputError, match="eval_at_end=false and eval_every=0"):
        loop.train(TrainConfig(output_dir=str(tmp_path / "run"), progress=False, log_with="none"),
                   task=_GenerateTask(SimpleNamespace()))


# ------------------------------------------------------------------------------ the same on a GPU (scripts/cuda_check.sh)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/cuda_check.sh)")


@cuda
@pytest.mark.parametrize("kind", KINDS)
def test_bf16_loads_straight_onto_the_gpu_in_half_the_memory(kind, llm_dirs):
    used = {}
    for dtype in ("fp32", "bf16"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        b = load_llm(llm_dirs[kind], dtype=dtype, device_map="cuda:0")
        assert {p.device.type for p in b.model.parameters()} == {"cuda"}
        used[dtype] = (torch.cuda.memory_allocated() - before, parameter_bytes(b.model))
        del b
    assert used["bf16"][1] * 2 == used["fp32"][1]
    assert 0.4 < used["bf16"][0] / used["fp32"][0] < 0.6  # the allocator rounds blocks up


@cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_batched_generation_and_bf16_llm(kind, llm_dirs):
    m, kg = _model(kind, tiny_llm(kind), dtype="fp32")
    m.to("cuda")
    pipe = Pipeline(_GenerateTask(SimpleNamespace(max_new_tokens=6)), m)
    exs = _examples(kg)
    assert [a.text for a in pipe.predict(exs, batch_size=4)] == [a.text for a in pipe.predict(exs, batch_size=1)]
    m, kg = _model(kind, load_llm(llm_dirs[kind], dtype="bf16", device_map="cuda:0"), dtype="bf16")
    assert m.device.type == "cuda" and {p.device.type for p in m.trainable_parameters()} == {"cuda"}
    m.train()
    out = m(_cuda(m.collate(_examples(kg))))
    assert torch.isfinite(out.loss)
    out.loss.backward()


def _cuda(batch):
    from accelerate.utils import send_to_device

    return send_to_device(batch, torch.device("cuda"))


@cuda
@pytest.mark.weights("minilm")
def test_scienceqa_eval_on_cuda_bf16_and_auto(sqa_run, tmp_path):
    _, c = _eval(sqa_run, tmp_path / "cuda", "--device", "cuda", "--dtype", "bf16")
    assert c["device"].startswith("cuda") and c["llm_dtype"] == "bf16"
    _, c = _eval(sqa_run, tmp_path / "auto", "--device", "auto", "--dtype", "bf16")
    assert c["device"].startswith("cuda") and c["device_map"] == "auto"
