"""Inter-annotator agreement: Cohen's kappa per pair, Fleiss' kappa, per reason; each annotator's pace."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from annotation_ui.context import Ctx, Who
from dvmset import review
from dvmset.agreement import EFFECTIVE_VERDICT_RULE, agreement_report

router = APIRouter()


@router.get("/api/agreement")
def api_agreement(ctx: Ctx, ann: Who) -> dict:
    with ctx.catalog.session() as s:
        return agreement_report(s)


@router.get("/agreement", response_class=HTMLResponse)
def agreement_page(request: Request, ctx: Ctx, ann: Who) -> Response:
    with ctx.catalog.session() as s:
        rep = agreement_report(s)
        prog = review.progress(s)
    return ctx.templates.TemplateResponse(request, "agreement.html", {
        "rep": rep, "progress": prog, "rule": EFFECTIVE_VERDICT_RULE, "annotator": ann.name})
