"""``vidmusician curate --from-release FILE``: rebuild a released dataset on this machine.

Each listed video is downloaded, its audio processed with the release's parameters, and EXACTLY the
listed windows cut (not re-planned); each clip gets the release's split and verdict (marked "from
release", not reviewed again) and is checked against the release: rebuilt and matching, rebuilt but
different (how), or gone (the download's error). Resumable like curate: a re-run skips videos it
finished and clips already cut.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from dvmset import sources
from dvmset.catalog import Catalog
from dvmset.io import atomic_write_text
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus, SourceStatus
from dvmset.release import Release, compare_rebuilt, read_release
from dvmset.tables import Clip
from dvmset.takedown import refusal
from flows.curation.curate import (
    CurateConfig,
    _catalog,
    _process_audio,
    _remove_leftovers,
    _Resources,
    download_task,
)
from flows.curation.lineage import record_clip_lineage
from pipeline import clip as clipping
from pipeline import download as dl
from pipeline import qc
from pipeline.errors import StageError, is_whole_run, item_failure
from pipeline.probe import probe, require_streams

log = logging.getLogger(__name__)
ORIGIN = "release"
MATCHING, DIFFERENT, GONE = "matching", "different", "gone"
_VERDICT_STATUS = {"accept": ClipStatus.ACCEPTED, "reject": ClipStatus.REJECTED}
_ANY_LENGTH = dl.DownloadOptions(min_duration_s=0.0, max_duration_s=None)  # the windows are checked instead
_res: dict[str, _Resources] = {}
_res_lock = threading.Lock()


def _resources(cfg: CurateConfig) -> _Resources:
    """One loaded separator per audio configuration per process (videos of a release share it)."""
    with _res_lock:
        key = cfg.audio_params_hash()
        if key not in _res:
            _res[key] = _Resources(cfg)
        return _res[key]


@dataclass(frozen=True)
class ClipOutcome:
    clip_id: str
    video_id: str
    outcome: str  # matching | different | gone
    detail: str


def release_config(rows: pd.DataFrame, base: CurateConfig) -> CurateConfig:
    """``base`` with the release's processing parameters for these rows (one video's)."""
    def one(col: str):  # noqa: ANN202
        vals = {v for v in rows[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if len(vals) > 1:
            raise ValueError(f"video {rows.video_id.iloc[0]}: clips made with different {col}: {sorted(vals)}")
        return next(iter(vals), None)

    sep, lufs, fps = one("separator"), one("target_lufs"), one("fps")
    given: dict = {"clip_seconds": float(rows.duration_s.max())}
    if sep is not None:
        given |= {"separator": "none"} if sep == "none" else {"separator": "demucs", "demucs_name": sep}
    if lufs is not None:
        given["target_lufs"] = float(lufs)
    if fps is not None:
        given["fps"] = int(fps)
    return CurateConfig(**{**asdict(base), **given})


def _gone(rows: pd.DataFrame, why: str) -> list[ClipOutcome]:
    return [ClipOutcome(r.clip_id, r.video_id, GONE, why) for r in rows.itertuples()]


def _outcome_of(cat: Catalog, row, source_duration_s: float | None) -> ClipOutcome:  # noqa: ANN001
    with cat.session() as s:
        c = s.get(Clip, row.clip_id)
    if c is None or c.status == ClipStatus.FAILED:
        return ClipOutcome(row.clip_id, row.video_id, DIFFERENT, f"could not be cut: {c.error if c else 'no row'}")
    status, how = compare_rebuilt(row._asdict(), source_duration_s=source_duration_s,
                                  music_sha256=c.music_sha256, music_fingerprint=c.music_fingerprint)
    return ClipOutcome(row.clip_id, row.video_id, status, how)


def _cut(cat: Catalog, root: DataRoot, cfg: CurateConfig, row, media: Path, audio, got: dl.Downloaded) -> None:  # noqa: ANN001
    span = clipping.ClipSpan(float(row.start_s), float(row.duration_s))
    dest = root.clip_path(row.clip_id)
    try:
        cut = clipping.cut_clip(media, audio.music_path, span, dest, fps=cfg.fps, target_lufs=cfg.target_lufs)
        report = qc.qc_clip(dest, vocal_energy=audio.vocal_share(span.start_s, span.end_s), loudness=cut.loudness,
                            peaks_path=root.peaks_path(row.clip_id))
    except Exception as err:  # noqa: BLE001 - the stage contract: a failed clip is a row
        if is_whole_run(err):
            raise
        dest.unlink(missing_ok=True)
        sources.record_clip(cat, row.clip_id, row.video_id, span.start_s, span.duration_s, error=item_failure(err))
        return
    sources.record_clip(cat, row.clip_id, row.video_id, span.start_s, span.duration_s,
                        path=str(dest.relative_to(root.path)), report=report)
    record_clip_lineage(cat, cfg, row.clip_id, span, audio, got, clip_gain_db=getattr(report, "clip_gain_db", None),
                        origin=ORIGIN)
    with cat.session() as s:  # the release's verdict and split: accepted "from release", not reviewed again
        c = s.get(Clip, row.clip_id)
        c.status, c.split = _VERDICT_STATUS.get(row.verdict or "accept", ClipStatus.ACCEPTED).value, row.split


@task(name="rebuild-video", cache_policy=NO_CACHE)
def rebuild_video(rows: pd.DataFrame, root_path: str, db_url: str, base: CurateConfig, retry_gone: bool) -> list[ClipOutcome]:
    root, cat = DataRoot(Path(root_path)), _catalog(db_url)
    first = rows.iloc[0]
    vid, url = first.video_id, first.url
    if why := refusal(cat, video_id=vid, url=url):
        return _gone(rows, f"refused: {why}")
    with cat.session() as s:
        src = s.get(sources.Source, vid)
        done = src is not None and src.status == SourceStatus.DONE
        failed = src is not None and src.status == SourceStatus.FAILED
        known_error, duration = (src.error, src.duration_s) if src is not None else (None, None)
    if failed and not retry_gone:
        return _gone(rows, known_error or "download failed")
    if done and all(root.clip_path(c).exists() for c in rows.clip_id):
        return [_outcome_of(cat, r, duration) for r in rows.itertuples()]
    cfg = release_config(rows, base)
    origin = {"url": url, "query": first.query}
    try:
        got = download_task.with_options(retries=cfg.download_retries, retry_delay_seconds=cfg.retry_delays())(
            url, root.sources_dir, _ANY_LENGTH)
        if got.id != vid:
            raise StageError("download", f"the URL now gives video {got.id}, not {vid}")
        sources.upsert_source(cat, vid, **origin, title=got.title, uploader=got.uploader, license=got.license,
                              duration_s=got.duration_s, webpage_url=got.webpage_url,
                              media_path=str(got.media_path.relative_to(root.path)), error=None, stage=None)
        with dl.source_lock(root.sources_dir, vid):
            _remove_leftovers(root, vid)
            info = probe(got.media_path)
            require_streams(info, got.media_path)
            audio = _process_audio(cat, root, _resources(cfg), vid, got.media_path)
            for r in rows.itertuples():
                if r.start_s + r.duration_s > info.duration_s + 1.0:
                    sources.record_clip(cat, r.clip_id, vid, float(r.start_s), float(r.duration_s),
                                        error=f"the window ends at {r.start_s + r.duration_s:g} s, past the "
                                              f"video's end ({info.duration_s:.1f} s)")
                elif not root.clip_path(r.clip_id).exists():
                    _cut(cat, root, cfg, r, got.media_path, audio, got)
        sources.upsert_source(cat, vid, status=SourceStatus.DONE, duration_s=info.duration_s)
        return [_outcome_of(cat, r, info.duration_s) for r in rows.itertuples()]
    except Exception as err:  # noqa: BLE001 - a dead video is its rows, not a crashed rebuild
        if is_whole_run(err):
            raise
        why = item_failure(err)
        sources.fail_source(cat, vid, why, getattr(err, "stage", None), **origin)
        return _gone(rows, why)


@flow(name="rebuild", validate_parameters=False)
def rebuild_flow(release: Release, root_path: str, db_url: str, base: CurateConfig, retry_gone: bool = False,
                 on_video: Callable[[list[ClipOutcome]], None] | None = None) -> list[ClipOutcome]:
    futures = [rebuild_video.submit(rows, root_path, db_url, base, retry_gone) for rows in release.videos().values()]
    out: list[ClipOutcome] = []
    for f in futures:
        got = f.result()
        if on_video:
            on_video(got)
        out += got
    return sorted(out, key=lambda o: o.clip_id)


def run_rebuild(root: DataRoot, db_url: str, release_path: Path, *, cfg: CurateConfig | None = None,
                retry_gone: bool = False, on_video: Callable[[list[ClipOutcome]], None] | None = None) -> dict:
    """Rebuild the release into ``root``; returns the per-clip outcomes and counts, also written to
    ``rebuilds/{release name}.json`` under the root."""
    import json

    release = read_release(release_path)
    root = root.ensure()
    cfg = cfg or CurateConfig(separator="none")
    runner = ThreadPoolTaskRunner(max_workers=cfg.workers)
    outcomes = rebuild_flow.with_options(task_runner=runner)(release, str(root.path), db_url, cfg, retry_gone,
                                                            on_video)
    counts = {k: sum(o.outcome == k for o in outcomes) for k in (MATCHING, DIFFERENT, GONE)}
    report = {"release": str(release.path), "counts": counts, "clips": [asdict(o) for o in outcomes]}
    name = release.meta.get("name") or release.path.parent.name
    atomic_write_text(root.path / "rebuilds" / f"{name}.json", json.dumps(report, indent=2) + "\n")
    return report
