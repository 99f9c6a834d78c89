"""HTTP byte ranges for the review page's player: parse a ``Range`` header, stream a file slice."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# An open-ended range ("bytes=0-", what browsers send for media) gets at most this much; the
# player asks for the rest as it needs it, so seeking never waits for a whole-file download.
OPEN_RANGE_CAP = 2 * 1024 * 1024

# One range-spec of RFC 9110 §14.1.1; 18 digits (an exabyte) is more than any file here, and bounds int().
_SPEC = re.compile(r"([0-9]{1,18})?-([0-9]{1,18})?")  # ASCII digits only (\d takes any script)
MAX_RANGE_HEADER = 1024


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


def parse_range(header: str, size: int, open_cap: int = OPEN_RANGE_CAP) -> ByteRange | None:
    """Parse a ``Range`` header (RFC 9110 §14.2) for a file of ``size`` bytes: the first range of a
    ``bytes`` set, open-ended ranges capped; None for another unit (the caller serves the whole file);
    RangeNotSatisfiable for a malformed, absurd or unsatisfiable one (416)."""
    if len(header) > MAX_RANGE_HEADER:
        raise RangeNotSatisfiable(f"Range header of {len(header)} characters")
    unit, eq, ranges = header.partition("=")
    if not eq or not unit.strip() or not unit.strip().replace("-", "").isalnum():
        raise RangeNotSatisfiable(f"malformed Range header {header[:64]!r}: use bytes=START-END")
    if unit.strip().lower() != "bytes":
        return None  # an unknown unit is ignored (§14.2)
    specs = [p.strip() for p in ranges.split(",") if p.strip()]
    m = _SPEC.fullmatch(specs[0]) if specs else None
    if m is None or (m.group(1) is None and m.group(2) is None):
        raise RangeNotSatisfiable(f"malformed Range header {header[:64]!r}: use bytes=START-END")
    if size <= 0:
        raise RangeNotSatisfiable("empty file")
    first, last = m.group(1), m.group(2)
    if first is None:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable("zero-length suffix range")
        return ByteRange(max(0, size - n), size - 1, size)
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, past the end of a {size}-byte file")
    if last is not None and int(last) < start:
        raise RangeNotSatisfiable(f"range end {last} before start {start}")
    end = min(int(last), size - 1) if last is not None else min(size - 1, start + open_cap - 1)
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
