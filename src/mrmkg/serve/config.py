"""The server's settings: limits on what a client may send, micro-batching and the per-request timeout."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from mrmkg.errors import InputError


@dataclass
class ServeConfig:
    max_batch: int = field(default=8, metadata={"help": "Most requests answered in one Pipeline.batch call (1 = no micro-batching)."})
    max_wait_ms: float = field(default=15.0, metadata={"help": (
        "How long the first request of a batch waits for others (ms). 15 lets 8 concurrent clients share a batch "
        "(6.1-7.4 requests a call, 1.71-2.23x batch size 1 in three runs); at 5 they split into two alternating "
        "batches of ~4 (1.86x); benchmarks/serve.py, docs/serve.md.")})
    max_queue: int = field(default=256, metadata={"help": "Requests waiting beyond this are refused with 503 (back-pressure)."})
    timeout_s: float = field(default=30.0, metadata={"help": "A request not answered within this many seconds gets 504."})
    max_body_bytes: int = field(default=10 * 2**20, metadata={"help": "Largest request body (bytes); larger gets 413."})
    max_image_pixels: int = field(default=20_000_000, metadata={"help": "Largest picture (width x height), checked from its header before decoding."})
    max_question_chars: int = field(default=1000, metadata={"help": "Longest question or context (characters)."})
    max_top_k: int = field(default=100, metadata={"help": "Largest top_k a client may ask for."})
    max_choices: int = field(default=26, metadata={"help": "Most multiple-choice options."})

    def __post_init__(self):
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_image_pixels", "max_question_chars", "max_top_k",
                     "max_choices"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", path=f"--{name.replace('_', '-')}")
        # nan compares false to everything and inf never times out: both refused by name
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise InputError(f"must be a finite number >= 0, got {self.max_wait_ms}", path="--max-wait-ms")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise InputError(f"must be a finite number > 0, got {self.timeout_s}", path="--timeout")
