"""Crash safety of training checkpoints (issue 25, item 7): SIGKILL while a checkpoint is being written
leaves the previous checkpoint intact (it still verifies against its manifest), and `train --resume`
continues from it to the same result as a run that was never interrupted.

The run is a `python -m mrmkg train` subprocess (the toy task of tests/engine_toy.py) whose
``os.fsync`` is wrapped: once a complete checkpoint exists, the ``nth`` fsync inside the next
checkpoint's temporary folder announces itself (a marker file) and waits, so the kill lands at a
known point of that write: its last file (``checksums.json``, after the weights, optimizer, scheduler,
RNG states and trainer state, just before the rename).
Waits are bounded; same style as tests/test_kg_crash.py.
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
import torch
import yaml

from engine_toy import cli_env, final_weights
from mrmkg.cli import main
from mrmkg.engine import latest_checkpoint, load_train_config, train
from mrmkg.engine.checkpoint import verify_checkpoint

HARNESS = r'''
import os, sys, time
from pathlib import Path
marker, run, nth, argv = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
from mrmkg.engine import latest_checkpoint
real, seen = os.fsync, [0]

def fsync(fd):
    real(fd)
    ck = run / "checkpoints"
    writing = ck.is_dir() and any(p.name.startswith(".step-") for p in ck.iterdir())
    if writing and latest_checkpoint(run) is not None:
        seen[0] += 1
        if seen[0] == nth:
            marker.write_text(os.readlink(f"/proc/self/fd/{fd}"))
            time.sleep(120)
os.fsync = fsync
from mrmkg.cli import main
sys.exit(main(argv))
'''

SETS = ["--set", "checkpoint_every=4", "--set", "keep_checkpoints=1", "--set", "epochs=2"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# the last write before the rename (every other file of the new checkpoint is in); nth=1 lands on its
# first mrmkg file (trainer_state.json) and passes too, but each case costs a subprocess (~20 s on 2 cores)
@pytest.mark.parametrize("nth,file", [(3, "checksums.json")])
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, capsys, nth, file):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"task": "toy", "batch_size": 8, "precision": "fp32", "progress": False,
                                   "optim": {"lr": 0.05, "warmup_steps": 2}}))
    run = tmp_path / "killed"
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    marker = tmp_path / "marker"
    argv = ["train", "--config", str(cfg), *SETS, "-o", str(run)]
    proc = subprocess.Popen([sys.executable, str(script), str(marker), str(run), str(nth), *argv], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended ({proc.returncode}) before the kill point: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the run did not reach the kill point within 120 s"
            time.sleep(0.02)
        previous = latest_checkpoint(run)
        before = _snapshot(previous)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()

    # the kill landed inside the next checkpoint's write, on the file asked for
    assert Path(marker.read_text()).name.startswith(f".{file}.") and previous.name == "step-00000004"
    assert latest_checkpoint(run) == previous and _snapshot(previous) == before  # byte for byte
    assert verify_checkpoint(previous)["global_step"] == 4                       # and it verifies
    assert not (run / "final").exists()

    # the next run (in-process: the toy task imports from tests/) ignores the killed write's leftover folder
    assert main([*argv, "--resume"]) == 0
    assert f"resumed from {previous} at step 4" in capsys.readouterr().out
    ref = tmp_path / "ref"
    train(load_train_config(cfg, [s for s in SETS if s != "--set"], output_dir=str(ref)))
    wr, wk = final_weights(ref), final_weights(run)
    assert wr.keys() == wk.keys() and all(torch.equal(wr[k], wk[k]) for k in wr)
    assert json.loads((ref / "metrics.json").read_text()) == json.loads((run / "metrics.json").read_text())
