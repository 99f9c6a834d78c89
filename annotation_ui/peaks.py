"""Waveform peaks for the review page: read from the file curation stored beside each clip.

The server decodes nothing itself. A clip made before curation stored peaks gets them computed
once, on first request, by the function the command layer injects (``ComputePeaks``), and stored
where curation would have put them; every later request reads the file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from dvmset.peaks import STORED_PEAKS, downsample_peaks, read_peaks, write_peaks

log = logging.getLogger(__name__)

# clip media file -> [N] peaks in 0..1 (N = STORED_PEAKS); raises RuntimeError/ValueError/OSError
# for a file it cannot read (pipeline's StageError is a RuntimeError).
ComputePeaks = Callable[[Path], np.ndarray]
MAX_PEAKS = STORED_PEAKS


class PeaksUnavailable(Exception):
    """A clip has no stored peaks and none can be computed; the message says why."""


class _KeyLocks:
    """One lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # key -> [lock, holders and waiters]

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]


def _read(path: Path) -> np.ndarray | None:
    """[N] stored peaks, or None when there is no usable file (absent, or not a peaks file)."""
    try:
        return read_peaks(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, EOFError, OSError) as err:  # a damaged or foreign file: compute it anew
        log.warning("ignoring unreadable peaks file %s: %s", path, err)
        return None


class PeaksStore:
    """Serves stored peaks; fills in a missing file with ``compute`` (at most once at a time per clip)."""

    def __init__(self, compute: ComputePeaks | None = None) -> None:
        self.compute = compute
        self.computed = 0  # files this store has written (for tests and the log)
        self._locks = _KeyLocks()

    def stored(self, peaks_path: Path, media_path: Path) -> np.ndarray:
        """The clip's stored peaks [N] float32, computed and stored first if the file is missing."""
        found = _read(peaks_path)
        if found is not None:
            return found
        if self.compute is None:
            raise PeaksUnavailable(f"{media_path.name}: no stored waveform peaks ({peaks_path.name}); "
                                   "curation writes them, or serve with `vidmusician review`, which computes them")
        with self._locks.hold(str(peaks_path)):
            found = _read(peaks_path)  # another request may have stored it while this one waited
            if found is not None:
                return found
            return self._compute_and_store(self.compute, peaks_path, media_path)

    def peaks(self, peaks_path: Path, media_path: Path, n: int) -> np.ndarray:
        """[min(n, N)] peaks: the max over equal slices of the N stored ones (all N if fewer are stored)."""
        if n < 1:
            raise ValueError(f"n={n}: ask for at least one peak")
        full = self.stored(peaks_path, media_path)  # [N]
        return downsample_peaks(full, min(n, full.size))

    def _compute_and_store(self, compute: ComputePeaks, peaks_path: Path, media_path: Path) -> np.ndarray:
        try:
            peaks = np.asarray(compute(media_path), dtype=np.float32)  # [N]
        except (RuntimeError, ValueError, OSError) as err:
            raise PeaksUnavailable(f"{media_path.name}: no waveform ({err})") from err
        if peaks.ndim != 1 or peaks.size == 0:
            raise PeaksUnavailable(f"{media_path.name}: the peaks function returned shape {peaks.shape}, want [N]")
        try:
            write_peaks(peaks_path, peaks)
            self.computed += 1
            log.info("stored waveform peaks for %s (made before curation stored them)", media_path.name)
        except OSError as err:  # a read-only data root: serve them anyway, compute again next time
            log.warning("cannot store waveform peaks %s: %s", peaks_path, err)
        return peaks.astype(np.float16).astype(np.float32)  # what reading the stored file gives


class PeaksWarmer:
    """Fills in the missing peaks files of the clips an annotator will most likely open next, in one
    background thread while they watch the current clip, so that clips made before curation stored
    peaks are not decoded while the annotator waits (stored files are read in milliseconds; for
    those the warmer only checks that the file is there).

    ``upcoming(clip_id, annotator_id)`` returns (peaks file, media file) pairs; at most one job
    waits, so requests never queue up work. Errors are logged and dropped: warming is an
    optimisation, never a failure.
    """

    def __init__(self, upcoming: Callable[[str, int], list[tuple[Path, Path]]], store: PeaksStore) -> None:
        self._upcoming = upcoming
        self._store = store
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="peaks-warmer")
        self._pending: concurrent.futures.Future | None = None
        self._lock = threading.Lock()

    def after(self, clip_id: str, annotator_id: int) -> concurrent.futures.Future | None:
        """Fill in the peaks files of the clips expected after ``clip_id`` for this annotator."""
        with self._lock:
            if self._pending is not None and not self._pending.running() and not self._pending.done():
                return None  # one job already waits; it will cover the queue's head as well
            try:
                self._pending = self._pool.submit(self._warm, clip_id, annotator_id)
            except RuntimeError:  # shut down (the server is stopping)
                return None
            return self._pending

    def _warm(self, clip_id: str, annotator_id: int) -> int:
        """Returns how many files it computed."""
        computed = 0
        try:
            for peaks_path, media_path in self._upcoming(clip_id, annotator_id):
                if not peaks_path.is_file():
                    self._store.stored(peaks_path, media_path)
                    computed += 1
        except Exception as err:  # noqa: BLE001 - an optimisation must not fail the server
            log.warning("filling in waveform peaks after %s stopped: %s", clip_id, err)
        return computed

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
