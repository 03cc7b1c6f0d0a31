"""ScienceQA and stage-1 training + evaluation end to end through the training engine
(``mrmkg.engine.train`` with ``task: scienceqa`` / ``task: stage1``), on the hand-written fixture, a
tiny science MMKG indexed with the real MiniLM, the real EfficientNet-Lite0 for question images, and
tiny random LLaMA / T5 models saved as folders (loaded by name through ``load_llm``, as a config
would). One slow test runs the real SmolLM2-135M."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.tasks.scienceqa import data as sqa
from mrmkg.tasks.scienceqa import score as S
from mrmkg.tasks.kgqa.data import KGQAConfig, build_kg_qa, save_records
from mrmkg.tasks.registry import builtin_tasks
from mrmkg.engine import TrainConfig, train
from mrmkg.tasks.registry import make_task
from sqa_fixture import scienceqa_root
from test_model_common import save_tiny_llm

FIX = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
SQA_ROOT = scienceqa_root()
TINY_MODEL = dict(gnn_hidden=16, gnn_heads=2, gnn_relation_dim=8, gnn_num_blocks=4, dropout=0.0, dtype="fp32",
                  align_weight=0.5, max_prompt_tokens=96, max_target_tokens=24, seed=0)


def science_kg() -> MMKG:
    """A dozen science facts touching the fixture's questions (magnets, animals, rocks, states...)."""
    ents = [(f"Q{i}", n, "") for i, n in enumerate(
        ["magnet", "iron", "glass", "duck", "webbed feet", "water", "fox", "fur", "rock", "solid", "granite",
         "sugar", "physical change", "dog", "noun", "jump", "verb", "Earth", "rotation", "day and night"])]
    rels = [("P1", "attracts"), ("P2", "has"), ("P3", "lives in"), ("P4", "is a"), ("P5", "causes"),
            ("P6", "dissolving is a")]
    triples = [("Q0", "P1", "Q1"), ("Q3", "P2", "Q4"), ("Q3", "P3", "Q5"), ("Q6", "P2", "Q7"), ("Q8", "P4", "Q9"),
               ("Q10", "P4", "Q8"), ("Q11", "P6", "Q12"), ("Q13", "P4", "Q14"), ("Q15", "P4", "Q16"),
               ("Q17", "P2", "Q18"), ("Q18", "P5", "Q19"), ("Q0", "P2", "Q1")]
    return MMKG.from_records(ents, rels, triples)


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory) -> Path:
    """The science MMKG saved and indexed with the real MiniLM (no images in the graph)."""
    from mrmkg.kg.index import IndexConfig, KGIndex

    d = tmp_path_factory.mktemp("graph") / "science"
    kg = science_kg()
    kg.save(d)
    KGIndex.build(kg, IndexConfig(vision_encoder=None), directory=d, progress=False)
    return d


@pytest.fixture(scope="module")
def llm_dirs(tmp_path_factory) -> dict[str, str]:
    """Tiny random LLaMA and T5 (with the tiny word tokenizer) saved as folders ``load_llm`` reads."""
    return {kind: save_tiny_llm(kind, tmp_path_factory.mktemp(f"tiny-{kind}")) for kind in ("llama", "t5")}


def _config(tmp_path: Path, name: str, llm: str, task: str = "scienceqa", **task_args) -> TrainConfig:
    return TrainConfig(task=task, task_args=task_args, model={**TINY_MODEL, "llm": llm},
                       output_dir=str(tmp_path / name), seed=0, epochs=1, max_steps=2, batch_size=2,
                       precision="fp32", progress=False, eval_batch_size=4, log_every=1)


def _sqa_args(graph_dir, fmt="QCM-A", **kw) -> dict:
    return {"root": str(SQA_ROOT), "kg": str(graph_dir), "prompt": {"format": fmt},
            "retrieval": {"n": 3, "N": 4}, "max_new_tokens": 4, "limit": 4, **kw}


def _final_weights(run: Path) -> dict[str, bytes]:
    """The trained weights of a run, byte for byte."""
    from safetensors.torch import load_file

    state = load_file(str(run / "final" / "model" / "model.safetensors"))
    return {k: v.numpy().tobytes() for k, v in state.items()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_tasks_are_registered():
    assert builtin_tasks()["scienceqa"] == "mrmkg.tasks.scienceqa.task:ScienceQATask"
    assert builtin_tasks()["stage1"] == "mrmkg.tasks.kgqa.task:Stage1Task"


# ------------------------------------------------------------------------------ ScienceQA
@pytest.mark.parametrize("kind", ["llama", "t5"])
@pytest.mark.weights("minilm")
def test_direct_answer_trains_and_evaluates_with_official_columns(kind, tmp_path, graph_dir, llm_dirs):
    from mrmkg.tasks.scienceqa.task import evaluate_scienceqa

    cfg = _config(tmp_path, "run", llm_dirs[kind], **_sqa_args(graph_dir))
    res = train(cfg)
    assert res.global_step == 2 and res.final_loss is not None and res.final_loss > 0
    run_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(run_metrics)[: len(S.COLUMNS)] == list(S.COLUMNS)
    # a random tiny model cannot write "The answer is (X).": every val answer is unparseable, hence wrong
    assert run_metrics["n"] == 4 and run_metrics["unparsed"] == 4 and run_metrics["Average"] == 0.0
    assert (tmp_path / "run" / "final" / "model" / "mrmkg.json").is_file()

    m = evaluate_scienceqa(tmp_path / "run", tmp_path / "eval", split="test", batch_size=3, progress=False)
    assert m["columns"] == list(S.COLUMNS) and m["split"] == "test" and m["format"] == "QCM-A"
    assert m["total"]["Average"] == 4 and m["parse"]["total"] == 4
    preds = _jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert [p["pid"] for p in preds] == ["101", "102", "103", "104"]
    for p in preds:
        assert set(p) >= {"pid", "prediction", "output", "parse", "retrieved"}
        tri = p["retrieved"]["triples"]
        assert 0 < len(tri) <= 4 and all(isinstance(t["score"], float) for t in tri)
        assert tri == sorted(tri, key=lambda t: -t["score"])
    # the magnet question retrieves the magnet facts
    assert any(t["head_name"] == "magnet" for t in preds[0]["retrieved"]["triples"])
    # metrics.json is exactly the scorer's verdict on predictions.jsonl
    again = S.score_file(sqa.load_scienceqa(SQA_ROOT).problems, tmp_path / "eval" / "predictions.jsonl")
    assert again.rounded() == m["accuracy"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == m
    # a user's own question through the Pipeline (the `mrmkg ask` path) is written and answered as evaluation did
    from mrmkg.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tmp_path / "run")
    problems = sqa.load_scienceqa(SQA_ROOT).problems
    for p in preds:
        prob = problems[p["pid"]]
        ans = pipe(prob.question, choices=prob.choices, context=prob.hint,
                   image=None if prob.image_path is None else str(prob.image_path))
        assert ans.text == p["output"] and ans.meta["parse"] == p["parse"] and ans.candidates == []
        assert [t["id"] for t in ans.subgraph["triples"]] == [t["id"] for t in p["retrieved"]["triples"]]


@pytest.mark.weights("minilm")
def test_rationale_then_answer_stage_uses_generated_rationales(tmp_path, graph_dir, llm_dirs):
    from mrmkg.tasks.scienceqa.task import ScienceQATask, evaluate_scienceqa

    from mrmkg.cli import main as cli_main

    llm = llm_dirs["llama"]
    # the rationale stage through the CLI with the shipped CPU config, shrunk by --set overrides
    sets = [f"task_args.root={SQA_ROOT}", f"task_args.kg={graph_dir}", f"model.kg={graph_dir}", f"model.llm={llm}",
            "task_args.limit=4", "task_args.max_new_tokens=6", "task_args.retrieval={n: 3, N: 4}",
            "model.gnn_hidden=16", "model.dtype=fp32", "precision=fp32", "max_steps=2", "batch_size=2",
            "progress=false", f"output_dir={tmp_path / 'rationale'}"]
    argv = ["train", "--config", str(REPO / "configs" / "scienceqa-smollm2-cpu-rationale.yaml")]
    assert cli_main(argv + [x for kv in sets for x in ("--set", kv)]) == 0
    m = json.loads((tmp_path / "rationale" / "metrics.json").read_text())
    assert set(m) == {"rouge_l", "exact_match", "n"} and m["n"] == 4
    for split in ("val", "test"):
        assert cli_main(["scienceqa", "eval", str(tmp_path / "rationale"), "--split", split,
                         "--out", str(tmp_path / f"rat-{split}"), "--quiet"]) == 0
        m = json.loads((tmp_path / f"rat-{split}" / "metrics.json").read_text())
        assert m["format"] == "QCM-LE" and m["n"] == 4 and m["split"] == split
    rat_file = str(tmp_path / "rat-{split}" / "predictions.jsonl")
    generated = {p["pid"]: p["output"] for p in _jsonl(tmp_path / "rat-test" / "predictions.jsonl")}

    cfg = _config(tmp_path, "answer", llm, **_sqa_args(graph_dir, "QCMG-A", rationales=rat_file))
    res = train(cfg)
    assert res.metrics["rationales"] == "generated" and res.metrics["n"] == 4
    assert all(c in res.metrics for c in S.COLUMNS)
    m = evaluate_scienceqa(tmp_path / "answer", tmp_path / "ans-test", split="test", progress=False)
    assert m["rationales"] == str(tmp_path / "rat-test" / "predictions.jsonl") and m["columns"] == list(S.COLUMNS)

    # inference inputs carry the generated rationale line; training inputs the gold one
    task = make_task(cfg)
    assert isinstance(task, ScienceQATask)
    probs = task.problems("test")
    inf = task.make_examples(probs, with_target=False, rationales=task.rationales_for("test", [p.pid for p in probs]))
    for p, ex in zip(probs, inf):
        assert ex.prompt.endswith(generated[p.pid] + "\nAnswer:") or generated[p.pid] == ""
    tr = task.train_examples()
    assert sqa.rationale_text(task.problems("train")[0]).split("\\n")[0] in tr[0].prompt
    assert tr[0].target.startswith("The answer is (")

    # a rationales file that lacks an evaluated pid fails before training starts, naming file and pid
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"pid": "13", "output": "Solution: x."}) + "\n")
    bad = _config(tmp_path, "bad", llm, **_sqa_args(graph_dir, "QCMG-A", rationales=str(short)))
    with pytest.raises(InputError) as e:
        train(bad)
    assert "short.jsonl" in str(e.value) and "pid 14" in str(e.value)
    assert not (tmp_path / "bad" / "final").exists()


def test_answer_scoring_is_strict_and_matches_the_official_scorer(tmp_path):
    from mrmkg.metrics.text import rouge_l
    from mrmkg.tasks.scienceqa.task import ScienceQATask, rationale_metrics

    # no graph: retrieval 'none' works without an MMKG
    task = ScienceQATask.from_config({"root": str(SQA_ROOT), "prompt": {"format": "QCM-A", "retrieval": "none"}})
    probs = task.problems("test")
    outs = {}
    for i, p in enumerate(probs):
        gold = sqa.OPTIONS[p.answer]
        outs[p.pid] = (f"The answer is ({gold})." if i % 3 == 0 else
                       "The answer is (A)." if i % 3 == 1 else "I think A")
    preds = [{"pid": pid, "output": t} for pid, t in outs.items()]
    flat, scores, report = task.score(preds)
    resolved = {pid: sqa.parse_answer(t, len(task.data.problems[pid].choices)).index for pid, t in outs.items()}
    ref = S.score(task.data.problems, resolved)
    assert scores.rounded() == ref.rounded()
    assert [flat[c] for c in S.COLUMNS] == [ref.rounded()[c] for c in S.COLUMNS]
    assert flat["unparsed"] == report.unparsed == 4 == sum(1 for t in outs.values() if t == "I think A")
    assert flat["n"] == 12

    ref_text = sqa.build_target(probs[0], "QCM-LE")
    assert rouge_l(ref_text, ref_text) == 1.0 and rouge_l("", ref_text) == 0.0
    rm = rationale_metrics({probs[0].pid: ref_text, probs[1].pid: "nothing alike"}, task.data.problems)
    assert rm["exact_match"] == 50.0 and 50.0 <= rm["rouge_l"] < 51.0


@pytest.mark.weights("minilm")
def test_bad_task_args_are_input_errors(tmp_path, graph_dir):
    from mrmkg.tasks.scienceqa.task import ScienceQATask

    with pytest.raises(InputError, match="task_args.kg"):
        ScienceQATask.from_config({"root": str(SQA_ROOT)})
    with pytest.raises(InputError, match="nosuch"):
        ScienceQATask.from_config({"root": str(SQA_ROOT), "kg": str(graph_dir), "eval_split": "nosuch"})
    with pytest.raises(InputError, match="task_args.prompt"):
        ScienceQATask.from_config({"root": str(SQA_ROOT), "kg": str(graph_dir), "prompt": {"format": "QA"}})
    with pytest.raises(InputError, match="task_args.kg"):
        make_task(TrainConfig(task="stage1", task_args={"source": "records", "data": str(tmp_path / "r.jsonl")}))


# ------------------------------------------------------------------------------ stage 1
@pytest.mark.weights("minilm")
def test_stage1_on_kg_qa_records_trains_evaluates_and_is_deterministic(tmp_path, graph_dir, llm_dirs):
    recs, _ = build_kg_qa(science_kg(), KGQAConfig(max_triples=4))
    save_records(recs, tmp_path / "records.jsonl")
    args = {"source": "records", "data": str(tmp_path / "records.jsonl"), "kg": str(graph_dir),
            "eval_fraction": 0.25, "max_new_tokens": 3}
    results = [train(_config(tmp_path, f"s1-{i}", llm_dirs["t5"], task="stage1", **args)) for i in range(2)]
    m = results[0].metrics
    assert set(m) == {"exact_match", "dev_loss", "n"} and m["n"] == round(0.25 * len(recs)) and m["dev_loss"] > 0
    assert 0.0 <= m["exact_match"] <= 100.0
    assert results[1].metrics == m and results[1].history == results[0].history
    assert _final_weights(tmp_path / "s1-0") == _final_weights(tmp_path / "s1-1")
    assert json.loads((tmp_path / "s1-0" / "metrics.json").read_text()) == m

    task = make_task(_config(tmp_path, "x", llm_dirs["t5"], task="stage1", **args))
    assert len(task.train_ids) + len(task.dev_ids) == len(recs) and not set(task.train_ids) & set(task.dev_ids)


@pytest.mark.weights("efficientnet-lite0")
def test_stage1_on_visual_genome_folder(tmp_path, llm_dirs):
    from mrmkg.kg.index import KGIndex
    from mrmkg.metrics.text import exact_match
    from mrmkg.tasks.kgqa.vg import VGConfig, build_vg

    build_vg(FIX / "vg", tmp_path / "vg", images_dir=FIX / "vg" / "images", config=VGConfig())
    assert not (tmp_path / "vg" / "graph" / "index").exists()  # the task indexes the VG graph itself
    res = train(_config(tmp_path, "s1vg", llm_dirs["llama"], task="stage1", source="vg", data=str(tmp_path / "vg"),
                        eval_fraction=0.34, max_new_tokens=3))
    assert res.global_step == 1 or res.global_step == 2  # 2 training instances, batch 2: one step per epoch
    assert res.metrics["n"] == 1 and res.metrics["dev_loss"] > 0
    assert KGIndex.load(tmp_path / "vg" / "graph").manifest["vision_encoder"] == "efficientnet-lite0"
    assert exact_match("A ball.", "ball") and exact_match(" The man ", "man.") and not exact_match("red", "green")


# ------------------------------------------------------------------------------ real LLM
@pytest.mark.slow
@pytest.mark.weights("minilm", "smollm2-135m")
def test_smollm2_direct_answer_end_to_end(tmp_path, graph_dir):
    from mrmkg.tasks.scienceqa.task import evaluate_scienceqa

    cfg = _config(tmp_path, "smol", "smollm2-135m", **_sqa_args(graph_dir, limit=3, max_new_tokens=8))
    cfg.model.update(gnn_hidden=32, max_prompt_tokens=160, max_target_tokens=12)
    res = train(cfg)
    assert res.global_step == 1 and all(c in res.metrics for c in S.COLUMNS) and res.metrics["n"] == 3
    m = evaluate_scienceqa(tmp_path / "smol", tmp_path / "eval", split="test", progress=False)
    assert m["columns"] == list(S.COLUMNS) and m["total"]["Average"] == 3
    preds = _jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert all(isinstance(p["output"], str) for p in preds)
    # parsed answers are scored, unparseable ones counted; nothing is guessed
    assert m["parse"]["parsed"] + m["parse"]["unparsed"] == 3
    assert m["unparsed"] == m["parse"]["unparsed"]
