"""``vidmusician curate --from-release FILE``: rebuild a released dataset on this machine.

Each listed video is downloaded, its audio processed with the release's parameters, and EXACTLY the
listed windows cut (not re-planned); each clip gets the release's split and verdict (marked "from
release", not reviewed again) and is checked against the release: rebuilt and matching, rebuilt but
different (how), gone (the download's error), invalid (a row set aside before any download: a bad
field, or a URL that is not a public http(s) host) or refused (taken down on this root). Resumable like
curate: a re-run skips videos it finished and clips already cut.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from dvmset import leases, site_blocks, sources
from dvmset.catalog import Catalog
from dvmset.constants import NO_LOUDNESS_CHANGE
from dvmset.io import atomic_write_text
from dvmset.layout import DataRoot, id_problem
from dvmset.records import ClipStatus, SourceStatus
from dvmset.release import Release, compare_rebuilt, read_release
from dvmset.spans import release_review_step
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
from pipeline.urls import PrivateUrlRefused, private_url_problem, resolve_host

log = logging.getLogger(__name__)
ORIGIN = "release"
MATCHING, DIFFERENT, GONE, INVALID, REFUSED = "matching", "different", "gone", "invalid", "refused"
HELD = "held"  # another run holds the video's source lease: left to it, this run rebuilds nothing of it
OUTCOMES = (MATCHING, DIFFERENT, GONE, INVALID, REFUSED, HELD)
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
    outcome: str  # one of OUTCOMES
    detail: str


def _invalid(rows: pd.DataFrame, why: str) -> list[ClipOutcome]:
    return [ClipOutcome(r.clip_id, r.video_id, INVALID, f"row {r.row}: url {why}") for r in rows.itertuples()]


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
    if lufs is not None:  # "none": no loudness change, the window's audio kept at its level
        given["target_lufs"] = None if lufs == NO_LOUDNESS_CHANGE else float(lufs)
    if fps is not None:
        given["fps"] = int(fps)
    return CurateConfig(**{**asdict(base), **given})


def _gone(rows: pd.DataFrame, why: str, outcome: str = GONE) -> list[ClipOutcome]:
    return [ClipOutcome(r.clip_id, r.video_id, outcome, why) for r in rows.itertuples()]


def _after_failure(cat: Catalog, root: DataRoot, rows: pd.DataFrame, why: str) -> list[ClipOutcome]:
    """The rows of a video whose rebuild failed part way: a clip already cut is reported as it stands
    (the catalog and the report agree), the rest are gone."""
    with cat.session() as s:
        cut = {c.id for c in s.query(Clip).filter(Clip.id.in_(list(rows.clip_id)))
               if c.status != ClipStatus.FAILED and root.clip_path(c.id).exists()}
    return [_outcome_of(cat, r, None) if r.clip_id in cut else ClipOutcome(r.clip_id, r.video_id, GONE, why)
            for r in rows.itertuples()]


def _drop_other_download(cat: Catalog, root: DataRoot, got: dl.Downloaded) -> bool:
    """Delete a download that is not the listed video unless the catalog knows it (another source's)."""
    with dl.source_lock(root.sources_dir, got.id), cat.session() as s:
        if s.get(sources.Source, got.id) is not None:
            return False
        shutil.rmtree(root.source_dir(got.id), ignore_errors=True)
    return True


def _outcome_of(cat: Catalog, row, source_duration_s: float | None) -> ClipOutcome:  # noqa: ANN001
    with cat.session() as s:
        c = s.get(Clip, row.clip_id)
    if c is None or c.status == ClipStatus.FAILED:
        return ClipOutcome(row.clip_id, row.video_id, DIFFERENT, f"could not be cut: {c.error if c else 'no row'}")
    status, how = compare_rebuilt(row._asdict(), source_duration_s=source_duration_s,
                                  music_sha256=c.music_sha256, music_fingerprint=c.music_fingerprint)
    return ClipOutcome(row.clip_id, row.video_id, status, how)


def _cut(cat: Catalog, root: DataRoot, cfg: CurateConfig, row, media: Path, audio, got: dl.Downloaded,  # noqa: ANN001
         probes: tuple | None = None) -> None:
    """Cut and QC one listed window in one decode; ``probes``: (source, music) probes made once per source."""
    span = clipping.ClipSpan(float(row.start_s), float(row.duration_s))
    dest = root.clip_path(row.clip_id)
    source_info, music_info = probes if probes is not None else (None, None)
    try:
        cut = clipping.cut_clip(media, audio.music_path, span, dest, fps=cfg.fps, target_lufs=cfg.target_lufs,
                                source_info=source_info, music_info=music_info, analyse=True)
        report = qc.qc_clip(dest, vocal_energy=audio.vocal_share(span.start_s, span.end_s), loudness=cut.loudness,
                            peaks_path=root.peaks_path(row.clip_id), decoded=cut.decoded)
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
        listed = getattr(row, "excluded_spans", None)  # JSON text, or None/NaN when the release lists none
        spans = json.loads(listed) if isinstance(listed, str) and listed else []
        lineage = c.lineage or {}  # reassigned whole: the JSON column sees a new value
        c.lineage = {**lineage, "steps": [*lineage.get("steps", []), release_review_step(row.verdict, spans)]}


@task(name="rebuild-video", cache_policy=NO_CACHE)
def rebuild_video(rows: pd.DataFrame, root_path: str, db_url: str, base: CurateConfig, retry_gone: bool,
                  opts: dl.DownloadOptions = _ANY_LENGTH) -> list[ClipOutcome]:
    root, cat = DataRoot(Path(root_path)), _catalog(db_url)
    first = rows.iloc[0]
    vid, url = first.video_id, first.url
    if why := refusal(cat, video_id=vid, url=url):
        return _gone(rows, f"refused here: {why}", REFUSED)
    with cat.session() as s:
        src = s.get(sources.Source, vid)
        done = src is not None and src.status == SourceStatus.DONE
        failed = src is not None and src.status == SourceStatus.FAILED
        known_error, duration = (src.error, src.duration_s) if src is not None else (None, None)
    if failed and not retry_gone:
        return _gone(rows, known_error or "download failed")
    if done and all(root.clip_path(c).exists() for c in rows.clip_id):
        return [_outcome_of(cat, r, duration) for r in rows.itertuples()]
    origin = {"url": url, "query": first.query}
    sources.upsert_source(cat, vid, **origin)  # the row the lease lives on (its status, if any, stays)
    owner = leases.new_owner()
    claim = leases.claim(cat, leases.SOURCES, [vid], owner)
    if claim.exhausted:
        return _gone(rows, claim.exhausted[vid])
    if not claim.claimed:
        return _gone(rows, "another run is rebuilding this video now; run again once it is done", HELD)
    finished = False
    try:
        with leases.Heartbeat(cat, leases.SOURCES, [vid], owner):
            out = _rebuild_claimed(rows, root, cat, base, origin, opts)
        finished = True
        return out
    finally:
        if finished:
            with contextlib.suppress(leases.LeaseLost):
                leases.finish(cat, leases.SOURCES, vid, owner)
        else:  # a whole-run error (a full disk): no fault of this video, its try is given back
            leases.release(cat, leases.SOURCES, vid, owner)


def _rebuild_claimed(rows: pd.DataFrame, root: DataRoot, cat: Catalog, base: CurateConfig, origin: dict,
                     opts: dl.DownloadOptions) -> list[ClipOutcome]:
    """Download, process and cut one release video; the caller holds its source lease."""
    vid, url = rows.iloc[0].video_id, origin["url"]
    cfg = release_config(rows, base)
    dropped = ""  # an earlier run may have left another video's download under this URL, with no row
    if (prior := dl.find_downloaded(url, root.sources_dir)) is not None and prior.id != vid \
            and _drop_other_download(cat, root, prior):
        dropped = f" (an earlier download from this URL, video {prior.id}, deleted)"
    try:
        got = download_task.with_options(retries=cfg.download_retries, retry_delay_seconds=cfg.retry_delays())(
            url, root.sources_dir, opts, vid)
        if got.id != vid:  # download() refuses another video before fetching it; this is the last guard
            deleted = _drop_other_download(cat, root, got)
            raise StageError("download", f"the URL now gives video {got.id}, not {vid}"
                                         + (" (that download deleted)" if deleted else ""))
        sources.upsert_source(cat, vid, **origin, title=got.title, uploader=got.uploader, license=got.license,
                              duration_s=got.duration_s, webpage_url=got.webpage_url,
                              media_path=str(got.media_path.relative_to(root.path)), error=None, stage=None)
        with dl.source_lock(root.sources_dir, vid):
            _remove_leftovers(root, vid)
            info = probe(got.media_path)
            require_streams(info, got.media_path)
            audio = _process_audio(cat, root, _resources(cfg), vid, got.media_path, info)
            probes = (info, probe(audio.music_path, stage="clip"))  # once per source, none per clip
            for r in rows.itertuples():
                if r.start_s + r.duration_s > info.duration_s + 1.0:
                    sources.record_clip(cat, r.clip_id, vid, float(r.start_s), float(r.duration_s),
                                        error=f"the window ends at {r.start_s + r.duration_s:g} s, past the "
                                              f"video's end ({info.duration_s:.1f} s)")
                elif not root.clip_path(r.clip_id).exists():
                    _cut(cat, root, cfg, r, got.media_path, audio, got, probes)
        sources.upsert_source(cat, vid, status=SourceStatus.DONE, duration_s=info.duration_s)
        return [_outcome_of(cat, r, info.duration_s) for r in rows.itertuples()]
    except dl.SiteBlocked as err:  # the site pushes back: not this video's fault; every worker pauses the site
        pause = site_blocks.record_block(cat, err.site, err.kind, str(err), retry_after_s=err.retry_after_s,
                                         policy=base.pause_policy())
        return _gone(rows, f"{pause.describe()}: run the rebuild again after that", HELD)
    except PrivateUrlRefused as err:  # found only once fetching (a redirect, the media's own URL)
        return _invalid(rows, err.args[0])
    except Exception as err:  # noqa: BLE001 - a dead video is its rows, not a crashed rebuild
        if is_whole_run(err):
            raise
        why = item_failure(err) + dropped
        sources.fail_source(cat, vid, why, getattr(err, "stage", None), **origin)
        return _after_failure(cat, root, rows, why)


@flow(name="rebuild", validate_parameters=False)
def rebuild_flow(videos: list[pd.DataFrame], root_path: str, db_url: str, base: CurateConfig, retry_gone: bool = False,
                 on_video: Callable[[list[ClipOutcome]], None] | None = None,
                 opts: dl.DownloadOptions = _ANY_LENGTH) -> list[ClipOutcome]:
    futures = [rebuild_video.submit(rows, root_path, db_url, base, retry_gone, opts) for rows in videos]
    out: list[ClipOutcome] = []
    for f in futures:
        got = f.result()
        if on_video:
            on_video(got)
        out += got
    return sorted(out, key=lambda o: o.clip_id)


def set_aside(release: Release, *, allow_private_urls: bool = False) -> tuple[list[ClipOutcome], list[pd.DataFrame]]:
    """(the rows refused before any download, the videos to rebuild): a row with a bad field (read_release),
    and unless ``allow_private_urls`` every row of a video whose URL's host is not public (pipeline.urls)."""
    refused = [ClipOutcome(r.clip_id, r.video_id, INVALID, r.detail) for r in release.invalid]
    todo = []
    resolve = functools.lru_cache(maxsize=None)(resolve_host)  # one lookup per host, not per video
    for rows in release.videos().values():
        why = None if allow_private_urls else private_url_problem(rows.url.iloc[0], resolve)
        if why:
            refused += _invalid(rows, why)
        else:
            todo.append(rows)
    return refused, todo


def report_name(release: Release) -> str:
    """The report's file name: the release's name, its folder's, or "release" (none is a path)."""
    for name in (release.meta.get("name"), release.path.parent.name):
        if isinstance(name, str) and id_problem(name) is None:
            return name
    return "release"


def run_rebuild(root: DataRoot, db_url: str, release: Path | Release, *, cfg: CurateConfig | None = None,
                retry_gone: bool = False, on_video: Callable[[list[ClipOutcome]], None] | None = None,
                on_invalid: Callable[[list[ClipOutcome]], None] | None = None,
                allow_private_urls: bool = False) -> dict:
    """Rebuild the release into ``root``; returns the per-clip outcomes and counts, also written to
    ``rebuilds/{release name}.json`` under the root. Rows are checked before any download; ``on_invalid``
    hears of the ones set aside, ``on_video`` of each video's outcomes."""
    import json

    release = release if isinstance(release, Release) else read_release(release)
    invalid, videos = set_aside(release, allow_private_urls=allow_private_urls)
    if on_invalid and invalid:
        on_invalid(invalid)
    root = root.ensure()
    cfg = cfg or CurateConfig(separator="none")
    opts = dataclasses.replace(_ANY_LENGTH, public_only=not allow_private_urls)
    runner = ThreadPoolTaskRunner(max_workers=cfg.workers)
    outcomes = rebuild_flow.with_options(task_runner=runner)(videos, str(root.path), db_url, cfg, retry_gone,
                                                            on_video, opts) if videos else []
    outcomes = sorted(outcomes, key=lambda o: o.clip_id) + invalid
    counts = {k: sum(o.outcome == k for o in outcomes) for k in OUTCOMES}
    report = {"release": str(release.path), "counts": counts, "clips": [asdict(o) for o in outcomes]}
    atomic_write_text(root.path / "rebuilds" / f"{report_name(release)}.json", json.dumps(report, indent=2) + "\n")
    return report
