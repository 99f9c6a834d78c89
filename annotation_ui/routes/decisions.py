"""Verdicts: accept (with spans to leave out) or reject with reasons, a note on either; undo the caller's
latest action (a verdict or a skip); the caller's own recent verdicts with their notes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from annotation_ui.context import Ctx, Who
from dvmset import gold, review, review_skips
from dvmset.agreement import in_force
from dvmset.layout import check_id
from dvmset.records import RejectReason
from dvmset.spans import MAX_SPANS, SpanReason
from dvmset.tables import Clip, Decision, GoldAnswer

router = APIRouter()
MAX_RECENT = 50


class SpanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_s: float = Field(ge=0, le=86400)
    end_s: float = Field(gt=0, le=86400)
    reason: Literal[tuple(r.value for r in SpanReason)] = SpanReason.OTHER.value  # type: ignore[valid-type]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clip_id: str = Field(max_length=160)
    verdict: Literal["accept", "reject"]
    reasons: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=len(RejectReason))
    note: str | None = Field(default=None, max_length=review.MAX_NOTE_CHARS)
    seconds_spent: float | None = Field(default=None, ge=0, le=86400)
    spans: list[SpanIn] = Field(default_factory=list, max_length=MAX_SPANS)
    confirm: bool = False  # give the verdict even before the minimum listening time

    @field_validator("clip_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return check_id(v, "clip id")


@router.post("/api/decisions", status_code=201, response_model=None)
def api_decide(body: DecisionIn, ctx: Ctx, ann: Who) -> dict | Response:
    try:
        with ctx.writer.session() as s:
            done = review.give_verdict(s, ann.id, body.clip_id, body.verdict, body.reasons, body.note,
                                       body.seconds_spent, spans=[sp.model_dump() for sp in body.spans],
                                       min_listen_s=ctx.min_listen_s, confirm=body.confirm)
            row, status = done.row, done.clip_status
            listened = getattr(row, "listened_s", None)
            if isinstance(row, GoldAnswer):  # unmarked: the answer shows what an ordinary clip would
                status = gold.shown_status(s, body.clip_id, body.verdict)
    except review.TooSoon as exc:
        return JSONResponse({"detail": str(exc), "needs_confirmation": True, "listened_s": exc.listened_s,
                             "min_listen_s": exc.min_listen_s}, status_code=409)
    ctx.by_query.clear()  # this server's own writes show at once; other servers' within the TTL
    return {"decision_id": row.id, "clip_id": body.clip_id, "clip_status": status, "listened_s": listened}


@router.post("/api/undo")
def api_undo(ctx: Ctx, ann: Who) -> dict:
    """Undo the caller's latest action: U right after S brings the skipped clip back, not the verdict before."""
    with ctx.writer.session() as s:
        done = review_skips.undo(s, ann.id)
        status = s.get(Clip, done.clip_id).status
        if done.kind == "verdict" and gold.gold_verdict(s, done.clip_id) is not None:
            status = gold.shown_status(s, done.clip_id, None)
    ctx.by_query.clear()
    return {"undid": done.kind, "undo_id": done.undo_id, "voided": done.voided, "clip_id": done.clip_id,
            "clip_status": status, "handed_back": done.handed_back}


@router.get("/api/decisions/mine")
def api_mine(ctx: Ctx, ann: Who, n: Annotated[int, Query(ge=1, le=MAX_RECENT)] = 10) -> dict:
    """The caller's latest verdicts in force, newest first, with their reasons, notes, spans and listening time."""
    with ctx.catalog.session() as s:
        rows = s.scalars(select(Decision).where(Decision.annotator_id == ann.id, in_force(Decision))
                         .order_by(Decision.id.desc()).limit(n)).all()
        return {"decisions": [{"clip_id": d.clip_id, "verdict": d.verdict, "reasons": d.reasons or [],
                               "note": d.note, "spans": d.spans or [], "listened_s": d.listened_s}
                              for d in rows]}
