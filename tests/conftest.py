"""Shared test setup: one torch thread per process (2-core machines thrash otherwise), a private
cache folder, the location of the real data (tests that need it skip when it is absent), and the
``weights`` marker: ``@pytest.mark.weights("minilm")`` skips a test, with the library's own message,
where the package that carries those weights is not installed (``make test`` always installs them;
a bare environment, such as a lent GPU machine, may not)."""
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

from mrmkg.errors import InputError  # noqa: E402
from mrmkg.paths import shared_data_dir  # noqa: E402

DATA = shared_data_dir()


def _weights_check(name: str):
    """The library's own lookup of the packaged weights ``name``; it raises InputError when they are absent."""
    if name == "minilm":
        from mrmkg.encoders.text import minilm_model_path
        return minilm_model_path
    if name == "efficientnet-lite0":
        from mrmkg.encoders.vision import efficientnet_weights_path
        return efficientnet_weights_path
    from mrmkg.encoders.llm import GGUF_LLMS, _find_gguf
    if name in GGUF_LLMS:
        return lambda: _find_gguf(name, GGUF_LLMS[name])
    raise ValueError(f"@pytest.mark.weights: unknown weights {name!r}")


def pytest_collection_modifyitems(config, items):
    missing: dict[str, str | None] = {}
    for item in items:
        for mark in item.iter_markers("weights"):
            for name in mark.args:
                if name not in missing:
                    try:
                        _weights_check(name)()
                        missing[name] = None
                    except InputError as e:
                        missing[name] = str(e)
                if missing[name]:
                    item.add_marker(pytest.mark.skip(reason=f"weights {name!r} not installed: {missing[name]}"))


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
