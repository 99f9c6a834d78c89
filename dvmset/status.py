"""The status report of a data root: sources and clips by status and query, failures with their
reasons, and how far accepted clips got through features and export."""

from __future__ import annotations

from sqlalchemy import select

from dvmset import leases, site_blocks
from dvmset.catalog import Catalog
from dvmset.constants import CODEBOOK_SIZE
from dvmset.layout import DataRoot
from dvmset.music_index import stored_groups
from dvmset.records import ClipStatus, SourceStatus
from dvmset.shards import FeatureStore, check_shards, reextract_hint
from dvmset.tables import Clip, Run, Source

FEATURES_STAGE = "features"  # the runs-table stage name of feature extraction


def failed_sources(cat: Catalog) -> list[dict]:
    """Failed sources in id order, each with the stage that failed and why."""
    with cat.session() as s:
        rows = s.scalars(select(Source).where(Source.status == SourceStatus.FAILED).order_by(Source.id))
        return [{"id": r.id, "url": r.url, "stage": r.stage, "error": r.error} for r in rows]


def features_status(root: DataRoot, cat: Catalog) -> dict:
    """Accepted clips: how many have features, how many wait, which failed (and why), what was exported."""
    with cat.session() as s:
        accepted = set(s.scalars(select(Clip.id).where(Clip.status == ClipStatus.ACCEPTED)))
        runs = s.execute(select(Run.key, Run.status, Run.error, Run.finished_at)
                         .where(Run.stage == FEATURES_STAGE).order_by(Run.finished_at)).all()
    in_shards = accepted & set(FeatureStore(root.features_dir).index().clip_id)
    last = {key: (status, error) for key, status, error, _ in runs}  # the latest run of each clip
    failed = [{"clip_id": c, "error": last[c][1]} for c in sorted(accepted - in_shards)
              if last.get(c, ("",))[0] == "failed"]
    exports = sorted(p.parent.name for p in root.exports_dir.glob("*/manifest.parquet"))
    problems = check_shards(root.features_dir, card=CODEBOOK_SIZE)  # every shard against the index's sha256
    corrupt = sorted({p.shard for p in problems})
    return {"accepted": len(accepted), "in_shards": len(in_shards), "failed": failed,
            "pending": len(accepted) - len(in_shards) - len(failed), "exports": exports,
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
