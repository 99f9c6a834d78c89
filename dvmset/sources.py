"""The catalog side of curation: source rows (with a race-safe upsert), clip rows from a QC report,
and the done / known / failed queries a curate run plans with."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dvmset.catalog import Catalog
from dvmset.layout import check_id
from dvmset.records import ClipStatus, SourceStatus
from dvmset.tables import Clip, Source

log = logging.getLogger(__name__)
_CLIP_COLUMNS = frozenset(Clip.__table__.columns.keys())
_KEYS = frozenset({"id", "source_id", "start_s", "duration_s", "status", "error", "path"})


def upsert_source(cat: Catalog, source_id: str, **values: Any) -> None:
    """Insert the source row (status pending unless given) or update the given columns of it."""
    for attempt in range(2):  # another run may insert the same row between our read and our insert
        try:
            with cat.session() as s:
                row = s.get(Source, source_id)
                if row is None:
                    check_id(source_id, "video id")  # the catalog takes no id a path could not hold
                    s.add(Source(id=source_id, **{"status": SourceStatus.PENDING, **values}))
                else:
                    for k, v in values.items():
                        setattr(row, k, v)
            return
        except IntegrityError:
            if attempt:
                raise


def fail_source(cat: Catalog, source_id: str, reason: str, stage: str | None, **values: Any) -> None:
    """Mark the source failed with a readable ``reason`` (``values``: e.g. where it came from)."""
    log.warning("source %s failed: %s", source_id, reason)
    upsert_source(cat, source_id, **values, status=SourceStatus.FAILED, stage=stage, error=reason)


def drop_placeholder(cat: Catalog, key: str) -> None:
    """Remove the URL-keyed row made before the real id was known (it has no clips)."""
    with cat.session() as s:
        row = s.get(Source, key)
        if row is not None and row.status != SourceStatus.DONE:
            s.delete(row)


def source_ids(cat: Catalog, status: str | None = None) -> set[str]:
    """Ids of the sources with ``status`` (every known source when None)."""
    query = select(Source.id) if status is None else select(Source.id).where(Source.status == status)
    with cat.session() as s:
        return set(s.scalars(query))


def source_urls(cat: Catalog, status: str) -> set[str]:
    """URLs of the sources with ``status``: a URL's row moves to the real id once downloaded."""
    with cat.session() as s:
        return set(s.scalars(select(Source.url).where(Source.status == status)))


def source_vocal_energy(cat: Catalog, source_id: str) -> float | None:
    with cat.session() as s:
        row = s.get(Source, source_id)
        return None if row is None else row.vocal_energy


def clip_ids_of(cat: Catalog, source_id: str, *, exclude_status: str | None = ClipStatus.FAILED) -> set[str]:
    """Ids of the source's clips, without those in ``exclude_status`` (failed ones, by default)."""
    with cat.session() as s:
        rows = s.execute(select(Clip.id, Clip.status).where(Clip.source_id == source_id)).all()
    return {cid for cid, status in rows if status != exclude_status}


def report_columns(report: object) -> dict[str, Any]:
    """Every field of a QC report dataclass that is a column of ``clips`` (other fields stay out).

    New QC fields reach the catalog by adding the column: no mapping to maintain here.
    """
    if not dataclasses.is_dataclass(report) or isinstance(report, type):
        raise TypeError(f"a QC report must be a dataclass instance, got {type(report).__name__}")
    return {f.name: getattr(report, f.name) for f in dataclasses.fields(report)
            if f.name in _CLIP_COLUMNS and f.name not in _KEYS}


def record_clip(cat: Catalog, clip_id: str, source_id: str, start_s: float, duration_s: float, *,
                path: str | None = None, report: object | None = None, error: str | None = None) -> str:
    """Write a clip's row: pending review with its QC columns, or failed with ``error``. Returns the status
    (a taken-down clip's row is left as it is: ``taken_down``)."""
    if (error is None) == (report is None) or (error is None and path is None):
        raise ValueError("record_clip needs either a report and a path, or an error")
    if error is None:
        values = {"status": ClipStatus.PENDING_REVIEW, "error": None, "path": path, **report_columns(report)}
    else:
        values = {"status": ClipStatus.FAILED, "error": error, "path": None}
    with cat.session() as s:
        row = s.get(Clip, clip_id)
        if row is None:
            check_id(clip_id, "clip id")
            s.add(Clip(id=clip_id, source_id=source_id, start_s=start_s, duration_s=duration_s, **values))
        elif row.status == ClipStatus.TAKEN_DOWN:  # final: a re-curate never brings a clip back
            return ClipStatus.TAKEN_DOWN
        else:
            for k, v in values.items():
                setattr(row, k, v)
    return values["status"]
