"""Shared test setup: one torch thread per process (2-core machines thrash otherwise), a private
cache folder, and the location of the real data (tests that need it skip when it is absent)."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from mrmkg.paths import shared_data_dir  # noqa: E402

DATA = shared_data_dir()


@pytest.fixture(scope="session")
def data_dir():
    """The real data folder (../shared/data); skips the test when it is absent."""
    if DATA is None:
        pytest.skip("real data not found: ../shared/data (or $MRMKG_DATA) is absent on this machine")
    return DATA


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    # Model conversions (SmolLM2 GGUF -> HF folder) are expensive and safe to share, so the
    # user's cache is kept unless MRMKG_TEST_CACHE asks for a private one.
    if os.environ.get("MRMKG_TEST_CACHE") == "private":
        os.environ["MRMKG_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
