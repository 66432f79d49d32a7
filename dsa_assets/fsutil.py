"""Write-to-scratch-then-rename helpers: the output directory never holds a half-written product."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

PARTIAL_PREFIX = ".partial-"
RETIRED_PREFIX = ".retired-"


def scratch_root(scratch_dir: Path | None) -> Path:
    """Where scratch work goes: ``scratch_dir``, or the system temporary directory if None."""
    return Path(scratch_dir) if scratch_dir else Path(tempfile.gettempdir())


@contextmanager
def scratch_directory(scratch_dir: Path | None, prefix: str):
    """A fresh directory under :func:`scratch_root` of ``scratch_dir``, removed on exit."""
    root = scratch_root(scratch_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(src: Path, dest: Path) -> Path:
    """Move a finished product (file or directory) ``src`` to ``dest`` atomically.

    Across filesystems the product is first copied to a hidden ``.partial-*`` sibling of
    ``dest`` and renamed from there. An existing ``dest`` is replaced: it is renamed aside,
    the new product renamed in, then the old one deleted, so at every instant ``dest`` is
    either the complete old product or the complete new one (or, for a moment, absent).
    """
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = src
    if os.stat(src).st_dev != os.stat(dest.parent).st_dev:
        staged = dest.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}-{dest.name}"
        try:
            if src.is_dir():
                shutil.copytree(src, staged)
            else:
                shutil.copy2(src, staged)
        except BaseException:
            remove(staged)
            raise
    retired = None
    if dest.exists():
        retired = dest.parent / f"{RETIRED_PREFIX}{uuid.uuid4().hex}-{dest.name}"
        os.rename(dest, retired)
    os.rename(staged, dest)
    _fsync_dir(dest.parent)
    if retired is not None:
        remove(retired)
    if staged is not src:
        remove(src)
    return dest


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a small text file so that a reader sees the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def remove(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def sweep_partials(directory: Path) -> list[Path]:
    """Remove ``.partial-*`` and ``.retired-*`` leftovers of interrupted publishes (crash recovery)."""
    removed = []
    directory = Path(directory)
    if not directory.exists():
        return removed
    for p in directory.rglob("*"):
        if p.name.startswith((PARTIAL_PREFIX, RETIRED_PREFIX)):
            remove(p)
            removed.append(p)
    return removed


def sweep_scratch(scratch_dir: Path | None, *patterns: str) -> list[Path]:
    """Remove the scratch entries matching ``patterns`` (glob) that interrupted runs left."""
    if not scratch_dir or not Path(scratch_dir).exists():
        return []
    removed = [p for pattern in patterns for p in Path(scratch_dir).glob(pattern)]
    for p in removed:
        remove(p)
    return removed


def directory_size(path: Path) -> int:
    """Total size in bytes of a file or directory tree."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def free_bytes(path: Path) -> int:
    """Free space (bytes) on the filesystem that holds ``path`` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free
