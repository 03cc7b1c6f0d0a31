"""The Pipeline's parts that need no trained model: query parsing, entity names, the Answer record,
and the one-line errors of `mrmkg ask` (a trained checkpoint answering is tested per task:
test_mars.py for analogies, test_demo.py for image/text/analogy questions, test_scienceqa_train.py
for multiple choice)."""
from __future__ import annotations

import json

import pytest

from mrmkg.cli import main
from mrmkg.commands.ask import parse_analogy, parse_choices
from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.pipeline import Answer, Candidate, resolve_checkpoint
from mrmkg.tasks.knowledge import resolve_entity


def test_parse_analogy_and_choices():
    assert parse_analogy(" cat : fur :: dog : ? ") == ("cat", "fur", "dog")
    assert parse_analogy("Q1:Q3::Q2:") == ("Q1", "Q3", "Q2")
    for bad in ("cat : fur", "cat :: dog : ?", "cat : fur :: dog : bone", " : fur :: dog : ?", "a : b : c :: d : ?"):
        with pytest.raises(InputError, match="expected 'head : tail :: question : \\?'"):
            parse_analogy(bad)
    assert parse_choices("iron| wood |glass") == ["iron", "wood", "glass"]
    for bad in ("iron", "iron||glass", ""):
        with pytest.raises(InputError, match="at least two non-empty options"):
            parse_choices(bad)


def test_entities_by_id_or_name_ambiguous_and_unknown_listed():
    kg = MMKG.from_records([("Q1", "Mercury", "planet"), ("Q2", "Mercury", "element"), ("Q3", "Venus", ""),
                            ("Q4", "Venus flytrap", "")], [("P1", "near")], [("Q1", "P1", "Q3")])
    assert resolve_entity(kg, "Q2") == 1                    # an id wins
    assert resolve_entity(kg, " venus ") == 2               # a name, case and spaces aside
    with pytest.raises(InputError, match=r"'mercury' is ambiguous: 2 entities have it \(Q1 \(Mercury\), Q2 \(Mercury\)\)"):
        resolve_entity(kg, "mercury")
    with pytest.raises(InputError, match=r"no entity has the id or name 'flytrap'; names containing it: Q4"):
        resolve_entity(kg, "flytrap")
    with pytest.raises(InputError, match="empty entity"):
        resolve_entity(kg, "  ")


def test_answer_is_json_ready_and_dict_like():
    a = Answer(answer="fur", answer_id="Q3", candidates=[Candidate("Q3", "fur", 1.5)], timings={"model": 0.1},
               graph=object())
    d = a.to_dict()
    assert "graph" not in d and json.loads(json.dumps(d))["candidates"][0] == {"id": "Q3", "name": "fur", "score": 1.5}
    assert a["answer_id"] == "Q3"


def test_answer_to_dict_matches_asdict_and_is_a_copy():
    from dataclasses import asdict, replace

    sub = {"nodes": [{"id": 0, "name": "fur", "score": 0.5}], "edges": [(0, 1, "eats", 0.25)], "triples": [{"id": 7}]}
    a = Answer(answer="fur", answer_id="Q3", candidates=[Candidate("Q3", "fur", 1.5), Candidate("Q4", "gum", 0.5)],
               subgraph=sub, timings={"model": 0.1}, meta={"given": Candidate("Q1", "cat", 0.0)}, graph=object())
    expected = asdict(replace(a, graph=None))
    expected.pop("graph")
    d = a.to_dict()
    assert d == expected and list(d) == list(expected)
    d["subgraph"]["nodes"][0]["name"] = "changed"          # the dict is the caller's to change
    d["candidates"][0]["score"] = 0.0
    assert a.subgraph["nodes"][0]["name"] == "fur" and a.candidates[0].score == 1.5


def test_checkpoint_resolution_names_the_folder(tmp_path):
    with pytest.raises(InputError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(InputError, match="not a trained checkpoint"):
        resolve_checkpoint(tmp_path)


@pytest.mark.parametrize("argv,needle", [
    (["ask", "{tmp}/nope", "What?"], "checkpoint not found"),
    (["ask", "{tmp}", "What?"], "not a trained checkpoint"),
    (["ask", "{tmp}", "  "], "the question is empty"),
    (["ask", "{tmp}", "What?", "--image", "{tmp}/missing.png"], "image not found"),
    (["ask", "{tmp}", "--analogy", "cat : fur"], "expected 'head : tail :: question : ?'"),
    (["ask", "{tmp}", "Which?", "--choices", "one"], "at least two non-empty options"),
    (["ask", "{tmp}", "What?", "--device", "gpu7"], "expected cpu, cuda or cuda:N"),
])
def test_ask_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, needle):
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
