"""Crash safety: SIGKILL during ``kg build`` or ``scienceqa score --out`` leaves the previous output
intact, and the next run succeeds.

The command runs in a subprocess whose ``os.fsync`` is wrapped to announce itself (a marker file) and
then wait, so the kill lands at a known point: while the new graph folder's files are being written
(under a temporary name) or while the new metrics file is being written; or, with a slow encoder,
while the graph is being embedded. Waits are bounded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mrmkg.cli import main
from mrmkg.kg.retrieve import open_graph
from sqa_fixture import scienceqa_root
from test_cli_kg import FAKE, graph_src  # noqa: F401  (graph_src is a fixture)

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent

HARNESS = r'''
import os, sys, time, zlib
from pathlib import Path
sys.path[:0] = [{src!r}, {tests!r}]
marker, point, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
import test_cli_kg  # registers the test encoders
from mrmkg.encoders.registry import register_text_encoder

def pause():
    marker.write_text("here")
    time.sleep(120)

if point == "write":
    real = os.fsync
    def fsync(fd):
        real(fd)
        pause()
    os.fsync = fsync
elif point == "encode":
    class Slow(test_cli_kg.BowEncoder):
        name = "test-slow-bow"
        def encode(self, texts, batch_size=64, progress=False):
            pause()
    register_text_encoder("test-slow-bow", lambda arg: Slow())
from mrmkg.cli import main
sys.exit(main(argv))
'''


def kill_at(tmp_path: Path, point: str, argv: list[str], env: dict) -> None:
    """Run ``mrmkg argv`` in a subprocess, SIGKILL it once it reaches ``point`` (at most 60 s)."""
    script = tmp_path / "harness.py"
    script.write_text(HARNESS.format(src=str(SRC), tests=str(TESTS)))
    marker = tmp_path / f"marker-{point}"
    proc = subprocess.Popen([sys.executable, str(script), str(marker), point, *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the command ended ({proc.returncode}) before reaching {point}: {err.decode()[-2000:]}")
            assert time.monotonic() < deadline, f"the command did not reach {point} within 60 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("point", ["encode", "write"])
def test_sigkill_during_kg_build_keeps_the_previous_graph(graph_src, tmp_path, monkeypatch, capsys, point):
    src = graph_src
    monkeypatch.setenv("MRMKG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "built"
    assert main(["kg", "build", str(src), "--format", "tsv", "--out", str(out), *FAKE]) == 0
    before = snapshot(out)
    argv = ["kg", "build", str(src), "--format", "tsv", "--out", str(out), *FAKE]
    if point == "encode":
        argv[argv.index("test-bow")] = "test-slow-bow"
    env = {**os.environ, "MRMKG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    kill_at(tmp_path, point, argv, env)
    assert snapshot(out) == before  # the previous graph folder, byte for byte
    open_graph(out)  # and it still verifies against its checksums
    capsys.readouterr()
    assert main(["kg", "build", str(src), "--format", "tsv", "--out", str(out), *FAKE]) == 0
    kg, index = open_graph(out)
    assert kg.num_triples == 6 and index.num_triples == 6


def test_sigkill_during_scienceqa_score_out_keeps_the_previous_metrics(tmp_path, capsys):
    fix = scienceqa_root()
    out = tmp_path / "scored"
    m = out / "metrics.json"
    argv = ["scienceqa", "score", str(fix), str(fix / "predictions_test.jsonl"), "--out", str(out)]
    assert main(argv) == 0
    before = m.read_bytes()
    kill_at(tmp_path, "write", argv, {**os.environ, "OMP_NUM_THREADS": "1"})
    assert m.read_bytes() == before
    json.loads(m.read_text())
    capsys.readouterr()
    assert main(argv) == 0 and json.loads(m.read_text()) == json.loads(before)


@pytest.mark.parametrize("out", ["a-file", "/dev/null/m"])
def test_scienceqa_score_out_where_the_os_refuses(tmp_path, capsys, out):
    """Issue 25: `scienceqa score --out` where no folder can be (a file of that name, under /dev/null) -> exit 2,
    one line naming the user's path."""
    fix = scienceqa_root()
    target = out
    if out == "a-file":
        target = str(tmp_path / "a-file")
        (tmp_path / "a-file").write_text("not a folder")
    assert main(["scienceqa", "score", str(fix), str(fix / "predictions_test.jsonl"), "--out", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {target}: -o/--out ") and "Traceback" not in err
