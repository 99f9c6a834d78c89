"""The status report of a data root: sources and clips by status and query, failures with their
reasons, and how far accepted clips got through features and export."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from sqlalchemy import and_, func, select

from dvmset import leases, site_blocks
from dvmset.catalog import Catalog
from dvmset.constants import CODEBOOK_SIZE
from dvmset.io import atomic_write_text
from dvmset.layout import DataRoot
from dvmset.music_groups import group_by_music, music_clips
from dvmset.records import ClipStatus, SourceStatus
from dvmset.shards import FeatureStore, check_shards, reextract_hint
from dvmset.tables import Clip, Run, Source

FEATURES_STAGE = "features"  # the runs-table stage name of feature extraction
SHARED_MUSIC_CACHE = "shared_music.json"  # under the data root's cache/: the last grouping and its key


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


def _live_music():  # noqa: ANN202 - a SQL WHERE clause
    live = (ClipStatus.PENDING_REVIEW, ClipStatus.ACCEPTED, ClipStatus.REJECTED)
    return and_(Clip.status.in_(live), Clip.music_fingerprint.is_not(None))


def _music_key(cat: Catalog) -> str:
    """What the groups depend on, from one aggregate: the live fingerprinted clips' count and last change
    (every write of a clip moves its ``updated_at``), and which catalog."""
    with cat.session() as s:
        n, last = s.execute(select(func.count(), func.max(Clip.updated_at)).where(_live_music())).one()
    url = hashlib.sha256(cat.engine.url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return f"{url}:{n}:{last.isoformat() if last else ''}"


def shared_music(cat: Catalog, cache: Path | None = None) -> dict:
    """How many clips share their music with a clip of another source, in how many source groups.

    With ``cache`` (a JSON file) the answer is stored with :func:`_music_key` and read back while the
    key holds, so a ``status`` of an unchanged catalog does not regroup every fingerprint."""
    key = _music_key(cat) if cache else None
    if cache and cache.is_file():
        with contextlib.suppress(ValueError, KeyError):
            stored = json.loads(cache.read_text())
            if stored["key"] == key:
                return stored["shared_music"]
    with cat.session() as s:
        rows = s.execute(select(Clip.id, Clip.source_id, Clip.music_fingerprint).where(_live_music())).all()
    groups = group_by_music(music_clips(rows))
    out = {"clips": sum(len(g.clips) for g in groups), "groups": len(groups),
           "sources": sum(len(g.sources) for g in groups)}
    if cache:
        with contextlib.suppress(OSError):  # a read-only root: status still answers, next time again in full
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache, json.dumps({"key": key, "shared_music": out}))
    return out


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
    report["shared_music"] = shared_music(cat, root.path / "cache" / SHARED_MUSIC_CACHE)
    report["root"] = str(root.path)
    return report
