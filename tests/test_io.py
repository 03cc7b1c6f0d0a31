"""Graph loaders (kg/io.py): the three formats, the real MarKG, and one test per kind of bad input."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from mrmkg.errors import InputError
from mrmkg.kg.graph import MMKG
from mrmkg.kg.io import LoadOptions, detect_format, load_graph, load_jsonl, load_markg, load_tsv


# ------------------------------------------------------------------------------ helpers
def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_image(path, seed: int = 0, fmt: str = "JPEG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


@pytest.fixture
def markg(tmp_path):
    """A tiny MarKG folder: 4 entities (two share a name), 3 relations, one repeated triple, images."""
    d = tmp_path / "markg"
    write(d / "entity2text.txt", "Q1\tParis\nQ2\tFrance\nQ3\tParis\nQ4\tEurope\n")
    write(d / "entity2textlong.txt", "Q1\tcapital of France\nQ2\tcountry in Europe\nQ3\tcity in Texas\n")
    write(d / "relation2text.txt", "P1\tcapital of\nP2\tpart of\nA0\tunused analogy relation\n")
    write(d / "relation2textlong.txt", "P1\tcapital long\nP2\tpart long\n")
    write(d / "wiki_tuple_ids.txt", "Q1\tP1\tQ2\nQ2\tP2\tQ4\nQ1\tP1\tQ2\nQ3\tP2\tQ3\n")
    make_image(d / "images" / "Q1" / "b.jpg", 1)
    make_image(d / "images" / "Q1" / "a.png", 2, "PNG")
    return d


# ------------------------------------------------------------------------------ formats
def test_markg_folder_loads_ids_names_descriptions_images(markg):
    kg = load_markg(markg)
    assert kg.entity_ids == ["Q1", "Q2", "Q3", "Q4"]
    assert kg.entity_names[0] == kg.entity_names[2] == "Paris"  # shared names stay distinct entities
    assert kg.entity_descriptions == ["capital of France", "country in Europe", "city in Texas", ""]
    assert kg.relation_ids[:3] == ["P1", "P2", "A0"] and kg.num_relations == 4  # + "image of"
    assert kg.meta["relation_descriptions"] == ["capital long", "part long", "", ""]  # aligned incl. "image of"
    # the repeated line is dropped and counted; the self-loop is kept and counted
    assert kg.triples.tolist() == [[0, 0, 1], [1, 1, 3], [2, 1, 2]]
    rep = kg.meta["load"]
    assert rep["duplicate_triples"] == 1 and rep["self_loops"] == 1 and rep["triples"] == 3
    # images sorted by file name, stored as absolute paths, linked to Q1
    assert [p.rsplit("/", 1)[-1] for p in kg.image_paths] == ["a.png", "b.jpg"]
    assert all(p.startswith("/") for p in kg.image_paths)
    assert kg.images_of(0).tolist() == [0, 1] and kg.images_of(1).size == 0


def test_markg_images_dir_option_and_keep_duplicates(markg, tmp_path):
    other = tmp_path / "other_images"
    make_image(other / "Q4" / "x.jpg", 3)
    kg = load_markg(markg, images_dir=other, duplicate_triples="keep")
    assert kg.num_images == 1 and kg.image_entity.tolist() == [3]
    assert kg.num_triples == 4 and kg.meta["load"]["duplicate_triples"] == 0


def test_same_files_give_same_graph(markg):
    a, b = load_markg(markg), load_markg(markg)
    assert np.array_equal(a.triples, b.triples) and a.entity_ids == b.entity_ids and a.image_paths == b.image_paths


def test_tsv_files_with_descriptions_and_image_list(tmp_path):
    make_image(tmp_path / "imgs" / "e1.jpg")
    kg = load_tsv(
        write(tmp_path / "t.tsv", "e1\tr1\te2\r\n\ne2\tr2\te3\r\n"),  # CRLF and a blank line are fine
        entities=write(tmp_path / "e.tsv", "\ufeffe1\tone\tthe first\ne2\ttwo\ne3\tthree\n"),  # BOM too
        relations=write(tmp_path / "r.tsv", "r1\tlinks\nr2\tlikes\n"),
        images=write(tmp_path / "i.tsv", "e1\timgs/e1.jpg\n"),  # relative to the list's folder
    )
    assert kg.entity_ids == ["e1", "e2", "e3"] and kg.entity_descriptions == ["the first", "", ""]
    assert kg.verbalise(0) == "one links two" and kg.verbalise(1) == "two likes three"
    assert kg.image_paths == [str((tmp_path / "imgs" / "e1.jpg").resolve())]


def test_tsv_fb15k_style_folder_without_name_files(tmp_path):
    """FB15K-style: split files, mids as ids, no name files -> ids are names, first-seen order."""
    d = tmp_path / "fb"
    write(d / "train.txt", "/m/a\t/film/genre\t/m/b\n")
    write(d / "valid.txt", "/m/c\t/film/genre\t/m/a\n")
    write(d / "test.txt", "/m/b\t/people/born\t/m/c\n")
    kg = load_graph(d, "tsv")
    assert kg.entity_ids == ["/m/a", "/m/b", "/m/c"] == kg.entity_names
    assert kg.relation_ids[:2] == ["/film/genre", "/people/born"] and kg.num_triples == 3
    assert kg.meta["load"]["added_entities"] == 0  # names-by-id is the format here, not a repair


def test_tsv_head_tail_relation_order(tmp_path):
    kg = load_tsv(write(tmp_path / "t.tsv", "a\tb\tr\n"), order="htr")
    assert kg.verbalise(0) == "a r b"


def test_jsonl_all_record_types_any_order(tmp_path):
    make_image(tmp_path / "u.jpg")
    make_image(tmp_path / "img" / "q2.png", 1, "PNG")
    lines = [
        {"type": "triple", "head": "Q1", "relation": "P31", "tail": "Q2"},  # before its entities
        {"type": "entity", "id": "Q1", "name": "universe", "description": "everything", "images": ["u.jpg"]},
        {"type": "entity", "id": "Q2", "name": "thing"},
        {"type": "relation", "id": "P31", "name": "instance of"},
        {"type": "image", "entity": "Q2", "path": "img/q2.png"},
    ]
    p = write(tmp_path / "g.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    kg = load_jsonl(p)
    assert kg.verbalise(0) == "universe instance of thing"
    assert kg.entity_descriptions == ["everything", ""]
    assert kg.image_entity.tolist() == [0, 1] and kg.meta["load"]["format"] == "jsonl"


def test_load_graph_detects_format_and_round_trips(markg, tmp_path):
    assert detect_format(markg) == "markg"
    assert detect_format(tmp_path / "g.jsonl") == "jsonl" and detect_format(tmp_path / "t.tsv") == "tsv"
    kg = load_graph(markg)
    kg.save(tmp_path / "built")
    back = MMKG.load(tmp_path / "built")
    assert np.array_equal(back.triples, kg.triples) and back.meta["load"] == kg.meta["load"]


def test_real_markg(data_dir, tmp_path):
    """MarKG as released: 33,307 lines, 6 repeats dropped, 291 names shared by several ids, and
    the built graph reloads in under 2 s."""
    kg = load_markg(data_dir / "markg", images_dir=data_dir / "mars" / "images")
    s = kg.stats()
    assert (s["entities"], s["relations"], s["triples"]) == (11292, 192, 33301)
    assert s["entities_in_triples"] == 10182 and s["relations_in_triples"] == 191
    rep = kg.meta["load"]
    (triple_lines,) = [n for f, n in rep["lines"].items() if f.endswith("wiki_tuple_ids.txt")]
    assert triple_lines == 33307
    assert rep["duplicate_triples"] == 6
    names, counts = np.unique(kg.entity_names, return_counts=True)
    assert int((counts > 1).sum()) == 291
    assert kg.num_images == 9 and sorted({kg.entity_ids[e] for e in kg.image_entity}) == ["Q1501", "Q6574"]
    kg.save(tmp_path / "markg")
    t0 = time.perf_counter()
    back = MMKG.load(tmp_path / "markg")
    assert time.perf_counter() - t0 < 2.0
    assert np.array_equal(back.triples, kg.triples) and back.entity_ids == kg.entity_ids


# ------------------------------------------------------------------------------ bad input: one test per case
def raises_at(fn, path, line, *words):
    with pytest.raises(InputError) as ei:
        fn()
    e = ei.value
    assert e.path == str(path), str(e)
    assert e.line == line, str(e)
    for w in words:
        assert w in str(e), str(e)
    return e


def test_missing_columns(tmp_path):
    t = write(tmp_path / "t.tsv", "a\tr\tb\na\tr\n")
    raises_at(lambda: load_tsv(t), t, 2, "missing columns", "found 2, expected 3")


def test_extra_columns(markg):
    f = markg / "entity2text.txt"
    write(f, "Q1\tParis\nQ2\tFrance\textra\n")
    raises_at(lambda: load_markg(markg), f, 2, "extra columns", "found 3, expected 2")


def test_space_separated_file_gets_a_hint(tmp_path):
    t = write(tmp_path / "t.tsv", "a r b\n")
    raises_at(lambda: load_tsv(t), t, 1, "tab-separated")


def test_unknown_id_in_triples_is_an_error(markg):
    f = write(markg / "wiki_tuple_ids.txt", "Q1\tP1\tQ2\nQ9\tP1\tQ2\nQ1\tP7\tQ2\n")
    raises_at(lambda: load_markg(markg), f, 2, "head entity id 'Q9'", "entity file", "2 triple(s)")


def test_unknown_ids_skip_and_add_are_counted(markg):
    write(markg / "wiki_tuple_ids.txt", "Q1\tP1\tQ2\nQ9\tP1\tQ2\nQ1\tP7\tQ9\n")
    kg = load_markg(markg, unknown_ids="skip")
    assert kg.num_triples == 1 and kg.meta["load"]["skipped_triples_unknown_id"] == 2
    kg = load_markg(markg, unknown_ids="add")
    assert kg.num_triples == 3 and kg.entity_ids[-1] == "Q9" and kg.entity_names[-1] == "Q9"
    assert kg.relation_ids[-2] == "P7"  # before the reserved "image of"
    assert kg.meta["load"]["added_entities"] == 1 and kg.meta["load"]["added_relations"] == 1


def test_unknown_id_in_description_file(markg):
    f = write(markg / "entity2textlong.txt", "Q1\tdesc\nQ8\tdesc of nobody\n")
    raises_at(lambda: load_markg(markg), f, 2, "'Q8'", "not in the entity file")


def test_duplicate_entity_id(markg):
    f = write(markg / "entity2text.txt", "Q1\tParis\nQ2\tFrance\nQ1\tParis again\n")
    raises_at(lambda: load_markg(markg), f, 3, "duplicate entity id 'Q1'", "entity2text.txt:1")


def test_duplicate_relation_id(tmp_path):
    r = write(tmp_path / "r.tsv", "r1\tx\nr1\ty\n")
    raises_at(lambda: load_tsv(write(tmp_path / "t.tsv", "a\tr1\tb\n"), relations=r), r, 2,
              "duplicate relation id 'r1'")


def test_reserved_relation_id(tmp_path):
    r = write(tmp_path / "r.tsv", "__image_of__\tx\n")
    raises_at(lambda: load_tsv(write(tmp_path / "t.tsv", "a\tr1\tb\n"), relations=r), r, 1, "reserved")


def test_duplicate_triples_error_names_both_lines(markg):
    f = markg / "wiki_tuple_ids.txt"
    raises_at(lambda: load_markg(markg, duplicate_triples="error"), f, 3, "duplicate triple", "wiki_tuple_ids.txt:1")


def test_bytes_that_are_not_utf8(markg):
    f = markg / "entity2text.txt"
    f.write_bytes("Q1\tParis\nQ2\tFran".encode() + b"\xe7" + b"e\n")  # latin-1 'ç'
    raises_at(lambda: load_markg(markg), f, 2, "0xe7", "not valid UTF-8", "column 8")


def test_empty_file(markg):
    f = write(markg / "relation2text.txt", "")
    raises_at(lambda: load_markg(markg), f, None, "file is empty", "relation id<TAB>name")


def test_whitespace_only_file_is_empty(tmp_path):
    f = write(tmp_path / "g.jsonl", "\n  \n")
    raises_at(lambda: load_jsonl(f), f, None, "file is empty")


def test_missing_file(tmp_path):
    (tmp_path / "m").mkdir()
    raises_at(lambda: load_markg(tmp_path / "m"), tmp_path / "m" / "entity2text.txt", None, "file not found")


def test_missing_image_file(tmp_path):
    t = write(tmp_path / "t.tsv", "a\tr\tb\n")
    i = write(tmp_path / "i.tsv", "a\tnope.jpg\n")
    raises_at(lambda: load_tsv(t, images=i), i, 1, "image file not found", "nope.jpg")


def test_truncated_image_file(tmp_path):
    good = make_image(tmp_path / "full.jpg")
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    t = write(tmp_path / "t.tsv", "a\tr\tb\n")
    i = write(tmp_path / "i.tsv", "a\tfull.jpg\nb\tcut.jpg\n")
    raises_at(lambda: load_tsv(t, images=i), i, 2, "cut.jpg", "truncated")


def test_file_that_is_not_an_image(markg):
    write(markg / "images" / "Q2" / "notes.jpg", "this is text, not a JPEG")
    raises_at(lambda: load_markg(markg), markg / "images" / "Q2", None, "notes.jpg", "not an image")


def test_bad_images_skip_is_counted(markg):
    write(markg / "images" / "Q2" / "notes.jpg", "not an image")
    kg = load_markg(markg, bad_images="skip")
    assert kg.num_images == 2 and kg.meta["load"]["skipped_bad_images"] == 1


def test_image_folder_of_unknown_entity(markg):
    make_image(markg / "images" / "Q77" / "x.jpg")
    raises_at(lambda: load_markg(markg), markg / "images" / "Q77", None, "'Q77'", "not in the entity file")
    assert load_markg(markg, unknown_ids="skip").meta["load"]["skipped_images_unknown_id"] == 1


def test_jsonl_invalid_json(tmp_path):
    f = write(tmp_path / "g.jsonl", '{"type": "entity", "id": "a", "name": "A"}\n{"type": "entity", "id": \n')
    raises_at(lambda: load_jsonl(f), f, 2, "not valid JSON")


def test_jsonl_unknown_type(tmp_path):
    f = write(tmp_path / "g.jsonl", '{"type": "node", "id": "a"}\n')
    raises_at(lambda: load_jsonl(f), f, 1, "'node'", "entity, relation, triple, image")


def test_jsonl_missing_field(tmp_path):
    f = write(tmp_path / "g.jsonl", '{"type": "triple", "head": "a", "tail": "b"}\n')
    raises_at(lambda: load_jsonl(f), f, 1, "missing field(s) relation")


def test_jsonl_unknown_field(tmp_path):
    f = write(tmp_path / "g.jsonl", '{"type": "entity", "id": "a", "name": "A", "desc": "typo"}\n')
    raises_at(lambda: load_jsonl(f), f, 1, "unknown field(s) desc")


def test_jsonl_field_of_wrong_type(tmp_path):
    f = write(tmp_path / "g.jsonl", '{"type": "entity", "id": 5, "name": "A"}\n')
    raises_at(lambda: load_jsonl(f), f, 1, '"id" must be a string')


def test_jsonl_unknown_entity_in_triple(tmp_path):
    f = write(tmp_path / "g.jsonl", '{"type": "entity", "id": "a", "name": "A"}\n'
                                    '{"type": "relation", "id": "r", "name": "R"}\n'
                                    '{"type": "triple", "head": "a", "relation": "r", "tail": "zz"}\n')
    raises_at(lambda: load_jsonl(f), f, 3, "tail entity id 'zz'")


def test_no_triples(tmp_path):
    f = write(tmp_path / "g.jsonl", '{"type": "entity", "id": "a", "name": "A"}\n')
    raises_at(lambda: load_jsonl(f), f, None, "no triples")


def test_bad_option_values():
    with pytest.raises(InputError, match="unknown_ids must be one of"):
        LoadOptions(unknown_ids="ignore")
    with pytest.raises(InputError, match="unknown graph format 'csv'"):
        load_graph(".", "csv")
