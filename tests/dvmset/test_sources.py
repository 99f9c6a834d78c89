"""dvmset.sources: curation's rows: a race-safe source upsert, and clip rows from any QC report dataclass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import event, func, select

from dvmset.catalog import Catalog
from dvmset.records import ClipStatus, SourceStatus
from dvmset.sources import fail_source, record_clip, report_columns, source_ids, source_urls, upsert_source
from dvmset.tables import Clip, Source


def test_a_source_row_another_run_inserts_meanwhile_is_updated_not_lost(catalog: Catalog):
    """Two runs planning the same new source: the one whose insert collides updates the row instead."""
    other = Catalog(catalog.url)  # the other run's own connection
    collided: list[bool] = []

    def other_run_inserts_first(session, _ctx, _instances) -> None:
        if not collided and any(isinstance(o, Source) for o in session.new):
            collided.append(True)
            with other.session() as s:
                s.add(Source(id="vid", url="https://other.invalid/v", status=SourceStatus.PENDING, query="q"))

    event.listen(catalog._sessions, "before_flush", other_run_inserts_first)
    upsert_source(catalog, "vid", url="https://mine.invalid/v", title="T")
    with catalog.session() as s:
        row = s.get(Source, "vid")
        assert s.scalar(select(func.count()).select_from(Source)) == 1
    assert collided and (row.url, row.title, row.query, row.status) == (
        "https://mine.invalid/v", "T", "q", SourceStatus.PENDING)
    other.dispose()


@dataclass(frozen=True)
class Report:
    """A QC report as a stage might grow it: columns of ``clips``, and fields that are not."""

    silence_ratio: float
    scene_cuts: int
    loudness_lufs: float | None
    cut_times_s: tuple[float, ...] = ()  # not a column: stays out
    status: str = "accepted"  # a key column: a report never sets it
    brand_new_hint: float = 0.5  # not (yet) a column


def test_every_report_field_that_is_a_clips_column_reaches_the_row(catalog: Catalog):
    upsert_source(catalog, "vid", url="https://example.invalid/v")
    report = Report(silence_ratio=0.25, scene_cuts=3, loudness_lufs=-14.1, cut_times_s=(1.0, 2.0, 3.0))
    assert report_columns(report) == {"silence_ratio": 0.25, "scene_cuts": 3, "loudness_lufs": -14.1}
    assert record_clip(catalog, "vid-00000", "vid", 0.0, 60.0, path="clips/vid-00000.mp4",
                       report=report) == ClipStatus.PENDING_REVIEW
    with catalog.session() as s:
        row = s.get(Clip, "vid-00000")
        assert (row.status, row.silence_ratio, row.scene_cuts, row.loudness_lufs, row.error) == (
            ClipStatus.PENDING_REVIEW, 0.25, 3, -14.1, None)
    # the same clip failing later: failed with its reason, no file
    assert record_clip(catalog, "vid-00000", "vid", 0.0, 60.0, error="qc: no video stream") == ClipStatus.FAILED
    with catalog.session() as s:
        row = s.get(Clip, "vid-00000")
        assert (row.status, row.error, row.path) == (ClipStatus.FAILED, "qc: no video stream", None)
    with pytest.raises(ValueError):
        record_clip(catalog, "vid-00060", "vid", 60.0, 60.0, path="p", report=report, error="both")
    with pytest.raises(TypeError):
        report_columns({"silence_ratio": 0.1})  # a dict is not a report dataclass


def test_the_planning_queries(catalog: Catalog):
    upsert_source(catalog, "a", url="https://x.invalid/a", status=SourceStatus.DONE)
    upsert_source(catalog, "b", url="https://x.invalid/b")
    fail_source(catalog, "c", "download: HTTP Error 404: Not Found", "download", url="https://x.invalid/c")
    assert source_ids(catalog) == {"a", "b", "c"} and source_ids(catalog, SourceStatus.DONE) == {"a"}
    assert source_urls(catalog, SourceStatus.FAILED) == {"https://x.invalid/c"}
    with catalog.session() as s:
        row = s.get(Source, "c")
        assert (row.status, row.stage, row.error) == (SourceStatus.FAILED, "download",
                                                      "download: HTTP Error 404: Not Found")
