"""The stage contract's error (a failed item becomes a catalog row with this message) and the one
failure policy: which errors fail one item and which stop the whole run."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class StageError(RuntimeError):
    """A stage could not process one item; ``str(err)`` is a reason a person can act on.

    ``permanent`` tells the orchestrator whether a retry could help (a 404 will not; a reset
    connection may).
    """

    def __init__(self, stage: str, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.stage = stage
        self.permanent = permanent

    def __reduce__(self):
        # Keeps stage and permanent across pickling (Prefect results, process pools).
        return (type(self), (self.stage, self.args[0]), {"permanent": self.permanent})

    def __setstate__(self, state: dict) -> None:
        self.permanent = state["permanent"]

    def __str__(self) -> str:
        return f"{self.stage}: {self.args[0]}"


# ---------------------------------------------------------------------------------------------
# The failure policy every stage follows (curate, features, and the stages to come)

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})  # errnos of a disk that takes no writes


class RunError(RuntimeError):
    """An error that concerns the whole run, not one item (no weights, no disk, a refused lock):
    the run stops instead of recording every remaining item as failed. Classes that cannot
    subclass it (lower layers) set a class attribute ``whole_run = True`` instead."""

    whole_run = True


class DiskFull(StageError):
    """The disk (or quota) a stage writes to is full: every later item would fail the same way, so the
    run stops (``whole_run``) and says which disk, instead of recording items failed one by one."""

    whole_run = True

    def __init__(self, stage: str, message: str, *, permanent: bool = False) -> None:
        super().__init__(stage, message, permanent=permanent)  # not permanent: freeing space fixes it


def _usage(path: Path) -> str:
    """``"12.0 MB free of 20.0 MB"`` for the file system holding ``path`` (its nearest existing parent)."""
    for p in (path, *path.parents):
        try:
            u = shutil.disk_usage(p)
        except OSError:
            continue
        return f"{u.free / 1e6:.1f} MB free of {u.total / 1e6:.1f} MB"
    return "free space unknown"


def disk_full(stage: str, path: str | os.PathLike[str], detail: str = "no space left on device") -> DiskFull:
    """A :class:`DiskFull` naming the disk that holds ``path``, its free space and what to do."""
    where = Path(path).resolve().parent
    return DiskFull(stage, f"no room on the disk holding {where} ({detail}; {_usage(where)}) writing "
                           f"{Path(path).name}: free space there, then run again (nothing finished is redone)")


def low_on_space(path: str | os.PathLike[str], need_bytes: int) -> bool:
    """True when the file system holding ``path`` has less than ``need_bytes`` free (a write that failed
    with no errno, as libsndfile's "System error.", was most likely a full disk)."""
    for p in (Path(path), *Path(path).parents):
        try:
            return shutil.disk_usage(p).free < need_bytes
        except OSError:
            continue
    return False


def is_whole_run(err: BaseException) -> bool:
    """True for errors no other item would escape: interrupts, out of memory, a full or read-only
    disk, and errors marked ``whole_run`` (:class:`RunError`, ``StoreBusy``, missing weights, ...)."""
    if not isinstance(err, Exception) or isinstance(err, MemoryError):
        return True
    if isinstance(err, OSError) and err.errno in NO_ROOM:
        return True
    if type(err).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return True
    return bool(getattr(err, "whole_run", False))


def failure_reason(err: BaseException) -> str:
    """What a failed row says: a StageError's own text, else ``"<Type>: <message>"``."""
    if isinstance(err, StageError):
        return str(err)
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def item_failure(err: BaseException) -> str:
    """The policy in one call, for an ``except Exception`` around one item: re-raise ``err`` when
    it concerns the whole run, else return the readable reason to record on the item's row."""
    if is_whole_run(err):
        raise err
    return failure_reason(err)
