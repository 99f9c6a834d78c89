"""HTTP byte ranges for the review page's player: parse a ``Range`` header, stream a file slice."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# An open-ended range ("bytes=0-", what browsers send for media) gets at most this much; the
# player asks for the rest as it needs it, so seeking never waits for a whole-file download.
OPEN_RANGE_CAP = 2 * 1024 * 1024

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
    """``length`` bytes of ``path`` from ``start``, in chunks (fewer if the file is shorter)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            yield data
