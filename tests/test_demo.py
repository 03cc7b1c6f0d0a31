"""`mrmkg demo` on a tiny world with a tiny random LLaMA and stand-in encoders: every rung trains
and evaluates, the table and files are written, a second run reuses everything, a changed setting
retrains only the rungs it affects; the demo task's candidate sets, prompts and stage-1 facts."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrmkg.demo import LADDER, RUNGS, STORY_RUNGS, DemoConfig, run_demo
from mrmkg.errors import InputError
from serve_fixture import same_ranking

TINY_WORLD = dict(n_creatures=20, n_distractors=4, n_places=4, n_foods=8, n_materials=4, n_clans=3)
TINY_MODEL = {"dtype": "fp32", "adapter_length": "nodes", "gnn_hidden": 16, "gnn_heads": 2, "gnn_relation_dim": 8,
              "gnn_num_blocks": 0}


class HashText:
    """Stand-in text encoder: hashed bag of lower-cased words, L2-normalised."""

    name, dim = "hash-words-16", 16

    def encode(self, texts, batch_size=64, progress=False):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in str(t).lower().replace("?", " ").split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


class PixelVision:
    """Stand-in vision encoder: mean-centred 4x4 RGB pixels; 4 tokens = the four 2x2 quadrants."""

    name, dim, num_tokens = "pixels-4x4", 48, 4

    def _arr(self, im):
        im = im if isinstance(im, Image.Image) else Image.open(im)
        a = np.asarray(im.convert("RGB").resize((4, 4)), dtype=np.float32) / 255.0
        return a - a.mean()

    def encode(self, images, batch_size=32, progress=False):
        rows = np.stack([self._arr(im).ravel() for im in images])
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-6)

    def encode_tokens(self, images, batch_size=32, progress=False):
        out = []
        for im in images:
            a = self._arr(im)
            q = [np.tile(a[r:r + 2, c:c + 2], (2, 2, 1)).ravel() for r in (0, 2) for c in (0, 2)]
            out.append(np.stack(q))
        return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    from test_model_common import save_tiny_llm

    return save_tiny_llm("llama", tmp_path_factory.mktemp("tiny_llm"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _config(out: Path, llm_dir: str, **kw) -> DemoConfig:
    base = dict(out=str(out), rungs=LADDER, world=TINY_WORLD, llm=llm_dir, text_encoder="hash", vision_encoder="pixels",
                train_per_type=4, eval_per_type=3, stage1_per_type=4, steps=2, warm_steps=1, stage1_steps=2, batch_size=4,
                model=TINY_MODEL, progress=False)
    return DemoConfig(**{**base, **kw})


def _run(cfg, **kw):
    from rich.console import Console

    console = Console(record=True, width=200)
    summary = run_demo(cfg, text_encoder=HashText(), vision_encoder=PixelVision(), console=console, **kw)
    return summary, console.export_text()


@pytest.fixture
def count_training(monkeypatch):
    """Counts calls of the training engine."""
    import mrmkg.demo

    calls = []
    real = mrmkg.demo.train

    def counting(config, *a, **kw):
        calls.append(config.output_dir)
        return real(config, *a, **kw)

    monkeypatch.setattr(mrmkg.demo, "train", counting)
    return calls


def test_demo_pipeline_trains_every_rung_writes_files_and_reuses_cache(tmp_path, cache, llm_dir, count_training):
    out = tmp_path / "out"
    summary, text = _run(_config(out, llm_dir))
    names = [r.name for r in RUNGS]
    assert list(k for k in summary["rungs"] if k != "stage1") == names
    assert "stage1" in summary["rungs"]
    assert len(count_training) == len(names) + 1  # five rungs + stage 1
    for name in names:
        m = summary["rungs"][name]["metrics"]
        assert m["n"] == {"image": 3, "text": 3, "analogy": 3, "overall": 9}
        for t in ("image", "text", "analogy", "overall"):
            assert 0.0 <= m[t] <= 1.0
        assert summary["rungs"][name]["cached"] is False
        preds = [json.loads(x) for x in (out / "predictions" / f"{name}.jsonl").read_text().splitlines()]
        assert len(preds) == 9
        # no-KG retrieves nothing; the knowledge rungs show what they retrieved
        assert all((len(p["retrieved"]) > 0) == (name != "no_kg") for p in preds)
    assert "image_gain_points" in summary
    # the pretraining rung started from stage 1's weights
    cfg_v = (Path(summary["rungs"]["pretrain"]["run"]) / "final" / "train_config.yaml").read_text()
    assert Path(summary["rungs"]["stage1"]["key"] and cfg_v.split("init_from: ")[1].split("\n")[0]).parent.name \
        .startswith("stage1-")
    # files
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["rungs"]["no_kg"]["metrics"] == summary["rungs"]["no_kg"]["metrics"]
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 2 + len(names) and table[2].startswith("| (i) no KG")
    with Image.open(out / "subgraph.png") as im:
        assert im.size[0] > 100 and im.size[1] > 100
    assert summary["picture"] == str(out / "subgraph.png")
    # `make serve` serves the checkpoint the samples were asked of: the last rung's run
    assert (out / "checkpoint.txt").read_text().strip() == summary["rungs"][names[-1]]["run"]
    for label in ("(i) no KG", "(v) + stage-1 pretraining", "image questions:", "answer", "gold", "subgraph.png",
                  "ask it yourself: mrmkg ask", "serve it", "mrmkg serve"):
        assert label in text

    # second run: nothing retrains, same numbers
    count_training.clear()
    again, text2 = _run(_config(out, llm_dir))
    assert count_training == []
    assert all(again["rungs"][n]["cached"] for n in names + ["stage1"])
    assert {n: again["rungs"][n]["metrics"] for n in names} == {n: summary["rungs"][n]["metrics"] for n in names}

    # a setting of rungs iv-v only: the others stay cached
    count_training.clear()
    changed, _ = _run(_config(out, llm_dir, align_weight=0.5))
    retrained = sorted(Path(p).name.split("-")[0] for p in count_training)
    assert retrained == ["align", "pretrain", "stage1"]  # stage 1 trains with rung (v)'s model config
    assert changed["rungs"]["no_kg"]["cached"] and not changed["rungs"]["align"]["cached"]

    # --fresh retrains what it runs
    count_training.clear()
    _run(_config(out, llm_dir, rungs=("no_kg",)), fresh=True)
    assert len(count_training) == 1


def test_warm_start_trains_rung_i_first_and_can_be_off(tmp_path, cache, llm_dir, count_training):
    s, text = _run(_config(tmp_path / "a", llm_dir, rungs=("align",)))
    assert sorted(Path(p).name.split("-")[0] for p in count_training) == ["align", "no_kg"]  # (i) first, unasked
    base = Path(s["rungs"]["no_kg"]["run"]).name
    assert s["rungs"]["align"]["init_from"] == base and s["rungs"]["align"]["steps"] == 1  # warm_steps
    cfg = (Path(s["rungs"]["align"]["run"]) / "final" / "train_config.yaml").read_text()
    assert f"{base}/final" in cfg and "max_steps: 1" in cfg
    assert "| (iv) + alignment loss |" in (tmp_path / "a" / "table.md").read_text() and "2+1" in text

    count_training.clear()
    s, _ = _run(_config(tmp_path / "b", llm_dir, rungs=("align",), warm_start=False))
    assert [Path(p).name.split("-")[0] for p in count_training] == ["align"]
    assert s["rungs"]["align"]["init_from"] is None and s["rungs"]["align"]["steps"] == 2


def test_pipeline_answers_as_eval_predicted(tmp_path, cache, llm_dir):
    """A user's question through the Pipeline (the `mrmkg ask` path) gets the answer and scores that the
    evaluation predicted for the same dev question: image, text and analogy alike."""
    from rich.console import Console

    from mrmkg.demo import Demo

    demo = Demo(_config(tmp_path / "out", llm_dir, rungs=("align",)), HashText(), PixelVision(), Console(quiet=True))
    demo.prepare()
    run = Path(demo.run_ladder()["align"]["run"])
    preds = {p["id"]: p for p in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    pipe = demo.pipeline(RUNGS[3], run)
    kg = demo.world.kg
    qs = [q for q in demo.world.questions[demo.config.eval_split] if q.id in preds]
    assert {q.type for q in qs} == {"image", "text", "analogy"}
    for q in qs:
        if q.type == "analogy":
            ans = pipe(analogy=[kg.entity_names[kg.entity_index(e)] for e in (*q.example, q.subject)], top_k=3)
        else:
            ans = pipe(q.text, image=q.image, top_k=3)
        p = preds[q.id]
        assert ans.answer_id == p["pred"], q.id
        # scores equal to the 4 decimals written; an exact tie's order may differ between batch shapes
        assert same_ranking([(c.id, c.score) for c in ans.candidates], [tuple(x) for x in p["top3"]], tol=1e-4), q.id
        # the subgraph shown is the one the model read: the N best of the triples evaluation retrieved
        shown = [r["id"] for r in ans.subgraph["triples"]]
        assert p["retrieved"] and set(shown) <= {t for t, _ in p["retrieved"]}
        assert len(shown) == min(demo.config.N, len(p["retrieved"]))
        assert set(ans.timings) == {"encode", "retrieve", "model"} and all(v >= 0 for v in ans.timings.values())
        assert json.loads(json.dumps(ans.to_dict()))["answer"] == ans.answer  # JSON-ready
    # a question's answers come from its candidate set only, however many are asked for
    q = next(q for q in qs if q.type == "image")
    ans = pipe(q.text, image=q.image, top_k=1000)
    assert sorted(c.id for c in ans.candidates) == sorted(demo.world.candidates[q.candidates])


def test_same_seed_same_result(tmp_path, cache, llm_dir):
    a, _ = _run(_config(tmp_path / "a", llm_dir, rungs=("no_kg", "kg_text")))
    b, _ = _run(_config(tmp_path / "b", llm_dir, rungs=("no_kg", "kg_text")))
    for n in ("no_kg", "kg_text"):
        pa = (tmp_path / "a" / "predictions" / f"{n}.jsonl").read_text()
        pb = (tmp_path / "b" / "predictions" / f"{n}.jsonl").read_text()
        assert pa == pb
        assert a["rungs"][n]["final_loss"] == b["rungs"][n]["final_loss"]


# ---------------------------------------------------------------------------------- the task
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mrmkg.kg.index import IndexConfig, KGIndex
    from mrmkg.tasks.demo.world import WorldConfig, build_world

    w = build_world(WorldConfig(**TINY_WORLD), out=tmp_path_factory.mktemp("dw") / "world")
    KGIndex.build(w.kg, IndexConfig(text_encoder="hash", vision_encoder="pixels"), directory=w.kg_dir,
                  text_encoder=HashText(), vision_encoder=PixelVision(), progress=False,
                  cache_root=tmp_path_factory.mktemp("emb"))
    return w


def _task(world, llm_dir, stage1=False, **args):
    from mrmkg.tasks.demo.task import DemoStage1Task, DemoTask, DemoTaskConfig

    cls = DemoStage1Task if stage1 else DemoTask
    return cls(DemoTaskConfig(world=str(world.root), **args), {**TINY_MODEL, "llm": llm_dir}, 0,
               text_encoder=HashText(), vision_encoder=PixelVision())


def test_prompts_hide_the_image_subject_and_carry_facts(built, llm_dir, cache):
    task = _task(built, llm_dir, facts=True, graph=True, text_triples=3, N=2, max_eval_per_type=5,
                 fact_grouping=False)
    ex = task.eval_examples("test")
    kg = built.kg
    for e in ex:
        assert e.prompt.endswith("\nAnswer:")
        q = next(q for q in built.questions["test"] if q.id == e.meta["id"])
        name = kg.entity_names[kg.entity_index(q.subject)]
        facts, line = e.prompt.split("\n")[0], e.prompt.split("\n")[-2]
        assert "[E" not in line  # default: no trainable token a training subject could memorise answers in
        if q.type == "image":
            assert name not in line and e.image_tokens.shape == (1, PixelVision.dim)
        if q.type == "text":
            assert name in line
        if q.type == "analogy":  # the hidden relation is never in the question line
            assert q.relation not in line and kg.relation_names[kg.relation_index(q.relation)] not in line
        shown = kg.triples[e.meta["triples"][:3]]
        assert facts == "Facts: " + "; ".join(f"{kg.entity_names[h]} {kg.relation_names[r]} {kg.entity_names[t]}"
                                              for h, r, t in shown.tolist()) + "."
        assert e.subgraph is not None and e.subgraph.triple_ids.size <= 2
    none = _task(built, llm_dir, max_eval_per_type=5).eval_examples("test")
    assert all(e.subgraph is None and not e.prompt.startswith("Facts") for e in none)


def test_grouped_facts_name_each_head_once_and_keep_every_fact(built, llm_dir, cache):
    kg = built.kg
    ex = _task(built, llm_dir, facts=True, text_triples=5, max_eval_per_type=5).eval_examples("test")
    grouped = 0
    for e in ex:
        facts = e.prompt.split("\n")[0]
        shown = kg.triples[e.meta["triples"][:5]].tolist()
        want, last = "", None
        for h, r, t in shown:
            want += (", " if h == last else ("; " if want else "")) + (
                f"{kg.relation_names[r]} {kg.entity_names[t]}" if h == last
                else f"{kg.entity_names[h]} {kg.relation_names[r]} {kg.entity_names[t]}")
            grouped += h == last
            last = h
        assert facts == f"Facts: {want}."
    assert grouped  # the toy world's retrieval does return runs of facts about one head


def test_fact_styles_and_entity_tokens(built, llm_dir, cache):
    kg = built.kg
    ex = _task(built, llm_dir, facts=True, fact_style="tokens", entity_tokens=True, text_triples=2, fact_grouping=False,
               types=("text",), max_eval_per_type=3).eval_examples("test")
    for e in ex:
        q = next(q for q in built.questions["test"] if q.id == e.meta["id"])
        s = kg.entity_index(q.subject)
        assert f"{kg.entity_names[s]} [E{s}]" in e.prompt.split("\n")[-2]
        h, r, t = kg.triples[e.meta["triples"][0]].tolist()
        assert e.prompt.startswith(f"Facts: [E{h}] {kg.relation_names[r]} [E{t}]; ")


def test_grid_image_input_gives_feature_map_tokens(built, llm_dir, cache):
    ex = _task(built, llm_dir, image_input="grid", max_eval_per_type=2, types=("image",)).eval_examples("test")
    assert len(ex) == 2 and all(e.image_tokens.shape == (PixelVision.num_tokens, PixelVision.dim) for e in ex)


def test_predictions_stay_in_the_closed_candidate_set(built, llm_dir, cache):
    task = _task(built, llm_dir, facts=True, max_eval_per_type=6)
    model = task.build_model()
    preds = task.predict(model, task.eval_examples("test"), batch_size=4)
    qs = {q.id: q for q in built.questions["test"]}
    for p in preds:
        cands = set(built.candidates[qs[p["id"]].candidates])
        assert p["pred"] in cands and all(e in cands for e, _ in p["top3"])
        assert p["correct"] == (p["pred"] == p["gold"])


def test_stage1_asks_no_held_out_fact(built, llm_dir, cache):
    task = _task(built, llm_dir, stage1=True)
    items = task.train_items()
    held = {built.kg.entity_index(q.subject) for s in ("dev", "test") for q in built.questions[s]}
    assert items and all(it.subject not in held for it in items)
    assert {it.type for it in items} == {"image", "text"}
    distractors = {built.kg.entity_index(e) for e, t in built.entity_types.items() if t == "distractor"}
    assert distractors & {it.subject for it in items}  # facts no question asks about are used
    capped = _task(built, llm_dir, stage1=True, max_train_per_type=5).train_items()
    assert sorted(it.type for it in capped) == ["image"] * 5 + ["text"] * 5


def test_config_errors():
    with pytest.raises(InputError, match="rungs"):
        DemoConfig(rungs=("no_kg", "bogus"))
    with pytest.raises(InputError, match="eval_split"):
        DemoConfig(eval_split="train")
    from mrmkg.tasks.demo.task import DemoTaskConfig

    with pytest.raises(InputError, match="types"):
        DemoTaskConfig(types=("image", "audio"))
    with pytest.raises(InputError, match="world"):
        from mrmkg.tasks.demo.task import DemoTask

        DemoTask(DemoTaskConfig())


def test_cli_bad_field_exits_2(capsys):
    from mrmkg.cli import main

    assert main(["demo", "--set", "stepz=3"]) == 2
    assert "stepz" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.weights("smollm2-135m", "minilm", "efficientnet-lite0")
def test_real_quick_demo(tmp_path):
    """The real `mrmkg demo --quick` (SmolLM2, MiniLM, EfficientNet-Lite0): runs end to end."""
    from mrmkg.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["rungs"]) == set(STORY_RUNGS)  # by default the two rungs that tell the story
    assert (out / "subgraph.png").is_file() and (out / "table.md").is_file()


def test_shipped_demo_yaml_states_the_defaults():
    """configs/demo.yaml documents what plain `mrmkg demo` does: every field it sets equals the default."""
    import dataclasses

    import yaml

    shipped = yaml.safe_load((Path(__file__).parents[1] / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    defaults = dataclasses.asdict(DemoConfig())
    assert set(shipped) <= set(defaults)
    for key, value in shipped.items():
        assert (tuple(value) if key == "rungs" else value) == defaults[key], key
