"""Sign-in: a personal login link sets the token cookie; sign-out clears it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from annotation_ui.context import COOKIE, Ctx, Unauthorized
from dvmset import review

router = APIRouter()
COOKIE_MAX_AGE_S = 30 * 86400


@router.get("/login")
def login(request: Request, ctx: Ctx, token: Annotated[str, Query(max_length=256)] = "") -> Response:
    with ctx.catalog.session() as s:
        ann = review.annotator_for_token(s, token)
    if ann is None:
        raise Unauthorized("unknown token: ask for a new login link")
    # Not a redirect: a SameSite=Strict cookie set during a cross-site navigation (a link in a mail)
    # is not sent on the redirected request; this page's own refresh to / is same-site.
    resp = ctx.templates.TemplateResponse(request, "signed_in.html", {"annotator": ann.name})
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=COOKIE_MAX_AGE_S, path="/",
                    secure=request.url.scheme == "https")
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
