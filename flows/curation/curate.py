"""The curate flow: query or URL → download → separate → loudness → clips → QC → `pending_review`.

One Prefect task per source; only the download is retried (with back-off, and only for faults
that a retry can fix). A failed source or clip becomes a catalog row with its error and the run
goes on. The catalog records each finished step, so a killed run, re-run, redoes nothing finished.
A source is worked on under its catalog lease (dvmset.leases: one worker per source across hosts;
flock stays the same-host guard), so a task delivered twice (Dask is at-least-once) or a run killed
mid-source costs no clip written twice: a held source is left to its holder, a done one is skipped,
and an expired lease is taken over, redoing only what the catalog does not record as finished.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from dvmset import leases, site_blocks, sources, takedown
from dvmset.catalog import Catalog
from dvmset.io import remove_partials
from dvmset.layout import DataRoot
from dvmset.peaks import hints_path, spectrogram_path
from dvmset.records import ClipStatus, SourceStatus
from dvmset.runs import done_keys, record_run, run_done
from flows.cluster import limits
from flows.config import CurateConfig
from flows.curation.lineage import record_made_clip
from flows.curation.takedown import refused_video
from flows.settings import SEARCH_HITS_PER_QUERY
from pipeline import clip as clipping
from pipeline import download as dl
from pipeline import qc
from pipeline.errors import StageError, failure_reason, is_whole_run, item_failure
from pipeline.probe import MediaInfo, probe, require_streams
from pipeline.process import MUSIC_FILE, ProcessedAudio, Separator, load_processed, process_audio
from pipeline.urls import site_of

log = logging.getLogger(__name__)

REFUSED = "refused"  # a source's outcome when a takedown names it

#: Events sent to ``on_event``: ("source", source_id, status) and ("clip", clip_id, status).
EventHook = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Item:
    """One source to curate: a URL, the query that found it, and its id when already known."""

    url: str
    query: str | None = None
    id: str | None = None

    @property
    def key(self) -> str:
        return self.id or dl.url_key(self.url)


def _origin(item: Item) -> dict:
    """Where a source came from, for its row. A video a query found keeps that query when it is also
    reached by a plain URL (its query drives the per-query counts and the stratified split)."""
    return {"url": item.url, **({"query": item.query} if item.query is not None else {})}


# ---------------------------------------------------------------------------------------------
# Steps


def _retry_transient(task_, task_run, state) -> bool:
    """Retry a download only when the fault is not permanent (a 404 stays a 404)."""
    try:
        state.result()
    except dl.SiteBlocked:  # the site pauses instead (every worker): hammering it again deepens the block
        return False
    except StageError as err:
        return not err.permanent and not is_whole_run(err)  # a full disk stops the run, no retry
    except Exception as err:  # noqa: BLE001 - an unexpected fault: let the retry policy decide
        return not is_whole_run(err)
    return False


@task(name="download", cache_policy=NO_CACHE, retry_condition_fn=_retry_transient)
def download_task(url: str, sources_dir: Path, opts: dl.DownloadOptions, expect_id: str | None = None) -> dl.Downloaded:
    if dl.find_downloaded(url, sources_dir) is None:
        limits.throttle_download(url)  # the site's rate limit, where `vidmusician deploy` made one
    return dl.download(url, sources_dir, opts, expect_id)


class _Resources:
    """Per-run shared state: the separator, loaded once (missing weights fail before any source)."""

    def __init__(self, cfg: CurateConfig) -> None:
        self.cfg = cfg
        self.separator: Separator | None = None
        if cfg.separator == "demucs":
            from pipeline import separate

            sep_cfg = separate.SeparatorConfig(
                name=cfg.demucs_name,
                repo=Path(cfg.demucs_repo) if cfg.demucs_repo else None,
                shifts=cfg.demucs_shifts,
                segment_s=cfg.demucs_segment_s,
                device=cfg.device,
            )
            self.separator = Separator(separate.load_separator(sep_cfg), sep_cfg, threading.Lock())


_resources: dict[tuple, _Resources] = {}
_resources_lock = threading.Lock()


def shared_resources(cfg: CurateConfig, made: _Resources | None = None) -> _Resources:
    """The resources for ``cfg`` in this process (``made``, or loaded on first use), so tasks take none
    as arguments: a separator with its lock cannot travel to a Dask worker, which loads its own once."""
    key = (cfg.separator, cfg.demucs_name, cfg.demucs_repo, cfg.demucs_shifts, cfg.demucs_segment_s, cfg.device)
    with _resources_lock:
        if made is not None:
            _resources[key] = made
        elif key not in _resources:
            _resources[key] = _Resources(cfg)
        return _resources[key]


def _process_audio(cat: Catalog, root: DataRoot, res: _Resources, source_id: str, media: Path,
                   info: MediaInfo | None = None) -> ProcessedAudio:
    """Separate and normalise the source's audio once; on a re-run read the recorded result."""
    cfg, source_dir = res.cfg, root.source_dir(source_id)
    key_hash = cfg.audio_params_hash()
    if (source_dir / MUSIC_FILE).exists() and run_done(cat, "audio", source_id, key_hash):
        return load_processed(source_dir, sources.source_vocal_energy(cat, source_id))
    t0 = time.perf_counter()
    with limits.holding(limits.DEMUCS) if res.separator is not None else contextlib.nullcontext():
        audio = process_audio(media, source_dir, target_lufs=cfg.target_lufs, separator=res.separator, info=info)
    sources.upsert_source(cat, source_id, music_path=str(audio.music_path.relative_to(root.path)),
                          separator=cfg.separator_label, **audio.source_values())
    record_run(cat, "audio", source_id, key_hash, time.perf_counter() - t0)
    return audio


def _finished_clip_ids(cat: Catalog, source_id: str, root: DataRoot) -> set[str]:
    """The source's clips a re-run skips: the file is there and the clip stage's run row says done, which is
    written last (after the clip's row and lineage), so a run killed in between makes the clip again."""
    made = {cid for cid in sources.clip_ids_of(cat, source_id) if root.clip_path(cid).exists()}
    return done_keys(cat, "clip", made)


def _vocals_per_s(audio: ProcessedAudio, start_s: float, end_s: float) -> list[float] | None:
    """The residual-vocal share of each second of the window (the review timeline draws it); None when the
    separator gave no per-second energies."""
    if audio.energy_per_s is None:
        return None
    return [audio.vocal_share(start_s + i, min(end_s, start_s + i + 1)) for i in range(int(math.ceil(end_s - start_s)))]


def _make_clip(cat: Catalog, root: DataRoot, cfg: CurateConfig, source_id: str, got: dl.Downloaded,
               audio: ProcessedAudio, span: clipping.ClipSpan, on_event: EventHook | None,
               probes: tuple[MediaInfo, MediaInfo] | None = None) -> str:
    """Cut and QC one window in one decode (``cut_clip(analyse=True)``), then its row, its lineage and, last,
    its run row (what marks it finished); ``probes``: the source's and the music's, made once per source, so
    no clip runs an ffprobe."""
    cid = clipping.clip_id(source_id, span.start_s)
    dest = root.clip_path(cid)
    t0 = time.perf_counter()
    report = error = None
    try:
        source_info, music_info = probes if probes is not None else (None, None)
        cut = clipping.cut_clip(got.media_path, audio.music_path, span, dest, fps=cfg.fps, target_lufs=cfg.target_lufs,
                                source_info=source_info, music_info=music_info, analyse=True)
        report = qc.qc_clip(dest, vocal_energy=audio.vocal_share(span.start_s, span.end_s), loudness=cut.loudness,
                            peaks_path=root.peaks_path(cid),  # waveform peaks, spectrogram, hints for the review tool
                            vocals_per_s=_vocals_per_s(audio, span.start_s, span.end_s), decoded=cut.decoded)
    except Exception as err:  # noqa: BLE001 - the stage contract: a failed clip is a row, not a crash
        dest.unlink(missing_ok=True)
        root.peaks_path(cid).unlink(missing_ok=True)
        spectrogram_path(root.peaks_path(cid)).unlink(missing_ok=True)
        hints_path(root.peaks_path(cid)).unlink(missing_ok=True)
        error = item_failure(err)
        log.warning("clip %s failed: %s", cid, error)
    path = str(dest.relative_to(root.path)) if error is None else None
    status = sources.record_clip(cat, cid, source_id, span.start_s, span.duration_s, path=path, report=report,
                                 error=error)
    if status != ClipStatus.FAILED and (error := record_made_clip(cat, cfg, source_id, span, audio, got)):
        status = ClipStatus.FAILED  # no lineage or fingerprint: the clip failed after all (its row says why)
    record_run(cat, "clip", cid, cfg.clip_params_hash(), time.perf_counter() - t0, error)
    if on_event:
        on_event("clip", cid, status)
    return status


#: Outcomes that are no row status: another worker holds the source; it was found done once claimed
#: (by another run, or another item of this run reaching the same video; counted done).
#: PAUSED: the site is paused (a bot check or HTTP 429, dvmset.site_blocks): the source stays pending.
HELD, DONE_ELSEWHERE, PAUSED = "held", "done-elsewhere", "paused"


@task(name="curate-source", cache_policy=NO_CACHE)
def curate_source(item: Item, root_path: str, db_url: str, cfg: CurateConfig, on_event: EventHook | None = None,
                  lease: leases.LeasePolicy | None = None) -> str:
    """Take one source as far as it goes; returns its final status, or HELD / DONE_ELSEWHERE / PAUSED. A fault
    of this source, of any type, is its failed row; a site block (a bot check, HTTP 429) pauses the site and
    leaves the source pending; only errors of the whole run (pipeline.errors.is_whole_run) raise. Every
    argument travels by value (a Dask worker gets copies): resources are per process."""
    root, cat = DataRoot(Path(root_path)), _catalog(db_url)
    if (stopped := _stopped.get(root_path)) is not None:  # another source of this run hit a whole-run error
        raise stopped
    source_id, status = item.key, _claim_and_curate(item, root, cat, cfg, on_event, lease or leases.LeasePolicy())
    if isinstance(status, tuple):  # the source moved to its real id once downloaded
        source_id, status = status
    if on_event:
        on_event("source", source_id, status)
    return status


def _claim_and_curate(item: Item, root: DataRoot, cat: Catalog, cfg: CurateConfig, on_event: EventHook | None,
                      policy: leases.LeasePolicy) -> str | tuple[str, str]:
    """Claim the source by its key (the URL's, where the id is not known yet) before any download, so a
    second run finds it held instead of fetching it too; download; go on under the video's own lease."""
    site = site_of(item.url)
    if site_blocks.paused(cat, site) is not None:
        return PAUSED
    owner, source_id = leases.new_owner(), item.key
    pre = leases.claim(cat, leases.SOURCES, [source_id], owner, policy)
    if pre.exhausted:
        return SourceStatus.FAILED
    if pre.held:
        return HELD
    ours = source_id if pre.claimed else None  # no row to claim: a caller that planned none
    try:
        with leases.Heartbeat(cat, leases.SOURCES, [ours], owner, policy) if ours else contextlib.nullcontext():
            fresh = dl.find_downloaded(item.url, root.sources_dir) is None
            got = download_task.with_options(retries=cfg.download_retries, retry_delay_seconds=cfg.retry_delays())(
                item.url, root.sources_dir, cfg.download_options())
        if fresh:
            site_blocks.got_through(cat, site)
        if why := refused_video(cat, root, item.url, got):
            log.warning("refused %s: %s", got.id, why)
            if got.id != source_id:
                sources.drop_placeholder(cat, source_id)
            elif ours:
                _release(cat, ours, owner)
            return got.id, REFUSED
        if got.id != source_id:  # the URL's real id is known now: the row (and its lease) moves to it
            sources.drop_placeholder(cat, source_id)
            ours, source_id = None, got.id
        sources.upsert_source(
            cat, source_id, **_origin(item), title=got.title, uploader=got.uploader,
            license=got.license, duration_s=got.duration_s, webpage_url=got.webpage_url,
            media_path=str(got.media_path.relative_to(root.path)), error=None, stage=None,
        )
        res = shared_resources(cfg)
        return source_id, _under_lease(cat, root, cfg, res, source_id, got, item, on_event, policy,
                                       owner if ours else None)
    except dl.SiteBlocked as err:  # no fault of the source: it stays pending, every worker pauses the site
        site_blocks.record_block(cat, err.site, err.kind, str(err), retry_after_s=err.retry_after_s,
                                 policy=cfg.pause_policy())
        if ours:
            _release(cat, ours, owner)
        return PAUSED
    except leases.LeaseLost as err:  # it expired while we worked and another worker has the source now
        log.warning("%s", err)
        return source_id, HELD
    except Exception as err:  # noqa: BLE001 - the stage contract: a failed source is a row
        if is_whole_run(err):
            _stopped[str(root.path)] = err  # the sources still queued in this process start no work
            if ours:
                _release(cat, ours, owner)
        sources.fail_source(cat, source_id, item_failure(err), getattr(err, "stage", None), **_origin(item))
        if ours and not is_whole_run(err):
            with contextlib.suppress(leases.LeaseLost):
                leases.finish(cat, leases.SOURCES, ours, owner)
        return source_id, SourceStatus.FAILED


def _under_lease(cat: Catalog, root: DataRoot, cfg: CurateConfig, res: _Resources, source_id: str,
                 got: dl.Downloaded, item: Item, on_event: EventHook | None, policy: leases.LeasePolicy,
                 owner: str | None = None) -> str:
    """Process the source holding its catalog lease (renewed meanwhile) and its same-host flock; ``owner``:
    the lease is held already (claimed by this key before the download), else it is claimed here.

    A live lease of another worker: HELD, left to it. Found done once claimed: DONE_ELSEWHERE. Given up
    after workers kept dying on it: FAILED (the claim wrote the row). A failure is recorded before
    the lease is let go, so no other worker starts on a source about to be marked failed.
    """
    if owner is None:
        owner = leases.new_owner()
        claim = leases.claim(cat, leases.SOURCES, [source_id], owner, policy)
        if claim.exhausted:
            return SourceStatus.FAILED
        if not claim.claimed:
            return HELD
    try:
        if source_id in sources.source_ids(cat, SourceStatus.DONE) and source_id not in sources.with_failed_clips(cat):
            status = DONE_ELSEWHERE
        else:
            with leases.Heartbeat(cat, leases.SOURCES, [source_id], owner, policy) as beat, \
                    dl.source_lock(root.sources_dir, source_id):  # one worker per source on this host
                status = _process_source(cat, root, cfg, res, source_id, got, on_event, beat.check)
    except leases.LeaseLost:
        raise
    except Exception as err:
        if is_whole_run(err):  # the run stops (a full disk): no fault of this source, its attempt is given back
            _release(cat, source_id, owner)
            raise
        reason = item_failure(err)
        sources.fail_source(cat, source_id, reason, getattr(err, "stage", None), **_origin(item))
        status = SourceStatus.FAILED
    leases.finish(cat, leases.SOURCES, source_id, owner)
    return status


def _release(cat: Catalog, source_id: str, owner: str) -> None:
    try:
        leases.release(cat, leases.SOURCES, source_id, owner)
    except Exception as err:  # noqa: BLE001 - the catalog may be what failed: the lease then expires
        log.warning("could not release the lease on source %s (it expires): %s", source_id, err)


def _process_source(cat: Catalog, root: DataRoot, cfg: CurateConfig, res: _Resources, source_id: str,
                    got: dl.Downloaded, on_event: EventHook | None, check: Callable[[], None] = lambda: None) -> str:
    """Audio, clips and QC of one downloaded source; the caller holds the source's lease and lock.
    ``check`` raises when the lease was lost: called before each clip and before marking it done."""
    _remove_leftovers(root, source_id)
    info = probe(got.media_path)
    require_streams(info, got.media_path)
    spans = clipping.plan_clips(info.duration_s, cfg.clip_seconds, max_clips=cfg.max_clips_per_source,
                                fps=cfg.fps)
    if not spans:
        raise StageError("clip", f"source is {info.duration_s:.1f} s, shorter than one "
                                 f"{cfg.clip_seconds:g} s clip")
    audio = _process_audio(cat, root, res, source_id, got.media_path, info)
    probes = (info, probe(audio.music_path, stage="clip"))  # once per source: the clips probe nothing
    finished = _finished_clip_ids(cat, source_id, root)
    failed: list[str] = []
    for span in spans:
        if clipping.clip_id(source_id, span.start_s) not in finished:
            check()
            status = _make_clip(cat, root, cfg, source_id, got, audio, span, on_event, probes)
            if status == ClipStatus.FAILED:
                failed.append(clipping.clip_id(source_id, span.start_s))
    check()
    if failed:  # not done: a plain re-run lists it as failed, --retry-failed cuts just these clips again
        raise StageError("clip", f"{len(failed)} of {len(spans)} clips failed ({', '.join(failed[:3])}"
                                 f"{', ...' if len(failed) > 3 else ''}; each clip's row says why); the others are "
                                 "kept: `vidmusician curate --retry-failed` cuts the failed ones again")
    sources.upsert_source(cat, source_id, status=SourceStatus.DONE, error=None, stage=None)
    return SourceStatus.DONE


def _remove_leftovers(root: DataRoot, source_id: str) -> None:
    """Delete the half-written files a killed run left for this source (its clips and its audio).

    Safe only under the source's lock: every write into the source folder and every clip of this
    source happens under it (the download's info.json included), so no live writer owns these.
    """
    clips = remove_partials(root.clips_dir, f"{source_id}-[0-9][0-9][0-9][0-9][0-9]")
    for p in clips + remove_partials(root.source_dir(source_id)):
        log.info("removed %s left by an interrupted run", p.name)


#: root -> the whole-run error that stopped this process's run on it (reset when a run starts)
_stopped: dict[str, BaseException] = {}

_catalogs: dict[str, Catalog] = {}
_catalogs_lock = threading.Lock()


def _catalog(url: str) -> Catalog:
    """One engine per database URL per process, shared by the task threads."""
    with _catalogs_lock:
        if url not in _catalogs:
            _catalogs[url] = Catalog(url)
        return _catalogs[url]


# ---------------------------------------------------------------------------------------------
# The flow


def resolve_items(cat: Catalog, queries: list[str], urls: list[str], per_query: int,
                  opts: dl.DownloadOptions, retry_failed: bool = False,
                  refused: dict[str, str] | None = None,
                  failed_before: list[str] | None = None,
                  paused_queries: list[str] | None = None,
                  pause_policy: site_blocks.PausePolicy = site_blocks.PausePolicy()) -> tuple[list[Item], int]:
    """Search each query, add the URLs; drop what the catalog already finished. Returns (todo, skipped).

    ``refused`` (when given) collects {video id or URL: why} of the taken-down videos left out;
    ``failed_before`` the keys of the failed sources left out (``skipped`` counts them too);
    ``paused_queries`` the queries not searched because their site is paused (or paused it now).
    """
    items: list[Item] = []
    for q in queries:
        target = dl.search_query(q, per_query)
        if site_blocks.paused(cat, site_of(target)) is None:
            try:
                items += [Item(url=e.url, query=q, id=e.id) for e in dl.search(q, per_query, opts)]
                continue
            except dl.SiteBlocked as err:
                site_blocks.record_block(cat, err.site, err.kind, str(err), retry_after_s=err.retry_after_s,
                                         policy=pause_policy)
        if paused_queries is None:
            raise StageError("download", f"{site_of(target)} is paused: query {q!r} not searched")
        paused_queries.append(q)
    items += [Item(url=u) for u in urls]
    seen: set[str] = set()
    done, failed = sources.source_ids(cat, SourceStatus.DONE), sources.source_ids(cat, SourceStatus.FAILED)
    # A URL's row moves to the video's real id once downloaded, so match finished rows by URL too.
    done_urls, failed_urls = sources.source_urls(cat, SourceStatus.DONE), sources.source_urls(cat, SourceStatus.FAILED)
    partly = sources.with_failed_clips(cat)  # "done" with a failed clip (older catalogs): failed
    done, failed = done - set(partly), failed | set(partly)
    done_urls, failed_urls = done_urls - set(partly.values()), failed_urls | {u for u in partly.values() if u}
    todo, skipped = [], 0
    for it in items:
        if it.key in seen:
            continue
        seen.add(it.key)
        if refused is not None and (why := takedown.refusal(cat, video_id=it.id, url=it.url)):
            refused[it.id or it.url] = why
            continue
        if it.key in done or it.url in done_urls:
            skipped += 1
            continue
        if (it.key in failed or it.url in failed_urls) and not retry_failed:
            skipped += 1
            if failed_before is not None:
                failed_before.append(it.key)
            continue
        todo.append(it)
    return todo, skipped


@flow(name="curate", validate_parameters=False)
def curate_flow(
    root_path: str,
    db_url: str,
    queries: list[str] | None = None,
    urls: list[str] | None = None,
    per_query: int = SEARCH_HITS_PER_QUERY,
    cfg: CurateConfig | None = None,
    retry_failed: bool = False,
    on_event: EventHook | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    res: _Resources | None = None,
    lease: leases.LeasePolicy | None = None,
) -> dict:
    """Curate sources into clips awaiting review; returns counts of this run's outcomes (``held``:
    sources another worker holds a live lease on, left to it; a later run takes over expired ones;
    ``paused``: sources left pending because their site is paused, ``pauses`` saying until when)."""
    cfg = cfg or CurateConfig()
    shared_resources(cfg, res)  # the tasks find it there (loaded now unless given)
    root, cat = DataRoot(Path(root_path)).ensure(), _catalog(db_url)
    _stopped.pop(str(root.path), None)  # the key the tasks get
    refused: dict[str, str] = {}
    failed_before: list[str] = []
    paused_queries: list[str] = []
    todo, skipped = resolve_items(cat, queries or [], urls or [], per_query, cfg.download_options(),
                                  retry_failed, refused, failed_before, paused_queries, cfg.pause_policy())
    known = sources.source_ids(cat)
    for it in todo:  # a row per source before any work, so a killed run leaves it pending, not unknown
        if it.key not in known:
            sources.upsert_source(cat, it.key, **_origin(it))
    if on_plan:
        on_plan(len(todo), skipped)
    futures = [curate_source.submit(it, str(root.path), db_url, cfg, on_event, lease) for it in todo]
    # curate_source records its own failures; a crash past that (the catalog down) counts as failed
    statuses = [f.result(raise_on_failure=False) for f in futures]
    for st in statuses:
        if isinstance(st, BaseException) and is_whole_run(st):
            raise st  # e.g. the disk filled up: every later source would fail the same way
        if isinstance(st, BaseException):
            log.warning("a source task crashed past its own error handling: %s", failure_reason(st))
    statuses = [st if isinstance(st, str) else SourceStatus.FAILED for st in statuses]
    refused |= {it.key: takedown.refusal(cat, url=it.url) or "taken down (see the log)"
                for it, st in zip(todo, statuses, strict=True) if st == REFUSED}
    return {"planned": len(todo), "skipped": skipped, "failed_before": failed_before, "refused": refused, "held": sum(s == HELD for s in statuses),
            "paused": sum(s == PAUSED for s in statuses), "paused_queries": paused_queries,
            "pauses": [p.describe() for p in site_blocks.active_pauses(cat)],
            "done": sum(s in (SourceStatus.DONE, DONE_ELSEWHERE) for s in statuses),
            "done_elsewhere": sum(s == DONE_ELSEWHERE for s in statuses),
            "failed": sum(s == SourceStatus.FAILED for s in statuses),
            "config": asdict(cfg)}


def run_curate(root: DataRoot, db_url: str, *, queries: list[str] | None = None, urls: list[str] | None = None,
               per_query: int = SEARCH_HITS_PER_QUERY, cfg: CurateConfig | None = None, retry_failed: bool = False,
               on_event: EventHook | None = None, on_plan: Callable[[int, int], None] | None = None) -> dict:
    """Run the curate flow with ``cfg.workers`` sources in flight at once."""
    cfg = cfg or CurateConfig()
    res = shared_resources(cfg)  # loads the separator once, before Prefect starts: missing weights fail fast
    runner = ThreadPoolTaskRunner(max_workers=cfg.workers)
    return curate_flow.with_options(task_runner=runner)(
        str(root.path), db_url, queries=queries, urls=urls, per_query=per_query, cfg=cfg,
        retry_failed=retry_failed, on_event=on_event, on_plan=on_plan, res=res,
    )
