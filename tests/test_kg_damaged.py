"""Damaged graph folders: every reproduction of issue 25 gets exit status 2, the damaged file named, no traceback.

A small graph folder is built once with the stand-in encoders of ``test_cli_kg``; each test copies it,
damages one file, and runs ``mrmkg kg stats`` / ``kg retrieve`` through ``mrmkg.cli.main``.
"""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from mrmkg.cli import main
from mrmkg.kg.graph import MMKG
from mrmkg.kg.index import KGIndex
from mrmkg.kg.manifest import CHECKSUMS, DamagedArtifactError, UnverifiedArtifactWarning
from test_cli_kg import FAKE, solid  # noqa: F401  (registers the test encoders)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    d = tmp_path_factory.mktemp("pristine")
    src = d / "src"
    src.mkdir()
    (src / "entities.tsv").write_text("Q90\tParis\tcapital of France\nQ142\tFrance\tcountry\nQ64\tBerlin\tcity\n"
                                      "Q183\tGermany\tcountry\nQ46\tEurope\tcontinent\n", encoding="utf-8")
    (src / "relations.tsv").write_text("P1376\tcapital of\nP30\tcontinent\n", encoding="utf-8")
    (src / "triples.tsv").write_text("Q90\tP1376\tQ142\nQ64\tP1376\tQ183\nQ142\tP30\tQ46\nQ183\tP30\tQ46\n",
                                     encoding="utf-8")
    solid(src / "img" / "paris.png", (250, 10, 10))
    (src / "images.tsv").write_text("Q90\timg/paris.png\n", encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("MRMKG_CACHE", str(d / "cache"))
    try:
        assert main(["kg", "build", str(src), "--format", "tsv", "--out", str(d / "g"), *FAKE]) == 0
    finally:
        mp.undo()
    return d / "g"


@pytest.fixture
def graph(pristine, tmp_path, monkeypatch):
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    g = tmp_path / "g"
    shutil.copytree(pristine, g)
    return g


def _cli(argv, capsys):
    rc = main(argv)
    o = capsys.readouterr()
    return rc, o.out, o.err


def _assert_damaged(graph, rel, capsys, commands=("stats", "retrieve"), reason=None):
    for cmd in commands:
        argv = ["kg", "stats", str(graph)] if cmd == "stats" else ["kg", "retrieve", str(graph), "capital of France"]
        rc, so, se = _cli(argv, capsys)
        assert rc == 2, (cmd, so, se)
        assert "Traceback" not in se and f"graph folder {graph} is damaged: {rel} (" in se, (cmd, se)
        assert "rebuild it with `mrmkg kg build" in se
        if reason is not None:
            assert reason in se, se


def _drop_checksum(graph, sub=""):
    """Damage a file as an old folder (no manifest) would have it, so the content checks are exercised."""
    (graph / sub / CHECKSUMS).unlink()


def test_pristine_copy_loads_without_warning(graph, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cli(["kg", "stats", str(graph)], capsys)[0] == 0
        assert _cli(["kg", "retrieve", str(graph), "capital of France"], capsys)[0] == 0
    mf = json.loads((graph / CHECKSUMS).read_text())
    assert mf["format_version"] == 1 and set(mf["files"]) == {"graph.json", "graph.npz"}
    assert set(json.loads((graph / "index" / CHECKSUMS).read_text())["files"]) == {
        "manifest.json", "triple_emb.npy", "entity_emb.npy", "relation_emb.npy", "image_emb.npy",
        "triples.faiss", "images.faiss"}


# ------------------------------------------------------------------ graph.json
@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
@pytest.mark.parametrize("damage, reason", [
    (lambda b: b[: len(b) // 2], None),                                 # truncated
    (lambda b: b"\xff\xfe" + b[2:], "not UTF-8"),                       # not UTF-8
    (lambda b: b"[]", None),                                            # a JSON list
], ids=["truncated", "not-utf8", "list"])
def test_graph_json_damaged(graph, capsys, damage, reason, manifest):
    p = graph / "graph.json"
    p.write_bytes(damage(p.read_bytes()))
    if not manifest:
        _drop_checksum(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        _assert_damaged(graph, "graph.json", capsys, reason=reason if not manifest else None)


def _rewrite_json(graph, rel, edit):
    p = graph / rel
    j = json.loads(p.read_text(encoding="utf-8"))
    j = edit(j)
    p.write_text(json.dumps(j), encoding="utf-8")


@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
def test_graph_json_without_entity_ids(graph, capsys, manifest):
    _rewrite_json(graph, "graph.json", lambda j: {k: v for k, v in j.items() if k != "entity_ids"})
    if not manifest:
        _drop_checksum(graph)
        with pytest.warns(UnverifiedArtifactWarning, match=f"graph folder {graph} has no checksums.json"):
            _assert_damaged(graph, "graph.json", capsys, commands=("stats",), reason="no 'entity_ids' key")
    else:
        _assert_damaged(graph, "graph.json", capsys, reason="bytes, the manifest says")


def test_entity_names_cut_to_a_few_is_not_silently_accepted(graph, capsys):
    _rewrite_json(graph, "graph.json", lambda j: {**j, "entity_names": j["entity_names"][:2]})
    _drop_checksum(graph)
    with pytest.warns(UnverifiedArtifactWarning):
        _assert_damaged(graph, "graph.json", capsys, commands=("stats",), reason="2 entity_names for 5 entity_ids")


# ------------------------------------------------------------------ graph.npz
def _rewrite_npz(graph, **arrays):
    with np.load(graph / "graph.npz") as z:
        a = {k: z[k] for k in z.files}
    a.update(arrays)
    a = {k: v for k, v in a.items() if v is not None}
    np.savez(graph / "graph.npz", **a)


@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
def test_graph_npz_truncated(graph, capsys, manifest):
    p = graph / "graph.npz"
    p.write_bytes(p.read_bytes()[:100])
    if not manifest:
        _drop_checksum(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        _assert_damaged(graph, "graph.npz", capsys, reason=None if manifest else "not a readable .npz archive")


def test_graph_npz_out_of_range_triple(graph, capsys):
    with np.load(graph / "graph.npz") as z:
        t = z["triples"].copy()
    t[1, 2] = 99
    _rewrite_npz(graph, triples=t)
    _drop_checksum(graph)
    with pytest.warns(UnverifiedArtifactWarning):
        _assert_damaged(graph, "graph.npz", capsys, commands=("stats",), reason="triple 1 [")


def test_graph_npz_without_image_entity(graph, capsys):
    _rewrite_npz(graph, image_entity=None)
    _drop_checksum(graph)
    with pytest.warns(UnverifiedArtifactWarning):
        _assert_damaged(graph, "graph.npz", capsys, commands=("stats",), reason="no 'image_entity' array")


def test_graph_npz_float_triples(graph, capsys):
    with np.load(graph / "graph.npz") as z:
        t = z["triples"].astype(np.float64)
    _rewrite_npz(graph, triples=t)
    _drop_checksum(graph)
    with pytest.warns(UnverifiedArtifactWarning):
        _assert_damaged(graph, "graph.npz", capsys, commands=("stats",), reason="dtype float64")


def test_deleted_graph_npz(graph, capsys):
    (graph / "graph.npz").unlink()
    _assert_damaged(graph, "graph.npz", capsys, reason="missing")


# ------------------------------------------------------------------ index/manifest.json
@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
@pytest.mark.parametrize("text, reason", [("{invalid", "not valid JSON"), ("[]", "a JSON list, expected an object")],
                         ids=["invalid", "list"])
def test_index_manifest_invalid(graph, capsys, text, reason, manifest):
    (graph / "index" / "manifest.json").write_text(text)
    if not manifest:
        _drop_checksum(graph, "index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        _assert_damaged(graph, "index/manifest.json", capsys, reason=None if manifest else reason)


@pytest.mark.parametrize("edit, reason", [
    (lambda c: {**c, "colour": 1}, "config has unknown key(s) colour"),
    (lambda c: {k: v for k, v in c.items() if k != "hnsw_m"}, "config lacks key(s) hnsw_m"),
], ids=["extra-key", "missing-key"])
def test_index_manifest_config_keys(graph, capsys, edit, reason):
    _rewrite_json(graph, "index/manifest.json", lambda j: {**j, "config": edit(j["config"])})
    _drop_checksum(graph, "index")
    with pytest.warns(UnverifiedArtifactWarning):
        _assert_damaged(graph, "index/manifest.json", capsys, commands=("retrieve",), reason=reason)


def test_index_manifest_counts_not_an_object(graph, capsys):
    _rewrite_json(graph, "index/manifest.json", lambda j: {**j, "counts": [1, 2]})
    _drop_checksum(graph, "index")
    _assert_damaged(graph, "index/manifest.json", capsys, commands=("stats",), reason="'counts' is list")


# ------------------------------------------------------------------ FAISS files and embeddings
@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
def test_triples_faiss_truncated(graph, capsys, manifest):
    p = graph / "index" / "triples.faiss"
    p.write_bytes(p.read_bytes()[:40])
    if not manifest:
        _drop_checksum(graph, "index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        _assert_damaged(graph, "index/triples.faiss", capsys, commands=("retrieve",),
                        reason=None if manifest else "not a readable FAISS index")


@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
def test_triples_faiss_deleted(graph, capsys, manifest):
    (graph / "index" / "triples.faiss").unlink()
    if not manifest:
        _drop_checksum(graph, "index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        _assert_damaged(graph, "index/triples.faiss", capsys, commands=("retrieve",), reason="missing")


@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
def test_images_faiss_random_bytes(graph, capsys, manifest):
    p = graph / "index" / "images.faiss"
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))
    if not manifest:
        _drop_checksum(graph, "index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        _assert_damaged(graph, "index/images.faiss", capsys, commands=("retrieve",),
                        reason="SHA-256 mismatch" if manifest else "not a readable FAISS index")


@pytest.mark.parametrize("manifest", [True, False], ids=["checksums", "old-folder"])
@pytest.mark.parametrize("damage", [
    lambda b: b[:6] + b"\x09" + b[7:],            # bad header (version byte)
    lambda b: b[:len(b) - 7],                     # truncated
    lambda b: b[:10] + b"{'descr': '|O', 'fortran_order': False, 'shape': (5, 64), }".ljust(len(b) - 10)[:118]
    + b[128:],                                     # an object array header
], ids=["bad-header", "truncated", "object-header"])
def test_entity_emb_npy_damaged(graph, capsys, manifest, damage):
    p = graph / "index" / "entity_emb.npy"
    p.write_bytes(damage(p.read_bytes()))
    if not manifest:
        _drop_checksum(graph, "index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)
        _assert_damaged(graph, "index/entity_emb.npy", capsys, commands=("retrieve",))


def test_entity_emb_wrong_shape(graph, capsys):
    np.save(graph / "index" / "entity_emb.npy", np.zeros((3, 64), np.float32))
    _drop_checksum(graph, "index")
    with pytest.warns(UnverifiedArtifactWarning):
        _assert_damaged(graph, "index/entity_emb.npy", capsys, commands=("retrieve",),
                        reason="float32 [3, 64], the manifest says float32 [5, 64]")


def test_npy_content_flip_is_caught_only_with_full_verification(graph, monkeypatch):
    """The memory-mapped arrays are size-checked by default, hashed under MRMKG_VERIFY_ALL=1."""
    p = graph / "index" / "relation_emb.npy"
    b = bytearray(p.read_bytes())
    b[-1] ^= 0xFF
    p.write_bytes(bytes(b))
    KGIndex.load(graph)
    monkeypatch.setenv("MRMKG_VERIFY_ALL", "1")
    with pytest.raises(DamagedArtifactError, match="relation_emb.npy .content differs"):
        KGIndex.load(graph)


def test_checksums_json_itself_damaged(graph, capsys):
    (graph / CHECKSUMS).write_text('{"format_version": 1, "files": [1]}')
    _assert_damaged(graph, CHECKSUMS, capsys, commands=("stats",))
    (graph / CHECKSUMS).write_text('{"format_version": 1, "files": {"../x": {"size": 1, "sha256": "0"}}}')
    _assert_damaged(graph, CHECKSUMS, capsys, commands=("stats",), reason="entry '../x'")


def test_library_error_is_an_input_error(graph):
    (graph / "graph.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DamagedArtifactError) as e:
        MMKG.load(graph)
    assert isinstance(e.value, ValueError) and e.value.file == "graph.npz"


def test_build_rebuilds_a_damaged_index_with_the_same_key(graph, tmp_path):
    """KGIndex.build reuses an index with the same key, but not a damaged one."""
    from test_cli_kg import BowEncoder, ColourEncoder
    from mrmkg.kg.index import IndexConfig

    kg = MMKG.load(graph)
    config = IndexConfig(**json.loads((graph / "index" / "manifest.json").read_text())["config"])
    p = graph / "index" / "triples.faiss"
    p.write_bytes(p.read_bytes()[:40])
    index = KGIndex.build(kg, config, graph, text_encoder=BowEncoder(), vision_encoder=ColourEncoder(),
                          progress=False, cache_root=tmp_path / "cache")
    assert index.num_triples == kg.num_triples
    KGIndex.load(graph)
