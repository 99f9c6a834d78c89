"""A lead's pages: gold clips (mark, unmark, the rate they are mixed in at) and adjudication of clips
whose verdicts disagree. Every route here answers 403 to an annotator who is not a lead."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from annotation_ui.context import Ctx, Who
from annotation_ui.routes.pages import REASON_LABELS
from dvmset import adjudication, gold
from dvmset.annotators import require_lead
from dvmset.layout import check_id
from dvmset.records import RejectReason
from dvmset.review_policy import InvalidDecision

router = APIRouter()
NOTE_CHARS = 2000
ClipId = Annotated[str, Form(max_length=160)]
Reasons = Annotated[list[str], Form(default_factory=list)]
Note = Annotated[str, Form(max_length=NOTE_CHARS)]


def _reasons() -> list[dict]:
    return [{"code": r.value, "label": REASON_LABELS[r]} for r in RejectReason]


def _clip_id(clip_id: str) -> str:
    try:
        return check_id(clip_id.strip(), "clip id")
    except ValueError as exc:
        raise InvalidDecision(str(exc)) from None


def _back(path: str, said: str) -> Response:
    from urllib.parse import urlencode

    return RedirectResponse(f"{path}?{urlencode({'said': said})}", status_code=303)


@router.get("/lead/gold", response_class=HTMLResponse)
def gold_page(request: Request, ctx: Ctx, ann: Who, said: str = "") -> Response:
    require_lead(ann, "the gold clips page")
    with ctx.catalog.session() as s:
        rows, rate = gold.list_gold(s), gold.gold_rate(s)
    return ctx.templates.TemplateResponse(request, "lead_gold.html", {
        "annotator": ann.name, "lead": True, "gold": rows, "rate": rate, "reasons": _reasons(), "said": said[:200]})


@router.post("/lead/gold")
def gold_add(ctx: Ctx, ann: Who, clip_id: ClipId, verdict: Annotated[str, Form(max_length=16)],
             reasons: Reasons, note: Note = "") -> Response:
    require_lead(ann, "marking gold clips")
    clip_id = _clip_id(clip_id)
    with ctx.writer.session() as s:
        gold.add_gold(s, clip_id, verdict, reasons, note, ann.id)
    ctx.by_query.clear()
    return _back("/lead/gold", f"{clip_id} is gold: {verdict}")


@router.post("/lead/gold/remove")
def gold_remove(ctx: Ctx, ann: Who, clip_id: ClipId) -> Response:
    require_lead(ann, "unmarking gold clips")
    clip_id = _clip_id(clip_id)
    with ctx.writer.session() as s:
        gold.remove_gold(s, clip_id)
    ctx.by_query.clear()
    return _back("/lead/gold", f"{clip_id} is no longer gold")


@router.post("/lead/gold/rate")
def gold_set_rate(ctx: Ctx, ann: Who, percent: Annotated[float, Form(ge=0, le=50)]) -> Response:
    require_lead(ann, "the gold rate")
    with ctx.writer.session() as s:
        gold.set_gold_rate(s, percent / 100.0)
    return _back("/lead/gold", f"gold clips are now {percent:g} % of the clips handed out")


@router.get("/lead/adjudicate", response_class=HTMLResponse)
def adjudicate_page(request: Request, ctx: Ctx, ann: Who, said: str = "") -> Response:
    require_lead(ann, "adjudication")
    with ctx.catalog.session() as s:
        clips = adjudication.disagreements(s)
    return ctx.templates.TemplateResponse(request, "lead_adjudicate.html", {
        "annotator": ann.name, "lead": True, "clips": clips, "reasons": _reasons(), "said": said[:200]})


@router.get("/api/lead/disagreements")
def api_disagreements(ctx: Ctx, ann: Who, settled: bool = False) -> dict:
    require_lead(ann, "adjudication")
    with ctx.catalog.session() as s:
        return {"clips": adjudication.disagreements(s, include_settled=settled)}


@router.post("/lead/adjudicate")
def adjudicate(ctx: Ctx, ann: Who, clip_id: ClipId, verdict: Annotated[str, Form(max_length=16)],
               reasons: Reasons, note: Note = "") -> Response:
    require_lead(ann, "adjudication")
    clip_id = _clip_id(clip_id)
    with ctx.writer.session() as s:
        adjudication.adjudicate(s, ann.id, clip_id, verdict, reasons, note)
    ctx.by_query.clear()
    return _back("/lead/adjudicate", f"{clip_id} settled: {verdict}ed")
