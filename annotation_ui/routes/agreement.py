"""Inter-annotator agreement: Cohen's kappa per pair, Fleiss' kappa, per reason; each annotator's pace,
listening time and gold accuracy. A lead sees everyone's figures, an annotator their own."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from annotation_ui.context import Ctx, Who
from dvmset import review
from dvmset.agreement import EFFECTIVE_VERDICT_RULE
from dvmset.agreement_summary import agreement_report
from dvmset.annotators import is_lead
from dvmset.lead_figures import has_listening, lead_figures, visible_to

router = APIRouter()


def _report(ctx: Ctx, ann: Who) -> tuple[dict, dict, bool]:
    with ctx.catalog.session() as s:
        rep, figs = visible_to(agreement_report(s), lead_figures(s), ann)
        return rep, figs, has_listening(s)


@router.get("/api/agreement")
def api_agreement(ctx: Ctx, ann: Who) -> dict:
    rep, figs, _ = _report(ctx, ann)
    return {**rep, "figures": figs}


@router.get("/agreement", response_class=HTMLResponse)
def agreement_page(request: Request, ctx: Ctx, ann: Who) -> Response:
    rep, figs, listening = _report(ctx, ann)
    with ctx.catalog.session() as s:
        prog = review.progress(s)
    return ctx.templates.TemplateResponse(request, "agreement.html", {
        "rep": rep, "figures": figs, "listening": listening, "progress": prog, "rule": EFFECTIVE_VERDICT_RULE,
        "annotator": ann.name, "lead": is_lead(ann)})
