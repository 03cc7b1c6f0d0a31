"""Atomic file and directory writes, and content hashing.

Nothing half-written is ever left behind: files are written to a temporary sibling and renamed
into place; directories are built under a temporary name and renamed when complete. The results get
the permissions a plain ``open``/``mkdir`` would give them (0o666 / 0o777 less the umask), not the
owner-only 0o600 / 0o700 of the temporary names, so a shared run folder stays readable by the group.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cannot_write(path: Path, e: OSError):
    """An OS refusal to write ``path`` as an InputError naming the user's path (never a temporary name)."""
    from mrmkg.errors import InputError

    why = e.strerror or type(e).__name__
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        why = "a parent is not a folder"
    elif isinstance(e, IsADirectoryError):
        why = "it is a folder"
    return InputError(f"cannot write here ({why})", path=path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling, fsync and rename. A path the OS refuses
    (a parent that is a file, a folder in the way, no permission, no space) is an InputError naming ``path``."""
    path = Path(path)
    if path.is_dir():
        raise _cannot_write(path, IsADirectoryError())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _cannot_write(path, e) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block succeeds.

    On any exception the temporary directory is removed and ``path`` is left untouched. A place the OS
    refuses (a parent that is a file, ``/proc``, no permission) is an InputError naming ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise _cannot_write(path, NotADirectoryError())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        tmp.chmod(0o777 & ~_umask())
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(path)
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        try:
            os.replace(path, old)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _cannot_write(path, e) from None
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        try:
            os.replace(tmp, path)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _cannot_write(path, e) from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_texts(texts, salt: str = "") -> str:
    """Order-sensitive hash of a list of strings (used as an embedding-cache key)."""
    h = hashlib.sha256(salt.encode("utf-8"))
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; InputError naming the file for a missing file or, with its line and
    column, for bytes that are not UTF-8."""
    from mrmkg.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found", path=p)
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputError(f"bytes that are not UTF-8 at column {col}", path=p, line=line) from None


def parse_json(text: str, path: str | Path | None = None, line: int | None = None, expected: str = "JSON"):
    """``json.loads(text)`` where every failure is an :class:`~mrmkg.errors.InputError` naming ``path`` and
    the line: ``line`` when ``text`` is one line of a file (JSON Lines), else the line of the error in
    ``text``. Invalid JSON and nesting too deep for the parser (``[[[[...``, a RecursionError) are both
    refused; ``expected`` (e.g. ``"a JSON object of model config fields"``) completes the message."""
    from mrmkg.errors import InputError

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON at column {e.colno} ({e.msg}); expected {expected}", path=path,
                         line=e.lineno if line is None else line) from None
    except RecursionError:
        raise InputError(f"JSON nested too deeply to read; expected {expected}", path=path, line=line) from None


def read_json(path: str | Path, what: str = "JSON file", expected: str = "JSON"):
    """The parsed content of a UTF-8 JSON file; a missing file, bytes that are not UTF-8, invalid or too
    deeply nested JSON are InputErrors naming the file and line (:func:`read_text`, :func:`parse_json`)."""
    return parse_json(read_text(path, what), path, expected=expected)


def read_jsonl(path: str | Path, what: str = "JSON Lines file", expected: str = "one JSON object per line"):
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file.

    Every problem raises :class:`mrmkg.errors.InputError` naming the file (and line): a missing
    file (``"<what> not found"``), bytes that are not UTF-8, invalid JSON, or a line that is not a
    JSON object. ``expected`` completes the messages so users learn the format.
    """
    from mrmkg.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found", path=p)
    with open(p, "rb") as f:
        for ln, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"bytes that are not UTF-8 at column {e.start + 1}", path=p, line=ln) from None
            if not line.strip():
                continue
            obj = parse_json(line, p, ln, expected)
            if not isinstance(obj, dict):
                raise InputError(f"expected {expected}, found {type(obj).__name__}", path=p, line=ln)
            yield ln, obj


def contained_path(path: str | Path, root: str | Path, *, allow_outside: bool = False, what: str = "image path",
                   source: str | Path | None = None, line: int | None = None) -> Path:
    """``path`` (relative paths are relative to ``root``) resolved, symlinks followed, refused unless it lies
    inside ``root``: a path read from a data file must not reach files elsewhere on the disk.

    Absolute paths, ``..`` escapes and symlinks leading out are refused with an
    :class:`~mrmkg.errors.InputError` naming ``source:line``, unless ``allow_outside`` (the
    ``--allow-outside-paths`` option). The check runs before any existence check and its message is the
    same whether or not the outside file exists, so it cannot be used to probe the disk.
    """
    from mrmkg.errors import InputError

    if "\0" in str(path):
        raise InputError(f"{what} {str(path)!r} contains a NUL byte", path=source, line=line)
    p = Path(path)
    root_resolved = Path(root).resolve()
    full = p if p.is_absolute() else Path(root) / p
    try:
        resolved = full.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        resolved = None
    if allow_outside and resolved is not None:
        return resolved
    if resolved is None or not resolved.is_relative_to(root_resolved):
        kind = "an absolute path" if p.is_absolute() else "a path leading out of its folder"
        raise InputError(f"{what} {str(path)!r} is {kind} (it must stay inside {root}; absolute paths, '..' and "
                         "symlinks pointing elsewhere are refused: use --allow-outside-paths to accept them)",
                         path=source, line=line)
    return resolved
