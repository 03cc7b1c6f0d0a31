"""mrmkg.malloc: freed memory stays in the process, so repeated bursts stop faulting pages in."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mrmkg.malloc import tune_malloc

# 100 x 1 MiB written and freed, ten times: untuned glibc trims the heap after each burst
BURSTS = """
import resource, sys, torch
if sys.argv[1] == "tuned":
    from mrmkg.malloc import tune_malloc
    assert tune_malloc()
def burst():
    xs = [torch.ones(1 << 18) for _ in range(100)]
    del xs
for _ in range(3):
    burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", BURSTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_tuned_malloc_stops_page_faults_of_repeated_bursts():
    untuned, tuned = _faults("plain"), _faults("tuned")
    assert untuned > 0 and tuned * 10 <= untuned, (untuned, tuned)


def test_tune_malloc_reports_whether_it_applied():
    assert tune_malloc() is sys.platform.startswith("linux")
