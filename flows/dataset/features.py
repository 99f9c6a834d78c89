"""The features flow: accepted clips -> CLIP + EnCodec feature shards, resumable shard by shard."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from dvmset import leases
from dvmset.catalog import Catalog
from dvmset.io import remove_partials
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus
from dvmset.runs import record_run
from dvmset.shards import FeatureStore
from dvmset.status import FEATURES_STAGE
from dvmset.tables import Clip, Run, Source
from flows.config import FeaturesConfig
from pipeline.errors import is_whole_run

log = logging.getLogger(__name__)
STAGE = FEATURES_STAGE

INDEX_EVERY_S = 300.0  # a run writes its new shards' rows into the index at most this often, and at its end
ClipHook = Callable[[str, str | None], None]  # (clip id, error or None) after each clip
PlanHook = Callable[[int, int], None]  # (clips to extract, clips already in shards)


@contextlib.contextmanager
def _exclusive(features_dir: Path) -> Iterator[None]:
    """One features run per directory at a time; clears temp files a killed run left behind."""
    with FeatureStore(features_dir).exclusive("`vidmusician features`"):
        for tmp in remove_partials(features_dir, "shard-*") + remove_partials(features_dir, "index"):
            log.info("removed %s left by an interrupted run", tmp.name)
        yield


def _check_compatible(store: FeatureStore, cfg: FeaturesConfig) -> None:
    want = cfg.identity()
    for raw in pc.unique(store.index_column("config")).to_pylist():
        have = json.loads(raw).get("identity", {})
        if have.get("format") != want["format"]:
            raise ValueError(
                f"{store.dir} holds shard format {have.get('format')!r}; this version writes {want['format']!r}. "
                f"It still reads them; to extract more, move {store.dir} aside and run `vidmusician features` "
                "again, which re-extracts every accepted clip"
            )
        if have != want:
            raise ValueError(
                f"{store.dir} holds features made with {have}, this run uses {want}: extract with the same "
                f"options, or move {store.dir} aside to re-extract every accepted clip with the new ones"
            )


def _load_models(cfg: FeaturesConfig):  # noqa: ANN202 - (ClipImageEncoder, codec module)
    from pipeline.clip_encoder import ClipEncoderSpec, load_clip_encoder
    from pipeline.codec import load_codec

    spec = ClipEncoderSpec(cfg.clip_model, None if cfg.clip_model == "tiny" else cfg.pretrained)
    return load_clip_encoder(spec, cfg.device, cfg.precision), load_codec(cfg.codec, cfg.device)


def _extract_shard(root: DataRoot, db_url: str, n: int, clips: list, models: tuple, cfg: FeaturesConfig,
                   on_clip: ClipHook | None, on_start: Callable[[str], None] | None = None) -> dict:
    """Extract one shard's clips, write the shard and record each clip's run; returns the shard's index rows
    (``rows``), which the run writes into the index (:class:`_NewRows`)."""
    from pipeline.clip_encoder import weights_sha256
    from pipeline.features import ExtractConfig, build_shard

    encoder, codec = models
    store, cat = FeatureStore(root.features_dir), Catalog(db_url)
    config_json = json.dumps({"identity": cfg.identity(), "run": asdict(cfg), "image_size": encoder.image_size,
                              "embed_dim": encoder.embed_dim, "clip_weights_sha256": weights_sha256(encoder)},
                             sort_keys=True)
    t0 = time.monotonic()
    try:
        rows, failed = build_shard(store.shard_path(n), clips, encoder, codec,
                                   ExtractConfig(clip_s=cfg.clip_s, batch_size=cfg.batch_size), config_json, on_clip,
                                   on_start)
        per_clip = (time.monotonic() - t0) / max(1, len(clips))
        for c in clips:
            record_run(cat, STAGE, c.clip_id, cfg.params_hash(), per_clip, failed.get(c.clip_id))
    finally:
        cat.dispose()
    return {"shard": store.shard_path(n).name if rows else None, "done": len(rows), "failed": failed, "rows": rows}


extract_shard_task = task(name="features-shard", cache_policy=NO_CACHE)(_extract_shard)


class _NewRows:
    """The index rows of the shards a run has written, put into the index every :data:`INDEX_EVERY_S` seconds
    and at the run's end: each write rewrites the whole index, so a write per shard cost a run I/O of shards x
    index (~28,000 rewrites at 1.8 M clips). Rows not yet written are in their shards' headers: the next run
    indexes a killed run's shards first (:meth:`FeatureStore.recover`)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store, self.rows, self.since = store, [], time.monotonic()

    def add(self, rows: list[dict]) -> None:
        self.rows += rows
        if time.monotonic() - self.since >= INDEX_EVERY_S:
            self.write()

    def write(self) -> None:
        if self.rows:
            self.store.append(self.rows)
            self.rows = []
        self.since = time.monotonic()


@dataclass(frozen=True)
class Plan:
    todo: list  # [ShardClip] to extract this run, in id order
    already: int  # accepted clips already in shards
    failed_before: dict  # {clip_id: error} failed with this extractor before, left out (retry_failed=False)


def pending_clips(root: DataRoot, cat: Catalog, store: FeatureStore, cfg: FeaturesConfig) -> Plan:
    """Accepted clips without features, in id order, up to ``cfg.limit``.

    Clips that failed with this extractor config are left out unless ``cfg.retry_failed``: a clip
    that always fails (a broken file) must not take a ``--limit`` run's whole budget every time.
    """
    from pipeline.features import ShardClip

    with cat.session() as s:
        rows = s.execute(select(Clip.id, Clip.source_id, Clip.split, Source.query)
                         .join(Source, Source.id == Clip.source_id)
                         .where(Clip.status == ClipStatus.ACCEPTED).order_by(Clip.id)).all()
        failed = {} if cfg.retry_failed else dict(s.execute(
            select(Run.key, Run.error).where(Run.stage == STAGE, Run.params_hash == cfg.params_hash(),
                                             Run.status == "failed")).all())
    indexed = pc.is_in(pa.array([r.id for r in rows], pa.string()), value_set=store.index_column("clip_id"))
    done = indexed.to_numpy(zero_copy_only=False)  # an Arrow lookup, not a set of every indexed id
    todo = [ShardClip(r.id, root.clip_path(r.id), r.query, r.source_id, r.split)
            for r, d in zip(rows, done, strict=True) if not d and r.id not in failed]
    skipped = {r.id: failed[r.id] for r, d in zip(rows, done, strict=True) if r.id in failed and not d}
    return Plan(todo if cfg.limit is None else todo[:cfg.limit], int(done.sum()), skipped)


def run_features(root: DataRoot, db_url: str, cfg: FeaturesConfig, on_plan: PlanHook | None = None,
                 on_clip: ClipHook | None = None, shard_fn: Callable = _extract_shard,
                 models: tuple | None = None, lease: leases.LeasePolicy | None = None) -> dict:
    """Extract every accepted clip not yet in a shard, ``cfg.clips_per_shard`` clips per shard.

    A shard's clips are claimed in the catalog first (dvmset.leases): clips another worker holds are
    left to it (``held``). A death counts against the clip being extracted when it happened, not the
    shard (a killed run's clips never started are not charged); an interrupt (Ctrl-C, SIGTERM) or an
    error of the whole run charges none. A clip a worker died on ``policy.max_attempts`` times is
    recorded failed with the reason.

    ``models`` (CLIP image encoder, codec) already loaded are used as they are; by default they
    are loaded from ``cfg``. A clip that fails for any reason is recorded failed and the run goes
    on; errors of the whole run (out of memory, a full disk, no weights) stop it (pipeline.errors).
    """
    store = FeatureStore(root.features_dir)
    with _exclusive(store.dir):
        recovered = store.recover()
        if recovered:
            log.warning("indexed shards left out by an interrupted run: %s", recovered)
        _check_compatible(store, cfg)
        cat = Catalog(db_url)
        try:
            plan = pending_clips(root, cat, store, cfg)
        finally:
            cat.dispose()
        todo = plan.todo
        if on_plan is not None:
            on_plan(len(todo), plan.already)
        result = {"shards": [], "done": 0, "failed": {}, "already": plan.already,
                  "failed_before": plan.failed_before, "recovered": recovered, "held": 0}
        if not todo:
            return result
        models = models or _load_models(cfg)
        owner, policy, cat = leases.new_owner(), lease or leases.LeasePolicy(), Catalog(db_url)
        new_rows = _NewRows(store)
        try:
            for i in range(0, len(todo), cfg.clips_per_shard):
                mine = _claim_shard(cat, todo[i : i + cfg.clips_per_shard], owner, policy, cfg, result)
                if not mine:
                    continue
                ids = [c.clip_id for c in mine]
                with leases.Heartbeat(cat, leases.CLIPS, ids, owner, policy), _charged(cat, ids, owner) as marks:
                    out = shard_fn(root, db_url, store.next_shard_number(), mine, models, cfg,
                                   marks.after(on_clip), marks.start)
                for cid in ids:
                    try:
                        leases.finish(cat, leases.CLIPS, cid, owner)
                    except leases.LeaseLost as err:  # slow enough to be taken over: its rows are in
                        log.warning("%s", err)
                new_rows.add(out["rows"])
                result["shards"] += [out["shard"]] if out["shard"] else []
                result["done"] += out["done"]
                result["failed"].update(out["failed"])
        except BaseException:
            try:  # the shards written so far are whole: index them; if that fails too, the next run recovers them
                new_rows.write()
            except Exception as err:  # noqa: BLE001 - the run's own error is the one to raise
                log.warning("could not index this run's last shards (the next run will): %s", err)
            raise
        finally:
            cat.dispose()
        new_rows.write()
        return result


class _Marks:
    """Counts an attempt on the clip being extracted (leases.start) and takes it back once the clip has an
    outcome (leases.survived): a kill is charged to that clip alone."""

    def __init__(self, cat: Catalog, owner: str) -> None:
        self.cat, self.owner, self.current = cat, owner, None

    def start(self, clip_id: str) -> None:
        leases.start(self.cat, leases.CLIPS, clip_id, self.owner)
        self.current = clip_id

    def after(self, on_clip: ClipHook | None) -> ClipHook:
        def done(clip_id: str, error: str | None) -> None:
            leases.survived(self.cat, leases.CLIPS, clip_id, self.owner)
            self.current = None
            if on_clip is not None:
                on_clip(clip_id, error)

        return done


@contextlib.contextmanager
def _charged(cat: Catalog, ids: list[str], owner: str) -> Iterator[_Marks]:
    """Per-clip attempt marks for one shard; an interrupt or an error of the whole run lets every clip of
    the shard go at once, charging none (it is no clip's fault); a SIGKILL leaves the current one charged."""
    marks = _Marks(cat, owner)
    try:
        yield marks
    except BaseException as err:
        if not isinstance(err, Exception) or is_whole_run(err):
            for cid in ids:
                with contextlib.suppress(Exception):  # the catalog may be what failed: the leases then expire
                    leases.release(cat, leases.CLIPS, cid, owner, give_back=cid == marks.current)
        raise


def _claim_shard(cat: Catalog, clips: list, owner: str, policy: leases.LeasePolicy, cfg: FeaturesConfig,
                 result: dict) -> list:
    """The clips of ``clips`` this run now holds; the given-up ones recorded failed in ``result``."""
    claim = leases.claim(cat, leases.CLIPS, [c.clip_id for c in clips], owner, policy, count=False)
    for cid, reason in claim.exhausted.items():
        record_run(cat, STAGE, cid, cfg.params_hash(), 0.0, reason)
        result["failed"][cid] = reason
    result["held"] += len(claim.held)
    return [c for c in clips if c.clip_id in set(claim.claimed)]


@flow(name="features", validate_parameters=False)
def features_flow(root_path: str, db_url: str, cfg: FeaturesConfig, on_plan: PlanHook | None = None,
                  on_clip: ClipHook | None = None) -> dict:
    """Accepted clips -> feature shards; one Prefect task per shard, resumable shard by shard."""
    return run_features(DataRoot(Path(root_path)), db_url, cfg, on_plan, on_clip, shard_fn=extract_shard_task)
