"""A clip's media, with HTTP byte ranges, and its waveform peaks, spectrogram and per-second QC hints (all
stored by curation; the server reads them, never computes a spectrogram or hints per request)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from annotation_ui import media
from annotation_ui.context import Ctx, Who
from annotation_ui.peaks import MAX_PEAKS
from dvmset.peaks import SPEC_FPS, hints_path, read_hints, read_spectrogram, spectrogram_path

router = APIRouter()
DEFAULT_PEAKS = 1000


@router.get("/api/clips/{clip_id}/peaks")
def api_peaks(clip_id: str, ctx: Ctx, ann: Who,
              n: Annotated[int, Query(ge=1, le=MAX_PEAKS)] = DEFAULT_PEAKS) -> dict:
    clip = ctx.clip(clip_id)
    peaks = ctx.peaks.peaks(ctx.root.peaks_path(clip.id), ctx.media_file(clip), n)  # [n]
    if ctx.warmer is not None:
        ctx.warmer.after(clip_id, ann.id)  # the next clips' missing peaks files, while this one plays
    return {"clip_id": clip_id, "n": len(peaks), "peaks": [round(float(v), 3) for v in peaks]}


@router.get("/api/clips/{clip_id}/spectrogram")
def api_spectrogram(clip_id: str, ctx: Ctx, ann: Who) -> Response:
    """The stored spectrogram, [bands, frames] uint8 (row 0 the lowest band) as base64; ``stored: false``
    when curation stored none (clips curated before spectrograms were stored): an answer, not an error."""
    clip = ctx.clip(clip_id)
    try:
        spec = read_spectrogram(spectrogram_path(ctx.root.peaks_path(clip.id)))  # [F, T]
    except FileNotFoundError:
        return JSONResponse({"clip_id": clip_id, "stored": False})
    return JSONResponse({"clip_id": clip_id, "stored": True, "bands": int(spec.shape[0]), "frames": int(spec.shape[1]),
                         "fps": SPEC_FPS, "data": base64.b64encode(spec.tobytes()).decode("ascii")},
                        headers={"Cache-Control": "private, max-age=3600"})


@router.get("/api/clips/{clip_id}/hints")
def api_hints(clip_id: str, ctx: Ctx, ann: Who) -> Response:
    """The per-second QC hints curation stored (scene cuts, still stretches, silence, residual vocals per
    second); ``stored: false`` when it stored none."""
    clip = ctx.clip(clip_id)
    try:
        hints = read_hints(hints_path(ctx.root.peaks_path(clip.id)))
    except FileNotFoundError:
        return JSONResponse({"clip_id": clip_id, "stored": False})
    return JSONResponse({"clip_id": clip_id, "stored": True, **hints})


@router.api_route("/media/{clip_id}", methods=["GET", "HEAD"])
def api_media(clip_id: str, request: Request, ctx: Ctx, ann: Who) -> Response:
    """The clip's bytes: 206 for a satisfiable ``Range: bytes=`` (the first range), 416 for a malformed or
    unsatisfiable one, the whole file (200) without a Range or with a unit other than bytes."""
    path = ctx.media_file(ctx.clip(clip_id))
    size = path.stat().st_size
    base = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4", "Cache-Control": "private, max-age=3600"}
    header = request.headers.get("range")
    try:
        rng = None if header is None else media.parse_range(header, size)
    except media.RangeNotSatisfiable as exc:
        return JSONResponse({"detail": str(exc)}, status_code=416, headers={"Content-Range": f"bytes */{size}"})
    if rng is None:
        status, start, length, extra = 200, 0, size, {}
    else:
        status, start, length, extra = 206, rng.start, rng.length, {"Content-Range": rng.content_range}
    headers = {**base, **extra, "Content-Length": str(length)}
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    return StreamingResponse(media.iter_file(path, start, length), status_code=status, headers=headers)
