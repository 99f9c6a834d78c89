"""Sign-in: a personal login link shows whose link it is and signs in only when its button is pressed
(a POST from this page); sign-out clears the cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from annotation_ui.context import COOKIE, Ctx, Unauthorized, bearer_or_cookie
from dvmset import review

router = APIRouter()
COOKIE_MAX_AGE_S = 30 * 86400
MAX_TOKEN_CHARS = 256


def _annotator(ctx: Ctx, token: str | None):  # noqa: ANN202 - an Annotator or None
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    with ctx.catalog.session() as s:
        return review.annotator_for_token(s, token)


@router.get("/login")
def login_page(request: Request, ctx: Ctx, token: str = "") -> Response:
    """Whose link this is, and a button that signs in; a GET alone never changes who is signed in (a
    link another site makes the browser open must not sign it in as someone else)."""
    ann = _annotator(ctx, token)
    if ann is None:
        raise Unauthorized("this login link is not valid (mistyped, replaced or revoked): ask for a new one")
    current = _annotator(ctx, bearer_or_cookie(request))
    return ctx.templates.TemplateResponse(request, "login_confirm.html", {
        "who": ann.name, "token": token, "current": current.name if current and current.id != ann.id else None,
        "already": current is not None and current.id == ann.id})


@router.post("/login")
def login(request: Request, ctx: Ctx, token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)]) -> Response:
    ann = _annotator(ctx, token)
    if ann is None:
        raise Unauthorized("this login link is not valid (mistyped, replaced or revoked): ask for a new one")
    # Our own page posted this (the guard checked its origin), so the redirect to / is same-site and
    # carries the SameSite=Strict cookie.
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=COOKIE_MAX_AGE_S, path="/",
                    secure=request.url.scheme == "https")
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
