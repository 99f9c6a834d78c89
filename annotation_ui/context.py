"""What every route needs, on ``app.state.review``: the catalog, templates and the server's
parts; and the FastAPI dependencies that hand them (and the signed-in annotator) to a route."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from annotation_ui.peaks import PeaksStore, PeaksWarmer
from annotation_ui.serving import SerialWriter, TtlCache
from dvmset import review
from dvmset.catalog import Catalog
from dvmset.layout import DataRoot, check_id
from dvmset.tables import Annotator, Clip

HERE = Path(__file__).resolve().parent
COOKIE = "vm_token"


class Unauthorized(Exception):
    """No valid token: HTML routes answer with the sign-in page, API routes with a JSON 401."""


def plural(n: int | None, noun: str, plural_noun: str | None = None) -> str:
    """``1 clip``, ``2 clips``, ``0 clips`` (a Jinja filter: ``{{ n | plural("clip") }}``)."""
    n = 0 if n is None else n
    return f"{n} {noun if n == 1 else (plural_noun or noun + 's')}"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    templates.env.filters["plural"] = plural
    return templates


@dataclass(frozen=True)
class ReviewContext:
    """The review server's state, one per app."""

    root: DataRoot
    catalog: Catalog
    templates: Jinja2Templates
    writer: SerialWriter
    by_query: TtlCache[list[dict]]
    peaks: PeaksStore
    warmer: PeaksWarmer | None
    order: str = "queue"  # dvmset.review_order: queue | uncertain | likely-keep
    min_listen_s: float = 0.0  # a verdict sooner after the clip was handed out asks for confirmation

    def clip(self, clip_id: str) -> Clip:
        """The catalog row of ``clip_id``; 400 for an unsafe id, NotFound for an unknown one."""
        try:
            check_id(clip_id, "clip id")
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        with self.catalog.session() as s:
            clip = s.get(Clip, clip_id)
        if clip is None:
            raise review.NotFound(f"clip {clip_id!r} is not in the catalog")
        return clip

    def media_file(self, clip: Clip) -> Path:
        """The clip's media file, inside the data root; NotFound when absent or outside."""
        path = self.root.clip_path(clip.id)
        if clip.path:
            candidate = (self.root.path / clip.path).resolve()
            if not candidate.is_relative_to(self.root.path):
                raise review.NotFound(f"clip {clip.id!r} has no media inside the data root")
            path = candidate
        if not path.is_file():
            raise review.NotFound(f"clip {clip.id!r} has no media file")
        return path


async def review_context(request: Request) -> ReviewContext:  # async: no worker thread for an attribute
    return request.app.state.review


Ctx = Annotated[ReviewContext, Depends(review_context)]


def bearer_or_cookie(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE)


async def current_annotator(request: Request, ctx: Ctx) -> Annotator:
    """The annotator whose token came with the request (``Authorization: Bearer`` or the cookie); async, so
    only the catalog lookup takes a worker thread, and none when the guard looked it up already."""
    checked = getattr(request.state, "annotator", None)  # a state-changing request: annotation_ui.guard
    if checked is not None:
        return checked
    token = bearer_or_cookie(request)
    if not token:
        raise Unauthorized("sign in with your personal login link (vidmusician annotators add NAME)")
    ann = await run_in_threadpool(_annotator_for_token, ctx.catalog, token)
    if ann is None:
        raise Unauthorized("unknown token: ask for a new login link")
    return ann


def _annotator_for_token(catalog: Catalog, token: str) -> Annotator | None:
    with catalog.session() as s:
        return review.annotator_for_token(s, token)


Who = Annotated[Annotator, Depends(current_annotator)]
