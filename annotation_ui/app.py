"""The review app: routes only; the queue, decisions and agreement live in dvmset.review / dvmset.agreement."""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from annotation_ui import media
from dvmset import review
from dvmset.agreement import EFFECTIVE_VERDICT_RULE, agreement_report
from dvmset.catalog import Catalog
from dvmset.layout import DataRoot, check_id
from dvmset.records import RejectReason
from dvmset.tables import Annotator, Clip, Source

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "vm_token"
BY_QUERY_TTL_S = 5.0
WARM_AHEAD = 2  # clips whose waveform peaks are computed ahead of the annotator
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
REASON_LABELS = {
    RejectReason.NON_MUSIC: "more than 5 s of non-music content",
    RejectReason.NOISE: "persistent noise",
    RejectReason.STATIC: "static images",
    RejectReason.MISMATCH: "mismatched background music",
    RejectReason.OTHER: "other (write a note)",
}


class Unauthorized(Exception):
    pass


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


def create_app(root: DataRoot, catalog: Catalog, policy: review.QueuePolicy | None = None) -> FastAPI:
    """The review app over one data root and catalog."""
    policy = policy or review.QueuePolicy()
    app = FastAPI(title="vidmusician review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    with catalog.session() as s:
        review.sync_statuses(s, policy)

    def upcoming(clip_id: str, annotator_id: int) -> list[Path]:
        """The clips this annotator's queue would hand out after ``clip_id`` (leases, overlap and their
        own verdicts and skips taken into account)."""
        with catalog.session() as s:
            ids = review.likely_next(s, annotator_id, policy, clip_id, WARM_AHEAD)
        return [p for p in (root.clip_path(c) for c in ids) if p.is_file()]

    app.state.peaks_warmer = media.PeaksWarmer(upcoming)
    app.router.on_shutdown.append(app.state.peaks_warmer.close)

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(Unauthorized)
    async def _unauth(request: Request, exc: Unauthorized) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.startswith("/media/"):
            return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return templates.TemplateResponse(request, "login.html", {"message": str(exc)}, status_code=401)

    @app.exception_handler(review.ReviewError)
    async def _review_error(_request: Request, exc: review.ReviewError) -> Response:
        code = 404 if isinstance(exc, review.NotFound) else 409 if isinstance(exc, review.Conflict) else 422
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": "malformed request", "errors": errors}, status_code=422)

    def annotator(request: Request) -> Annotator:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if not token:
            raise Unauthorized("sign in with your personal login link (vidmusician annotators add NAME)")
        with catalog.session() as s:
            ann = review.annotator_for_token(s, token)
        if ann is None:
            raise Unauthorized("unknown token: ask for a new login link")
        return ann

    Who = Annotated[Annotator, Depends(annotator)]

    def clip_file(clip: Clip) -> Path:
        path = root.clip_path(clip.id)
        if clip.path:
            candidate = (root.path / clip.path).resolve()
            if not candidate.is_relative_to(root.path):
                raise review.NotFound(f"clip {clip.id!r} has no media inside the data root")
            path = candidate
        if not path.is_file():
            raise review.NotFound(f"clip {clip.id!r} has no media file")
        return path

    def clip_payload(s: Session, clip_id: str | None) -> dict | None:
        if clip_id is None:
            return None
        clip = s.get(Clip, clip_id)
        src = s.get(Source, clip.source_id)
        return {
            "id": clip.id,
            "media_url": f"/media/{clip.id}",
            "peaks_url": f"/api/clips/{clip.id}/peaks",
            "start_s": clip.start_s,
            "duration_s": clip.duration_s,
            "qc": {
                "silence_ratio": clip.silence_ratio, "static_ratio": clip.static_ratio,
                "scene_cuts": clip.scene_cuts, "loudness_lufs": clip.loudness_lufs,
                "vocal_energy": clip.vocal_energy,
            },
            "source": {
                "id": src.id if src else None,
                "title": (src.title if src else None) or "",
                "query": (src.query if src else None) or "",
                "link": safe_link((src.webpage_url or src.url) if src else None),
            },
        }

    by_query_cache: dict = {"at": -1e9, "rows": []}

    def progress(s: Session, annotator_id: int) -> dict:
        """Overall counts are exact; the per-query table may be up to BY_QUERY_TTL_S old (it joins every clip)."""
        now = time.monotonic()
        if now - by_query_cache["at"] > BY_QUERY_TTL_S:
            by_query_cache.update(at=now, rows=review.progress_by_query(s))
        return {**review.progress_overall(s, annotator_id), "by_query": by_query_cache["rows"]}

    # Writers in this process queue on a lock before the database's own: SQLite's busy handler polls
    # with sleeps of up to 100 ms, which made the tail latency with two annotators; the database still
    # serialises writers from other processes (see dvmset.review).
    write_lock = threading.Lock()

    @contextlib.contextmanager
    def writing() -> Iterator[Session]:
        with write_lock, catalog.session() as s:
            yield s

    def next_clip(ann: Annotator) -> dict | None:
        with writing() as s:
            clip_id = review.claim_next(s, ann.id, policy)
        with catalog.session() as s:
            return clip_payload(s, clip_id)

    @app.get("/login")
    def login(request: Request, token: Annotated[str, Query(max_length=256)] = "") -> Response:
        with catalog.session() as s:
            ann = review.annotator_for_token(s, token)
        if ann is None:
            raise Unauthorized("unknown token: ask for a new login link")
        # Not a redirect: a SameSite=Strict cookie set during a cross-site navigation (a link in a mail)
        # is not sent on the redirected request; this page's own refresh to / is same-site.
        resp = templates.TemplateResponse(request, "signed_in.html", {"annotator": ann.name})
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400, path="/",
                        secure=request.url.scheme == "https")
        return resp

    @app.post("/logout")
    def logout() -> Response:
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, ann: Who) -> Response:
        clip = next_clip(ann)
        with catalog.session() as s:
            data = {"clip": clip, "progress": progress(s, ann.id)}
        data["reasons"] = [{"code": r.value, "label": REASON_LABELS[r]} for r in RejectReason]
        return templates.TemplateResponse(request, "review.html", {"data": data, "annotator": ann.name,
                                                                   "reasons": data["reasons"]})

    @app.get("/api/next")
    def api_next(ann: Who) -> dict:
        """The clip to review now (leased to the caller); progress comes from /api/progress, off the hot path."""
        return {"clip": next_clip(ann)}

    @app.get("/api/progress")
    def api_progress(ann: Who) -> dict:
        with catalog.session() as s:
            return progress(s, ann.id)

    @app.post("/api/decisions", status_code=201)
    def api_decide(body: DecisionIn, ann: Who) -> dict:
        with writing() as s:
            row = review.decide(s, ann.id, body.clip_id, body.verdict, body.reasons, body.note,
                                body.seconds_spent, policy)
            status = s.get(Clip, body.clip_id).status
        return {"decision_id": row.id, "clip_id": body.clip_id, "clip_status": status}

    @app.post("/api/undo")
    def api_undo(ann: Who) -> dict:
        with writing() as s:
            row = review.undo_last(s, ann.id, policy)
            status = s.get(Clip, row.clip_id).status
        return {"undo_id": row.id, "voided": row.voids, "clip_id": row.clip_id, "clip_status": status}

    @app.post("/api/skip")
    def api_skip(body: SkipIn, ann: Who) -> dict:
        with writing() as s:
            review.skip(s, ann.id, body.clip_id, policy)
        return {"skipped": body.clip_id}

    def known_clip(clip_id: str) -> Clip:
        try:
            check_id(clip_id, "clip id")
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        with catalog.session() as s:
            clip = s.get(Clip, clip_id)
        if clip is None:
            raise review.NotFound(f"clip {clip_id!r} is not in the catalog")
        return clip

    @app.get("/api/clips/{clip_id}/peaks")
    def api_peaks(clip_id: str, ann: Who, n: Annotated[int, Query(ge=1, le=media.MAX_PEAKS)] = 1000) -> dict:
        path = clip_file(known_clip(clip_id))
        peaks = media.waveform_peaks(path, n)
        app.state.peaks_warmer.after(clip_id, ann.id, n)  # the next clips' waveforms, while this one plays
        return {"clip_id": clip_id, "n": n, "peaks": peaks}

    @app.get("/media/{clip_id}")
    def api_media(clip_id: str, request: Request, ann: Who) -> Response:
        path = clip_file(known_clip(clip_id))
        size = path.stat().st_size
        base = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4", "Cache-Control": "private, max-age=3600"}
        header = request.headers.get("range")
        if header is None:
            return StreamingResponse(media.iter_file(path, 0, size), headers={**base, "Content-Length": str(size)})
        try:
            rng = media.parse_range(header, size)
        except media.RangeNotSatisfiable as exc:
            return JSONResponse({"detail": str(exc)}, status_code=416, headers={"Content-Range": f"bytes */{size}"})
        return StreamingResponse(media.iter_file(path, rng.start, rng.length), status_code=206,
                                 headers={**base, "Content-Range": rng.content_range,
                                          "Content-Length": str(rng.length)})

    @app.get("/api/agreement")
    def api_agreement(ann: Who) -> dict:
        with catalog.session() as s:
            return agreement_report(s)

    @app.get("/agreement", response_class=HTMLResponse)
    def agreement_page(request: Request, ann: Who) -> Response:
        with catalog.session() as s:
            rep = agreement_report(s)
            prog = review.progress(s)
        return templates.TemplateResponse(request, "agreement.html", {
            "rep": rep, "progress": prog, "rule": EFFECTIVE_VERDICT_RULE, "annotator": ann.name})

    return app
