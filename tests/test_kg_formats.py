"""`mrmkg kg build --format nt|ttl|mmkb|openke|pykeen` from the fixtures in tests/fixtures/kg_formats/.

Each fixture is copied into a temporary folder and its pictures are drawn there (PIL); the build runs
through ``mrmkg.cli.main`` with the tiny deterministic encoders of test_cli_kg, so a build takes
milliseconds. Every kind of malformed file must exit 2 with one line naming the file and line, and
leave no output folder behind.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from mrmkg.cli import main
from mrmkg.errors import InputError
from mrmkg.kg.formats.mmkb import canonical_id, folder_entity, split_statement
from mrmkg.kg.graph import MMKG
from mrmkg.kg.io import detect_format, load_graph
from kg_formats_fixture import copy_formats
from test_cli_kg import FAKE

RED, BLUE, GREEN = (250, 10, 10), (10, 10, 250), (10, 250, 10)


def picture(path: Path, rgb, fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), rgb).save(path, format=fmt)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def data(tmp_path) -> Path:
    """A copy of the fixtures with their pictures drawn."""
    d = copy_formats(tmp_path / "data")
    picture(d / "rdf" / "img" / "paris.png", RED)
    picture(d / "rdf" / "img" / "berlin.png", BLUE)
    mm = d / "mmkb" / "image-graph_images"  # MMKB's download-images.py: <images dir>/m.xyz/<provider>_<i>.jpg
    picture(mm / "m.05qtj" / "google_0.jpg", RED, "JPEG")
    picture(mm / "m.05qtj" / "bing_1.jpg", RED, "JPEG")
    picture(mm / "m.0156q" / "google_0.jpg", BLUE, "JPEG")
    picture(mm / "m.0zzzz" / "google_0.jpg", GREEN, "JPEG")  # an FB15K entity this graph does not have
    picture(d / "mkgformer" / "FB15k-images" / "m.0156q" / "0.jpg", BLUE, "JPEG")
    picture(d / "pykeen" / "img" / "paris.png", RED)
    return d


def build(src: Path, fmt: str | None, out: Path, capsys, *extra: str) -> tuple[int, str]:
    argv = ["kg", "build", str(src), "--out", str(out), *FAKE, "--quiet", *extra]
    rc = main(argv + (["--format", fmt] if fmt else []))
    o = capsys.readouterr()
    return rc, o.out + o.err


def built(src: Path, fmt: str | None, tmp_path: Path, capsys, *extra: str) -> MMKG:
    out = tmp_path / "g"
    rc, text = build(src, fmt, out, capsys, *extra)
    assert rc == 0, text
    return MMKG.load(out)


def named_triples(kg: MMKG) -> set[tuple[str, str, str]]:
    return {(kg.entity_names[h], kg.relation_names[r], kg.entity_names[t]) for h, r, t in kg.triples.tolist()}


CAPITALS = {("Paris", "capital of", "France"), ("Berlin", "capital of", "Germany"), ("France", "part of", "Europe"),
            ("Germany", "part of", "Europe"), ("France", "shares border with", "Germany")}


def image_owners(kg: MMKG) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path, e in zip(kg.image_paths, kg.image_entity.tolist()):
        out.setdefault(kg.entity_names[e], []).append(Path(path).name)
    return out


# ------------------------------------------------------------------------------ each format builds
def test_ntriples(data, tmp_path, cache, capsys):
    kg = built(data / "rdf" / "graph.nt", "nt", tmp_path, capsys)
    assert kg.entity_ids == ["http://example.org/" + n for n in ("Paris", "France", "Berlin", "Germany", "Europe")]
    assert named_triples(kg) == CAPITALS  # Paris: its English label; Berlin: its IRI's local name
    assert kg.entity_descriptions[kg.entity_ids.index("http://example.org/France")] == "a country in western Europe"
    assert image_owners(kg) == {"Paris": ["paris.png"], "Berlin": ["berlin.png"]}
    rep = kg.meta["load"]
    assert rep["format"] == "nt" and rep["skipped_literal_triples"] == 1 and rep["skipped_blank_node_triples"] == 1


def test_turtle_prefixed_ids_relative_images_and_labels(data, tmp_path, cache, capsys):
    kg = built(data / "rdf" / "graph.ttl", None, tmp_path, capsys)  # auto: by suffix
    assert sorted(kg.entity_ids) == ["ex:Berlin", "ex:Europe", "ex:France", "ex:Germany", "ex:Paris"]
    assert sorted(kg.relation_ids[:-1]) == ["ex:capitalOf", "ex:partOf", "ex:sharesBorderWith"]
    # the predicate's own rdfs:label wins over its local name
    assert named_triples(kg) == {(h, "is the capital of" if r == "capital of" else r, t) for h, r, t in CAPITALS}
    assert image_owners(kg) == {"Paris": ["paris.png"], "Berlin": ["berlin.png"]}
    assert kg.meta["load"]["format"] == "ttl" and kg.meta["load"]["skipped_literal_triples"] == 1


def test_ntriples_with_an_image_list(data, tmp_path, cache, capsys):
    (data / "rdf" / "pics.tsv").write_text("http://example.org/Europe\timg/berlin.png\n", encoding="utf-8")
    kg = built(data / "rdf" / "graph.nt", "nt", tmp_path, capsys, "--image-list", str(data / "rdf" / "pics.tsv"))
    assert image_owners(kg)["Europe"] == ["berlin.png"]


def test_mmkb_layout_builds_with_images(data, tmp_path, cache, capsys):
    """The paper's graph: `<s> <p> <o> .` lines with m.xyz ids, FB15k_mid2name.txt, MMKB's image folders."""
    kg = built(data / "mmkb", None, tmp_path, capsys)  # auto: *_EntityTriples.txt
    assert kg.meta["load"]["format"] == "mmkb"
    assert kg.entity_ids == ["/m/05qtj", "/m/0f8l9c", "/m/0156q", "/m/0345h", "/m/02j9z"]  # m.xyz read as /m/xyz
    assert kg.entity_names == ["Paris", "France", "Berlin", "Germany", "Europe"]
    assert kg.num_triples == 5 and kg.relation_names[0] == "location location containedby"
    assert image_owners(kg) == {"Paris": ["bing_1.jpg", "google_0.jpg"], "Berlin": ["google_0.jpg"]}
    rep = kg.meta["load"]
    assert rep["skipped_images_unknown_id"] == 1  # m.0zzzz: an FB15K entity outside this graph
    assert rep["unused_names"] == 1  # Nowhere_Land names no entity of a triple
    assert (tmp_path / "g" / "index" / "image_emb.npy").is_file()


def test_images_per_entity_keeps_the_first_ones(data, tmp_path, cache, capsys):
    kg = built(data / "mmkb", None, tmp_path, capsys, "--images-per-entity", "1")
    assert image_owners(kg) == {"Paris": ["bing_1.jpg"], "Berlin": ["google_0.jpg"]}  # folder order: bing < google
    assert kg.meta["load"]["skipped_images_over_cap"] == 1
    rc, text = build(data / "mmkb", None, tmp_path / "neg", capsys, "--images-per-entity", "-1")
    assert rc == 2 and "--images-per-entity" in text and not (tmp_path / "neg").exists()


def test_mkgformer_layout(data, tmp_path, cache, capsys):
    kg = built(data / "mkgformer", None, tmp_path, capsys)  # auto: train.tsv with entity2text.txt
    assert kg.meta["load"]["format"] == "mmkb" and kg.num_triples == 5  # train + dev + test
    assert kg.entity_names == ["Paris", "France", "Berlin", "Germany", "Europe"]
    assert kg.relation_names[:2] == ["location location contained by", "location adjoins"]  # relation2text.txt
    assert kg.entity_descriptions[0] == "Paris is the capital of France."  # entity2textlong.txt
    assert image_owners(kg) == {"Berlin": ["0.jpg"]}


def test_mkgformer_images_beside_the_folder(data, tmp_path, cache, capsys):
    """MKGformer keeps dataset/FB15k-images/ beside dataset/FB15k-237/: --images points there."""
    shutil.move(data / "mkgformer" / "FB15k-images", data / "FB15k-images")
    kg = built(data / "mkgformer", "mmkb", tmp_path, capsys, "--images", str(data / "FB15k-images"))
    assert image_owners(kg) == {"Berlin": ["0.jpg"]}


def test_openke(data, tmp_path, cache, capsys):
    kg = built(data / "openke", None, tmp_path, capsys)  # auto: entity2id.txt + train2id.txt
    assert kg.meta["load"]["format"] == "openke"
    # indices are OpenKE's ids; train2id.txt is head, tail, relation
    assert kg.entity_ids == ["/m/05qtj", "/m/0f8l9c", "/m/0156q", "/m/0345h", "/m/02j9z"]
    assert kg.entity_names == ["Paris", "France", "Berlin", "Germany", "Europe"]
    assert kg.triples.tolist() == [[0, 0, 1], [2, 0, 3], [1, 0, 4], [3, 0, 4], [1, 1, 3]]
    assert kg.meta["load"]["lines"].keys() == {str(data / "openke" / f) for f in ("train2id.txt", "valid2id.txt",
                                                                                "test2id.txt")}


def test_pykeen(data, tmp_path, cache, capsys):
    kg = built(data / "pykeen" / "triples.tsv", "pykeen", tmp_path, capsys,
               "--image-list", str(data / "pykeen" / "images.tsv"))
    assert kg.entity_ids == ["paris", "france", "berlin", "germany", "europe"]  # the header is not a triple
    assert kg.relation_ids[:3] == ["capital_of", "part_of", "shares_border_with"]
    assert {(h.title(), r, t.title()) for h, r, t in named_triples(kg)} == CAPITALS
    assert image_owners(kg) == {"paris": ["paris.png"]}


def test_pykeen_comment_lines_and_head_tail_relation_order(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("@Comment@ Head Relation Tail\na\tb\tr\n", encoding="utf-8")
    kg = load_graph(f, "pykeen", order="htr")
    assert kg.entity_ids == ["a", "b"] and kg.relation_ids[0] == "r"


def test_detect_format(data, tmp_path):
    assert detect_format(data / "rdf" / "graph.nt") == "nt"
    assert detect_format(data / "rdf" / "graph.ttl") == "ttl"
    assert detect_format(data / "mmkb") == "mmkb"
    assert detect_format(data / "mkgformer") == "mmkb"
    assert detect_format(data / "openke") == "openke"
    assert detect_format(data / "pykeen") == "tsv"  # PyKEEN files read like TSV ones: only when asked for


def test_freebase_and_wordnet_ids():
    assert canonical_id("m.0abc") == canonical_id("/m/0abc") == "/m/0abc"
    assert canonical_id("http://rdf.freebase.com/ns/m.0abc") == "/m/0abc"
    assert canonical_id("http://rdf.freebase.com/ns/film.film.genre") == "/film/film/genre"
    assert canonical_id("03964744") == "03964744"
    assert folder_entity("m.0abc", {"/m/0abc"}) == "/m/0abc"
    assert folder_entity("n03964744", {"03964744"}) == "03964744"  # MKGformer's WN18-IMG folders
    assert folder_entity("m.0zzz", {"/m/0abc"}) is None
    assert split_statement("/m/01\t/r/x\t/m/02", "f", 1) == ["/m/01", "/r/x", "/m/02"]
    assert split_statement("<m.01> </r/x> <m.02>.", "f", 1) == ["/m/01", "/r/x", "/m/02"]


def test_image_option_for_a_format_that_reads_none_is_refused(data, tmp_path, cache, capsys):
    rc, text = build(data / "rdf" / "graph.nt", "nt", tmp_path / "g", capsys, "--images", str(data))
    assert rc == 2 and "applies to --format markg/mmkb/openke, not nt" in text


# ------------------------------------------------------------------------------ malformed input
def edit(path: Path, line: int, text: str | bytes) -> None:
    """Replace 1-based ``line`` of ``path`` (bytes allowed, for encodings)."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = text if isinstance(text, bytes) else text.encode("utf-8")
    path.write_bytes(b"\n".join(lines))


BAD = {
    # kind: (fixture file, line to replace, new text, format, expected substrings)
    "nt wrong arity": ("rdf/graph.nt", 3, "<http://example.org/Berlin> <http://example.org/capitalOf> .", "nt",
                       ["not a valid N-Triples statement"]),
    "nt bad IRI": ("rdf/graph.nt", 4, "<http://example.org/Fr ance> <http://example.org/partOf> "
                                      "<http://example.org/Europe> .", "nt", ["IRI <http://example.org/Fr", "space"]),
    "nt relative IRI": ("rdf/graph.nt", 4, "<France> <http://example.org/partOf> <http://example.org/Europe> .",
                        "nt", ["IRI <France> is not absolute"]),
    "nt not UTF-8": ("rdf/graph.nt", 5, b'<http://example.org/G> <http://example.org/p> "\xff" .', "nt",
                     ["not valid UTF-8"]),
    "nt missing image": ("rdf/graph.nt", 12, '<http://example.org/Paris> <http://schema.org/image> "img/rome.png" .',
                         "nt", ["image file not found", "rome.png"]),
    "nt image outside": ("rdf/graph.nt", 12, '<http://example.org/Paris> <http://schema.org/image> '
                                             '"../../etc/x.png" .', "nt", ["leading out of its folder"]),
    "ttl unknown prefix": ("rdf/graph.ttl", 16, "ex:Germany dbo:partOf ex:Europe .", "ttl",
                           ['Prefix "dbo:" not bound']),
    "ttl syntax": ("rdf/graph.ttl", 16, "ex:Germany ex:partOf ex:Europe ex:Asia .", "ttl", ["not valid Turtle"]),
    "ttl bad IRI": ("rdf/graph.ttl", 16, "ex:Germany ex:partOf <http://example.org/Eu rope> .", "ttl",
                    ["IRI <http://example.org/Eu rope>"]),
    "ttl not UTF-8": ("rdf/graph.ttl", 15, b'    rdfs:comment "a country \xe9" .', "ttl", ["not valid UTF-8"]),
    "ttl missing image": ("rdf/graph.ttl", 10, "    schema:image <img/rome.png> .", "ttl",
                          ["image file not found", "rome.png"]),
    "mmkb wrong arity": ("mmkb/FB15K_EntityTriples.txt", 2, "<m.0156q> <m.0345h> .", "mmkb",
                         ["found 2 field(s), expected 3"]),
    "mmkb not UTF-8": ("mmkb/FB15K_EntityTriples.txt", 3, b"<m.0f8l9c> </r/\xc3> <m.02j9z> .", "mmkb",
                       ["not valid UTF-8"]),
    "mmkb duplicate name id": ("mmkb/FB15k_mid2name.txt", 4, "m.05qtj\tParis again", "mmkb",
                               ["duplicate id 'm.05qtj'", "FB15k_mid2name.txt:1"]),
    "mkgformer wrong arity": ("mkgformer/train.tsv", 2, "/m/0156q\t/location/location/containedby", "mmkb",
                              ["found 2 field(s), expected 3"]),
    "openke duplicate id": ("openke/entity2id.txt", 4, "/m/0156q\t1", "openke",
                            ["duplicate entity id 1", "entity2id.txt:3"]),
    "openke duplicate entity": ("openke/entity2id.txt", 4, "/m/05qtj\t2", "openke",
                                ["duplicate entity id '/m/05qtj'"]),
    "openke count lies": ("openke/entity2id.txt", 1, "6", "openke", ["count line says 6 record(s) but 5 follow"]),
    "openke count not a number": ("openke/relation2id.txt", 1, "two", "openke", ["is not a count"]),
    "openke wrong arity": ("openke/train2id.txt", 3, "2 3", "openke", ["found 2 field(s), expected 3"]),
    "openke unknown id": ("openke/train2id.txt", 3, "2 9 0", "openke", ["tail entity id '9 (out of range)'",
                                                                       "entity2id.txt"]),
    "openke not UTF-8": ("openke/relation2id.txt", 2, b"/location/\xfe\t0", "openke", ["not valid UTF-8"]),
    "pykeen wrong arity": ("pykeen/triples.tsv", 3, "berlin\tcapital_of", "pykeen", ["missing columns"]),
    "pykeen not UTF-8": ("pykeen/triples.tsv", 4, b"france\tpart_of\t\xffeurope", "pykeen", ["not valid UTF-8"]),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_malformed_file_exits_2_with_file_and_line(kind, data, tmp_path, cache, capsys):
    rel, line, text, fmt, expected = BAD[kind]
    f = data / rel
    edit(f, line, text)
    src = f if fmt in ("nt", "ttl") or f.parent.name == "pykeen" else f.parent
    out = tmp_path / "out"
    rc, msg = build(src, fmt, out, capsys)
    assert rc == 2, msg
    assert len(msg.strip().splitlines()) == 1 and "Traceback" not in msg
    assert f"{f}:{line}" in msg, msg
    for e in expected:
        assert e in msg, msg
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_ttl_error_line_is_rdflibs(data, tmp_path):
    """rdflib reports Turtle syntax errors with their line: the InputError keeps it."""
    f = data / "rdf" / "graph.ttl"
    edit(f, 13, "ex:France ex:partOf ex:Europe ;;;; ??? .")
    with pytest.raises(InputError) as e:
        load_graph(f, "ttl")
    assert e.value.path == str(f) and e.value.line == 13


def test_openke_unknown_ids_can_be_skipped(data):
    edit(data / "openke" / "train2id.txt", 3, "2 9 0")
    kg = load_graph(data / "openke", "openke", unknown_ids="skip")
    assert kg.num_triples == 4 and kg.meta["load"]["skipped_triples_unknown_id"] == 1


def test_rdf_image_of_an_entity_in_no_triple(data):
    f = data / "rdf" / "graph.nt"
    with f.open("a", encoding="utf-8") as fh:
        fh.write('<http://example.org/Rome> <http://schema.org/image> "img/paris.png" .\n')
    with pytest.raises(InputError, match="'http://example.org/Rome', which is not in any triple") as e:
        load_graph(f, "nt")
    assert e.value.line == 15
    kg = load_graph(f, "nt", unknown_ids="add")
    assert "http://example.org/Rome" in kg.entity_ids and kg.num_images == 3


def test_own_data_page_has_one_command_per_new_format():
    """docs/own-data.md "Graph formats": a `mrmkg kg build ... --format F` example for each format here."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "own-data.md").read_text(encoding="utf-8")
    section = page[page.index("## Graph formats"):]
    commands = [ln for b in re.findall(r"```sh\n(.*?)```", section, flags=re.S) for ln in b.splitlines()
                if ln.startswith("mrmkg kg build ")]
    formats = {re.search(r"--format (\w+)", c).group(1) for c in commands}
    assert formats == {"nt", "ttl", "mmkb", "openke", "pykeen"}


def test_ill_typed_literal_is_skipped_without_rdflib_tracebacks(tmp_path, caplog):
    f = tmp_path / "g.nt"
    f.write_text('<http://a.org/x> <http://a.org/n> "abc"^^<http://www.w3.org/2001/XMLSchema#integer> .\n'
                 "<http://a.org/x> <http://a.org/p> <http://a.org/y> .\n", encoding="utf-8")
    kg = load_graph(f, "nt")
    assert kg.num_triples == 1 and kg.meta["load"]["skipped_literal_triples"] == 1
    assert not [r for r in caplog.records if r.name.startswith("rdflib")]
