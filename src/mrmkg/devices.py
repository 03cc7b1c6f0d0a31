"""Where a model runs: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``, checked before anything loads.

``auto``: the frozen LLM is spread by accelerate's ``device_map="auto"`` over every visible GPU, then
the CPU (a model larger than one card); on a machine without a GPU that is the CPU, by the same path."""
from __future__ import annotations

import re
from typing import Optional

from mrmkg.errors import InputError


def check_device(value: Optional[str]) -> Optional[str]:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``, and CUDA only where a GPU is visible; InputError otherwise.
    Imports torch only when CUDA is asked for (the default ``cpu`` costs nothing)."""
    if value is None:
        return None
    m = re.fullmatch(r"cpu|auto|cuda(?::(\d+))?", value.strip())
    if m is None:
        raise InputError(f"--device {value!r}: expected cpu, cuda or cuda:N, or auto")
    value = value.strip()
    if value not in ("cpu", "auto"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {value!r}: no CUDA GPU is visible (use --device cpu)")
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            raise InputError(f"--device {value!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible "
                             f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return value
