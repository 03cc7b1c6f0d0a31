"""`mrmkg explain`: an eval folder's predictions joined with its graph and split file, in names."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from mrmkg.cli import main
from mrmkg.errors import InputError
from mrmkg.explain import answer_in_knowledge, answer_source, coverage_summary, explain, open_eval, select, subgraph_of
from mrmkg.kg.graph import MMKG

ENTS = [("Q1", "cat", ""), ("Q2", "kitten", ""), ("Q3", "dog", ""), ("Q4", "puppy", ""), ("Q5", "bark", ""),
        ("Q6", "meow", "")]
RELS = [("P1", "young of", ""), ("P2", "sound of", ""), ("A1", "analogy young", "")]
TRIPLES = [("Q2", "P1", "Q1"), ("Q4", "P1", "Q3"), ("Q5", "P2", "Q3"), ("Q6", "P2", "Q1")]


def _pred(pid, gold, rank, top, retrieved, memory=(), copy=None):
    return {"id": pid, "gold": gold, "rank": rank, "top10": [[e, s] for e, s in top], "retrieved": retrieved,
            "memory": [list(m) for m in memory], "copy": copy, "mode": 0, "sides": ["text", "text", "standin:name"]}


@pytest.fixture
def eval_dir(tmp_path):
    graph = tmp_path / "graph"
    MMKG.from_records(ENTS, [r[:2] for r in RELS], TRIPLES).save(graph)
    split = tmp_path / "dev.json"
    split.write_text("".join(json.dumps(r) + "\n" for r in [
        {"example": ["Q1", "Q2"], "question": "Q3", "answer": "Q4", "relation": "A1", "mode": 0},
        {"example": ["Q3", "Q5"], "question": "Q1", "answer": "Q6", "mode": 0},
        {"example": ["Q1", "Q2"], "question": "Q1", "answer": "Q2", "relation": "A1", "mode": 0}]))
    d = tmp_path / "eval"
    d.mkdir()
    (d / "eval_config.yaml").write_text(yaml.safe_dump({"checkpoint": "run", "split_file": str(split),
                                                         "task_args": {"graph": str(graph), "prompt": "kg_text_graph",
                                                                       "text_triples": 1}}))
    preds = [_pred("dev-1", "Q4", 1, [("Q4", 3.5), ("Q5", 1.25)], [[1, 0.9], [2, 0.4]], memory=[("Q4", "A1", 2.0)]),
             _pred("dev-2", "Q6", 2, [("Q5", 2.0), ("Q6", 1.0)], [[2, 0.3], [3, 0.8]]),
             _pred("dev-3", "Q2", 3, [("Q3", 1.0), ("Q4", 0.5), ("Q2", 0.1)], [], copy="Q2")]
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return d


def test_explanation_names_the_analogy_candidates_and_knowledge(eval_dir):
    folder = open_eval(eval_dir)
    e = explain(folder, folder.predictions[0])
    assert [x["name"] for x in e["example"]] == ["cat", "kitten"] and e["question"]["name"] == "dog"
    assert e["gold"] == {"id": "Q4", "name": "puppy"} and e["rank"] == 1
    assert e["relation"] == {"id": "A1", "name": "analogy young"}
    assert e["top10"] == [{"id": "Q4", "name": "puppy", "score": 3.5, "gold": True},
                          {"id": "Q5", "name": "bark", "score": 1.25, "gold": False}]
    # in the order the model got them; with kg_text_graph and text_triples 1, the first one was also a fact
    assert e["prompt"] == "kg_text_graph" and e["retrieved"] == [
        {"triple": 1, "head": "puppy", "relation": "young of", "tail": "dog", "score": 0.9, "in_text": True,
         "in_graph": True},
        {"triple": 2, "head": "bark", "relation": "sound of", "tail": "dog", "score": 0.4, "in_text": False,
         "in_graph": True}]
    assert e["memory"] == [{"id": "Q4", "name": "puppy", "relation": {"id": "A1", "name": "analogy young"},
                            "count": 2.0}]
    second = explain(folder, folder.predictions[1])
    assert [k["triple"] for k in second["retrieved"]] == [2, 3]
    assert second["relation"] is None and second["copy"] is None
    assert explain(folder, folder.predictions[2])["copy"] == {"id": "Q2", "name": "kitten"}


def test_versus_another_run_shows_the_examples_where_they_disagree_at_rank_1(eval_dir, tmp_path, capsys):
    preds = open_eval(eval_dir).predictions  # ranks 1, 2, 3
    other = [{"id": "dev-1", "rank": 2}, {"id": "dev-2", "rank": 1}, {"id": "dev-3", "rank": 5}]
    right = select(preds, versus=other)
    assert [(p["id"], p["versus_rank"]) for p in right] == [("dev-1", 2)]
    assert [(p["id"], p["versus_rank"]) for p in select(preds, versus=other, wrong=True)] == [("dev-2", 1)]
    assert [p["versus_rank"] for p in select(preds, ["dev-3"], versus=other)] == [5]
    with pytest.raises(InputError, match="not over the same examples"):
        select(preds, versus=other[:2])
    d = tmp_path / "other"
    d.mkdir()
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in other))
    assert main(["explain", str(eval_dir), "--versus", str(d), "--wrong"]) == 0
    out = capsys.readouterr().out
    assert "dev-2" in out and "rank 2, rank 1 in the other run" in out and "dev-1" not in out
    assert main(["explain", str(eval_dir), "--versus", str(d), "--json"]) == 0
    assert [json.loads(x)["versus_rank"] for x in capsys.readouterr().out.splitlines()] == [2]


@pytest.mark.parametrize("prompt,text_triples,given", [
    ("question", 15, [(False, False), (False, False)]),
    ("kg_text", 15, [(True, False), (True, False)]),
    ("kg_graph", 15, [(False, True), (False, True)]),
    ("kg_text_graph", 1, [(True, True), (False, True)]),
])
def test_what_the_prompt_gave_the_model(eval_dir, prompt, text_triples, given):
    cfg = yaml.safe_load((eval_dir / "eval_config.yaml").read_text())
    cfg["task_args"].update(prompt=prompt, text_triples=text_triples)
    (eval_dir / "eval_config.yaml").write_text(yaml.safe_dump(cfg))
    folder = open_eval(eval_dir)
    e = explain(folder, folder.predictions[0])
    assert [(k["in_text"], k["in_graph"]) for k in e["retrieved"]] == given


def test_selection_by_ids_first_examples_or_wrong_ones(eval_dir):
    preds = open_eval(eval_dir).predictions
    assert [p["id"] for p in select(preds, ["dev-3", "dev-1"])] == ["dev-3", "dev-1"]
    assert [p["id"] for p in select(preds, limit=2)] == ["dev-1", "dev-2"]
    assert [p["id"] for p in select(preds, limit=5, wrong=True)] == ["dev-2", "dev-3"]
    with pytest.raises(InputError, match="no prediction with id 'dev-9'"):
        select(preds, ["dev-9"])


def test_subgraph_holds_the_retrieved_triples_the_analogy_and_memory(eval_dir):
    folder = open_eval(eval_dir)
    sg = subgraph_of(folder, folder.predictions[0])
    assert sg.triple_ids.tolist() == [1, 2] and sg.query == "cat : kitten :: dog : ?"
    assert {folder.kg.entity_ids[e] for e in sg.node_ref.tolist()} == {"Q1", "Q2", "Q3", "Q4", "Q5"}
    assert [(folder.kg.entity_ids[h], folder.kg.entity_ids[t], c) for h, _, t, c in sg.memory_edges] == \
        [("Q3", "Q4", 2.0)]


def test_coverage_separates_answers_the_knowledge_names_from_the_others(eval_dir, capsys):
    lines = [json.loads(x) for x in (eval_dir / "predictions.jsonl").read_text().splitlines()]
    lines[0]["retrieved"] = [[2, 0.4]]  # dev-1: puppy now only an analogy-memory partner
    lines[1]["retrieved"] = [[2, 0.3]]  # dev-2: meow named nowhere
    (eval_dir / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in lines))
    folder = open_eval(eval_dir)
    # dev-1 via memory, dev-3 via the copy node
    assert [answer_in_knowledge(folder, p) for p in folder.predictions] == [True, False, True]
    cov = coverage_summary(folder)
    assert cov["n"] == 3 and cov["answer_in_knowledge"] == pytest.approx(2 / 3)
    inside, outside = cov["answer in knowledge"], cov["answer not in knowledge"]
    assert inside["n"] == 2 and inside["hits@1"] == 0.5 and inside["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert outside["n"] == 1 and outside["hits@1"] == 0.0 and outside["mrr"] == 0.5
    assert cov["all"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    by = cov["by_source"]
    assert by["memory partner"]["n"] == 1 and by["memory partner"]["hits@1"] == 1.0  # dev-1
    assert by["copy node"]["n"] == 1 and by["copy node"]["mrr"] == pytest.approx(1 / 3)  # dev-3
    assert by["triples only"] is None
    assert [answer_source(folder, p) for p in folder.predictions] == ["memory partner", None, "copy node"]
    assert main(["explain", str(eval_dir), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "66.7% of 3" in out and "answer not in knowledge" in out and "0.500" in out
    assert re.search(r"in the triples only\s+│\s+0\s+│\s+-", out)
    assert main(["explain", str(eval_dir), "--summary", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == cov


def test_cli_tables_json_and_picture(eval_dir, tmp_path, capsys):
    assert main(["explain", str(eval_dir), "dev-2"]) == 0
    out = capsys.readouterr().out
    assert "dev-2" in out and "gold meow (Q6): rank 2" in out and "sound of" in out and "meow (Q6) (gold)" in out
    assert "text + graph" in out and "prompt kg_text_graph" in out
    pic = tmp_path / "sg.svg"
    assert main(["explain", str(eval_dir), "--wrong", "--limit", "1", "--json", "--picture", str(pic)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == "dev-2"
    assert pic.read_text().lstrip().startswith("<?xml") and str(pic) in captured.err


def test_bad_folders_are_refused_with_the_option_to_use(eval_dir, tmp_path, capsys):
    assert main(["explain", str(tmp_path)]) == 2
    assert "not an `mrmkg eval` output folder" in capsys.readouterr().err
    cfg = yaml.safe_load((eval_dir / "eval_config.yaml").read_text())
    graph = cfg["task_args"]["graph"]
    cfg["task_args"]["graph"] = str(tmp_path / "moved")
    (eval_dir / "eval_config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["explain", str(eval_dir)]) == 2
    err = capsys.readouterr().err
    assert "moved" in err and "--graph" in err and "Traceback" not in err
    assert main(["explain", str(eval_dir), "--graph", graph, "dev-1"]) == 0
    capsys.readouterr()
    with open(eval_dir / "predictions.jsonl", "a") as f:
        f.write(json.dumps(_pred("test-7", "Q1", 1, [("Q1", 1.0)], [])) + "\n")
    assert main(["explain", str(eval_dir), "--graph", graph]) == 2
    assert "predictions.jsonl:4" in (err := capsys.readouterr().err) and "'test-7'" in err
    lines = (eval_dir / "predictions.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["top10"]
    (eval_dir / "predictions.jsonl").write_text("\n".join([lines[0], json.dumps(broken)]) + "\n")
    assert main(["explain", str(eval_dir), "--graph", graph]) == 2
    assert "predictions.jsonl:2" in (err := capsys.readouterr().err) and "'top10' is missing" in err
    (eval_dir / "eval_config.yaml").write_text("split_file: [unclosed\n")
    assert main(["explain", str(eval_dir)]) == 2
    assert "eval_config.yaml" in (err := capsys.readouterr().err) and "not valid YAML" in err


def test_names_with_brackets_print_as_written(eval_dir):
    from rich.console import Console

    from mrmkg.explain import print_explanation

    folder = open_eval(eval_dir)
    e = explain(folder, folder.predictions[0])
    e["gold"]["name"] = e["top10"][0]["name"] = "puppy [/young]"  # a closing tag rich would refuse as markup
    e["retrieved"][0]["head"] = "[bold]puppy"
    console = Console(record=True, width=200)
    print_explanation(e, console=console)
    text = console.export_text()
    assert "gold puppy [/young] (Q4)" in text and "[bold]puppy" in text


def test_retrieval_first_script_counts_where_the_top_scored_triple_names_the_answer(eval_dir):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "research" / "mars" / "mars_retrieval_first.py"
    spec = importlib.util.spec_from_file_location("mars_retrieval_first", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # only dev-2 has its answer (meow) named by the triples alone: dev-1's is a memory partner, dev-3's the copy;
    # its triples score meow 0.8 and bark / dog 0.3, so retrieval puts meow first while the model ranked it 2nd
    assert script.count(str(eval_dir)) == dict(examples=1, retrieval_first=1, model_first=0, both=0,
                                               answer_is_question=0, nodes=3)
    preds = [json.loads(x) for x in (eval_dir / "predictions.jsonl").read_text().splitlines()]
    preds[1].update(rank=1, retrieved=[[2, 0.9], [3, 0.8]])   # now bark and dog outscore meow
    (eval_dir / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    assert script.count(str(eval_dir)) == dict(examples=1, retrieval_first=0, model_first=1, both=0,
                                               answer_is_question=0, nodes=3)

