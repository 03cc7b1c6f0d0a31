"""Keep freed memory inside the process (glibc), so a training step does not fault its buffers in anew.

Every step allocates and frees the same large tensors: activations of ~1-2 MiB each, the entity
table's dense gradient (26 MiB on MARS). glibc returns such blocks to the OS (``mmap`` above a dynamic
threshold, heap trimming above 128 KiB free at its top), and the next step pays page faults to touch
them again: ~23,000 minor faults and ~47 ms of system time per MARS step on 2 cores (measured with
``getrusage``; 165 faults and ~10 ms with :func:`tune_malloc`). This is the role jemalloc or tcmalloc
play in PyTorch's CPU tuning guides, without an ``LD_PRELOAD``: ``mallopt`` applies to the running process.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, top_pad: int = 64 << 20) -> bool:
    """Serve blocks up to ``mmap_threshold`` bytes (glibc's maximum, 32 MiB) from the heap and keep up to
    ``trim_threshold`` free bytes at its top. Returns False (and changes nothing) where the C library
    has no ``mallopt`` (not glibc: macOS, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return all(mallopt(opt, value) == 1 for opt, value in
               ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold), (M_TOP_PAD, top_pad)))
