"""The standard-format fixtures (tests/fixtures/kg_formats/) copied into a test's folder.

The name files that share their names with MarKG's real data (entity2text.txt, relation2text.txt, ...)
are written here at test time instead of being committed: the repository carries no file named like
the data in ../shared/data.
"""
from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "kg_formats"

_NAMES = "/m/05qtj\tParis\n/m/0f8l9c\tFrance\n/m/0156q\tBerlin\n/m/0345h\tGermany\n/m/02j9z\tEurope\n"
NAME_FILES = {
    "mkgformer/entity2text.txt": _NAMES,
    "mkgformer/entity2textlong.txt": "/m/05qtj\tParis is the capital of France.\n"
                                     "/m/0f8l9c\tFrance is a country in western Europe.\n",
    "mkgformer/relation2text.txt": "/location/location/containedby\tlocation location contained by\n"
                                   "/location/location/adjoin_s./location/adjoining_relationship/adjoins"
                                   "\tlocation adjoins\n",
    "openke/entity2text.txt": _NAMES,
}


def copy_formats(dest: Path) -> Path:
    """``dest`` = the fixtures plus their name files (no pictures: each test draws its own)."""
    shutil.copytree(FIXTURES, dest)
    for rel, text in NAME_FILES.items():
        (dest / rel).write_text(text, encoding="utf-8")
    return dest
