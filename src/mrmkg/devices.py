"""Where a model runs: ``cpu``, ``cuda`` or ``cuda:N``, checked before anything loads."""
from __future__ import annotations

import re
from typing import Optional

from mrmkg.errors import InputError


def check_device(value: Optional[str]) -> Optional[str]:
    """``cpu``, ``cuda`` or ``cuda:N``, and CUDA only where a GPU is visible; InputError otherwise.
    Imports torch only when CUDA is asked for (the default ``cpu`` costs nothing)."""
    if value is None:
        return None
    m = re.fullmatch(r"cpu|cuda(?::(\d+))?", value.strip())
    if m is None:
        raise InputError(f"--device {value!r}: expected cpu, cuda or cuda:N")
    value = value.strip()
    if value != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {value!r}: no CUDA GPU is visible (use --device cpu)")
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            raise InputError(f"--device {value!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible "
                             f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return value
