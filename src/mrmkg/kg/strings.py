"""A list of strings kept as one UTF-8 byte array plus offsets, decoded one item at a time.

A graph of millions of entities would need millions of Python ``str`` objects (about 60 bytes each
plus the text, and seconds of JSON parsing) for names that retrieval never reads: A.6 works on
integer arrays only, and names are needed only for the handful of triples a caller shows.
:class:`StringTable` stores ``n`` strings as

* ``data``    uint8 ``[total bytes]``  the UTF-8 encodings, concatenated
* ``offsets`` int64 ``[n + 1]``        item ``i`` is ``data[offsets[i]:offsets[i + 1]]``
* ``order``   int64 ``[n]`` (optional) item indices sorted by their bytes, for :meth:`index` by binary search

and behaves as a read-only ``Sequence[str]`` (``len``, ``[i]``, slices, iteration, ``in``, ``index``).
The arrays may be memory maps (``MMKG.load`` of a graph saved with ``layout="mmap"``), so opening
one costs nothing and reading item ``i`` touches one or two pages.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Iterable

import numpy as np


class StringTable(Sequence):
    """Read-only sequence of strings over ``data`` / ``offsets`` (/ ``order``) arrays; see the module docstring."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, order: np.ndarray | None = None):
        self.data, self.offsets, self.order = data, offsets, order

    @classmethod
    def from_strings(cls, strings: Iterable[str], with_order: bool = False) -> "StringTable":
        """Encode ``strings`` (any iterable of ``str``) into in-memory arrays."""
        encoded = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), np.uint8).copy()
        order = None
        if with_order:
            order = np.array(sorted(range(len(encoded)), key=encoded.__getitem__), np.int64)
        return cls(data, offsets, order)

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def _bytes(self, i: int) -> bytes:
        return self.data[int(self.offsets[i]):int(self.offsets[i + 1])].tobytes()

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"string table index {i} out of range ({n} items)")
        return self._bytes(i).decode("utf-8")

    def __iter__(self):
        n, step = len(self), 65_536
        for s in range(0, n, step):  # one slice of the byte array per chunk, not one per item
            e = min(n, s + step)
            offs = np.asarray(self.offsets[s:e + 1])
            base = int(offs[0])
            block = self.data[base:int(offs[-1])].tobytes()
            rel = (offs - base).tolist()
            for a, b in zip(rel[:-1], rel[1:]):
                yield block[a:b].decode("utf-8")

    def find(self, value: str) -> int:
        """Index of ``value``, or -1. Binary search over ``order`` when present, else a scan of the bytes."""
        key = value.encode("utf-8")
        if self.order is not None:
            lo, hi = 0, len(self)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._bytes(int(self.order[mid])) < key:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < len(self) and self._bytes(int(self.order[lo])) == key:
                return int(self.order[lo])
            return -1
        for i, s in enumerate(self):
            if s == value:
                return i
        return -1

    def index(self, value, start: int = 0, stop: int | None = None) -> int:
        i = self.find(value) if isinstance(value, str) else -1
        if i < 0 or i < start or (stop is not None and i >= stop):
            raise ValueError(f"{value!r} is not in the string table")
        return i

    def __contains__(self, value) -> bool:
        return isinstance(value, str) and self.find(value) >= 0

    def __eq__(self, other) -> bool:
        if isinstance(other, (StringTable, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __add__(self, other) -> list[str]:
        return list(self) + list(other)

    def __radd__(self, other) -> list[str]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"StringTable({len(self)} strings, {int(self.data.shape[0])} bytes)"
