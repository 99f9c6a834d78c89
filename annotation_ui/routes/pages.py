"""The review page: server-rendered, the first clip and progress embedded as JSON for review.js."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from annotation_ui.context import Ctx, Who
from annotation_ui.routes.queue import next_clip, progress, waiting
from dvmset.records import RejectReason
from dvmset.spans import SpanReason

router = APIRouter()
REASON_LABELS = {
    RejectReason.NON_MUSIC: "more than 5 s of non-music content",
    RejectReason.NOISE: "persistent noise",
    RejectReason.STATIC: "static images",
    RejectReason.MISMATCH: "mismatched background music",
    RejectReason.OTHER: "other (write a note)",
}

SPAN_REASONS = [{"code": SpanReason.NON_MUSIC.value, "label": "non-music"},
                {"code": SpanReason.NOISE.value, "label": "noise"},
                {"code": SpanReason.VOCALS.value, "label": "vocals"},
                {"code": SpanReason.OTHER.value, "label": "other"}]


@router.get("/", response_class=HTMLResponse)
def review_page(request: Request, ctx: Ctx, ann: Who) -> Response:
    clip, lease_s = next_clip(ctx, ann.id)
    with ctx.catalog.session() as s:
        prog = progress(ctx, s, ann.id)
    reasons = [{"code": r.value, "label": REASON_LABELS[r]} for r in RejectReason]
    data = {"clip": clip, "progress": prog, "reasons": reasons, "lease_s": lease_s,
            "span_reasons": SPAN_REASONS, "min_listen_s": ctx.min_listen_s}
    if clip is None:
        data["waiting"] = waiting(ctx, ann.id)
    return ctx.templates.TemplateResponse(request, "review.html", {"data": data, "annotator": ann.name,
                                                                   "reasons": reasons})
