"""docs/own-data.md end to end: its commands, read from the page and run verbatim through
``mrmkg.cli.main`` on a small generated folder (creatures with pictures drawn by PIL, their triples,
questions of all three answer kinds), with the real packaged encoders (MiniLM, EfficientNet-Lite0).

The one substitution: ``my.yaml``'s ``model`` section is replaced by a tiny random LLaMA (the
``llm_dir`` fixture, as in tests/test_demo.py) with small graph-encoder widths, so training takes
seconds. Every other line of the YAML and every command is the page's own."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

from mrmkg.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
TINY_MODEL = {"dtype": "fp32", "adapter_length": "nodes", "gnn_hidden": 16, "gnn_heads": 2, "gnn_relation_dim": 8,
              "gnn_num_blocks": 0}

# creature -> (colour, food, home)
CREATURES = {"Vrosk": ("red", "Plumb", "Oru"), "Talli": ("blue", "Kelp", "Mire"), "Quon": ("green", "Plumb", "Mire"),
             "Brix": ("yellow", "Kelp", "Oru")}
RGB = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 20)}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def tutorial_commands() -> list[str]:
    return [ln.strip() for b in blocks("bash") for ln in b.splitlines() if ln.strip().startswith("mrmkg ")]


def make_folder(root: Path) -> None:
    """mydata/ as section 1 of the page describes it."""
    d = root / "mydata"
    (d / "pics").mkdir(parents=True)
    ents = {name: f"E{i + 1}" for i, name in enumerate([*CREATURES, "Plumb", "Kelp", "Oru", "Mire"])}
    (d / "entities.tsv").write_text("".join(f"{e}\t{n}\ta thing called {n}\n" for n, e in ents.items()), encoding="utf-8")
    (d / "relations.tsv").write_text("R1\teats\nR2\tlives in\n", encoding="utf-8")
    triples, images = [], []
    for name, (colour, food, home) in CREATURES.items():
        triples += [f"{ents[name]}\tR1\t{ents[food]}", f"{ents[name]}\tR2\t{ents[home]}"]
        img = Image.new("RGB", (32, 32), (240, 240, 240))
        ImageDraw.Draw(img).ellipse((4, 4, 28, 28), fill=RGB[colour])
        img.save(d / "pics" / f"{name.lower()}.png")
        images.append(f"{ents[name]}\tpics/{name.lower()}.png")
    (d / "triples.tsv").write_text("\n".join(triples) + "\n", encoding="utf-8")
    (d / "images.tsv").write_text("\n".join(images) + "\n", encoding="utf-8")
    qs, k = [], 0
    for i, (name, (colour, food, home)) in enumerate(CREATURES.items()):
        split = "train" if i < 2 else ("dev" if i == 2 else "test")
        pic = f"pics/{name.lower()}.png"
        other = "blue" if colour != "blue" else "red"
        for q in ({"question": "What does this creature eat?", "image": pic, "answer": food},          # entity
                  {"question": f"Where does {name} live?", "answer": ents[home]},                       # entity by id
                  {"question": f"What colour is {name}?", "choices": sorted([colour, other]), "answer": colour},
                  {"question": f"Say the name of {name}'s food, twice.", "answer": f"{food} {food}"}):  # free text
            k += 1
            qs.append({"id": f"q{k}", "split": split, **q})
    (d / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs), encoding="utf-8")


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    from test_model_common import save_tiny_llm

    return save_tiny_llm("llama", tmp_path_factory.mktemp("tiny_llm"))


def test_the_page_has_the_commands_it_promises():
    cmds = tutorial_commands()
    assert [c.split()[1] for c in cmds] == ["kg", "train", "eval", "ask"]
    assert len(blocks("yaml")) == 1


def test_tutorial_end_to_end(tmp_path, monkeypatch, capsys, llm_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    make_folder(tmp_path)
    cfg = yaml.safe_load(blocks("yaml")[0])
    assert cfg["model"] == {"llm": "smollm2-135m"}  # the page's model, replaced below by a tiny one
    cfg["model"] = {**TINY_MODEL, "llm": llm_dir}
    Path("my.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")

    outputs = []
    for cmd in tutorial_commands():
        argv = shlex.split(cmd)[1:]
        if argv[0] == "train":
            argv += ["--set", "progress=false"]  # no progress bar in the test log
        rc = main(argv)
        out = capsys.readouterr()
        assert rc == 0, f"{cmd}\n{out.out}\n{out.err}"
        outputs.append(out.out)

    run = Path(cfg["output_dir"])
    assert (run / "final" / "model" / "mrmkg.json").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*"))  # TensorBoard curves by default
    train_metrics = json.loads((run / "metrics.json").read_text())
    assert train_metrics["n"] == 4 and train_metrics["n_entity"] == 2  # the dev split, mixed kinds: generated

    ev = run / "eval-test"
    metrics = json.loads((ev / "metrics.json").read_text())
    preds = [json.loads(x) for x in (ev / "predictions.jsonl").read_text().splitlines()]
    assert metrics["split"] == "test" and metrics["n"] == 4 == len(preds)
    assert {p["kind"] for p in preds} == {"entity", "choice", "text"}
    for key in ("accuracy", "choice_accuracy", "entity_accuracy", "text_exact_match"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["accuracy"] == pytest.approx(sum(bool(p["correct"]) for p in preds) / 4)
    assert {p["gold"] for p in preds if p["kind"] == "entity"} == {"E6", "E7"}  # Brix: Kelp (by name), Oru (by id)

    ans = json.loads(outputs[-1])
    assert isinstance(ans["answer"], str) and isinstance(ans["text"], str) and ans["meta"]["kind"] == "text"
    assert ans["subgraph"]["query"] == "What does this creature eat?"
    assert ans["subgraph"]["triples"], "the answer names the triples it was retrieved from"
    assert any(n["kind"] == "image" for n in ans["subgraph"]["nodes"])


def test_entity_questions_are_ranked(tmp_path, monkeypatch, capsys, llm_dir):
    """The same folder with only its entity questions: mode auto ranks the graph's entities, eval
    reports Hits@k and MRR, and ask returns scored entities."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    make_folder(tmp_path)
    qs = [json.loads(x) for x in Path("mydata/questions.jsonl").read_text().splitlines()]
    Path("mydata/entity.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs if "choices" not in q
                                                   and "twice" not in q["question"]), encoding="utf-8")
    cfg = {"task": "qa", "output_dir": "runs/rank", "task_args": {"data": "mydata/entity.jsonl", "graph": "graph"},
           "model": {**TINY_MODEL, "llm": llm_dir}, "epochs": 2, "batch_size": 2, "progress": False}
    Path("rank.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    for argv in (["kg", "build", "mydata", "--format", "tsv", "-o", "graph", "--quiet"], ["train", "-c", "rank.yaml"],
                 ["eval", "runs/rank", "--split", "test", "-o", "runs/rank/ev", "--json"]):
        rc = main(argv)
        out = capsys.readouterr()
        assert rc == 0, f"{argv}\n{out.out}\n{out.err}"
    m = json.loads(out.out)
    assert m["n"] == 2 and 0 < m["mrr"] <= 1 and m["hits@1"] <= m["hits@3"] <= m["hits@10"] == 1.0  # 8 entities
    preds = [json.loads(x) for x in Path("runs/rank/ev/predictions.jsonl").read_text().splitlines()]
    assert all(1 <= p["rank"] <= 8 and len(p["top3"]) == 3 for p in preds)
    assert main(["ask", "runs/rank", "What does this creature eat?", "--image", "mydata/pics/quon.png", "--json",
                 "--top-k", "4"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert len(ans["candidates"]) == 4 and ans["answer_id"] == ans["candidates"][0]["id"]
    scores = [c["score"] for c in ans["candidates"]]
    assert scores == sorted(scores, reverse=True)
