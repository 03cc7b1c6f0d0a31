"""ScienceQA loader, validation, Multimodal-CoT prompts and answer parsing, on the hand-written fixture."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrmkg.errors import InputError
from mrmkg.tasks.scienceqa import data as sqa
from sqa_fixture import scienceqa_root

FIX = scienceqa_root()


@pytest.fixture()
def data():
    return sqa.load_scienceqa(FIX)


@pytest.fixture()
def copy(tmp_path):
    """A writable copy of the fixture; returns (root, problems dict) to corrupt."""
    root = tmp_path / "sqa"
    shutil.copytree(FIX, root)
    return root, json.loads((root / "problems.json").read_text())


def _write(root: Path, problems: dict) -> None:
    (root / "problems.json").write_text(json.dumps(problems, indent=2))


# ----------------------------------------------------------------------------------- loading
def test_fixture_loads_with_splits_captions_and_images(data):
    assert len(data.problems) == 30
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [12, 6, 12]
    assert {p.subject for p in data.problems.values()} == set(sqa.SUBJECTS)
    p = data.problems["105"]
    assert p.caption == "A small picture for problem 105."
    assert p.image_path == FIX / "images" / "test" / "105" / "image.png" and p.image_path.is_file()
    assert data.problems["102"].image_path is None and data.problems["102"].caption == ""
    assert p.has_text and p.has_image and not p.no_context
    assert data.problems["104"].no_context and data.problems["104"].grade_number == 10
    assert [q.pid for q in data.split("minitest")] == ["101", "105", "108"]


def test_unknown_split_is_an_input_error(data):
    with pytest.raises(InputError, match="unknown split 'dev'"):
        data.split("dev")


def test_real_pid_splits_and_captions_load(data_dir):
    root = data_dir / "scienceqa"
    splits = sqa.load_pid_splits(root / "pid_splits.json")
    assert {k: len(splits[k]) for k in ("train", "val", "test")} == {"train": 12726, "val": 4241, "test": 4241}
    assert all(isinstance(p, str) for p in splits["test"])
    caps = sqa.load_captions(root / "captions.json")
    assert len(caps) == 10332 and all(isinstance(v, str) for v in caps.values())
    # problems.json is not distributed here: the loader says so, naming the file
    with pytest.raises(InputError, match="problems.json: file not found"):
        sqa.load_scienceqa(root)


@pytest.mark.parametrize("field,value,match", [
    ("answer", 3, r"pid 101: field 'answer': index 3 is out of range for 2 choices"),
    ("answer", "0", r"pid 101: field 'answer': expected int, got str"),
    ("choices", "iron nail", r"pid 101: field 'choices': expected list"),
    ("choices", ["only one"], r"expected 2 to 5 choices, got 1"),
    ("hint", None, r"field 'hint': expected str, got NoneType"),
    ("grade", "grade13", r"field 'grade': expected 'grade1' .. 'grade12'"),
    ("subject", "math", r"field 'subject': expected one of natural science"),
    ("image", 5, r"field 'image': expected str or null"),
])
def test_bad_field_names_file_line_pid_and_field(copy, field, value, match):
    root, probs = copy
    probs["101"][field] = value
    _write(root, probs)
    with pytest.raises(InputError, match=match) as e:
        sqa.load_scienceqa(root)
    assert e.value.path == str(root / "problems.json")
    # the line points at the problem's key in problems.json
    lines = (root / "problems.json").read_text().splitlines()
    assert lines[e.value.line - 1].strip().startswith('"101"')


def test_missing_field(copy):
    root, probs = copy
    del probs["13"]["solution"]
    _write(root, probs)
    with pytest.raises(InputError, match="pid 13: missing field 'solution'"):
        sqa.load_scienceqa(root)


def test_pid_in_split_but_not_in_problems(copy):
    root, probs = copy
    del probs["112"]
    _write(root, probs)
    with pytest.raises(InputError, match=r"split 'test' lists pid 112 \(1 in all\) that is not in problems.json") as e:
        sqa.load_scienceqa(root)
    assert e.value.path.endswith("pid_splits.json") and e.value.line is not None


def test_missing_image_file(copy):
    root, _ = copy
    (root / "images" / "test" / "106" / "image.png").unlink()
    with pytest.raises(InputError, match="pid 106: field 'image' is 'image.png' but the image file is missing"):
        sqa.load_scienceqa(root)
    assert sqa.load_scienceqa(root, check_images=False).problems["106"].image_path is not None


def test_bad_json_and_wrong_top_level_types(copy):
    root, _ = copy
    (root / "problems.json").write_text('{"1": {"question": "x",\n  oops}')
    with pytest.raises(InputError, match="not valid JSON") as e:
        sqa.load_scienceqa(root)
    assert e.value.line == 2
    (root / "problems.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="expected an object mapping pid -> problem, got list"):
        sqa.load_scienceqa(root)
    (root / "pid_splits.json").write_text('{"test": "101"}')
    with pytest.raises(InputError, match="split 'test': expected a list of pids, got str"):
        sqa.load_pid_splits(root / "pid_splits.json")
    (root / "captions.json").write_text('{"model": "m"}')
    with pytest.raises(InputError, match='"captions" mapping'):
        sqa.load_captions(root / "captions.json")


# --------------------------------------------------------------------------------- prompts
def test_rationale_stage_qcm_le_exact_text(data):
    p = data.problems["101"]
    assert sqa.build_input(p, "QCM-LE") == (
        "Question: Which object is a magnet attracted to?\n"
        "Context: Look at the picture of the two objects.\n"
        "Options: (A) iron nail (B) glass cup\n"
        "Solution:")
    # newlines in the lecture are written as the two characters \n; MM-CoT appends "." after the solution
    assert sqa.build_target(p, "QCM-LE") == (
        "Solution: Magnets attract some metals.\\nIron is one of them. The iron nail is attracted..")


def test_answer_stage_qcmg_a_with_gold_and_generated_rationale(data):
    p = data.problems["102"]
    head = ("Question: What is the speed of a car that travels 100 km in 2 hours?\n"
            "Context: Speed is distance divided by time.\n"
            "Options: (A) 25 km/h (B) 50 km/h (C) 200 km/h\n")
    assert sqa.build_input(p, "QCMG-A") == (
        head + "Solution: Speed tells how fast something moves. 100 km / 2 h = 50 km/h.\nAnswer:")
    gen = "Solution: It is fast."
    assert sqa.build_input(p, "QCMG-A", rationale=gen) == head + gen + "\nAnswer:"
    assert sqa.build_target(p, "QCMG-A") == "The answer is (B)."


def test_direct_answer_context_na_and_caption(data):
    p = data.problems["103"]  # no hint, has image and caption
    assert sqa.build_input(p, "QCM-A") == (
        "Question: Which animal's feet are adapted for swimming?\nContext: N/A\n"
        "Options: (A) eagle (B) horse (C) duck\nAnswer:")
    assert "Context: A small picture for problem 103.\n" in sqa.build_input(p, "QCM-A", use_caption=True)
    assert sqa.build_target(p, "QCM-A") == "The answer is (C)."
    # hint + caption are joined by one space
    assert "Context: Like poles repel. A small picture for problem 11.\n" in \
        sqa.build_input(data.problems["11"], "QCM-A", use_caption=True)


def test_empty_lecture_collapses_double_space(data):
    p = data.problems["4"]  # lecture is ""
    assert sqa.build_target(p, "QCM-LE") == "Solution: George Washington was first.."


def test_unknown_format(data):
    with pytest.raises(InputError, match="prompt format 'QCM-X'"):
        sqa.build_input(data.problems["1"], "QCM-X")


def test_retrieval_query_is_question_context_options(data):
    assert sqa.retrieval_query(data.problems["105"]) == (
        "Which state is highlighted?\nThis state is in the western United States.\n(A) Idaho (B) Utah (C) Nevada")
    assert sqa.retrieval_query(data.problems["104"]) == (
        "Is sugar dissolving in water a chemical change?\n(A) no, it is a physical change (B) yes")
    assert "A small picture for problem 106." in sqa.retrieval_query(data.problems["106"], use_caption=True)


# ---------------------------------------------------------------------------- answer parsing
@pytest.mark.parametrize("text,n,index,status", [
    ("The answer is (B).", 3, 1, "ok"),
    ("Solution: blah. The answer is (A).", 2, 0, "ok"),
    ("The answer is B.", 3, None, "unparseable"),
    ("", 3, None, "unparseable"),
    ("The answer is (A). The answer is (A).", 3, None, "ambiguous"),
    ("The answer is (D).", 3, None, "out_of_range"),
    ("The answer is (Z).", 5, None, "out_of_range"),
])
def test_parse_answer_never_guesses(text, n, index, status):
    pa = sqa.parse_answer(text, n)
    assert (pa.index, pa.status) == (index, status)


def test_resolve_predictions_reports_failures_and_random_fallback_is_explicit_and_seeded(data):
    outs = {"101": "The answer is (A).", "102": "I think B", "103": "The answer is (E).", "104": "The answer is (A)."}
    preds, rep = sqa.resolve_predictions(outs, data.problems)
    assert preds == {"101": 0, "102": None, "103": None, "104": 0}
    assert (rep.total, rep.parsed, rep.unparsed) == (4, 2, 2)
    assert rep.by_status == {"ok": 2, "unparseable": 1, "out_of_range": 1}
    assert [f[0] for f in rep.failed] == ["102", "103"]
    p1, r1 = sqa.resolve_predictions(outs, data.problems, fallback="random", seed=3)
    p2, _ = sqa.resolve_predictions(outs, data.problems, fallback="random", seed=3)
    assert p1 == p2 and r1.unparsed == 2 and r1.fallback == "random"
    assert all(isinstance(p1[k], int) and 0 <= p1[k] < 5 for k in ("102", "103"))
    assert p1["101"] == 0
    with pytest.raises(InputError, match="fallback 'guess'"):
        sqa.resolve_predictions(outs, data.problems, fallback="guess")
    with pytest.raises(InputError, match="pid 999"):
        sqa.resolve_predictions({"999": "The answer is (A)."}, data.problems)


# ------------------------------------------------------------------------ model examples
class _FakeRetriever:
    """Records the queries it gets and answers with an empty subgraph tagged by the query."""

    def __init__(self):
        self.calls = []

    def retrieve_batch(self, texts, images=None):
        from mrmkg.kg.subgraph import Subgraph

        images = images if images is not None else [None] * len(texts)
        self.calls.append((list(texts), list(images)))
        return [Subgraph.empty(query=t or str(im)) for t, im in zip(texts, images)]


class _FakeVision:
    name, dim, num_tokens = "fake", 3, 2

    def encode_tokens(self, images, batch_size=32, progress=False):
        import numpy as np

        return np.stack([np.full((2, 3), float(Path(p).parent.name)) for p in images]).astype("float32")


def test_make_examples_builds_model_examples(data):
    from mrmkg.model import MRMKGExample

    probs = [data.problems[p] for p in ("101", "102")]
    ret = _FakeRetriever()
    ex = sqa.make_examples(probs, sqa.ScienceQAPromptConfig(format="QCM-LE"), retriever=ret, vision_encoder=_FakeVision())
    assert all(isinstance(e, MRMKGExample) for e in ex)
    assert ex[0].prompt == sqa.build_input(probs[0], "QCM-LE") and ex[0].target == sqa.build_target(probs[0], "QCM-LE")
    assert ex[0].answer is None
    # text retrieval with question + context + options; image tokens only for the image problem
    assert ret.calls[0][0] == [sqa.retrieval_query(p) for p in probs]
    assert ex[0].subgraph.query == sqa.retrieval_query(probs[0])
    assert ex[0].image_tokens.shape == (2, 3) and ex[0].image_tokens[0, 0] == 101.0
    assert ex[1].image_tokens is None
    # answer stage at inference: generated rationale in, no target
    inf = sqa.make_example(probs[1], sqa.ScienceQAPromptConfig(format="QCMG-A", retrieval="none"),
                           rationale="Solution: fast.", with_target=False)
    assert inf.prompt.endswith("Solution: fast.\nAnswer:") and inf.target is None and inf.subgraph is None


def test_image_retrieval_falls_back_to_text_without_an_image(data):
    probs = [data.problems[p] for p in ("101", "102")]
    ret = _FakeRetriever()
    sqa.make_examples(probs, sqa.ScienceQAPromptConfig(retrieval="image"), retriever=ret)
    texts, images = ret.calls[0]
    assert texts == [None, sqa.retrieval_query(probs[1])]
    assert images == [probs[0].image_path, None]
    with pytest.raises(InputError, match="needs a Retriever"):
        sqa.make_examples(probs, sqa.ScienceQAPromptConfig(retrieval="text"))
    with pytest.raises(ValueError, match="retrieval must be"):
        sqa.ScienceQAPromptConfig(retrieval="graph")


# ------------------------------------------------------------------------------ configs
CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("scienceqa-*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_configs_validate_against_every_schema(path):
    from mrmkg.model import MRMKGConfig
    from mrmkg.tasks.kgqa.data import Stage1TaskArgs
    from mrmkg.engine import load_train_config
    from mrmkg.yamlconfig import from_dict

    cfg = load_train_config(path)
    mc = from_dict(MRMKGConfig, cfg.model)
    if cfg.task == "stage1":
        from_dict(Stage1TaskArgs, cfg.task_args)
        assert (cfg.epochs, cfg.batch_size, cfg.optim.lr) == (2, 2, 5e-5)  # paper A.3
        assert mc.max_target_tokens in (128, 32)
    else:
        assert cfg.task == "scienceqa"
        args = from_dict(sqa.ScienceQATaskArgs, cfg.task_args)
        assert args.prompt.format in ("QCM-LE", "QCMG-A") and args.answer_fallback == "none"
        assert args.retrieval_config().hops == 1
        assert (cfg.epochs, cfg.batch_size, cfg.optim.lr) == (3, 1, 4e-5)  # paper 4.1
    assert cfg.optim.weight_decay == 0.01
    if "flan" in path.stem:
        assert mc.llm.startswith("google/flan-") and mc.max_prompt_tokens == 512 and not cfg.cpu


def test_paper_rows_have_all_three_configs():
    stems = {p.stem for p in CONFIGS}
    for row in ("flan-t5-xl", "flan-t5-xxl", "flan-ul2", "smollm2-cpu"):
        assert {f"scienceqa-{row}-{s}" for s in ("stage1", "rationale", "answer")} <= stems
