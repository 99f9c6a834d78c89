"""A benchmark given as ids (V2M-Bench and the like: YouTube ids with start and end seconds) as a release.

``vidmusician bench import --ids FILE --out DIR`` writes release.parquet/.csv/.json (dvmset.release; over
2,000 windows the first two are folders of parts, which ``--from-release`` reads as well)
whose rows are the benchmark's windows exactly as listed, every one in the test split and accepted,
with ``separator = "none"``, ``target_lufs = "none"`` (no loudness change: the rebuilt clip's audio is
the source window's, at its own level) and no checksum to compare, so ``curate --from-release DIR/release.csv``
downloads each video and cuts exactly those windows, and ``evaluate`` can score any system's
outputs on the same clips. The ids file is a CSV (a header row) or JSON (a list of objects, or an
object of id -> [start, end]); the column names below are the ones accepted for each field. A
row's own ``url`` column wins over ``--url-template`` (default: YouTube's watch URL of the id).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pandas as pd

from dvmset.constants import NO_LOUDNESS_CHANGE
from dvmset.layout import check_id
from dvmset.records import TEST
from dvmset.release import COLUMNS, ReleaseError, write_release

ID_KEYS = ("video_id", "youtube_id", "ytid", "yt_id", "id", "vid")
START_KEYS = ("start_s", "start", "start_time", "start_sec", "begin")
END_KEYS = ("end_s", "end", "end_time", "end_sec", "stop")
DURATION_KEYS = ("duration_s", "duration")
URL_KEYS = ("url", "webpage_url", "link")  # a row's own URL, else the template's
YOUTUBE_URL = "https://www.youtube.com/watch?v={id}"


class BenchError(ValueError):
    """An ids file that cannot be read as a benchmark list (the message names the row)."""


def _pick(row: dict, keys: tuple[str, ...]):
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    for k in keys:
        if k in lowered and lowered[k] not in (None, ""):
            return lowered[k]
    return None


def _records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        data = json.loads(text)
        if isinstance(data, dict):  # id -> [start, end] or id -> {"start": .., "end": ..}
            return [({"video_id": k, "start": v[0], "end": v[1]} if isinstance(v, list) else {"video_id": k, **v})
                    for k, v in data.items()]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BenchError(f"{path}: JSON must be a list of objects or an object of id -> [start, end]")
        return data
    return list(csv.DictReader(io.StringIO(text)))


def _seconds(value, what: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise BenchError(f"{where}: {what} {value!r} is not a number of seconds") from err
    if not math.isfinite(v) or v < 0:
        raise BenchError(f"{where}: {what} {value!r} must be a finite number >= 0")
    return v


def bench_rows(path: str | Path, url_template: str = YOUTUBE_URL) -> pd.DataFrame:
    """The release rows of a benchmark's ids file, in clip id order."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"no ids file at {path}")
    out = []
    for i, rec in enumerate(_records(path), start=1):
        where = f"{path.name} row {i}"
        vid = _pick(rec, ID_KEYS)
        if vid is None:
            raise BenchError(f"{where}: no video id (one of the columns {', '.join(ID_KEYS)})")
        vid = str(vid).strip()
        try:
            check_id(vid, "video id")
        except ValueError as err:
            raise BenchError(f"{where}: {err}") from err
        start = _seconds(_pick(rec, START_KEYS) or 0, "start", where)
        end, dur = _pick(rec, END_KEYS), _pick(rec, DURATION_KEYS)
        if end is None and dur is None:
            raise BenchError(f"{where}: no end (one of {', '.join(END_KEYS)}) and no duration")
        duration = _seconds(dur, "duration", where) if end is None else _seconds(end, "end", where) - start
        if duration <= 0:
            raise BenchError(f"{where}: the window ends at or before it starts ({start:g} s)")
        out.append({"clip_id": f"{vid}-{int(start):05d}", "video_id": vid, "url": str(_pick(rec, URL_KEYS) or url_template.format(id=vid)),
                    "start_s": start, "duration_s": duration, "source_duration_s": None, "split": TEST,
                    "query": None, "verdict": "accept", "agreement": None, "ratings": 0, "license": None,
                    "separator": "none", "target_lufs": NO_LOUDNESS_CHANGE, "fps": None, "music_sha256": None,
                    "music_fingerprint": None})
    if not out:
        raise BenchError(f"{path}: no rows")
    df = pd.DataFrame(out, columns=COLUMNS).sort_values("clip_id").reset_index(drop=True)
    if df.clip_id.duplicated().any():
        dup = sorted(df.clip_id[df.clip_id.duplicated()])[:5]
        raise BenchError(f"{path}: two windows of one video start in the same second: {dup}")
    return df


def import_bench(ids: str | Path, out_dir: str | Path, *, name: str | None = None,
                 url_template: str = YOUTUBE_URL) -> tuple[pd.DataFrame, list[Path]]:
    """Write the benchmark's release files under ``out_dir``; returns the rows and the files."""
    df = bench_rows(ids, url_template)
    try:
        files = write_release(Path(out_dir), df, name=name or Path(ids).stem,
                              extra={"benchmark": {"ids_file": Path(ids).name, "url_template": url_template,
                                                   "windows": "exactly as listed", "separation": "none",
                                                   "loudness": "unchanged"}})
    except ReleaseError as err:
        raise BenchError(str(err)) from err
    return df, files
