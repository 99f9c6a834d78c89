"""The catalog's tables (SQLAlchemy 2 ORM). The catalog is the source of truth for what is done."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


TAKEN_DOWN = "taken_down"  # ClipStatus.TAKEN_DOWN (records.py): final


class ClipTakenDown(ValueError):
    """Something tried to move a taken-down clip to another status (review, re-curate, rebuild)."""


class Source(Base):
    """One source video: where it came from and how far it got."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # yt-dlp id, or a hash of the URL
    url: Mapped[str] = mapped_column(Text)
    query: Mapped[str | None] = mapped_column(String(256), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)  # SourceStatus
    # the worker on it (dvmset.leases): who, until when, and claims not yet ended by a finish
    lease_owner: Mapped[str | None] = mapped_column(String(160))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stage: Mapped[str | None] = mapped_column(String(32))  # the stage that failed, when failed
    error: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    uploader: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(Text)
    webpage_url: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    media_path: Mapped[str | None] = mapped_column(Text)  # relative to the data root
    music_path: Mapped[str | None] = mapped_column(Text)  # separated + normalised music
    separator: Mapped[str | None] = mapped_column(String(64))  # "htdemucs", "none" (skipped on purpose)
    vocal_energy: Mapped[float | None] = mapped_column(Float)  # vocal stem energy / mix energy
    loudness_in_lufs: Mapped[float | None] = mapped_column(Float)
    loudness_out_lufs: Mapped[float | None] = mapped_column(Float)
    gain_db: Mapped[float | None] = mapped_column(Float)
    gain_limited: Mapped[bool | None] = mapped_column(Boolean)  # gain lowered to avoid clipping
    meta: Mapped[dict | None] = mapped_column(JSON)
    # lineage and takedown (revision 0003)
    extractor: Mapped[str | None] = mapped_column(String(64))  # yt-dlp's extractor key, e.g. "Youtube"
    upload_date: Mapped[str | None] = mapped_column(String(16))  # yt-dlp's YYYYMMDD
    taken_down_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    takedown_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Clip(Base):
    """One 60 s clip cut from a source; what annotators review and trainers consume."""

    __tablename__ = "clips"
    # the review queue's next-clip scan; status's counts by query and status (covering: no row read, 0010)
    __table_args__ = (Index("ix_clips_status_id", "status", "id"), Index("ix_clips_source_status", "source_id", "status"))

    id: Mapped[str] = mapped_column(String(160), primary_key=True)  # {video_id}-{start_s:05d}
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    path: Mapped[str | None] = mapped_column(Text)  # relative to the data root
    status: Mapped[str] = mapped_column(String(32), index=True)  # ClipStatus
    # the features worker extracting it (dvmset.leases): who, until when, and claims not yet ended by a finish
    lease_owner: Mapped[str | None] = mapped_column(String(160))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    split: Mapped[str | None] = mapped_column(String(16))
    silence_ratio: Mapped[float | None] = mapped_column(Float)
    static_ratio: Mapped[float | None] = mapped_column(Float)  # still_s / duration_s
    still_s: Mapped[float | None] = mapped_column(Float)  # seconds showing a still picture (QC)
    scene_cuts: Mapped[int | None] = mapped_column(Integer)
    loudness_lufs: Mapped[float | None] = mapped_column(Float)
    loudness_range_lu: Mapped[float | None] = mapped_column(Float)
    vocal_energy: Mapped[float | None] = mapped_column(Float)
    true_peak_dbtp: Mapped[float | None] = mapped_column(Float)  # of the clip as encoded
    clip_gain_db: Mapped[float | None] = mapped_column(Float)  # the clip's own gain on top of its source's
    limiting_db: Mapped[float | None] = mapped_column(Float)  # deepest true-peak limiting (heavy is audible)
    # lineage and takedown (revision 0003)
    lineage: Mapped[dict | None] = mapped_column(JSON)  # dvmset.lineage: every step's version and parameters
    music_sha256: Mapped[str | None] = mapped_column(String(64))  # of the window's processed music (PCM)
    music_fingerprint: Mapped[str | None] = mapped_column(Text)  # chromaprint, dvmset.music_groups encoding
    # its fingerprint is in the shared-music index (dvmset.music_index; revision 0009); false until then
    music_indexed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    origin: Mapped[str | None] = mapped_column(String(32))  # "curated" | "release" (rebuilt, not reviewed)
    taken_down_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    takedown_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @validates("status")
    def _stays_taken_down(self, _key: str, value: str) -> str:
        """The last line behind every writer: a taken-down clip never leaves ``taken_down``."""
        if self.status == TAKEN_DOWN and value != TAKEN_DOWN:
            raise ClipTakenDown(f"clip {self.id!r} was taken down ({self.takedown_reason or 'no reason given'}); "
                                f"it stays taken_down, not {value!r}")
        return value


class MusicBucket(Base):
    """A sampled value of a clip's fingerprint (dvmset.music_index.bucket_values): the inverted index that
    finds a new clip's same-music candidates without comparing it to every clip (revision 0009)."""

    __tablename__ = "music_buckets"

    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # a chromaprint uint32 value
    clip_id: Mapped[str] = mapped_column(String(160), primary_key=True, index=True)


class MusicLink(Base):
    """Two clips of different sources whose music is the same recording (checked by bit error rate);
    ``clip_a < clip_b``. The shared-music groups are the sources these links join (revision 0009)."""

    __tablename__ = "music_links"

    clip_a: Mapped[str] = mapped_column(String(160), primary_key=True)
    clip_b: Mapped[str] = mapped_column(String(160), primary_key=True, index=True)
    source_a: Mapped[str] = mapped_column(String(128))
    source_b: Mapped[str] = mapped_column(String(128))
    ber: Mapped[float] = mapped_column(Float)


class AgreementVerdict(Base):
    """Each annotator's live verdict on each clip, as the agreement summary last counted it
    (dvmset.agreement_summary; revision 0010): what a clip's counts are taken back from when it changes."""

    __tablename__ = "agreement_verdicts"
    __table_args__ = (Index("ix_agreement_verdicts_annotator_seconds", "annotator_id", "seconds_spent"),)

    clip_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    annotator_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[str] = mapped_column(Text)  # JSON list of reasons
    seconds_spent: Mapped[float | None] = mapped_column(Float)


class AgreementCount(Base):
    """One counter of the agreement summary (dvmset.agreement_summary; revision 0010), keyed by a JSON list
    such as ``["pair", "noise", 1, 2, "yes", "no"]``; ``total`` sums seconds where the counter is a pace."""

    __tablename__ = "agreement_counts"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float, default=0.0)


class ClipCount(Base):
    """Clip counts by source query and clip status, kept by the database (revision 0011): triggers on clips
    (insert, status or source change, delete) and on sources (query change) append +n / -n rows; a fold
    (dvmset.clip_counts) replaces the rows it summed with one row per (query, status). ``status`` reads the
    sums here instead of counting every clip. Append-only between folds: no counter row is ever updated."""

    __tablename__ = "clip_counts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    query: Mapped[str | None] = mapped_column(String(256))  # the clip's source's query (None: a URL)
    status: Mapped[str] = mapped_column(String(32))  # ClipStatus
    n: Mapped[int] = mapped_column(Integer)  # clips added (+) or taken away (-)


class Takedown(Base):
    """A takedown request and how far it got: an audit record, never deleted (dvmset.takedown)."""

    __tablename__ = "takedowns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(String(128), index=True)
    clip_id: Mapped[str | None] = mapped_column(String(160))  # None: the whole video
    reason: Mapped[str] = mapped_column(Text)
    clip_ids: Mapped[list | None] = mapped_column(JSON)  # the clips it removes
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Annotator(Base):
    __tablename__ = "annotators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    # "annotator" sees their own figures; "lead" sees everyone's, marks gold clips, adjudicates (revision 0007)
    role: Mapped[str] = mapped_column(String(16), default="annotator", server_default="annotator")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """Append-only: a verdict is never updated; an undo is a new row that voids an earlier one."""

    __tablename__ = "decisions"
    # "has this annotator a verdict on this clip" is asked for every candidate in the review queue
    __table_args__ = (Index("ix_decisions_clip_annotator", "clip_id", "annotator_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))  # Verdict, or "undo"
    reasons: Mapped[list | None] = mapped_column(JSON)  # [RejectReason, ...]
    note: Mapped[str | None] = mapped_column(Text)
    voids: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), index=True)  # for undo rows
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # revision 0006: stretches excluded on an accept ([[start_s, end_s, reason], ...], dvmset.spans), and the
    # seconds from handing the clip out to this verdict, measured by the server
    spans: Mapped[list | None] = mapped_column(JSON)
    listened_s: Mapped[float | None] = mapped_column(Float)
    # revision 0010: counted in the agreement summary (dvmset.agreement_summary) - bookkeeping, not the verdict
    summarised: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)


class Lease(Base):
    """A clip handed to an annotator, so no two annotators get it at once; expires."""

    __tablename__ = "leases"

    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    # A skip: the clip leaves this annotator's queue until expiry but blocks nobody else.
    skipped: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # when it was handed out (or skipped), kept across renewals (revision 0006): listening time, undo of a skip
    handed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ReviewSettings(Base):
    """The review policy every review server follows, and the URL annotators reach it at: one row (id 1).

    Changed only by ``vidmusician review-policy set`` (dvmset.review.set_policy), which re-decides clips in
    the same transaction; a server started with other values is refused (revision 0005)."""

    __tablename__ = "review_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    overlap: Mapped[int] = mapped_column(Integer)
    lease_s: Mapped[float] = mapped_column(Float)
    skip_s: Mapped[float] = mapped_column(Float)
    server_url: Mapped[str | None] = mapped_column(Text)  # where the last `review` served, for login links
    gold_rate: Mapped[float | None] = mapped_column(Float)  # share of handed-out clips that are gold (0007)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class GoldClip(Base):
    """A clip whose verdict a lead knows: mixed, unmarked, into annotators' queues (dvmset.gold)."""

    __tablename__ = "gold_clips"

    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))  # Verdict
    reasons: Mapped[list | None] = mapped_column(JSON)  # [RejectReason, ...] of a reject
    note: Mapped[str | None] = mapped_column(Text)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GoldAnswer(Base):
    """An annotator's verdict on a gold clip: scored against the gold verdict, never a vote on the clip."""

    __tablename__ = "gold_answers"
    __table_args__ = (Index("ix_gold_answers_annotator_clip", "annotator_id", "clip_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list | None] = mapped_column(JSON)
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    undone_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # `U` took it back


class Adjudication(Base):
    """A lead's verdict that settles a clip whose annotators disagreed (dvmset.adjudication); append-only."""

    __tablename__ = "adjudications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    """One stage run for one key (a source or clip id): what ran, with which params, how it ended."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("stage", "key", "params_hash"), Index("ix_runs_key", "key"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(160))
    params_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # "done" | "failed"
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SiteBlock(Base):
    """A site that pushed back (a bot check, HTTP 429): every worker pauses its downloads until
    ``paused_until``; ``times`` counts the blocks in a row (the back-off), reset by a download that
    gets through (dvmset.site_blocks; revision 0008)."""

    __tablename__ = "site_blocks"

    site: Mapped[str] = mapped_column(String(255), primary_key=True)  # pipeline.urls.site_of
    kind: Mapped[str] = mapped_column(String(32))  # "bot check" | "HTTP 429"
    times: Mapped[int] = mapped_column(Integer)
    paused_until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)  # the site's words, as yt-dlp reported them
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
