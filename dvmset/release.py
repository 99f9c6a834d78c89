"""The ids-only release of an export: what anyone needs to rebuild the dataset from the web, and no media.

``release.parquet`` and ``release.csv`` (the same rows; files, or folders of parts for a large release) and
``release.json`` (format, the card's processing parameters, tool versions). A row per clip: the video id and
URL, the exact window, its split, query, effective verdict with its agreement, licence, the checksum and
fingerprint of its processed music, so a rebuild can be checked clip by clip (flows/curation/rebuild.py),
and the stretches annotators excluded (``excluded_spans``, JSON [[start_s, end_s, reason], ...]; dvmset.spans).

A release of more than dvmset.release_layout.PER_PART clips is spread over parts: ``release.parquet/`` and
``release.csv/`` are folders of ``part-{i:04d}-of-{n:04d}`` files, a video's clips in one part, so a takedown
rewrites a part, not the whole release (:func:`write_release_parts`); :func:`read_release` reads either layout
(an older export's single files too).

The files are written a batch of :data:`BATCH` rows at a time (:func:`write_release_batches`): the catalog
is read a batch of ids at a time, each batch becomes one arrow table (one parquet row group) and its CSV
lines, and release.json's counts are summed on the way, so an export's memory is a batch, not the catalog.
Batches written apart must agree, so the column types are fixed (:data:`SCHEMA`) instead of inferred from
all the rows at once as pandas did: ``target_lufs`` is text (a number as Python writes it, or "none" for
no loudness change) and ``fps`` a nullable integer, whatever the rows hold. Releases written before (a
float ``target_lufs``, a float ``fps`` where a clip lacked one) read back the same: :func:`read_release`
checks and converts every row's values (dvmset.release_rows), and :func:`processing_parameters` reads
"-14.0" as the number it names.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Text, cast, func, select

from dvmset import agreement_summary
from dvmset import release_layout as layout
from dvmset.agreement import effective_verdict
from dvmset.batches import batches, padded
from dvmset.catalog import Catalog
from dvmset.io import atomic_path, atomic_write_text
from dvmset.records import SPLITS, ClipStatus, Verdict
from dvmset.release_rows import InvalidRow, check_rows
from dvmset.spans import excluded_spans
from dvmset.tables import Clip, Source

RELEASE_FORMAT = "vidmusician-release/1"
FILES = ("release.parquet", "release.csv", "release.json")
COLUMNS = ["clip_id", "video_id", "url", "start_s", "duration_s", "source_duration_s", "split", "query",
           "verdict", "agreement", "ratings", "license", "separator", "target_lufs", "fps", "music_sha256",
           "music_fingerprint", "excluded_spans"]
OPTIONAL = ("excluded_spans",)  # absent from releases made before it: read as none
PROCESSING = ("separator", "target_lufs", "fps")
BATCH = 1_000  # release rows built, converted and written at once (a parquet row group): ~10 MB at 10 K sources, 90 at 5,000
_FLOAT = ("start_s", "duration_s", "source_duration_s", "agreement")
_INT = ("ratings", "fps")
SCHEMA = pa.schema([pa.field(c, pa.float64() if c in _FLOAT else pa.int64() if c in _INT else pa.string())
                    for c in COLUMNS])  # every batch of every release, whatever its rows hold
_TEXT = ("clip_id", "video_id", "url", "split", "query", "verdict", "license", "separator", "music_sha256",
         "music_fingerprint", "excluded_spans")  # read as text from the CSV (a hex checksum of digits is not a number)


class ReleaseError(ValueError):
    """A release file that cannot be read as one (the message says what is wrong)."""


def _step_params(lineage: dict | None, step: str) -> dict:
    for s in (lineage or {}).get("steps", []):
        if s.get("step") == step:
            return s.get("params") or {}
    return {}


def _verdict(n: int, accepts: int) -> tuple[str, float, int]:
    """(effective verdict, share of live verdicts agreeing with it, number of live verdicts) (pure)."""
    v = effective_verdict([Verdict.ACCEPT.value] * accepts + [Verdict.REJECT.value] * (n - accepts))
    return v, (accepts if v == Verdict.ACCEPT.value else n - accepts) / n, n


def release_batches(cat: Catalog, split: Mapping[str, str], size: int | None = None, *,
                    ids: Iterable[str] | None = None, caught_up: bool = False) -> Iterator[list[dict]]:
    """The release rows of the clips in ``split`` (clip id -> split), or of its ``ids`` only, in clip id order,
    a list of at most ``size`` (:data:`BATCH`) rows at a time: no more rows are held than one batch (and the
    ids of ``split``). ``caught_up``: the verdict counts were brought up to date already (one part of many)."""
    if not caught_up:
        catch_up_verdicts(cat)
    q = (select(Clip.id, Clip.status, Clip.origin, Clip.start_s, Clip.duration_s, Clip.lineage, Clip.music_sha256,
                Clip.music_fingerprint, Source.id.label("video_id"), Source.url, Source.webpage_url, Source.query,
                Source.duration_s.label("source_duration_s"), Source.license, Source.separator)
         .join(Source, Source.id == Clip.source_id))  # columns, not ORM objects: 10x faster at scale
    with cat.session() as s:
        for chunk in batches(sorted(split if ids is None else ids), size or BATCH):  # in order they make the whole
            counts = agreement_summary.verdict_counts(s, chunk)
            spans = excluded_spans(s, chunk)
            out = []
            for r in s.execute(q.where(Clip.id.in_(padded(chunk)))):
                if r.status != ClipStatus.ACCEPTED:
                    continue  # taken down or rejected since the split was planned: never released
                verdict, agreement, n = (_verdict(*counts[r.id]) if r.id in counts
                                         else ("accept" if r.origin == "release" else None, None, 0))
                out.append({
                    "clip_id": r.id, "video_id": r.video_id, "url": r.webpage_url or r.url, "start_s": r.start_s,
                    "duration_s": r.duration_s, "source_duration_s": r.source_duration_s, "split": split[r.id],
                    "query": r.query, "verdict": verdict, "agreement": agreement, "ratings": n,
                    "license": r.license,
                    "separator": _step_params(r.lineage, "separate").get("model", r.separator),
                    "target_lufs": _step_params(r.lineage, "loudness").get("target_lufs"),
                    "fps": _step_params(r.lineage, "clip").get("fps"),
                    "music_sha256": r.music_sha256, "music_fingerprint": r.music_fingerprint,
                    "excluded_spans": json.dumps([sp.as_list() for sp in spans[r.id]]) if spans.get(r.id) else None,
                })
            if out:
                yield sorted(out, key=lambda row: row["clip_id"])


def catch_up_verdicts(cat: Catalog) -> None:
    """The live verdicts, kept per clip, brought up to date (no decision row is loaded by the release)."""
    with cat.session() as s:
        if agreement_summary.catch_up(s):
            s.commit()


def release_frame(cat: Catalog, split: Mapping[str, str]) -> pd.DataFrame:
    """The release rows of the clips in ``split`` (clip id -> train/test), in clip id order, in one frame
    (for tests and small releases: an export streams :func:`release_batches` instead)."""
    rows = [r for b in release_batches(cat, split) for r in b]
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("clip_id").reset_index(drop=True)


def _missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _param(key: str, v: object) -> object:
    """A processing parameter as release.json lists it: a text ``target_lufs`` ("-14.0") as the number it
    names ("none" as itself), an ``fps`` read back as a float (beside a missing one) as an int."""
    v = v.item() if hasattr(v, "item") else v  # numpy scalars: plain numbers, as json writes them
    if key == "target_lufs" and isinstance(v, str):
        for number in (int, float):  # "-14" as -14 and "-14.0" as -14.0: the value the lineage held
            try:
                return number(v)
            except ValueError:
                pass
    if key == "fps" and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class _Counts:
    """release.json's counts and processing parameters, summed a batch at a time."""

    def __init__(self) -> None:
        self.clips, self.videos, self.splits = 0, set(), Counter()
        self.processing: dict[str, set] = {k: set() for k in PROCESSING}

    def add(self, df: pd.DataFrame) -> None:
        self.clips += len(df)
        self.videos.update(df.video_id.tolist())
        self.splits.update(df.split.tolist())
        for k in PROCESSING:
            self.processing[k].update(_param(k, v) for v in df[k].tolist() if not _missing(v))

    def as_dict(self) -> dict:
        return {"clips": self.clips, "videos": len(self.videos), "splits": {p: self.splits[p] for p in SPLITS},
                "processing": {k: sorted(v, key=str) for k, v in self.processing.items()}}


def processing_parameters(df: pd.DataFrame) -> dict:
    """The distinct processing parameters of the rows (one value each in a uniformly made release)."""
    return release_counts(df)["processing"]


def release_counts(df: pd.DataFrame) -> dict:
    """release.json's counts and processing parameters of these rows (a takedown writes them again)."""
    counts = _Counts()
    counts.add(df)
    return counts.as_dict()


def _fps(v: object, clip_id: object) -> int | None:
    if _missing(v):
        return None
    if isinstance(v, str) or float(v) != int(float(v)):
        raise ReleaseError(f"clip {clip_id}: fps {v!r} is not a whole number of frames per second")
    return int(v)


def _table(rows: Sequence[Mapping]) -> pa.Table:
    """One batch of release rows as an arrow table of :data:`SCHEMA` (missing values as nulls)."""
    cols = {c: [None if _missing(r.get(c)) else r.get(c) for r in rows] for c in COLUMNS}
    cols["target_lufs"] = [None if v is None else str(v) for v in cols["target_lufs"]]
    cols["fps"] = [_fps(v, c) for v, c in zip(cols["fps"], cols["clip_id"], strict=True)]
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def _write_files(parquet: Path, csv_path: Path, row_batches: Iterable[Sequence[Mapping]]) -> _Counts:
    """One parquet and its CSV (atomic each) from batches of rows: a batch is one parquet row group and its CSV
    lines, and only one is held at a time. Returns the rows' counts."""
    counts = _Counts()
    with atomic_path(parquet) as ptmp, atomic_path(csv_path) as ctmp, \
            pq.ParquetWriter(ptmp, SCHEMA) as writer, open(ctmp, "w", encoding="utf-8", newline="") as csv:
        header = True
        for rows in row_batches:
            if not len(rows):
                continue
            table = _table(rows)
            writer.write_table(table, row_group_size=max(len(rows), 1))
            frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)  # 25, not 25.0, beside a null
            frame.to_csv(csv, index=False, header=header)
            header = False
            counts.add(frame)
        if header:
            pd.DataFrame(columns=COLUMNS).to_csv(csv, index=False)
    return counts


def _write_meta(out_dir: Path, name: str, counts: Mapping, extra: Mapping | None) -> None:
    meta = {"format": RELEASE_FORMAT, "name": name, **counts, **dict(extra or {})}
    atomic_write_text(out_dir / FILES[2], json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


def write_release_batches(out_dir: Path, row_batches: Iterable[Sequence[Mapping]], *, name: str,
                          extra: Mapping | None = None) -> list[Path]:
    """The three release files under ``out_dir`` (atomic each) from batches of rows (dicts of
    :data:`COLUMNS`, in the order the files list them), one file each whatever the number of rows (an
    export spreads a large release over parts: :func:`write_release_parts`). Returns the files' paths."""
    out_dir = Path(out_dir)
    for f in FILES[:2]:
        layout.clear_for(out_dir / f, parts=False)
    counts = _write_files(out_dir / FILES[0], out_dir / FILES[1], row_batches)
    _write_meta(out_dir, name, counts.as_dict(), extra)
    return [out_dir / f for f in FILES]


def write_release_parts(out_dir: Path, clip_ids: Sequence[str],
                        rows_of: Callable[[list[str]], Iterable[Sequence[Mapping]]], *, name: str,
                        extra: Mapping | None = None, per_part: int | None = None) -> list[Path]:
    """The release of ``clip_ids`` under ``out_dir`` in the layout its size calls for (dvmset.release_layout):
    the two single files up to ``per_part`` clips, else a folder of parts (:func:`write_release_grouped`)."""
    clip_ids = sorted(set(clip_ids))
    count = layout.part_count(len(clip_ids), per_part)
    parts = enumerate(layout.parts_of(clip_ids, count).values()) if count > 1 else [(0, clip_ids)]
    return write_release_grouped(out_dir, count, parts, rows_of, name=name, extra=extra)


def write_release_grouped(out_dir: Path, count: int, parts: Iterable[tuple[int, list[str]]],
                          rows_of: Callable[[list[str]], Iterable[Sequence[Mapping]]], *, name: str,
                          extra: Mapping | None = None) -> list[Path]:
    """The release under ``out_dir`` in ``count`` parts (1: the two single files): ``parts`` gives each part's
    index and clip ids in id order (dvmset.release_layout.parts_of; every part, an empty one too), and
    ``rows_of(ids)`` batches of their release rows, so one part is held at a time; release.json with each
    part's counts. Returns the paths of the parquet, the CSV (a file or a folder) and release.json."""
    out_dir = Path(out_dir)
    if count == 1:
        return write_release_batches(out_dir, rows_of([c for _, ids in parts for c in ids]), name=name, extra=extra)
    folders = [out_dir / f for f in FILES[:2]]
    for folder in folders:
        layout.clear_for(folder, parts=True)
        folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for i, ids in parts:
        stem = layout.part_stem(i, count)
        counts[stem] = _write_files(folders[0] / f"{stem}.parquet", folders[1] / f"{stem}.csv",
                                    rows_of(ids) if ids else ()).as_dict()
    for folder in folders:
        layout.remove_stale(folder, {f"{stem}{folder.suffix}" for stem in counts})
    _write_meta(out_dir, name, {**layout.totals(counts), "parts": counts}, extra)
    return [out_dir / f for f in FILES]


def write_release(out_dir: Path, df: pd.DataFrame, *, name: str, extra: Mapping | None = None,
                  per_part: int | None = None) -> list[Path]:
    """The release of the rows of ``df`` under ``out_dir`` (:func:`write_release_parts`)."""
    if list(df.columns) != COLUMNS:
        raise ReleaseError(f"release rows need the columns {COLUMNS}")
    by_id = df.set_index("clip_id", drop=False)

    def rows_of(ids: list[str]) -> Iterator[list[dict]]:
        rows = by_id.loc[ids]
        return (rows.iloc[i:i + BATCH].to_dict("records") for i in range(0, len(rows), BATCH))

    return write_release_parts(out_dir, df.clip_id.tolist(), rows_of, name=name, extra=extra, per_part=per_part)


@dataclass(frozen=True)
class Release:
    """A release read back: its good rows (checked, normalised), the rows set aside, and its release.json."""

    path: Path
    rows: pd.DataFrame = field(repr=False)
    meta: dict
    invalid: tuple[InvalidRow, ...] = ()

    def videos(self) -> dict[str, pd.DataFrame]:
        """video id -> its rows, in window order."""
        return {v: g.sort_values("start_s") for v, g in self.rows.groupby("video_id", sort=True)}


def _read_data(data: Path) -> pd.DataFrame:
    """The rows of a release.parquet / release.csv file, or of the folder of its parts (concatenated)."""
    files = layout.part_files(data) if data.is_dir() else [data]
    if not files:
        raise ReleaseError(f"{data}: a folder without release parts (part-NNNN-of-NNNN{data.suffix})")
    try:
        frames = [pd.read_csv(f, dtype=dict.fromkeys(_TEXT, str)) if f.suffix == ".csv" else pd.read_parquet(f)
                  for f in files]
    except (OSError, ValueError) as err:
        raise ReleaseError(f"{data}: not a readable release ({err})") from err
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True).sort_values("clip_id", kind="stable", ignore_index=True)


def read_release(path: str | Path) -> Release:
    """A release from its directory, its ``.parquet`` or its ``.csv``, each a file or a folder of parts
    (dvmset.release_layout; release.json beside it, if present); the rows in clip id order.

    A file that is not a release raises :class:`ReleaseError`; a bad row is set aside in ``invalid`` with
    the field and why (dvmset.release_rows), so one edited row costs only itself."""
    path = Path(path)
    parts = path.is_dir() and path.suffix in (".parquet", ".csv")
    folder = path if path.is_dir() and not parts else path.parent
    data = folder / FILES[0] if path.is_dir() and not parts else path
    if not data.exists():
        raise ReleaseError(f"no release at {data}: give the release.parquet or release.csv an export wrote")
    df = _read_data(data)
    if missing := [c for c in COLUMNS if c not in df.columns and c not in OPTIONAL]:
        raise ReleaseError(f"{data}: missing columns {missing}")
    good, invalid = check_rows(df.reset_index(drop=True), COLUMNS)
    meta_path = folder / FILES[2]
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    except (OSError, ValueError) as err:
        raise ReleaseError(f"{meta_path}: not a readable release.json ({err})") from err
    if not isinstance(meta, dict):
        raise ReleaseError(f"{meta_path}: not a release.json (a JSON object expected)")
    if meta and meta.get("format") != RELEASE_FORMAT:
        raise ReleaseError(f"{meta_path}: format {meta.get('format')!r}, this version reads {RELEASE_FORMAT}")
    return Release(data, good, meta, tuple(invalid))


DURATION_TOLERANCE_S = 0.5  # a source this much longer or shorter than the release's is another upload


def compare_rebuilt(row: Mapping, *, source_duration_s: float | None, music_sha256: str | None,
                    music_fingerprint: str | None) -> tuple[str, str]:
    """("matching" | "different", how) of a rebuilt clip against its release row."""
    from dvmset.music_groups import SAME_MUSIC_BER, bit_error_rate, decode_fingerprint

    reasons = []
    want_d = row.get("source_duration_s")
    if want_d is not None and source_duration_s is not None and abs(source_duration_s - want_d) > DURATION_TOLERANCE_S:
        reasons.append(f"the video is now {source_duration_s:.1f} s long, {want_d:.1f} s when released "
                       "(re-uploaded or edited)")
    if row.get("music_sha256") and music_sha256 == row["music_sha256"]:
        return ("different", "; ".join(reasons)) if reasons else ("matching", "music identical (sha256)")
    if row.get("music_fingerprint") and music_fingerprint:
        ber = bit_error_rate(decode_fingerprint(row["music_fingerprint"]), decode_fingerprint(music_fingerprint),
                             max_offset=4)
        if ber <= SAME_MUSIC_BER and not reasons:
            return "matching", f"music the same by fingerprint (bit error rate {ber:.3f}), not bit-identical"
        reasons.append(f"processed music differs (sha256 changed, fingerprint bit error rate {ber:.3f})"
                       if ber > SAME_MUSIC_BER else "processed music not bit-identical (sha256 changed)")
    elif row.get("music_sha256"):
        reasons.append("processed music differs (sha256 changed)")
    else:
        return ("different", "; ".join(reasons)) if reasons else ("matching", "the release has no checksum to compare")
    return "different", "; ".join(reasons)


_PER_CLIP = {"start_s", "duration_s", "source_gain_db", "clip_gain_db",  # a window's own values, not settings
             "verdict", "excluded_spans"}  # a rebuilt clip's review step (dvmset.spans.release_review_step)


def distinct_steps(cat: Catalog, clip_ids: Iterable[str]) -> list[dict]:
    """The processing steps of these clips with their tools, versions and settings, each distinct one once (in
    clip order), read a batch of ids at a time: what is held is the distinct steps, not the clips' lineages."""
    text = cast(Clip.lineage, Text)
    seen: dict[str, dict] = {}
    with cat.session() as s:  # each distinct lineage text of a batch once (clips of one run share it)
        for ids in batches(clip_ids):
            q = (select(text, func.min(Clip.id)).where(Clip.id.in_(padded(list(dict.fromkeys(ids)))), Clip.lineage.is_not(None))
                 .group_by(text))
            for t, _ in sorted(s.execute(q).tuples(), key=lambda r: r[1]):
                for st in (json.loads(t) or {}).get("steps", []) if t else []:
                    item = {**st, "params": {k: v for k, v in st["params"].items() if k not in _PER_CLIP}}
                    seen.setdefault(json.dumps(item, sort_keys=True, default=str), item)
    return list(seen.values())
