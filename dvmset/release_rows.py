"""A release's rows checked before anything is fetched: a release file is untrusted input (anyone can edit
one), so each row is checked field by field and each bad row is set aside with the field and why; the good
rows come back with their values as numbers and text, ready for the rebuild (flows/curation/rebuild.py).

Ids follow the one rule of :func:`dvmset.layout.id_problem`; URLs must be http(s) with a host (whether
the host is public is the rebuild's check: it needs the network).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from dvmset.constants import NO_LOUDNESS_CHANGE
from dvmset.layout import id_problem
from dvmset.music_groups import decode_fingerprint
from dvmset.records import SPLITS
from dvmset.spans import MAX_SPANS, check_spans

MAX_CLIP_S = 600.0  # a release window longer than ten minutes is not a clip (the paper's are 60 s)
MAX_SOURCE_S = 48 * 3600.0  # no web video a release names is longer than two days
WINDOW_SLACK_S = 1.0  # a window may end this far past the released source's duration (frame rounding)
MAX_URL = 2048
MAX_TEXT = 1000
VERDICTS = ("accept", "reject")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class InvalidRow:
    """A release row set aside: its 1-based position in the file, its ids as given, and each problem."""

    row: int
    clip_id: str
    video_id: str
    problems: tuple[tuple[str, str], ...]  # (field, why)

    @property
    def detail(self) -> str:
        return f"row {self.row}: " + "; ".join(f"{f} {why}" for f, why in self.problems)


def _shown(v: object) -> str:
    text = repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float | np.floating) else str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _number(v: object) -> tuple[float | None, str | None]:
    """(the value as a finite float, None) or (None, why not)."""
    if _missing(v):
        return None, "is missing (empty or NaN)"
    if isinstance(v, bool | np.bool_):
        return None, f"is {_shown(v)}, not a number"
    if isinstance(v, int | float | np.integer | np.floating):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            return None, f"is {_shown(v)}, not a number"
    else:
        return None, f"is {_shown(v)}, not a number"
    if not math.isfinite(x):
        return None, f"is {_shown(v)}, not a finite number"
    return x, None


def _text(v: object, *, required: bool, limit: int = MAX_TEXT) -> tuple[str | None, str | None]:
    if _missing(v):
        return (None, "is missing") if required else (None, None)
    if not isinstance(v, str):
        return None, f"is {_shown(v)}, not text"
    if len(v) > limit:
        return None, f"is {len(v)} characters long, at most {limit}"
    if any(ord(c) < 32 for c in v):
        return None, "contains control characters"
    return v, None


def url_problem(url: str) -> str | None:
    """Why a release may not name ``url`` (only http(s) URLs with a host), or None."""
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises on a port that is not a number
    except ValueError as err:
        return f"{_shown(url)} is not a URL ({err})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"{_shown(url)}: only http and https URLs are fetched, not {parts.scheme or 'a bare path'}"
    if not host:
        return f"{_shown(url)} names no host"
    if parts.username is not None or parts.password is not None:
        return f"{_shown(url)} carries a user name or password"
    return None


class _Row:
    """One row's checks: the normalised values and the problems found, field by field."""

    def __init__(self, raw: dict) -> None:
        self.raw, self.values, self.problems = raw, dict(raw), []

    def bad(self, field: str, why: str) -> None:
        self.problems.append((field, why))

    def id(self, field: str) -> None:
        v = self.raw.get(field)
        if _missing(v):
            self.bad(field, "is missing")
        elif (why := id_problem(v)) is not None:
            self.bad(field, f"{_shown(v)} {why}")

    def number(self, field: str, *, lo: float, hi: float, required: bool, lo_open: bool = False,
               integer: bool = False) -> float | None:
        v = self.raw.get(field)
        if not required and _missing(v):
            self.values[field] = None
            return None
        x, why = _number(v)
        if why is None and integer and x != int(x):
            why = f"is {_shown(v)}, not a whole number"
        if why is None and (x < lo or (lo_open and x == lo) or x > hi):
            why = f"is {_shown(v)}, " + ("negative" if x < 0 <= lo else
                                         f"outside {'(' if lo_open else '['}{lo:g}, {hi:g}]")
        if why is not None:
            self.bad(field, why)
            return None
        self.values[field] = int(x) if integer else x
        return x

    def text(self, field: str, *, required: bool = False, choices: Iterable[str] | None = None,
             limit: int = MAX_TEXT) -> str | None:
        v, why = _text(self.raw.get(field), required=required, limit=limit)
        if why is None and v is not None and choices is not None and v not in choices:
            why = f"is {_shown(v)}, one of {', '.join(choices)} expected"
        if why is not None:
            self.bad(field, why)
            return None
        self.values[field] = v
        return v


def _check(raw: dict) -> _Row:
    r = _Row(raw)
    r.id("clip_id")
    r.id("video_id")
    if (url := r.text("url", required=True, limit=MAX_URL)) is not None and (why := url_problem(url)):
        r.bad("url", why)
    start = r.number("start_s", lo=0.0, hi=MAX_SOURCE_S, required=True)
    dur = r.number("duration_s", lo=0.0, hi=MAX_CLIP_S, lo_open=True, required=True)
    src = r.number("source_duration_s", lo=0.0, hi=MAX_SOURCE_S, lo_open=True, required=False)
    if None not in (start, dur, src) and start + dur > src + WINDOW_SLACK_S:
        r.bad("start_s", f"puts the window at {start:g}-{start + dur:g} s, past the video's end ({src:g} s)")
    r.text("split", required=True, choices=SPLITS)
    r.text("verdict", choices=VERDICTS)
    r.text("query")
    r.text("license")
    if (sep := r.text("separator")) is not None and (why := id_problem(sep)) is not None:
        r.bad("separator", f"{_shown(sep)} is not a model name: it {why}")
    if isinstance(lufs := r.raw.get("target_lufs"), str) and lufs.strip().lower() == NO_LOUDNESS_CHANGE:
        r.values["target_lufs"] = NO_LOUDNESS_CHANGE  # no loudness change: the audio kept at its level
    else:
        r.number("target_lufs", lo=-70.0, hi=0.0, required=False)
    r.number("fps", lo=1, hi=240, required=False, integer=True)
    if (sha := r.text("music_sha256")) is not None and not _SHA256.fullmatch(sha):
        r.bad("music_sha256", f"is {_shown(sha)}, not 64 lowercase hex digits")
    if (fp := r.text("music_fingerprint", limit=1_000_000)) is not None:
        try:
            decode_fingerprint(fp)
        except ValueError as err:
            r.bad("music_fingerprint", f"is not a fingerprint ({err})")
    _check_spans(r, dur)
    if not r.problems and r.raw["clip_id"] != (want := f"{r.raw['video_id']}-{int(start):05d}"):
        r.bad("clip_id", f"{_shown(r.raw['clip_id'])} is not the id of this window ({want})")
    return r


def _check_spans(r: _Row, duration_s: float | None) -> None:
    """``excluded_spans``: JSON [[start_s, end_s, reason], ...], stretches no training window may overlap;
    absent (a release from before spans) or empty for a clip kept whole."""
    if "excluded_spans" not in r.raw:
        r.values["excluded_spans"] = None
        return
    if (text := r.text("excluded_spans", limit=MAX_SPANS * 40)) is None:
        return
    try:
        spans = check_spans(json.loads(text), duration_s)
    except (ValueError, TypeError) as err:
        r.bad("excluded_spans", f"is not a list of [start_s, end_s, reason] spans ({err})")
        return
    r.values["excluded_spans"] = json.dumps([s.as_list() for s in spans]) if spans else None


def _video_conflicts(rows: dict[int, _Row]) -> None:
    """Rows of one video that disagree on its URL or processing: every row of that video is set aside."""
    by_video: dict[str, list[_Row]] = defaultdict(list)
    for r in rows.values():
        if not r.problems:
            by_video[r.values["video_id"]].append(r)
    for vid, rs in by_video.items():
        for col in ("url", "separator", "target_lufs", "fps"):
            vals = {r.values[col] for r in rs if r.values[col] is not None}
            if len(vals) > 1:
                for r in rs:
                    r.bad(col, f"the rows of video {vid} disagree on it ({len(vals)} different values)")


def _duplicates(df: pd.DataFrame, rows: dict[int, _Row]) -> None:
    ids = df.clip_id.astype(str)
    for cid, idx in ids[ids.duplicated(keep=False)].groupby(ids).groups.items():
        at = ", ".join(str(df.index.get_loc(i) + 1) for i in idx)
        for i in idx:
            rows[i].bad("clip_id", f"{_shown(cid)} is listed {len(idx)} times (rows {at})")


def check_rows(df: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, list[InvalidRow]]:
    """(the good rows, normalised, in file order, with their 1-based ``row`` in the file; each bad row with
    its problems). Changes nothing."""
    rows = {i: _check(raw) for i, raw in zip(df.index, df.to_dict("records"), strict=True)}
    _duplicates(df, rows)
    _video_conflicts(rows)
    invalid, good = [], []
    for n, (_i, r) in enumerate(rows.items(), start=1):
        if r.problems:
            invalid.append(InvalidRow(n, "" if _missing(r.raw.get("clip_id")) else str(r.raw["clip_id"]),
                                      "" if _missing(r.raw.get("video_id")) else str(r.raw["video_id"]),
                                      tuple(r.problems)))
        else:
            good.append({**r.values, "row": n})
    out = pd.DataFrame(good, columns=[*columns, "row"]).astype(object)
    return out.where(out.notna(), None).reset_index(drop=True), invalid
