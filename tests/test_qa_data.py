"""The ``qa`` task's question files (mrmkg.tasks.qa.data): what loads, and one test per kind of
malformed input, each an InputError naming the file and line (a dataset: its folder and row), or
exit 2 through the CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from mrmkg.errors import InputError
from mrmkg.kg.io import load_tsv
from mrmkg.tasks.qa.data import load_questions


@pytest.fixture
def kg(tmp_path):
    d = tmp_path / "kgsrc"
    d.mkdir()
    (d / "entities.tsv").write_text("E1\tVrosk\nE2\tPlumb\nE3\tOru\nE4\tTwin\nE5\tTwin\n", encoding="utf-8")
    (d / "relations.tsv").write_text("R1\teats\n", encoding="utf-8")
    (d / "triples.tsv").write_text("E1\tR1\tE2\nE4\tR1\tE5\n", encoding="utf-8")
    return load_tsv(d / "triples.tsv", d / "entities.tsv", d / "relations.tsv")


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    (d / "pics").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(d / "pics" / "vrosk.png")
    return d


GOOD = [
    {"id": "q1", "split": "train", "question": "What does this eat?", "image": "pics/vrosk.png", "answer": "Plumb"},
    {"id": 2, "split": "train", "question": "Which?", "choices": ["red", "blue"], "answer": "blue"},
    {"id": "q3", "split": "dev", "question": "Where?", "answer": "E3"},
    {"id": "q4", "split": "test", "question": "Say hi.", "answer": "hi"},
]


def write(path: Path, records, raw: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def fails(path, kg, needle: str, line: int | None, **kw):
    with pytest.raises(InputError) as e:
        load_questions(path, kg, **kw)
    where = str(path) if line is None else f"{path}:{line}"
    assert where in str(e.value) and needle in str(e.value), str(e.value)
    return e.value


def test_good_file_loads_every_kind(kg, data):
    qs = load_questions(write(data / "q.jsonl", GOOD), kg)
    train, dev, test = qs["train"], qs["dev"], qs["test"]
    assert [r.kind for r in train] == ["entity", "choice"] and train[0].entity == 1 and train[1].gold_choice == 1
    assert train[0].image == str((data / "pics" / "vrosk.png").resolve()) and train[1].id == "2"
    assert dev[0].kind == "entity" and dev[0].entity == 2  # by id
    assert test[0].kind == "text" and test[0].entity is None


def test_split_folder_and_answer_kind(kg, data):
    for s, r in zip(("train", "dev", "test"), GOOD[:1] + GOOD[2:]):
        write(data / f"{s}.jsonl", [{k: v for k, v in r.items() if k != "split"}])
    qs = load_questions(data, kg, answer_kind="text")
    assert [r.kind for s in ("train", "dev", "test") for r in qs[s]] == ["text", "text", "text"]


def test_datasets_folder_loads_with_validation_as_dev(kg, data):
    datasets = pytest.importorskip("datasets")
    # a table has every column in every row: absent optional fields are None (read as absent)
    rows = [{k: r.get(k) for k in ("id", "question", "image", "choices", "answer")} for r in GOOD]
    for r in rows:
        r["id"] = str(r["id"])
    ds = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]),
                               "validation": datasets.Dataset.from_list(rows[2:3]),
                               "test": datasets.Dataset.from_list(rows[3:])})
    ds.save_to_disk(str(data / "ds"))
    (data / "ds" / "pics").mkdir()
    Image.new("RGB", (8, 8)).save(data / "ds" / "pics" / "vrosk.png")
    qs = load_questions(data / "ds", kg)
    assert [len(qs[s]) for s in ("train", "dev", "test")] == [2, 1, 1]
    assert qs["train"][1].kind == "choice" and qs["train"][0].kind == "entity"


def test_datasets_row_error_names_folder_and_row(kg, data):
    datasets = pytest.importorskip("datasets")
    rows = [{"id": "a", "question": "Q?", "answer": "x", "split": "train"},
            {"id": "a", "question": "Q?", "answer": "y", "split": "train"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(data / "ds"))
    fails(data / "ds", kg, "duplicate id 'a'", 2)


def test_wrong_type(kg, data):
    fails(write(data / "q.jsonl", [GOOD[0], {**GOOD[3], "question": 7}]), kg, "field 'question': expected non-empty text", 2)


def test_id_of_wrong_type(kg, data):
    fails(write(data / "q.jsonl", [{**GOOD[3], "id": [1]}]), kg, "field 'id'", 1)


def test_missing_field(kg, data):
    fails(write(data / "q.jsonl", [GOOD[0], GOOD[1], {"id": "x", "split": "dev", "question": "Q?"}]), kg,
          "missing field 'answer'", 3)


def test_unknown_field(kg, data):
    fails(write(data / "q.jsonl", [{**GOOD[3], "anwser": "hi"}]), kg, "unknown field(s) 'anwser'", 1)


def test_missing_split_in_one_file(kg, data):
    fails(write(data / "q.jsonl", [{k: v for k, v in GOOD[3].items() if k != "split"}]), kg, "missing field 'split'", 1)


def test_bad_split(kg, data):
    fails(write(data / "q.jsonl", [{**GOOD[3], "split": "validation"}]), kg, "field 'split'", 1)


def test_split_field_contradicting_its_file(kg, data):
    write(data / "train.jsonl", [GOOD[0]])
    write(data / "dev.jsonl", [GOOD[3]])  # says "test"
    fails_folder(data, kg, data / "dev.jsonl", "field 'split' is 'test' in the 'dev' file", 1)


def fails_folder(folder, kg, file, needle, line):
    with pytest.raises(InputError) as e:
        load_questions(folder, kg)
    assert f"{file}:{line}" in str(e.value) and needle in str(e.value), str(e.value)


def test_answer_not_among_choices(kg, data):
    fails(write(data / "q.jsonl", [{**GOOD[1], "answer": "green"}]), kg, "not among the choices", 1)


@pytest.mark.parametrize("choices", [["one"], ["a", "a"], ["a", ""], "a|b"])
def test_malformed_choices(kg, data, choices):
    fails(write(data / "q.jsonl", [{**GOOD[1], "choices": choices, "answer": "a"}]), kg, "field 'choices'", 1)


def test_entity_answer_not_in_graph(kg, data):
    fails(write(data / "q.jsonl", [GOOD[3], {**GOOD[0], "kind": "entity", "answer": "Kelp"}]), kg,
          "answer 'Kelp' is not an entity of the graph", 2)


def test_answer_kind_entity_makes_every_unknown_answer_an_error(kg, data):
    fails(write(data / "q.jsonl", [GOOD[3]]), kg, "not an entity of the graph", 1, answer_kind="entity")


def test_ambiguous_entity_name(kg, data):
    fails(write(data / "q.jsonl", [{**GOOD[3], "answer": "Twin"}]), kg, "names 2 entities (E4, E5)", 1)


def test_duplicate_ids_across_split_files(kg, data):
    write(data / "train.jsonl", [{**GOOD[3], "split": "train"}, GOOD[0]])
    write(data / "dev.jsonl", [GOOD[2], {**GOOD[0], "split": "dev"}])
    fails_folder(data, kg, data / "dev.jsonl", f"duplicate id 'q1' (first at {data / 'train.jsonl'}:2)", 2)


def test_not_utf8(kg, data):
    p = write(data / "q.jsonl", None, raw=json.dumps(GOOD[3]).encode() + b"\n" + b'{"id": "\xff"}\n')
    fails(p, kg, "not UTF-8", 2)


def test_invalid_json(kg, data):
    fails(write(data / "q.jsonl", [GOOD[3], '{"id": "x",']), kg, "not valid JSON", 2)


def test_image_missing(kg, data):
    fails(write(data / "q.jsonl", [{**GOOD[0], "image": "pics/nope.png"}]), kg, "image 'pics/nope.png' not found", 1)


def test_image_absolute_path_refused_unless_allowed(kg, data, tmp_path):
    pic = tmp_path / "elsewhere.png"
    Image.new("RGB", (8, 8)).save(pic)
    p = write(data / "q.jsonl", [{**GOOD[0], "image": str(pic)}])
    fails(p, kg, "an absolute path", 1)
    assert load_questions(p, kg, allow_outside=True)["train"][0].image == str(pic.resolve())


def test_image_dotdot_escape_refused(kg, data, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "out.png")
    fails(write(data / "q.jsonl", [{**GOOD[0], "image": "../out.png"}]), kg, "'..' leaves the data folder", 1)


def test_image_symlink_outside_refused(kg, data, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", data / "pics" / "link.png")
    fails(write(data / "q.jsonl", [{**GOOD[0], "image": "pics/link.png"}]), kg, "outside the data folder", 1)


def test_no_questions_file(kg, data):
    fails(data / "none.jsonl", kg, "questions not found", None)


@pytest.fixture
def built_graph(tmp_path, capsys, monkeypatch):
    from test_cli_kg import FAKE  # registers the tiny test encoders

    from mrmkg.cli import main

    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "triples.tsv").write_text("E1\tR1\tE2\n", encoding="utf-8")
    assert main(["kg", "build", str(src), "--format", "tsv", "-o", str(tmp_path / "graph"), "--quiet", *FAKE]) == 0
    capsys.readouterr()
    return tmp_path / "graph"


@pytest.mark.parametrize("mode, second, needle", [
    ("auto", {"choices": ["x", "y"], "answer": "z"}, "not among the choices"),
    ("rank", {"answer": "free words"}, "mode 'rank' ranks graph entities, but question 'b'"),
])
def test_cli_train_exits_2_naming_file_and_line(tmp_path, capsys, built_graph, mode, second, needle):
    from mrmkg.cli import main

    q = write(tmp_path / "q.jsonl", [{"id": "a", "split": "train", "question": "Q?", "answer": "E1"},
                                     {"id": "b", "split": "train", "question": "Q?", **second}])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: qa\noutput_dir: {tmp_path / 'run'}\ntask_args:\n  data: {q}\n  graph: {built_graph}\n"
                   f"  mode: {mode}\n")
    rc = main(["train", "-c", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{q}:2" in err and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "final").exists()
