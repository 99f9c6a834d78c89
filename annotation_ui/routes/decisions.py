"""Verdicts: accept or reject with reasons, and undo the caller's latest verdict."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from annotation_ui.context import Ctx, Who
from dvmset import gold, review
from dvmset.layout import check_id
from dvmset.records import RejectReason
from dvmset.tables import Clip, GoldAnswer

router = APIRouter()


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clip_id: str = Field(max_length=160)
    verdict: Literal["accept", "reject"]
    reasons: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=len(RejectReason))
    note: str | None = Field(default=None, max_length=review.MAX_NOTE_CHARS)
    seconds_spent: float | None = Field(default=None, ge=0, le=86400)

    @field_validator("clip_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return check_id(v, "clip id")


@router.post("/api/decisions", status_code=201)
def api_decide(body: DecisionIn, ctx: Ctx, ann: Who) -> dict:
    with ctx.writer.session() as s:
        row = review.decide(s, ann.id, body.clip_id, body.verdict, body.reasons, body.note,
                            body.seconds_spent)
        status = s.get(Clip, body.clip_id).status
        if isinstance(row, GoldAnswer):  # unmarked: the answer shows what an ordinary clip would
            status = gold.shown_status(s, body.clip_id, body.verdict)
    ctx.by_query.clear()  # this server's own writes show at once; other servers' within the TTL
    return {"decision_id": row.id, "clip_id": body.clip_id, "clip_status": status}


@router.post("/api/undo")
def api_undo(ctx: Ctx, ann: Who) -> dict:
    with ctx.writer.session() as s:
        row = review.undo_last(s, ann.id)
        status = s.get(Clip, row.clip_id).status
        if isinstance(row, gold.GoldUndo):
            status = gold.shown_status(s, row.clip_id, None)
    ctx.by_query.clear()
    return {"undo_id": row.id, "voided": row.voids, "clip_id": row.clip_id, "clip_status": status}
