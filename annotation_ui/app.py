"""The review app: wires the routers, error pages and security headers over one data root and catalog.

The queue, decisions and agreement live in dvmset.review / dvmset.agreement; the routes in
annotation_ui.routes; the server's parts (TTL cache, write queue, peaks store and warmer) are
small classes in annotation_ui.serving and annotation_ui.peaks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders

from annotation_ui.context import HERE, ReviewContext, make_templates
from annotation_ui.errors import add_error_handlers
from annotation_ui.guard import ASGIApp, Message, Receive, RequestGuard, Scope, Send
from annotation_ui.peaks import ComputePeaks, PeaksStore, PeaksWarmer
from annotation_ui.routes import agreement, auth, clips, decisions, lead, pages, queue
from annotation_ui.serving import SerialWriter, TtlCache
from dvmset import review, review_order
from dvmset.catalog import Catalog
from dvmset.layout import DataRoot

log = logging.getLogger(__name__)

BY_QUERY_TTL_S = 5.0
WARM_AHEAD = 2  # clips whose missing peaks files are filled in ahead of the annotator
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ROUTERS = (auth.router, pages.router, queue.router, clips.router, decisions.router, agreement.router,
           lead.router)


def _upcoming(root: DataRoot, catalog: Catalog):  # noqa: ANN202
    def upcoming(clip_id: str, annotator_id: int) -> list[tuple[Path, Path]]:
        """The clips this annotator's queue would hand out after ``clip_id`` (leases, overlap and
        their own verdicts and skips taken into account) that have a media file, as
        (peaks file, media file) pairs."""
        with catalog.session() as s:
            ids = review.likely_next(s, annotator_id, review.current_policy(s), clip_id, WARM_AHEAD)
        pairs = [(root.peaks_path(c), root.clip_path(c)) for c in ids]
        return [(p, m) for p, m in pairs if m.is_file()]

    return upcoming


def create_app(root: DataRoot, catalog: Catalog, policy: review.QueuePolicy | None = None, *,
               compute_peaks: ComputePeaks | None = None, order: str = "queue",
               min_listen_s: float = 0.0) -> FastAPI:
    """The review app over one data root and catalog. It follows the catalog's review policy, read in
    each transaction (``vidmusician review-policy set`` changes it for running servers too); a
    ``policy`` given here must be the catalog's (PolicyMismatch otherwise). Creating it writes nothing.

    ``compute_peaks(clip file) -> [STORED_PEAKS]`` fills in the peaks file of a clip curated before
    curation stored them (the command passes a decoder); without it such a clip's waveform is a 404
    and nothing is warmed. ``order``: how the queue is ordered (dvmset.review_order: queue, uncertain,
    likely-keep). ``min_listen_s``: a verdict given sooner after the clip was handed out asks
    the annotator to confirm it (0: never; `vidmusician review` sets it, 10 s by default).
    """
    review_order.check_order(order)
    if min_listen_s < 0:
        raise ValueError(f"min_listen_s must be >= 0 seconds, got {min_listen_s}")
    if policy is not None:
        with catalog.session() as s:
            review.check_policy(s, policy)
    app = FastAPI(title="vidmusician review", docs_url=None, redoc_url=None, openapi_url=None)
    store = PeaksStore(compute_peaks)
    # Stored peaks need no warming; only clips curated before they were stored have work to do ahead.
    warmer = PeaksWarmer(_upcoming(root, catalog), store) if compute_peaks is not None else None
    if warmer is not None:
        app.router.on_shutdown.append(warmer.close)
    app.state.review = ReviewContext(root=root, catalog=catalog, templates=make_templates(),
                                     writer=SerialWriter(catalog), by_query=TtlCache(BY_QUERY_TTL_S),
                                     peaks=store, warmer=warmer, order=order, min_listen_s=min_listen_s)

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for router in ROUTERS:
        app.include_router(router)
    add_error_handlers(app)
    app.add_middleware(RequestGuard)  # inside the headers middleware below, so its answers get them too
    app.add_middleware(SecurityHeaders)
    return app


class SecurityHeaders:
    """SECURITY_HEADERS on every response that does not set them itself. A plain ASGI middleware: one
    wrapped ``send``, where ``@app.middleware("http")`` ran each request through a task and memory streams."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = MutableHeaders(scope=msg)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
            await send(msg)

        await self.app(scope, receive, with_headers)
