"""A hostile-input campaign against the `mrmkg` command line (issue 25; not a test: a measurement).

Throws a few hundred distinct bad inputs at every command (kg build/stats/retrieve, train, eval, ask,
explain, scienceqa check/prompts/score/eval, serve's argument checks, stage1 vg/kg-qa): damaged graph
folders, checkpoints and configs, broken data files, odd numbers, arguments that are not UTF-8, paths
that escape their data, /dev/null and /proc, existing files as -o. Every case runs through
``mrmkg.cli.main`` in this one process (cheap, tiny artifacts built once: a 6-triple graph with the
tests' hashing encoders, the 30-problem ScienceQA fixture, a tiny random LLaMA checkpoint, the tests'
toy task for `train`), with ``MRMKG_DEBUG=1`` so that an unexpected exception escapes and its type and
innermost mrmkg frame can be recorded: a user would see it as exit status 1 and the last-resort line
``error: mrmkg <command>: <Type>: ...`` (or, for a bug in that handler, a traceback).

For each case: exit status, outcome (``clean``: exit 2 and one ``error:`` line; ``accepted``: exit 0;
``usage``: exit 2 and click's usage block with its error line; ``traceback``: an exception escaped, i.e.
not an InputError; ``timeout``; ``other``), the first error line, and for
tracebacks the exception and the mrmkg file:line it came from. Writes ``results.jsonl`` and
``summary.md`` beside this file (or under ``--out``)::

    PYTHONPATH=src:tests OMP_NUM_THREADS=1 .venv/bin/python research/hostile/campaign.py [--only WORD]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: a valid JSON Lines graph of one triple, to which the jsonl cases add a bad line
JL_TRIPLE = ('{"type": "entity", "id": "Q1", "name": "a"}\n{"type": "entity", "id": "Q2", "name": "b"}\n'
             '{"type": "relation", "id": "P1", "name": "r"}\n{"type": "triple", "head": "Q1", "relation": "P1", "tail": "Q2"}\n')
NONUTF8 = os.fsdecode(b"caf\xe9\xff")  # an argument that is not valid UTF-8, as sys.argv carries it


class Timeout(Exception):
    pass


# ------------------------------------------------------------------------------------------------ artifacts
def build_artifacts(root: Path) -> dict:
    """Every good artifact the cases damage or point at (tiny; built in a few seconds)."""
    import torch
    import yaml
    from PIL import Image

    import test_cli_kg  # noqa: F401  (registers the test-bow / test-colour encoders)
    from engine_toy import toy_config
    from mrmkg.cli import main
    from mrmkg.engine import TrainConfig, train
    from mrmkg.tasks.registry import make_task
    from sqa_fixture import scienceqa_root
    from test_model_common import save_tiny_llm

    os.environ["MRMKG_CACHE"] = str(root / "cache")
    a: dict = {"root": root}
    src = root / "src"
    (src / "img").mkdir(parents=True)
    (src / "entities.tsv").write_text("Q90\tParis\tcapital of France\nQ142\tFrance\tcountry\nQ64\tBerlin\tcapital\n"
                                      "Q183\tGermany\tcountry\nQ46\tEurope\tcontinent\n")
    (src / "relations.tsv").write_text("P1376\tcapital of\nP30\tcontinent\nP47\tshares border with\n")
    (src / "triples.tsv").write_text("Q90\tP1376\tQ142\nQ64\tP1376\tQ183\nQ142\tP30\tQ46\nQ183\tP30\tQ46\n"
                                     "Q142\tP47\tQ183\n")
    Image.new("RGB", (16, 16), (250, 10, 10)).save(src / "img" / "paris.png")
    (src / "images.tsv").write_text("Q90\timg/paris.png\n")
    a["src"] = src
    a["fake"] = ["--text-encoder", "test-bow", "--vision-encoder", "test-colour"]
    a["graph"] = root / "graph"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["kg", "build", str(src), "--format", "tsv", "--out", str(a["graph"]), *a["fake"], "-q"]) == 0
    a["png"] = src / "img" / "paris.png"
    a["sqa"] = scienceqa_root()
    a["preds"] = a["sqa"] / "predictions_test.jsonl"

    # a tiny real checkpoint: graph-less ScienceQA on a tiny random LLaMA
    model_args = {"llm": save_tiny_llm("llama", root / "llm"), "dtype": "fp32", "gnn_hidden": 16, "gnn_heads": 2,
                  "gnn_relation_dim": 8, "use_kg": False, "max_prompt_tokens": 96, "max_target_tokens": 8}
    task_args = {"root": str(a["sqa"]), "prompt": {"retrieval": "none"}, "max_new_tokens": 2, "limit": 2}
    final = root / "ckpt" / "final"
    (final / "model").mkdir(parents=True)
    (final / "train_config.yaml").write_text(yaml.safe_dump({"task": "scienceqa", "task_args": task_args,
                                                             "model": model_args}))
    make_task(TrainConfig(task="scienceqa", task_args=task_args, model=model_args)).build_model() \
        .save_pretrained(final / "model")
    a["ckpt"] = root / "ckpt"

    # the toy task's config and a finished run (for --resume)
    a["toycfg"] = root / "toy" / "cfg.yaml"
    train(toy_config(root / "toy", epochs=1, checkpoint_every=6))
    a["toyrun"] = root / "toy" / "run"

    # an eval folder for explain (as tests/test_explain.py writes one)
    from mrmkg.kg.graph import MMKG
    from test_explain import ENTS, RELS, TRIPLES, _pred

    g = root / "xgraph"
    MMKG.from_records(ENTS, [r[:2] for r in RELS], TRIPLES).save(g)
    split = root / "dev.json"
    split.write_text(json.dumps({"example": ["Q1", "Q2"], "question": "Q3", "answer": "Q4", "relation": "A1",
                                 "mode": 0}) + "\n")
    ev = root / "evalout"
    ev.mkdir()
    (ev / "eval_config.yaml").write_text(yaml.safe_dump({"checkpoint": "run", "split_file": str(split),
                                                         "task_args": {"graph": str(g), "prompt": "kg_text_graph",
                                                                       "text_triples": 1}}))
    (ev / "predictions.jsonl").write_text(json.dumps(_pred("dev-1", "Q4", 1, [("Q4", 3.5)], [[1, 0.9]])) + "\n")
    a["evaldir"] = ev
    a["vg"] = REPO / "tests" / "fixtures" / "vg"
    del torch
    return a


# ------------------------------------------------------------------------------------------------ helpers
def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def truncate(p: Path, keep: float = 0.5) -> None:
    d = p.read_bytes()
    p.write_bytes(d[: int(len(d) * keep)])


def write(p: Path, data) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
    return p


# ------------------------------------------------------------------------------------------------ cases
def cases(a: dict, w: Path):
    """Yield ``(name, argv or a function returning argv)``: the function prepares its own damaged copy."""
    G, S, P, F = str(a["graph"]), str(a["sqa"]), str(a["preds"]), a["fake"]
    CK, PNG = str(a["ckpt"]), str(a["png"])
    n = iter(range(10**6))

    def tmp(name=""):
        return w / f"c{next(n):04d}{name}"

    # --- kg build: sources, formats, options, outputs
    yield "build: missing source", ["kg", "build", str(w / "nope"), "-o", str(tmp()), *F]
    yield "build: source is /dev/null", ["kg", "build", "/dev/null", "-f", "tsv", "-o", str(tmp()), *F]
    yield "build: source not UTF-8 name", ["kg", "build", NONUTF8, "-o", str(tmp()), *F]
    yield "build: -o /dev/null/x", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", "/dev/null/x", *F]
    yield "build: -o /proc/x", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", "/proc/x", *F]
    yield "build: -o an existing file", lambda: ["kg", "build", str(a["src"]), "-f", "tsv", "-o",
                                                 str(write(tmp(".txt"), "x")), *F]
    yield "build: -o /", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", "/", *F]
    yield "build: unknown format", ["kg", "build", str(a["src"]), "-f", "xml", "-o", str(tmp()), *F]
    yield "build: unknown text encoder", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", str(tmp()),
                                          "--text-encoder", "nope", "--vision-encoder", "test-colour"]
    yield "build: unknown vision encoder", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", str(tmp()),
                                            "--text-encoder", "test-bow", "--vision-encoder", "nope"]
    yield "build: --exact-max -1", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", str(tmp()), "--exact-max", "-1", *F]
    yield "build: --exact-max huge", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", str(tmp()), "--exact-max",
                                      "99999999999999999999999", *F]
    yield "build: --order xyz", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", str(tmp()), "--order", "xyz", *F]
    yield "build: --entities missing", ["kg", "build", str(a["src"] / "triples.tsv"), "-f", "tsv", "-o", str(tmp()),
                                        "--entities", str(w / "nope.tsv"), *F]
    yield "build: --images on tsv", ["kg", "build", str(a["src"]), "-f", "tsv", "-o", str(tmp()), "--images", "/etc", *F]

    def tsv_case(fname, content, extra=()):
        def f():
            d = copy(a["src"], tmp("src"))
            write(d / fname, content)
            return ["kg", "build", str(d), "-f", "tsv", "-o", str(tmp()), *F, *extra]
        return f

    for label, fname, content in [
        ("triples not UTF-8", "triples.tsv", b"Q90\tP1376\t\xff\xfe\n"),
        ("triples one column", "triples.tsv", "Q90\n"),
        ("triples four columns", "triples.tsv", "Q90\tP1376\tQ142\textra\n"),
        ("triples empty", "triples.tsv", ""),
        ("triples NUL bytes", "triples.tsv", b"Q90\x00\tP1376\tQ142\n"),
        ("triples unknown entity", "triples.tsv", "Q90\tP1376\tQ999\n"),
        ("triples unknown relation", "triples.tsv", "Q90\tP999\tQ142\n"),
        ("triples CRLF", "triples.tsv", "Q90\tP1376\tQ142\r\n"),
        ("triples BOM", "triples.tsv", "\ufeffQ90\tP1376\tQ142\n"),
        ("triples very long line", "triples.tsv", "Q90\tP1376\t" + "Q" * 2_000_000 + "\n"),
        ("entities duplicate id", "entities.tsv", "Q90\tParis\t\nQ90\tParis again\t\nQ142\tFrance\t\n"),
        ("entities empty id", "entities.tsv", "\tParis\t\n"),
        ("entities not UTF-8", "entities.tsv", b"Q90\tPar\xe9s\t\n"),
        ("relations one column", "relations.tsv", "P1376\n"),
        ("relations reserved id", "relations.tsv", "P1376\tcapital of\nimage_of\tx\n"),
        ("images ../ escape", "images.tsv", "Q90\t../../../../etc/passwd\n"),
        ("images absolute", "images.tsv", "Q90\t/etc/hostname\n"),
        ("images not an image", "images.tsv", "Q90\tentities.tsv\n"),
        ("images missing file", "images.tsv", "Q90\timg/nope.png\n"),
        ("images unknown entity", "images.tsv", "Q999\timg/paris.png\n"),
        ("images is a folder", "images.tsv", "Q90\timg\n"),
        ("images /dev/zero", "images.tsv", "Q90\t/dev/zero\n"),
    ]:
        yield f"build tsv: {label}", tsv_case(fname, content)

    def symlink_out():
        d = copy(a["src"], tmp("src"))
        (d / "img" / "link.png").symlink_to("/etc/hostname")
        write(d / "images.tsv", "Q90\timg/link.png\n")
        return ["kg", "build", str(d), "-f", "tsv", "-o", str(tmp()), *F]
    yield "build tsv: image symlink leading out", symlink_out

    def truncated_png():
        d = copy(a["src"], tmp("src"))
        truncate(d / "img" / "paris.png", 0.3)
        return ["kg", "build", str(d), "-f", "tsv", "-o", str(tmp()), *F]
    yield "build tsv: truncated PNG", truncated_png

    def bomb_png():
        d = copy(a["src"], tmp("src"))
        from PIL import Image
        Image.new("1", (30000, 30000)).save(d / "img" / "paris.png")
        return ["kg", "build", str(d), "-f", "tsv", "-o", str(tmp()), *F]
    yield "build tsv: decompression-bomb PNG (900 Mpx)", bomb_png

    for label, content in [("not JSON", "{nope\n"), ("a list", "[1, 2]\n"), ("missing keys", '{"head": "a"}\n'),
                           ("not UTF-8", b'{"head": "\xff"}\n'), ("empty", ""), ("deep nesting", "[" * 100000 + "\n"),
                           ("huge number id", '{"type": "entity", "id": 1e999, "name": "x"}\n'),
                           ("unknown key", '{"type": "entity", "id": "Q1", "name": "x", "nope": 1}\n'),
                           ("image escapes", JL_TRIPLE + '{"type": "image", "entity": "Q1", "path": "../../etc/passwd"}\n'),
                           ("image absolute", JL_TRIPLE + '{"type": "image", "entity": "Q1", "path": "/etc/hostname"}\n'),
                           ("triple of unknown ids", '{"type": "triple", "head": "a", "relation": "r", "tail": "b"}\n')]:
        def jl(content=content):
            return ["kg", "build", str(write(tmp("g.jsonl"), content)), "-o", str(tmp()), *F]
        yield f"build jsonl: {label}", jl

    for label, content in [("not N-Triples", "this is not rdf\n"), ("not UTF-8", b"<a> <b> \"\xff\" .\n"),
                           ("unterminated IRI", "<http://a <http://b> <http://c> .\n")]:
        def nt(content=content):
            return ["kg", "build", str(write(tmp("g.nt"), content)), "-o", str(tmp()), *F]
        yield f"build .nt file: {label}", nt

    def markg_bad(files):
        def f():
            d = tmp("markg")
            for name, content in files.items():
                write(d / name, content)
            return ["kg", "build", str(d), "-f", "markg", "-o", str(tmp()), *F]
        return f
    yield "build markg: empty folder", markg_bad({"README": "x"})
    yield "build markg: entity2text not UTF-8", markg_bad({"entity2text.txt": b"Q1\t\xff\n", "relation2text.txt": "P1\tr\n",
                                                            "wiki_tuple_ids.txt": "Q1\tP1\tQ1\n"})
    yield "build markg: triples reference unknown ids", markg_bad({"entity2text.txt": "Q1\ta\n", "relation2text.txt": "P1\tr\n",
                                                                    "wiki_tuple_ids.txt": "Q1\tP1\tQ9\n"})

    # --- kg stats / retrieve: damaged graph folders
    def damaged(fn, cmd="stats", extra=()):
        def f():
            d = copy(a["graph"], tmp("g"))
            fn(d)
            return ["kg", cmd, str(d), *(["Paris"] if cmd == "retrieve" else []), *extra]
        return f

    for label, fn in [
        ("graph.json truncated", lambda d: truncate(d / "graph.json")),
        ("graph.json []", lambda d: write(d / "graph.json", "[]")),
        ("graph.json not UTF-8", lambda d: write(d / "graph.json", b"\xff\xfe")),
        ("graph.npz truncated", lambda d: truncate(d / "graph.npz")),
        ("graph.npz deleted", lambda d: (d / "graph.npz").unlink()),
        ("checksums.json []", lambda d: write(d / "checksums.json", "[]")),
        ("checksums.json entry ../x", lambda d: write(d / "checksums.json", json.dumps(
            {"format_version": 1, "files": {"../x": {"size": 1, "sha256": "0"}}}))),
        ("index/manifest.json {}", lambda d: write(d / "index" / "manifest.json", "{}")),
        ("triples.faiss random bytes", lambda d: write(d / "index" / "triples.faiss", os.urandom(4096))),
        ("triples.faiss deleted", lambda d: (d / "index" / "triples.faiss").unlink()),
        ("entity_emb.npy truncated", lambda d: truncate(d / "index" / "entity_emb.npy")),
        ("graph.json is a folder", lambda d: ((d / "graph.json").unlink(), (d / "graph.json").mkdir())),
        ("index is a file", lambda d: (shutil.rmtree(d / "index"), write(d / "index", "x"))),
    ]:
        yield f"stats: {label}", damaged(fn)
        yield f"retrieve: {label}", damaged(fn, "retrieve")
    yield "stats: missing folder", ["kg", "stats", str(w / "nope")]
    yield "stats: a file", ["kg", "stats", PNG]
    yield "stats: /dev/null", ["kg", "stats", "/dev/null"]
    yield "stats: /proc", ["kg", "stats", "/proc"]
    yield "stats: not UTF-8 path", ["kg", "stats", NONUTF8]

    def empty_folder():
        d = tmp("empty")
        d.mkdir()
        return ["kg", "stats", str(d)]
    yield "stats: an empty folder", empty_folder

    # --- kg retrieve: arguments
    yield "retrieve: question not UTF-8", ["kg", "retrieve", G, NONUTF8]
    yield "retrieve: empty question", ["kg", "retrieve", G, ""]
    yield "retrieve: whitespace question", ["kg", "retrieve", G, "   "]
    yield "retrieve: huge question", ["kg", "retrieve", G, "Paris " * 200_000]
    yield "retrieve: NUL in question", ["kg", "retrieve", G, "Par\x00is"]
    yield "retrieve: -n 0", ["kg", "retrieve", G, "Paris", "-n", "0"]
    yield "retrieve: -n -5", ["kg", "retrieve", G, "Paris", "-n", "-5"]
    yield "retrieve: -n huge", ["kg", "retrieve", G, "Paris", "-n", "99999999999"]
    yield "retrieve: -N 0", ["kg", "retrieve", G, "Paris", "-N", "0"]
    yield "retrieve: -N -1", ["kg", "retrieve", G, "Paris", "-N", "-1"]
    yield "retrieve: --hops -1", ["kg", "retrieve", G, "Paris", "--hops", "-1"]
    yield "retrieve: --hops 1000", ["kg", "retrieve", G, "Paris", "--hops", "1000"]
    yield "retrieve: --min-score nan", ["kg", "retrieve", G, "Paris", "--min-score", "nan"]
    yield "retrieve: --min-score inf", ["kg", "retrieve", G, "Paris", "--min-score", "inf"]
    yield "retrieve: --min-score 2", ["kg", "retrieve", G, "Paris", "--min-score", "2"]
    yield "retrieve: -n abc", ["kg", "retrieve", G, "Paris", "-n", "abc"]
    yield "retrieve: no question no image", ["kg", "retrieve", G]
    yield "retrieve: --image missing", ["kg", "retrieve", G, "--image", str(w / "nope.png")]
    yield "retrieve: --image not an image", ["kg", "retrieve", G, "--image", str(a["src"] / "triples.tsv")]
    yield "retrieve: --image /dev/null", ["kg", "retrieve", G, "--image", "/dev/null"]
    yield "retrieve: --image a folder", ["kg", "retrieve", G, "--image", str(a["src"])]
    yield "retrieve: --image truncated", lambda: ["kg", "retrieve", G, "--image",
                                                  str(write(tmp(".png"), a["png"].read_bytes()[:60]))]

    # --- scienceqa check / prompts / score
    def sqa_copy(fn):
        def f():
            d = copy(a["sqa"], tmp("sqa"))
            fn(d)
            return d
        return f

    for label, fn in [
        ("problems.json truncated", lambda d: truncate(d / "problems.json")),
        ("problems.json []", lambda d: write(d / "problems.json", "[]")),
        ("problems.json not UTF-8", lambda d: write(d / "problems.json", b"{\"x\": \"\xff\"}")),
        ("problems.json a problem without choices", lambda d: write(d / "problems.json", json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "choices"}
             for k, v in json.loads((d / "problems.json").read_text()).items()}))),
        ("problems.json answer out of range", lambda d: write(d / "problems.json", json.dumps(
            {k: {**v, "answer": 99} for k, v in json.loads((d / "problems.json").read_text()).items()}))),
        ("problems.json image ../ escape", lambda d: write(d / "problems.json", json.dumps(
            {k: {**v, "image": "../../../../etc/passwd"} for k, v in json.loads((d / "problems.json").read_text()).items()}))),
        ("pid_splits.json deleted", lambda d: (d / "pid_splits.json").unlink()),
        ("pid_splits.json unknown pid", lambda d: write(d / "pid_splits.json", json.dumps({"test": ["nope"]}))),
        ("pid_splits.json a list", lambda d: write(d / "pid_splits.json", "[1]")),
    ]:
        yield f"scienceqa check: {label}", (lambda f=sqa_copy(fn): ["scienceqa", "check", str(f())])
    yield "scienceqa check: missing root", ["scienceqa", "check", str(w / "nope")]
    yield "scienceqa check: root is a file", ["scienceqa", "check", P]
    yield "scienceqa check: --images /etc", ["scienceqa", "check", S, "--images", "/etc"]
    yield "scienceqa prompts: --split nope", ["scienceqa", "prompts", S, "--split", "nope"]
    yield "scienceqa prompts: --limit -1", ["scienceqa", "prompts", S, "--limit", "-1"]
    yield "scienceqa prompts: --limit huge", ["scienceqa", "prompts", S, "--limit", "99999999999999999999"]
    yield "scienceqa prompts: --prompt-format X", ["scienceqa", "prompts", S, "--prompt-format", "X"]
    yield "scienceqa prompts: --split not UTF-8", ["scienceqa", "prompts", S, "--split", NONUTF8]
    yield "scienceqa score: --split nope", ["scienceqa", "score", S, P, "--split", "nope"]
    yield "scienceqa score: predictions missing", ["scienceqa", "score", S, str(w / "nope.jsonl")]
    yield "scienceqa score: predictions /dev/null", ["scienceqa", "score", S, "/dev/null"]
    yield "scienceqa score: predictions a folder", ["scienceqa", "score", S, S]
    for label, content in [("not UTF-8", b'{"pid": "\xff"}\n'), ("not JSON", "{nope\n"), ("a list per line", "[1]\n"),
                           ("unknown pid", '{"pid": "nope", "prediction": "A"}\n'),
                           ("prediction a number", '{"pid": "1", "prediction": 3}\n'),
                           ("duplicate pid", None), ("empty", "")]:
        def sc(content=content):
            if content is None:
                line = a["preds"].read_text().splitlines()[0]
                content = a["preds"].read_text() + line + "\n"
            return ["scienceqa", "score", S, str(write(tmp(".jsonl"), content))]
        yield f"scienceqa score: predictions {label}", sc
    yield "scienceqa score: --out an existing file", lambda: ["scienceqa", "score", S, P, "--out", str(write(tmp(".f"), "x"))]
    yield "scienceqa score: --out /dev/null/m", ["scienceqa", "score", S, P, "--out", "/dev/null/m"]
    yield "scienceqa score: --out /proc/x", ["scienceqa", "score", S, P, "--out", "/proc/x"]
    yield "scienceqa score: --out not UTF-8", ["scienceqa", "score", S, P, "--out", str(w / NONUTF8)]

    # --- train: configs and fields
    def cfg(text):
        return lambda: ["train", "-c", str(write(tmp(".yaml"), text)), "-o", str(tmp("run")), "--print-config"]
    for label, text in [
        ("YAML not UTF-8", b"task: toy\nseed: \xff\n"),
        ("YAML syntax error", "task: [toy\n"),
        ("YAML a list", "- 1\n- 2\n"),
        ("YAML a scalar", "42\n"),
        ("YAML empty", ""),
        ("YAML alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"),
        ("YAML python tag", "task: !!python/object/apply:os.system ['true']\n"),
        ("YAML 11 MB", "task: toy\n# " + "x" * 11_000_000 + "\n"),
        ("unknown field", "task: toy\nnope: 1\n"),
        ("task module:Class", "task: json:loads\n"),
        ("task os:system", "task: os:system\n"),
        ("task unknown", "task: nope\n"),
        ("task a number", "task: 3\n"),
        ("seed a string", "task: toy\nseed: abc\n"),
        ("seed negative", "task: toy\nseed: -1\n"),
        ("seed 2**64", "task: toy\nseed: 18446744073709551616\n"),
        ("epochs 0", "task: toy\nepochs: 0\n"),
        ("epochs -1", "task: toy\nepochs: -1\n"),
        ("batch_size 0", "task: toy\nbatch_size: 0\n"),
        ("batch_size 1e12", "task: toy\nbatch_size: 1000000000000\n"),
        ("optim.lr -0.5", "task: toy\noptim: {lr: -0.5}\n"),
        ("optim.lr .nan", "task: toy\noptim: {lr: .nan}\n"),
        ("optim.lr .inf", "task: toy\noptim: {lr: .inf}\n"),
        ("optim.betas [0.9]", "task: toy\noptim: {betas: [0.9]}\n"),
        ("optim.betas [2, 3]", "task: toy\noptim: {betas: [2, 3]}\n"),
        ("optim a list", "task: toy\noptim: [1]\n"),
        ("precision fp8", "task: toy\nprecision: fp8\n"),
        ("model.dropout 1.5", "task: toy\nmodel: {dropout: 1.5}\n"),
        ("task_args a string", "task: toy\ntask_args: abc\n"),
        ("checkpoint_every -1", "task: toy\ncheckpoint_every: -1\n"),
        ("keep_checkpoints 0", "task: toy\nkeep_checkpoints: 0\n"),
        ("output_dir /dev/null/x", "task: toy\noutput_dir: /dev/null/x\n"),
        ("log_with nope", "task: toy\nlog_with: nope\n"),
        ("grad_accum 0", "task: toy\ngrad_accum: 0\n"),
    ]:
        yield f"train: {label}", cfg(text)
    yield "train: missing config", ["train", "-c", str(w / "nope.yaml")]
    yield "train: config is a folder", ["train", "-c", str(w)]
    yield "train: config /dev/null", ["train", "-c", "/dev/null", "--print-config"]
    yield "train: --set without =", ["train", "--set", "seed", "--print-config"]
    yield "train: --set unknown.dotted", ["train", "--set", "nope.x=1", "--print-config"]
    yield "train: --set optim.lr=nan", ["train", "--set", "task=toy", "--set", "optim.lr=nan", "--print-config"]
    yield "train: --set YAML error", ["train", "--set", "task=[toy", "--print-config"]
    yield "train: --set not UTF-8", ["train", "--set", f"task={NONUTF8}", "--print-config"]
    yield "train: --seed -3", ["train", "--set", "task=toy", "--seed", "-3", "-o", str(w / "seedrun")]
    yield "train: -o an existing file", lambda: ["train", "-c", str(a["toycfg"]), "-o", str(write(tmp(".f"), "x"))]
    yield "train: -o /proc/x", ["train", "-c", str(a["toycfg"]), "-o", "/proc/x"]
    yield "train: --device gpu7", ["train", "-c", str(a["toycfg"]), "-o", str(tmp()), "--device", "gpu7"]
    yield "train: --device cuda:99", ["train", "-c", str(a["toycfg"]), "-o", str(tmp()), "--device", "cuda:99"]
    yield "train: existing run without --resume", ["train", "-c", str(a["toycfg"])]
    yield "train: init_from missing", ["train", "-c", str(a["toycfg"]), "-o", str(tmp()), "--set",
                                       f"init_from={w / 'nope'}"]

    def init_garbage():
        d = copy(a["toyrun"], tmp("run"))
        write(d / "final" / "model" / "model.safetensors", b"garbage" * 20)
        return ["train", "-c", str(a["toycfg"]), "-o", str(tmp()), "--set", f"init_from={d}"]
    yield "train: init_from garbage safetensors", init_garbage

    def resume(fn):
        def f():
            d = copy(a["toyrun"], tmp("run"))
            from mrmkg.engine import latest_checkpoint
            ck = latest_checkpoint(d)
            fn(ck)
            return ["train", "-c", str(a["toycfg"]), "-o", str(d), "--resume"]
        return f
    for label, fn in [
        ("trainer_state.json {}", lambda ck: write(ck / "trainer_state.json", "{}")),
        ("trainer_state.json {} no manifest", lambda ck: (write(ck / "trainer_state.json", "{}"),
                                                          (ck / "checksums.json").unlink())),
        ("trainer_state.json global_step a string", lambda ck: (write(ck / "trainer_state.json", json.dumps(
            {**json.loads((ck / "trainer_state.json").read_text()), "global_step": "3"})),
            (ck / "checksums.json").unlink())),
        ("model.safetensors garbage", lambda ck: write(ck / "model.safetensors", b"garbage" * 50)),
        ("model.safetensors garbage no manifest", lambda ck: (write(ck / "model.safetensors", b"garbage" * 50),
                                                              (ck / "checksums.json").unlink())),
        ("model.safetensors truncated no manifest", lambda ck: (truncate(ck / "model.safetensors"),
                                                                (ck / "checksums.json").unlink())),
        ("optimizer.bin truncated no manifest", lambda ck: (truncate(ck / "optimizer.bin"),
                                                            (ck / "checksums.json").unlink())),
        ("scheduler.bin a pickle payload no manifest", lambda ck: (write(ck / "scheduler.bin",
            b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."), (ck / "checksums.json").unlink())),
        ("random_states deleted no manifest", lambda ck: ((ck / "random_states_0.pkl").unlink(),
                                                          (ck / "checksums.json").unlink())),
        ("checksums.json garbage", lambda ck: write(ck / "checksums.json", b"\xff\x00")),
        ("checksums.json of a graph", lambda ck: write(ck / "checksums.json", json.dumps(
            {"format_version": 1, "kind": "graph", "files": {}}))),
    ]:
        yield f"train --resume: {label}", resume(fn)

    # --- eval / ask / scienceqa eval / serve: checkpoints
    def ck_case(fn, argv):
        def f():
            d = copy(a["ckpt"], tmp("ck"))
            fn(d / "final")
            return [x.replace("{CK}", str(d)).replace("{OUT}", str(tmp("out"))) for x in argv]
        return f
    EVAL = ["eval", "{CK}", "-o", "{OUT}"]
    ASK = ["ask", "{CK}", "Which?", "--choices", "a|b"]
    for label, fn in [
        ("mrmkg.json {format_version: 2}", lambda f: write(f / "model" / "mrmkg.json", '{"format_version": 2}')),
        ("mrmkg.json {format_version: 1}", lambda f: write(f / "model" / "mrmkg.json", '{"format_version": 1}')),
        ("mrmkg.json [1, 2]", lambda f: write(f / "model" / "mrmkg.json", "[1, 2]")),
        ("mrmkg.json {}", lambda f: write(f / "model" / "mrmkg.json", "{}")),
        ("mrmkg.json not UTF-8", lambda f: write(f / "model" / "mrmkg.json", b"\xff")),
        ("mrmkg.json deleted", lambda f: (f / "model" / "mrmkg.json").unlink()),
        ("model.safetensors truncated", lambda f: truncate(f / "model" / "model.safetensors")),
        ("model.safetensors garbage no manifest", lambda f: (write(f / "model" / "model.safetensors", b"x" * 99),
                                                             (f / "model" / "checksums.json").unlink())),
        ("train_config.yaml not UTF-8", lambda f: write(f / "train_config.yaml", b"task: \xff\n")),
        ("train_config.yaml a list", lambda f: write(f / "train_config.yaml", "[1]\n")),
        ("train_config.yaml task os:system", lambda f: write(f / "train_config.yaml", "task: os:system\n")),
        ("train_config.yaml alias bomb", lambda f: write(f / "train_config.yaml",
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\ntask: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n")),
        ("train_config.yaml root missing", lambda f: write(f / "train_config.yaml", (f / "train_config.yaml")
                                                             .read_text().replace(S, "/nonexistent"))),
        ("frozen llm missing", lambda f: (write(f / "model" / "mrmkg.json", (f / "model" / "mrmkg.json").read_text()
                                                .replace(str(a["root"] / "llm"), "/nonexistent/llm")),
                                          (f / "model" / "checksums.json").unlink())),
    ]:
        yield f"eval: {label}", ck_case(fn, EVAL)
        yield f"ask: {label}", ck_case(fn, ASK)
    yield "eval: missing checkpoint", ["eval", str(w / "nope"), "-o", str(tmp())]
    yield "eval: checkpoint /dev/null", ["eval", "/dev/null", "-o", str(tmp())]
    yield "eval: checkpoint /proc", ["eval", "/proc", "-o", str(tmp())]
    yield "eval: -o an existing file", lambda: ["eval", CK, "-o", str(write(tmp(".f"), "x"))]
    yield "eval: -o /dev/null/x", ["eval", CK, "-o", "/dev/null/x"]
    yield "eval: --batch-size 0", ["eval", CK, "-o", str(tmp()), "--batch-size", "0"]
    yield "eval: --split nope", ["eval", CK, "-o", str(tmp()), "--split", "nope"]
    yield "eval: --graph missing", ["eval", CK, "-o", str(tmp()), "--graph", str(w / "nope")]
    yield "eval: --device tpu", ["eval", CK, "-o", str(tmp()), "--device", "tpu"]
    yield "ask: question not UTF-8", ["ask", CK, NONUTF8, "--choices", "a|b"]
    yield "ask: --top-k 0", ["ask", CK, "Which?", "--choices", "a|b", "--top-k", "0"]
    yield "ask: --top-k 10**6", ["ask", CK, "Which?", "--choices", "a|b", "--top-k", "1000000"]
    yield "ask: --image missing", ["ask", CK, "Which?", "--choices", "a|b", "--image", str(w / "nope.png")]
    yield "ask: --image a text file", ["ask", CK, "Which?", "--choices", "a|b", "--image", str(a["src"] / "triples.tsv")]
    yield "ask: --choices one", ["ask", CK, "Which?", "--choices", "a"]
    yield "ask: --choices 1000 options", ["ask", CK, "Which?", "--choices", "|".join(f"o{i}" for i in range(1000))]
    yield "ask: --analogy on a ScienceQA model", ["ask", CK, "--analogy", "a : b :: c : ?"]
    yield "ask: --picture /dev/null/x.png", ["ask", CK, "Which?", "--choices", "a|b", "--picture", "/dev/null/x.png"]
    yield "scienceqa eval: --limit 0", ["scienceqa", "eval", CK, "-o", str(tmp()), "--limit", "0"]
    yield "scienceqa eval: --split nope", ["scienceqa", "eval", CK, "-o", str(tmp()), "--split", "nope"]
    yield "scienceqa eval: --root missing", ["scienceqa", "eval", CK, "-o", str(tmp()), "--root", str(w / "nope")]
    yield "scienceqa eval: --rationales missing", ["scienceqa", "eval", CK, "-o", str(tmp()), "--rationales",
                                                   str(w / "nope.jsonl")]
    yield "scienceqa eval: damaged mrmkg.json", ck_case(lambda f: write(f / "model" / "mrmkg.json", "[]"),
                                                        ["scienceqa", "eval", "{CK}", "-o", "{OUT}"])
    yield "serve: --port 0", ["serve", CK, "--port", "0"]
    yield "serve: --port 70000", ["serve", CK, "--port", "70000"]
    yield "serve: --max-batch 0", ["serve", CK, "--max-batch", "0"]
    yield "serve: --max-wait-ms -1", ["serve", CK, "--max-wait-ms", "-1"]
    yield "serve: --max-wait-ms nan", ["serve", CK, "--max-wait-ms", "nan"]
    # a damaged checkpoint, so that a value serve accepts does not leave a server running in this process
    yield "serve: --timeout inf", ck_case(lambda f: write(f / "model" / "mrmkg.json", "{}"),
                                          ["serve", "{CK}", "--timeout", "inf", "--port", "58731", "-q"])
    yield "serve: --max-body-mb -1", ["serve", CK, "--max-body-mb", "-1"]
    yield "serve: missing checkpoint", ["serve", str(w / "nope")]
    yield "serve: damaged checkpoint", ck_case(lambda f: write(f / "model" / "mrmkg.json", "{}"),
                                               ["serve", "{CK}", "--port", "58732", "-q"])
    yield "serve: --host not UTF-8", ["serve", CK, "--host", NONUTF8, "--port", "1"]

    # --- explain
    def ev_case(fn, extra=()):
        def f():
            d = copy(a["evaldir"], tmp("ev"))
            fn(d)
            return ["explain", str(d), *extra]
        return f
    for label, fn in [
        ("predictions.jsonl not JSON", lambda d: write(d / "predictions.jsonl", "{nope\n")),
        ("predictions.jsonl not UTF-8", lambda d: write(d / "predictions.jsonl", b"\xff\n")),
        ("predictions.jsonl [1]", lambda d: write(d / "predictions.jsonl", "[1]\n")),
        ("predictions.jsonl {}", lambda d: write(d / "predictions.jsonl", "{}\n")),
        ("predictions.jsonl deleted", lambda d: (d / "predictions.jsonl").unlink()),
        ("eval_config.yaml deleted", lambda d: (d / "eval_config.yaml").unlink()),
        ("eval_config.yaml a list", lambda d: write(d / "eval_config.yaml", "[1]\n")),
        ("eval_config.yaml graph missing", lambda d: write(d / "eval_config.yaml", (d / "eval_config.yaml")
                                                           .read_text().replace(str(a["root"] / "xgraph"), "/nonexistent"))),
        ("eval_config.yaml alias bomb", lambda d: write(d / "eval_config.yaml",
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n")),
    ]:
        yield f"explain: {label}", ev_case(fn)
    yield "explain: missing folder", ["explain", str(w / "nope")]
    yield "explain: a file", ["explain", PNG]
    yield "explain: unknown id", ev_case(lambda d: None, ["nope-id"])
    yield "explain: --limit 0", ev_case(lambda d: None, ["--limit", "0"])
    yield "explain: --versus missing", ev_case(lambda d: None, ["--versus", str(w / "nope")])
    yield "explain: --picture /dev/null/x.png", ev_case(lambda d: None, ["--picture", "/dev/null/x.png"])
    yield "explain: --split missing", ev_case(lambda d: None, ["--split", str(w / "nope.json")])
    yield "explain: --graph a file", ev_case(lambda d: None, ["--graph", PNG])

    # --- stage1
    yield "stage1 vg: missing folder", ["stage1", "vg", str(w / "nope"), "-o", str(tmp())]
    yield "stage1 vg: a file", ["stage1", "vg", PNG, "-o", str(tmp())]
    yield "stage1 vg: --max-instances -1", ["stage1", "vg", str(a["vg"]), "-o", str(tmp()), "--max-instances", "-1"]
    yield "stage1 vg: --max-triples 0", ["stage1", "vg", str(a["vg"]), "-o", str(tmp()), "--max-triples", "0"]
    yield "stage1 vg: --scope nope", ["stage1", "vg", str(a["vg"]), "-o", str(tmp()), "--scope", "nope"]
    yield "stage1 vg: -o /dev/null/x", ["stage1", "vg", str(a["vg"]), "-o", "/dev/null/x"]
    yield "stage1 vg: --images /etc", ["stage1", "vg", str(a["vg"]), "-o", str(tmp()), "--images", "/etc"]

    def vg_bad(name, content):
        def f():
            d = copy(a["vg"], tmp("vg"))
            write(d / name, content)
            return ["stage1", "vg", str(d), "-o", str(tmp())]
        return f
    yield "stage1 vg: scene_graphs.json truncated", vg_bad("scene_graphs.json", '[{"image_id": 1, ')
    yield "stage1 vg: scene_graphs.json not UTF-8", vg_bad("scene_graphs.json", b"[\xff]")
    yield "stage1 vg: scene_graphs.json {}", vg_bad("scene_graphs.json", "{}")
    yield "stage1 vg: scene_graphs.json [1]", vg_bad("scene_graphs.json", "[1]")
    yield "stage1 vg: image_data.json []", vg_bad("image_data.json", "[]")
    yield "stage1 kg-qa: missing graph", ["stage1", "kg-qa", str(w / "nope"), "-o", str(tmp())]
    yield "stage1 kg-qa: --max-answers 0", ["stage1", "kg-qa", G, "-o", str(tmp()), "--max-answers", "0"]
    yield "stage1 kg-qa: --max-triples -1", ["stage1", "kg-qa", G, "-o", str(tmp()), "--max-triples", "-1"]
    yield "stage1 kg-qa: --max-instances -1", ["stage1", "kg-qa", G, "-o", str(tmp()), "--max-instances", "-1"]
    yield "stage1 kg-qa: --seed -1", ["stage1", "kg-qa", G, "-o", str(tmp()), "--seed", "-1"]
    yield "stage1 kg-qa: -o an existing file", lambda: ["stage1", "kg-qa", G, "-o", str(write(tmp(".f"), "x"))]

    def kgqa_damaged():
        d = copy(a["graph"], tmp("g"))
        write(d / "graph.json", "[]")
        return ["stage1", "kg-qa", str(d), "-o", str(tmp())]
    yield "stage1 kg-qa: damaged graph", kgqa_damaged

    # --- the top level
    yield "top: unknown command", ["nope"]
    yield "top: unknown option", ["kg", "stats", G, "--nope"]
    yield "top: not UTF-8 command", [NONUTF8]
    yield "top: demo --set unknown", ["demo", "--set", "nope=1", "-o", str(tmp())]
    yield "top: demo --set rungs=[nope]", ["demo", "--set", "rungs=[nope]", "-o", str(tmp())]


# ------------------------------------------------------------------------------------------------ running
def _innermost_mrmkg(tb) -> str:
    where = ""
    for fs in traceback.extract_tb(tb):
        if "/mrmkg/" in fs.filename:
            where = f"{fs.filename.split('/src/')[-1]}:{fs.lineno}"
    return where


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def run_case(name: str, argv, timeout: int) -> dict:
    from mrmkg.cli import main

    rec: dict = {"case": name}
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()

    def alarm(signum, frame):
        raise Timeout(f"over {timeout} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if callable(argv):
                argv = argv()
            rec["argv"] = [_printable(x if len(x) <= 200 else f"{x[:100]}...({len(x)} characters)") for x in argv]
            rc = main(list(argv))
        rec["rc"] = rc
    except Timeout as e:
        rec.update(rc=None, outcome="timeout", message=str(e))
    except BaseException as e:  # noqa: BLE001  (MRMKG_DEBUG=1: whatever main re-raised)
        rec.update(rc=1, exception=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}",
                   where=_innermost_mrmkg(e.__traceback__))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    for k in ("message", "exception"):  # messages may carry the non-UTF-8 arguments back (surrogates)
        if k in rec:
            rec[k] = _printable(rec[k])
    text = err.getvalue().replace("\r", "\n")  # progress bars redraw with carriage returns
    errors = [ln for ln in text.splitlines() if ln.startswith("error")]
    rec.setdefault("message", _printable((errors or [ln for ln in text.splitlines() if ln.strip()] or [""])[0][:400]))
    if "outcome" not in rec:
        if "exception" in rec or "Traceback" in text:
            rec["outcome"] = "traceback"
        elif rec["rc"] == 2 and len(errors) == 1:
            rec["outcome"] = "clean"
        elif rec["rc"] == 2 and "Usage:" in text and any(ln.lstrip("│ ").startswith(("Error", "Invalid", "No such"))
                                                         for ln in text.splitlines()):
            rec["outcome"] = "usage"  # click's usage block: the usage line and the error, exit 2, no traceback
            rec["message"] = _printable(next(ln.strip("│ ") for ln in text.splitlines()
                                             if ln.lstrip("│ ").startswith(("Error", "Invalid", "No such")))[:400])
        elif rec["rc"] == 0:
            rec["outcome"] = "accepted"
        else:
            rec["outcome"] = "other"
    return rec


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE), help="folder for results.jsonl and summary.md")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per case")
    args = ap.parse_args(argv)
    os.environ["MRMKG_DEBUG"] = "1"
    import torch
    torch.set_num_threads(1)
    import warnings
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="mrmkg-hostile-"))
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            art = build_artifacts(work / "artifacts")
        print(f"artifacts built in {time.perf_counter() - t0:.1f} s", flush=True)
        results = []
        cwd = os.getcwd()
        (work / "cases").mkdir()
        os.chdir(work / "cases")  # relative outputs land in the scratch folder
        try:
            for name, argv in cases(art, work / "cases"):
                if args.only and args.only not in name:
                    continue
                rec = run_case(name, argv, args.timeout)
                results.append(rec)
                mark = {"clean": ".", "usage": "u", "accepted": "a", "traceback": "T", "timeout": "!", "other": "?"}[rec["outcome"]]
                print(mark, end="", flush=True)
        finally:
            os.chdir(cwd)
        print()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [r["case"] for r in results]
    assert len(names) == len(set(names)), "case names must be distinct"
    (out / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    lines = [f"# Hostile-input campaign: {len(results)} cases, {time.perf_counter() - t0:.0f} s", "",
             "Outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), "",
             "| outcome | case | rc | message / exception (where) |", "|---|---|---|---|"]
    order = {"traceback": 0, "timeout": 1, "other": 2, "accepted": 3, "usage": 4, "clean": 5}
    for r in sorted(results, key=lambda r: order[r["outcome"]]):
        what = r.get("exception", r.get("message", "")) + (f" ({r['where']})" if r.get("where") else "")
        lines.append(f"| {r['outcome']} | {r['case']} | {r['rc']} | {what.replace('|', '/')[:300]} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
