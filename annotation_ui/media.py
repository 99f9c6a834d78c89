"""Media for the review page: HTTP byte ranges and waveform peaks (pure cores + an ffmpeg wrapper)."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# An open-ended range ("bytes=0-", what browsers send for media) gets at most this much; the
# player asks for the rest as it needs it, so seeking never waits for a whole-file download.
OPEN_RANGE_CAP = 2 * 1024 * 1024
PEAKS_RATE_HZ = 4000
MAX_PEAKS = 4000

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    pass


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte range [start, end] of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < self.size:
            raise RangeNotSatisfiable(f"bytes {self.start}-{self.end} outside a {self.size}-byte file")

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str, size: int, open_cap: int = OPEN_RANGE_CAP) -> ByteRange:
    """Parse one ``Range: bytes=...`` spec (the first of several); open-ended ranges are capped."""
    spec = header.strip().split(",")[0].strip()
    m = _RANGE.fullmatch(spec)
    if m is None or (m.group(1) == "" and m.group(2) == ""):
        raise RangeNotSatisfiable(f"unsupported Range header {header[:64]!r}: use bytes=START-END")
    if size <= 0:
        raise RangeNotSatisfiable("empty file")
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable("zero-length suffix range")
        return ByteRange(max(0, size - n), size - 1, size)
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, past the end of a {size}-byte file")
    end = min(int(last), size - 1) if last else min(size - 1, start + open_cap - 1)
    if end < start:
        raise RangeNotSatisfiable(f"range end {end} before start {start}")
    return ByteRange(start, end, size)


def iter_file(path: Path, start: int, length: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            yield data


def peaks_from_samples(samples: np.ndarray, n: int) -> np.ndarray:
    """samples [T] (any scale) → [n] peak |amplitude| per equal slice, normalised to the loudest (0..1)."""
    if n < 1:
        raise ValueError(f"need at least one peak, got n={n}")
    x = np.abs(np.asarray(samples, dtype=np.float32).reshape(-1))  # [T]
    if x.size == 0:
        return np.zeros(n, dtype=np.float32)
    edges = np.linspace(0, x.size, n + 1).astype(np.int64)  # [n+1]
    out = np.zeros(n, dtype=np.float32)
    for i in range(n):
        lo, hi = edges[i], max(edges[i + 1], edges[i] + 1)
        seg = x[lo:min(hi, x.size)]
        out[i] = seg.max() if seg.size else 0.0
    top = float(out.max())
    return out / top if top > 0 else out


def decode_mono(path: Path, rate: int = PEAKS_RATE_HZ) -> np.ndarray:
    """The file's audio as mono int16 samples at ``rate`` Hz [T]; empty when it has no audio."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
            "-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"]
    proc = subprocess.run(args, capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        log.warning("no audio decoded from %s: %s", path.name, proc.stderr.decode(errors="replace")[-300:])
        return np.zeros(0, dtype=np.int16)
    return np.frombuffer(proc.stdout, dtype=np.int16)


@functools.lru_cache(maxsize=512)
def _cached_peaks(path: str, mtime_ns: int, size: int, n: int) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in peaks_from_samples(decode_mono(Path(path)), n))


def waveform_peaks(path: Path, n: int) -> list[float]:
    """Peaks for a clip's waveform, decoded once per (file version, n) and kept in memory."""
    if not 1 <= n <= MAX_PEAKS:
        raise ValueError(f"n={n}: ask for 1..{MAX_PEAKS} peaks")
    st = path.stat()
    return list(_cached_peaks(str(path), st.st_mtime_ns, st.st_size, n))


class PeaksWarmer:
    """Computes the waveform peaks of the clips an annotator will most likely open next, in one
    background thread, while they watch the current clip: the next clip's waveform is then served
    from memory instead of after a decode (~0.3 s for 60 s of audio).

    ``upcoming(clip_id, annotator_id)`` returns the files to warm; at most one job waits, so requests
    never queue up work. Errors are logged and dropped: warming is an optimisation, never a failure.
    """

    def __init__(self, upcoming: Callable[[str, int], list[Path]]) -> None:
        self._upcoming = upcoming
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="peaks-warmer")
        self._pending: concurrent.futures.Future | None = None
        self._lock = threading.Lock()

    def after(self, clip_id: str, annotator_id: int, n: int) -> concurrent.futures.Future | None:
        """Warm the peaks (with ``n`` buckets) of the clips expected after ``clip_id`` for this annotator."""
        with self._lock:
            if self._pending is not None and not self._pending.running() and not self._pending.done():
                return None  # one job already waits; it will cover the queue's head as well
            try:
                self._pending = self._pool.submit(self._warm, clip_id, annotator_id, n)
            except RuntimeError:  # shut down (the server is stopping)
                return None
            return self._pending

    def _warm(self, clip_id: str, annotator_id: int, n: int) -> int:
        warmed = 0
        try:
            for path in self._upcoming(clip_id, annotator_id):
                waveform_peaks(path, n)
                warmed += 1
        except Exception as err:  # noqa: BLE001 - an optimisation must not fail the server
            log.warning("warming peaks after %s stopped: %s", clip_id, err)
        return warmed

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
