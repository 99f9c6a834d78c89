"""The status report of a data root: sources and clips by status and query, failures with their
reasons, and how far accepted clips got through features and export."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from dvmset import leases, site_blocks
from dvmset.batches import batches
from dvmset.catalog import Catalog
from dvmset.constants import CODEBOOK_SIZE
from dvmset.layout import DataRoot
from dvmset.music_index import stored_groups
from dvmset.records import ClipStatus, SourceStatus
from dvmset.shard_checks import check_changed_shards
from dvmset.shards import FeatureStore, reextract_hint
from dvmset.tables import Clip, Run, Source

FEATURES_STAGE = "features"  # the runs-table stage name of feature extraction
ID_CHUNK = 100_000  # accepted clip ids the database joins into one string at a time


def accepted_ids(s: Session) -> Iterator[pa.Array]:
    """The accepted clips' ids in id order, :data:`ID_CHUNK` at a time as Arrow strings. The database joins each
    chunk into one newline-separated string (``group_concat`` / ``string_agg``), which Arrow splits: a row per
    clip through the driver and the ORM cost ~6x more (0.26 s against 0.04 s for 180 K ids on SQLite)."""
    join = func.string_agg if s.get_bind().dialect.name == "postgresql" else func.group_concat
    last = ""
    while True:
        chunk = (select(Clip.id).where(Clip.status == ClipStatus.ACCEPTED, Clip.id > last)
                 .order_by(Clip.id).limit(ID_CHUNK).subquery())
        n, joined, last = s.execute(select(func.count(), join(chunk.c.id, "\n"), func.max(chunk.c.id))).one()
        if not n:
            return
        ids = pc.split_pattern(pa.array([joined], pa.string()), "\n").flatten()
        if len(ids) != n:  # an id holding the separator: the rows themselves (ids never do; check_id)
            ids = pa.array(s.scalars(select(chunk.c.id)).all(), pa.string())
        yield ids


def failed_sources(cat: Catalog) -> list[dict]:
    """Failed sources in id order, each with the stage that failed and why."""
    with cat.session() as s:
        rows = s.scalars(select(Source).where(Source.status == SourceStatus.FAILED).order_by(Source.id))
        return [{"id": r.id, "url": r.url, "stage": r.stage, "error": r.error} for r in rows]


def _failed_features(cat: Catalog) -> dict[str, str | None]:
    """clip id -> error of the clips whose latest features run failed (a run's later retry replaces it)."""
    later = Run.__table__.alias("later")
    q = (select(Run.key, Run.error).where(Run.stage == FEATURES_STAGE, Run.status == "failed",
                                          ~exists().where(later.c.stage == FEATURES_STAGE, later.c.key == Run.key,
                                                          later.c.finished_at > Run.finished_at)))
    with cat.session() as s:
        return dict(s.execute(q).tuples().all())


def features_status(root: DataRoot, cat: Catalog) -> dict:
    """Accepted clips: how many have features, how many wait, which failed (and why), what was exported.
    Streams the accepted ids once (the index is a file the catalog cannot join); checks only the shards
    changed since they were last found sound (dvmset.shard_checks)."""
    indexed = FeatureStore(root.features_dir).index_column("clip_id")  # Arrow: an id costs its bytes
    accepted = in_shards = 0
    accepted_failed = _failed_features(cat)
    with cat.session() as s:
        accepted = s.scalar(select(func.count()).select_from(Clip).where(Clip.status == ClipStatus.ACCEPTED))
        if len(indexed):  # the accepted ids in Arrow (an id costs its bytes), then one hash lookup of the index's
            ids = pa.chunked_array(list(accepted_ids(s)), pa.string())
            in_shards = pc.sum(pc.is_in(ids, value_set=indexed)).as_py() or 0
            del ids
        for ids in batches(sorted(accepted_failed)):  # few: the failed runs' clips
            still = set(s.scalars(select(Clip.id).where(Clip.id.in_(ids), Clip.status == ClipStatus.ACCEPTED)))
            have = pc.is_in(pa.array(ids, pa.string()), value_set=indexed).to_pylist()
            for c, has in zip(ids, have, strict=True):
                if c not in still or has:
                    accepted_failed.pop(c)
    failed = [{"clip_id": c, "error": e} for c, e in sorted(accepted_failed.items())]
    exports = sorted(p.parent.name for p in root.exports_dir.glob("*/manifest.parquet"))
    problems = check_changed_shards(root.features_dir, card=CODEBOOK_SIZE)  # against the index's sha256
    corrupt = sorted({p.shard for p in problems})
    return {"accepted": accepted, "in_shards": in_shards, "failed": failed,
            "pending": accepted - in_shards - len(failed), "exports": exports,
            "corrupt": [{"shard": p.shard, "clip_id": p.clip_id, "problem": p.problem} for p in problems],
            "corrupt_hint": reextract_hint(root.features_dir, corrupt) if corrupt else None}


LIVE_MUSIC = (ClipStatus.PENDING_REVIEW, ClipStatus.ACCEPTED, ClipStatus.REJECTED)  # clips whose music counts


def shared_music(cat: Catalog) -> dict:
    """How many clips share their music with a clip of another source, in how many source groups: read from
    the shared-music index kept as clips are made (dvmset.music_index), not by regrouping every fingerprint."""
    groups = stored_groups(cat, [s.value for s in LIVE_MUSIC])
    return {"clips": sum(len(g.clips) for g in groups), "groups": len(groups),
            "sources": sum(len(g.sources) for g in groups)}


def site_pause_lines(cat: Catalog) -> list[str]:
    """"youtube paused until 14:20 UTC (bot check, 3rd time)" for each site paused now (dvmset.site_blocks)."""
    return [p.describe() for p in site_blocks.active_pauses(cat)]


def status_report(root: DataRoot, cat: Catalog) -> dict:
    """Everything ``vidmusician status`` shows, as plain JSON-able values."""
    report = cat.counts()
    report["failed_sources"] = failed_sources(cat)
    report["leased_sources"] = leases.held_by_others(cat, leases.SOURCES, owner="")  # a worker is on them now
    report["site_pauses"] = site_pause_lines(cat)
    report["features"] = features_status(root, cat)
    report["shared_music"] = shared_music(cat)
    report["root"] = str(root.path)
    return report
