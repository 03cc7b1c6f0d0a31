"""Atomic writes and the JSON Lines reader shared by every loader."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mrmkg.errors import InputError
from mrmkg.fileio import atomic_dir, atomic_write_text, read_jsonl


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as d:
            (d / "a.txt").write_text("two")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_atomic_write_text_leaves_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "x.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_results_get_plain_open_and_mkdir_permissions(tmp_path, umask):
    # the temporaries are owner-only (mkstemp 0o600, mkdtemp 0o700); the results must not inherit that
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "x.json", "{}")
        with atomic_dir(tmp_path / "out") as d:
            (d / "a.txt").write_text("one")
        (tmp_path / "plain.txt").write_text("{}")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "x.json") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "out") == 0o777 & ~umask


def test_read_jsonl_yields_line_numbers_and_skips_blanks(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1}\n{"a": \n', "r.jsonl:2: not valid JSON"),
    (b'{"a": 1}\n[1, 2]\n', "r.jsonl:2: expected one JSON object per line, found list"),
    (b'{"a": "\xff"}\n', "r.jsonl:1: bytes that are not UTF-8"),
])
def test_read_jsonl_errors_name_file_and_line(tmp_path, content, message):
    p = tmp_path / "r.jsonl"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        list(read_jsonl(p))
    assert message in str(e.value)


def test_read_jsonl_missing_file_names_what(tmp_path):
    with pytest.raises(InputError, match="MARS split file not found"):
        list(read_jsonl(tmp_path / "nope.json", "MARS split file"))


def test_places_the_os_refuses_are_input_errors_naming_the_users_path(tmp_path):
    """Issue 25: `kg build -o /dev/null/x`, `-o /proc/x`, `scienceqa score --out <folder>` or `/dev/null/m.json`."""
    f = tmp_path / "file"
    f.write_text("x")
    for target in (f / "x", Path("/proc/mrmkg-test-x")):
        with pytest.raises(InputError, match="cannot write here") as e:
            with atomic_dir(target):
                pass
        assert e.value.path == str(target) and ".tmp" not in str(e.value)
    with pytest.raises(InputError, match=r"cannot write here \(it is a folder\)"):
        atomic_write_text(tmp_path, "{}")
    with pytest.raises(InputError, match=r"cannot write here \(a parent is not a folder\)") as e:
        atomic_write_text(f / "m.json", "{}")
    assert e.value.path == str(f / "m.json")
    with pytest.raises(InputError, match="cannot write here"):
        with atomic_dir(f):
            pass
    assert f.read_text() == "x"
