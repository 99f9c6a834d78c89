"""Error answers: JSON for the API and media routes, HTML pages for people (sign-in, not found, the
catalog not answering). A catalog that does not answer is a 503 with ``Retry-After``, never a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from annotation_ui.context import Unauthorized
from annotation_ui.guard import RETRY_AFTER_S
from annotation_ui.peaks import PeaksUnavailable
from dvmset import review
from dvmset.annotators import LeadsOnly

log = logging.getLogger(__name__)
MACHINE_PREFIXES = ("/api/", "/media/", "/static/")
TITLES = {400: "Bad request", 403: "For leads", 404: "Not found", 405: "Not allowed", 413: "Too large", 422: "Bad request",
          503: "Try again shortly"}


def for_machines(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PREFIXES)


def page(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An HTML page saying what went wrong, for a person's browser."""
    return request.app.state.review.templates.TemplateResponse(
        request, "message.html", {"title": TITLES.get(status, "Error"), "message": message}, status_code=status,
        headers=headers)


def answer(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if for_machines(request):
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    return page(request, status, message, headers)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Unauthorized)
    async def _unauth(request: Request, exc: Unauthorized) -> Response:
        if for_machines(request):
            return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return request.app.state.review.templates.TemplateResponse(request, "login.html", {"message": str(exc)},
                                                                   status_code=401)

    @app.exception_handler(review.ReviewError)
    async def _review_error(request: Request, exc: review.ReviewError) -> Response:
        code = (404 if isinstance(exc, review.NotFound) else 409 if isinstance(exc, review.Conflict)
                else 403 if isinstance(exc, LeadsOnly) else 422)
        return answer(request, code, str(exc))

    @app.exception_handler(PeaksUnavailable)
    async def _no_peaks(_request: Request, exc: PeaksUnavailable) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if not for_machines(request):
            return page(request, 400, "this address is malformed; open the link you were given as it is")
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": "malformed request", "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        message = {404: f"nothing at {request.url.path}: the review page is at /",
                   405: "this address does not take that method"}.get(exc.status_code, str(exc.detail))
        return answer(request, exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _catalog_down(request: Request, exc: OperationalError | InterfaceError) -> Response:
        log.warning("catalog not answering: %s", str(exc.orig or exc)[:200])
        return answer(request, 503, "the catalog is not answering; your last action was not saved, try again "
                      "shortly", {"Retry-After": str(RETRY_AFTER_S)})
