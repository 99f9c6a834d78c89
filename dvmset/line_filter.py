"""Records dropped by id from the line-per-record files of an export (JSONL, the release CSV) without
reading the rest: the file's bytes are searched for the ids (one C-speed scan per id) and only the lines
that contain one are parsed. A takedown removes a few clips from files that list every clip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from dvmset.io import atomic_write_bytes

FEW = 64  # more ids than this: every line is parsed (one scan per id would cost more)


def lines_containing(data: bytes, keys: Iterable[bytes]) -> list[tuple[int, int]]:
    """(start, end) of each line of ``data`` holding one of ``keys``, end just past its newline, in order."""
    spans = set()
    for key in keys:
        at = data.find(key)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            spans.add((start, end))
            at = data.find(key, end)
    return sorted(spans)


def _without(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    parts, last = [], 0
    for start, end in spans:
        parts.append(data[last:start])
        last = end
    parts.append(data[last:])
    return b"".join(parts)


def jsonl_without(path: Path, gone: set[str], id_of: Callable[[dict], str]) -> bool:
    """The JSONL file without the lines whose record ``id_of(record)`` names a gone clip; only lines holding a
    gone id (as JSON writes it) are parsed. Returns whether it changed (rewritten atomically)."""
    if not path.is_file() or not gone:
        return False
    data = path.read_bytes()
    if len(gone) > FEW:
        candidates, at = [], 0
        for line in data.splitlines(keepends=True):
            candidates.append((at, at + len(line)))
            at += len(line)
    else:  # the id as json.dumps writes it inside a string (escapes and all)
        candidates = lines_containing(data, [json.dumps(g)[1:-1].encode("ascii") for g in gone])
    drop = [(s, e) for s, e in candidates if data[s:e].strip() and id_of(json.loads(data[s:e])) in gone]
    if drop:
        atomic_write_bytes(path, _without(data, drop))
    return bool(drop)


def _plain(cid: str) -> bool:
    """Whether a CSV writer leaves the id as it is (no quotes, nothing doubled)."""
    return not any(ch in cid for ch in ',"\r\n') and cid == cid.strip()


def csv_without(path: Path, gone: set[str]) -> bool | None:
    """The CSV file (first column the clip id, as pandas writes it) without the records of the gone clips:
    only lines holding a gone id are looked at, and a record there is told from a quoted field that spans
    lines by the parity of the quotes before it. Returns whether it changed, or None where it cannot
    tell by lines (many ids, or an id the writer quotes): the caller rewrites the file by parsing it."""
    if not path.is_file() or not gone:
        return False
    if len(gone) > FEW or not all(_plain(g) for g in gone):
        return None
    data = path.read_bytes()
    drop: list[tuple[int, int]] = []
    quotes, counted_to = 0, 0
    for start, end in lines_containing(data, [g.encode("utf-8") for g in gone]):
        if drop and start < drop[-1][1]:
            continue  # inside the record just dropped
        quotes += data.count(b'"', counted_to, start)
        counted_to = start
        if quotes % 2:
            continue  # inside a quoted field of an earlier record
        if data[start:end].split(b",", 1)[0].decode("utf-8", "replace") not in gone:
            continue
        while data.count(b'"', start, end) % 2 and end < len(data):  # a quoted field runs on to the next line
            nxt = data.find(b"\n", end)
            end = len(data) if nxt < 0 else nxt + 1
        drop.append((start, end))
    if drop:
        atomic_write_bytes(path, _without(data, drop))
    return bool(drop)
