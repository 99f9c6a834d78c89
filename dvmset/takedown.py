"""Takedowns: a video or one clip removed from everything derived from it, the catalog rows kept as an
audit record (when, why). Every step is idempotent, so a takedown interrupted anywhere and run again
finishes: the request row is written first and names the clips; then the catalog marks, the feature
shards (each affected shard rewritten atomically, every other clip's tensors byte for byte the same)
and the index, the exports (manifest, JSONL, links, info zips, release, card); media files are deleted
by flows/curation/takedown.py. A later curate refuses the video (:func:`refusal`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from dvmset import release_layout
from dvmset.card_scratch import MANIFEST_COLUMNS as CARD_COLUMNS
from dvmset.catalog import Catalog
from dvmset.export import export_writing
from dvmset.export_card import EXPORT_PARAMS
from dvmset.export_webdataset import scrub_webdataset
from dvmset.info_zips import INFO_ZIPS, drop_from_info_zips
from dvmset.io import atomic_path, atomic_write_text
from dvmset.layout import check_id, id_problem
from dvmset.line_filter import csv_without, jsonl_without, parquet_rewritten_without, parquet_without
from dvmset.release import FILES as RELEASE_FILES
from dvmset.release import PROCESSING, release_counts
from dvmset.shards import FeatureStore
from dvmset.tables import Clip, Source, Takedown, utcnow

log = logging.getLogger(__name__)

TAKEN_DOWN = "taken_down"  # the status of a taken-down source or clip (its row stays)


class TakedownError(ValueError):
    """A takedown that cannot be planned (unknown video or clip, no reason)."""


@dataclass(frozen=True)
class TakedownPlan:
    """What one takedown removes: a whole video, or one clip of it."""

    id: int  # the takedowns row
    video_id: str
    clip_id: str | None
    clip_ids: tuple[str, ...]
    reason: str
    finished: bool  # an earlier run already finished it (running it again changes nothing)


def plan_takedown(cat: Catalog, *, video: str | None = None, clip: str | None = None, reason: str) -> TakedownPlan:
    """Write (or find the unfinished) request row for the target and say what it removes."""
    if (video is None) == (clip is None):
        raise TakedownError("a takedown names either a video (--video ID) or a clip (--clip ID)")
    if not reason or not reason.strip():
        raise TakedownError("a takedown needs a --reason (kept in the catalog as its audit record)")
    try:  # before anything is written: a takedown finishes or changes nothing
        check_id(video, "video id") if clip is None else check_id(clip, "clip id")
    except ValueError as err:
        raise TakedownError(f"{err}; nothing was changed") from err
    with cat.session() as s:
        if clip is not None:
            row = s.get(Clip, clip)
            if row is None:
                raise TakedownError(f"clip {clip} is not in the catalog")
            video_id, clip_ids = row.source_id, [clip]
        else:
            if s.get(Source, video) is None:
                raise TakedownError(f"video {video} is not in the catalog (its id, as `vidmusician status` lists)")
            video_id = video
            clip_ids = sorted(s.scalars(select(Clip.id).where(Clip.source_id == video)))
        same_target = Takedown.clip_id.is_(None) if clip is None else Takedown.clip_id == clip
        req = s.scalars(select(Takedown).where(Takedown.video_id == video_id, same_target)
                        .order_by(Takedown.id.desc())).first()
        if req is None or (req.finished_at is not None and sorted(req.clip_ids or []) != clip_ids):
            req = Takedown(video_id=video_id, clip_id=clip, reason=reason.strip(), clip_ids=clip_ids)
            s.add(req)
            s.flush()
        return TakedownPlan(req.id, video_id, clip, tuple(sorted(set(req.clip_ids or []) | set(clip_ids))),
                            req.reason, req.finished_at is not None)


def mark_catalog(cat: Catalog, plan: TakedownPlan) -> None:
    """Clips (and, for a video, its source) marked taken down with when and why; rows are kept."""
    with cat.session() as s:
        when = s.get(Takedown, plan.id).requested_at
        for c in s.scalars(select(Clip).where(Clip.id.in_(plan.clip_ids))):
            c.status, c.path, c.split = TAKEN_DOWN, None, None
            c.taken_down_at, c.takedown_reason = c.taken_down_at or when, c.takedown_reason or plan.reason
        if plan.clip_id is None:
            src = s.get(Source, plan.video_id)
            src.status, src.media_path, src.music_path = TAKEN_DOWN, None, None
            src.taken_down_at, src.takedown_reason = src.taken_down_at or when, src.takedown_reason or plan.reason


def finish(cat: Catalog, plan: TakedownPlan) -> None:
    with cat.session() as s:
        req = s.get(Takedown, plan.id)
        req.finished_at = req.finished_at or utcnow()


def refusal(cat: Catalog, *, video_id: str | None = None, url: str | None = None) -> str | None:
    """Why curation must not take this video (a takedown names it), or None."""
    with cat.session() as s:
        ids = {video_id} if video_id else set()
        if url:
            ids |= set(s.scalars(select(Source.id).where((Source.url == url) | (Source.webpage_url == url))))
        if not ids:
            return None
        req = s.scalars(select(Takedown).where(Takedown.video_id.in_(ids)).order_by(Takedown.id)).first()
    if req is None:
        return None
    what = f"clip {req.clip_id} of video {req.video_id}" if req.clip_id else f"video {req.video_id}"
    return f"{what} was taken down on {req.requested_at:%Y-%m-%d}: {req.reason}"


# ---------------------------------------------------------------------------------------------
# Feature shards


PENDING_SHARDS = ".takedown-shards.json"  # in the features dir: the shards a takedown still has to rewrite


def scrub_features(store: FeatureStore, clip_ids: Iterable[str]) -> list[str]:
    """The clips out of the index and out of the shards the index says hold them (:meth:`FeatureStore.
    remove_clips`), not every shard's header; returns the shards rewritten or deleted. Those shards are
    noted in the features dir first, so a takedown killed after the index lost the clips still rewrites
    them when run again. The caller holds ``store.exclusive``."""
    gone = set(clip_ids)
    pending = store.dir / PENDING_SHARDS
    shards = store.shards_of(gone)
    if pending.is_file():
        try:
            shards |= set(json.loads(pending.read_text(encoding="utf-8")))
        except ValueError:  # a damaged note: every shard, as before
            return store.remove_clips(gone)
    if shards:
        atomic_write_text(pending, json.dumps(sorted(shards)))
    out = store.remove_clips(gone, shards=shards)
    pending.unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# Exports


def _audio_stem(line: dict) -> str:
    return Path(line["path"]).stem


def _recount_release(out: Path) -> None:
    """release.json's counts and processing parameters again from release.parquet (a few columns read): an
    export's single file, or an older export's."""
    meta_path = out / RELEASE_FILES[2]
    if not meta_path.is_file():
        return
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    df = pd.read_parquet(out / RELEASE_FILES[0], columns=["video_id", "split", *PROCESSING])
    meta.update(release_counts(df))
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


def _recount_parts(out: Path, parts: list[Path]) -> None:
    """release.json's counts of these parquet parts read again, and its totals summed from every part's."""
    meta_path = out / RELEASE_FILES[2]
    if not meta_path.is_file():
        return
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta.get("parts"), dict):  # written by hand or cut short: every part read
        meta["parts"], parts = {}, release_layout.part_files(out / RELEASE_FILES[0])
    for p in parts:
        with pq.ParquetFile(p) as f:  # (not pd.read_parquet: the dataset reader's start costs more than a part)
            meta["parts"][p.stem] = release_counts(f.read(columns=["video_id", "split", *PROCESSING]).to_pandas())
    new = {**meta, **release_layout.totals(meta["parts"])}
    if new != meta or parts:
        atomic_write_text(meta_path, json.dumps(new, indent=2, sort_keys=True, default=str) + "\n")


def _scrub_release(out: Path, gone: set[str]) -> bool:
    """The release without the clips: in a folder of parts only the parts their videos hash to (parquet and
    CSV), each recounted in release.json whether or not this run changed it (a killed run may have rewritten it
    before the count); a single file (a small export's, or an older one's) whole. Returns whether it named one."""
    named = False
    folder = out / RELEASE_FILES[0]
    if folder.is_dir():
        parts = release_layout.parts_holding(folder, gone)
        for p in parts:
            named = parquet_without(p, gone) or named
        _recount_parts(out, parts)
    elif folder.is_file() and parquet_without(folder, gone):  # a row group at a time
        named = True
        _recount_release(out)
    csv = out / RELEASE_FILES[1]
    for p in release_layout.parts_holding(csv, gone) if csv.is_dir() else [csv] if csv.is_file() else []:
        if (by_lines := csv_without(p, gone)) is not None:
            named = by_lines or named  # the few lines naming a gone id looked at, the rest copied
            continue
        rel = pd.read_csv(p, dtype=str, keep_default_na=False)
        if rel.clip_id.isin(gone).any():
            named = True
            with atomic_path(p) as tmp:
                rel[~rel.clip_id.isin(gone)].to_csv(tmp, index=False)
    return named


def _info_zip_count(out: Path) -> int | None:
    """How many info zips the export wrote, as its export.json says (None: an older export's, or unreadable)."""
    try:
        count = json.loads((out / EXPORT_PARAMS).read_text(encoding="utf-8")).get(INFO_ZIPS)
    except (OSError, ValueError, AttributeError):
        return None
    return count if isinstance(count, int) and count > 0 else None


def scrub_export(out: Path, clip_ids: Iterable[str], write_card: Callable[[Path, pa.Table], None]) -> bool:
    """One export without the clips: manifest, JSONL (both layouts), audio links and MusicInfo, the info zips,
    the release, then the card again (``write_card(out, card_columns)``: the manifest's card columns left,
    as an Arrow table); the temp files of an interrupted write swept first. Returns whether it changed the
    export (it named one of them, or held a temp file)."""
    with export_writing(out) as swept:
        return _scrub_export(out, set(clip_ids), write_card) or bool(swept)


def _scrub_export(out: Path, gone: set[str], write_card: Callable[[Path, pa.Table], None]) -> bool:
    manifest_path = out / "manifest.parquet"
    if not manifest_path.is_file():
        return False
    with pq.ParquetFile(manifest_path) as f:
        ids = f.read(columns=["clip_id"])["clip_id"]
    named = bool(pc.any(pc.is_in(ids, value_set=pa.array(sorted(gone), pa.string()))).as_py())
    named = _scrub_release(out, gone) or named  # it may name a clip the manifest already lost (a killed run)
    egs_copies = sorted(p for p in out.glob("egs/*/data.jsonl") if not p.is_symlink())  # an older export's
    for p in [*sorted(out.glob("*.jsonl")), *egs_copies]:  # (a link to {split}.jsonl follows it)
        jsonl_without(p, gone, _audio_stem)
    for cid in gone:
        if id_problem(cid) is not None:
            continue  # no file was ever named by it (an older version's row): never a path to build
        for p in (out / "audio" / f"{cid}.mp4", out / "audio" / f"{cid}.json"):
            if p.is_symlink() or p.exists():
                p.unlink()
    drop_from_info_zips(out / "audio", gone, _info_zip_count(out))
    named = scrub_webdataset(out, gone) or named  # its shards, where the export has them
    if named:  # the manifest rewritten and its card columns gathered in one pass; the card written, then the
        names = pq.read_schema(manifest_path).names  # manifest replaced last: a re-run sees it still names them
        with parquet_rewritten_without(manifest_path, gone, collect=[c for c in CARD_COLUMNS if c in names]) as kept:
            write_card(out, kept)
    return named
