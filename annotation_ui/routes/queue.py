"""The annotator's queue: the clip to review now (leased), skip, and progress counts."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Row
from sqlalchemy.orm import Session

from annotation_ui.context import Ctx, ReviewContext, Who
from dvmset import gold, review, review_skips
from dvmset.constants import TRAIN_WINDOW_S
from dvmset.layout import check_id
from dvmset.tables import Clip

router = APIRouter()


class SkipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clip_id: str = Field(max_length=160)

    @field_validator("clip_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return check_id(v, "clip id")


def safe_link(url: str | None) -> str | None:
    """Only http(s) links reach an href; anything else (javascript:, data:) is dropped."""
    if not url:
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def qc_hints(clip: Clip | Row) -> dict:
    """The automatic QC hints shown beside the player (None where curation did not measure one)."""
    # still_s, limiting_db and clip_gain_db are None for clips curated before catalog revision 0002.
    return {
        "silence_ratio": clip.silence_ratio, "static_ratio": clip.static_ratio, "still_s": clip.still_s,
        "scene_cuts": clip.scene_cuts, "loudness_lufs": clip.loudness_lufs, "limiting_db": clip.limiting_db,
        "clip_gain_db": clip.clip_gain_db, "vocal_energy": clip.vocal_energy,
    }


def clip_payload(s: Session, clip_id: str | None) -> dict | None:
    """What the page needs to show one clip; None for an empty queue."""
    if clip_id is None:
        return None
    clip = s.execute(review.clip_and_source(), {"clip": clip_id}).one()
    has_source = clip.source_id is not None
    return {
        "id": clip.id,
        "media_url": f"/media/{clip.id}",
        "peaks_url": f"/api/clips/{clip.id}/peaks",
        "spectrogram_url": f"/api/clips/{clip.id}/spectrogram",
        "hints_url": f"/api/clips/{clip.id}/hints",
        "start_s": clip.start_s,
        "duration_s": clip.duration_s,
        "window_s": TRAIN_WINDOW_S,  # the page counts the training windows the clip keeps as spans are marked
        "qc": qc_hints(clip),
        "source": {
            "id": clip.source_id,
            "title": clip.source_title or "",
            "query": clip.source_query or "",
            "link": safe_link((clip.source_webpage_url or clip.source_url) if has_source else None),
        },
    }


def next_clip(ctx: ReviewContext, annotator_id: int) -> tuple[dict | None, float]:
    """Lease the caller's next clip (or renew their current lease) and describe it, with the lease's
    length; one transaction (the policy claim_next read is in the session already)."""
    with ctx.writer.session() as s:
        clip_id = review.claim_next(s, annotator_id, order=ctx.order)
        return clip_payload(s, clip_id), review.current_policy(s).lease_s


def progress(ctx: ReviewContext, s: Session, annotator_id: int) -> dict:
    """Overall counts are exact; the per-query table may be up to the cache's TTL old (it joins every clip)."""
    out = {**review.progress_overall(s, annotator_id), "by_query": ctx.by_query.get(lambda: review.progress_by_query(s))}
    out["mine"] += gold.answers_given(s, annotator_id)  # gold answers count as verdicts here (unmarked)
    return out


def iso(t) -> str | None:  # noqa: ANN001 - a datetime or None
    return None if t is None else t.isoformat()


def waiting(ctx: ReviewContext, annotator_id: int) -> dict:
    """What an empty queue waits for: clips held by others and clips the caller skipped, with when they return."""
    with ctx.catalog.session() as s:
        w = review_skips.waiting(s, annotator_id)
    return {"held_by_others": w.held_by_others, "held_until": iso(w.held_until), "skipped": w.skipped,
            "skipped_next": iso(w.skipped_next)}


@router.get("/api/next")
def api_next(ctx: Ctx, ann: Who) -> dict:
    """The clip to review now (leased to the caller) and the lease's length; when there is none, what the
    queue waits for. Progress comes from /api/progress, off the hot path."""
    clip, lease_s = next_clip(ctx, ann.id)
    out = {"clip": clip, "lease_s": lease_s}
    if clip is None:
        out["waiting"] = waiting(ctx, ann.id)
    return out


@router.get("/api/skipped")
def api_skipped(ctx: Ctx, ann: Who) -> dict:
    """The caller's skipped clips that have not come back yet, latest first, with when each comes back."""
    with ctx.catalog.session() as s:
        return {"skipped": [{"clip_id": k.clip_id, "back_at": iso(k.back_at)} for k in review_skips.skipped(s, ann.id)]}


@router.post("/api/unskip")
def api_unskip(body: SkipIn, ctx: Ctx, ann: Who) -> dict:
    """Bring a skipped clip back now: it becomes the caller's clip unless someone else holds it meanwhile."""
    with ctx.writer.session() as s:
        back = review_skips.unskip(s, ann.id, body.clip_id)
    return {"clip_id": body.clip_id, "handed_back": back}


@router.get("/api/progress")
def api_progress(ctx: Ctx, ann: Who) -> dict:
    with ctx.catalog.session() as s:
        return progress(ctx, s, ann.id)


@router.post("/api/skip")
def api_skip(body: SkipIn, ctx: Ctx, ann: Who) -> dict:
    with ctx.writer.session() as s:
        review.skip(s, ann.id, body.clip_id)
    return {"skipped": body.clip_id}
