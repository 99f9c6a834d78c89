"""Atomic file writes: a file is either absent or complete, never half-written."""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temp name keeps ``dest``'s suffix so tools that pick a format by extension (ffmpeg) work.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread, for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def partial_paths(directory: str | os.PathLike[str], stem_glob: str = "*") -> list[Path]:
    """The temp files :func:`atomic_path` left in ``directory`` for stems matching ``stem_glob``.

    A process killed inside an ``atomic_path`` block cannot run its cleanup, so its temp file stays.
    Whoever owns those stems again (the re-run) removes them with :func:`remove_partials`.
    """
    return [p for p in matching(directory, f".{stem_glob}.*.part*") if p.is_file()]


def matching(directory: str | os.PathLike[str], pattern: str) -> list[Path]:
    """The paths in ``directory`` whose names match ``pattern`` (``fnmatch``, as ``Path.glob`` of one level),
    sorted; [] when it is not a folder. The folder is read lazily: Python 3.11's ``glob`` lists every entry
    first, 80 MB for an export's audio folder of 180 K clips (two files each)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    with os.scandir(directory) as it:
        return sorted(directory / e.name for e in it if fnmatch.fnmatchcase(e.name, pattern))


def remove_partials(directory: str | os.PathLike[str], stem_glob: str = "*") -> list[Path]:
    """Delete the temp files a killed writer left (see :func:`partial_paths`); returns what it removed."""
    removed = partial_paths(directory, stem_glob)
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Flush every written file of the file system holding ``path`` to disk in one call (Linux ``syncfs``;
    elsewhere ``os.sync``)."""
    import ctypes

    fd = os.open(path, os.O_RDONLY)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def write_texts_then_sync(items: Iterator[tuple[Path, str]] | list[tuple[Path, str]], directory: Path) -> int:
    """Many small files under ``directory``, each renamed into place whole (never half-written to a reader),
    and ONE sync of the file system at the end instead of an fsync per file; returns how many."""
    n = 0
    for dest, text in items:
        tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.part{dest.suffix}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, dest)
        n += 1
    sync_filesystem(directory)
    return n


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if absent) for the block.

    Each call opens its own file description, so the lock excludes other threads of this process
    as well as other processes; the kernel drops it when a holder dies, so a killed run never
    leaves a stale lock. ``blocking=False`` raises ``BlockingIOError`` at once if it is held.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield
