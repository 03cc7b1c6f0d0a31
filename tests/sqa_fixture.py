"""The hand-written 30-problem ScienceQA fixture, built once per test session into a temporary
folder by ``tests/fixtures/scienceqa/make_fixture.py`` (official layout and file names, which is
why the files are generated rather than committed)."""
from __future__ import annotations

import atexit
import functools
import importlib.util
import shutil
import tempfile
from pathlib import Path

GENERATOR = Path(__file__).parent / "fixtures" / "scienceqa" / "make_fixture.py"


@functools.cache
def scienceqa_root() -> Path:
    spec = importlib.util.spec_from_file_location("make_scienceqa_fixture", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tmp = Path(tempfile.mkdtemp(prefix="mrmkg-sqa-fixture-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return module.write(tmp / "scienceqa")
