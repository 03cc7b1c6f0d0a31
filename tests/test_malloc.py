"""mrmkg.malloc: freed memory stays in the process, so repeated bursts stop faulting pages in."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mrmkg.malloc import tune_malloc

# 100 x 1 MiB malloc'ed, written and freed, ten times: untuned glibc trims the heap after each burst and
# the next burst faults every page in again. The bursts call libc directly: whether torch's own CPU
# allocator passes a given tensor through malloc varies by host, which made a torch-level version flaky.
BURSTS = """
import ctypes, ctypes.util, resource, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
if sys.argv[1] == "tuned":
    from mrmkg.malloc import tune_malloc
    assert tune_malloc()
def burst():
    blocks = [libc.malloc(1 << 20) for _ in range(100)]
    for b in blocks:
        libc.memset(b, 1, 1 << 20)
    for b in blocks:
        libc.free(b)
for _ in range(3):
    burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_TOUCHED = 10 * 100 * (1 << 20) // 4096  # ten bursts of 100 MiB in 4 KiB pages


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", BURSTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_tuned_malloc_stops_page_faults_of_repeated_bursts():
    untuned, tuned = _faults("plain"), _faults("tuned")
    assert tuned <= PAGES_TOUCHED // 100, (untuned, tuned)   # tuned: the heap keeps the pages (0 here)
    if untuned < PAGES_TOUCHED // 2:                          # glibc's defaults give them back: ~255,680 here
        pytest.skip(f"this host's malloc keeps freed pages without tuning ({untuned} faults), nothing to compare")


def test_tune_malloc_reports_whether_it_applied():
    assert tune_malloc() is sys.platform.startswith("linux")
