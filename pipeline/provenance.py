"""What made a clip: the versions of the tools and the parameters of each curation step, as plain dicts
for the clip's lineage (dvmset.lineage). Versions are read once per process."""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from dvmset.constants import NO_LOUDNESS_CHANGE
from pipeline import media, qc
from pipeline.clip import AAC_ARGS


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def tool_versions() -> dict[str, str]:
    return {"vidmusician": _dist_version("vidmusician"), "yt-dlp": _dist_version("yt-dlp"),
            "ffmpeg": media.ffmpeg_version(), "demucs": _dist_version("demucs"),
            "pyloudnorm": _dist_version("pyloudnorm")}


def weights_hash(separator: str, repo: str | Path | None) -> str:
    """"none" without a separator; sha256 (16 hex) of a local repo's weight files; else the hub name."""
    if separator == "none":
        return "none"
    if repo is not None and Path(repo).is_dir():
        h = hashlib.sha256()
        for p in sorted(Path(repo).glob("*.th")):
            h.update(p.name.encode())
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        return "sha256:" + h.hexdigest()[:16]
    return f"torch-hub:{separator}"  # the cache's file names carry demucs' own hash prefix


def download_facts(info_json: Path) -> dict[str, Any]:
    """Extractor and upload date from a download's info.json (None where yt-dlp gave none)."""
    try:
        info = json.loads(Path(info_json).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    return {"extractor": info.get("extractor_key") or info.get("extractor"), "upload_date": info.get("upload_date")}


def curate_steps(*, download_format: str, separator: str, demucs_repo: str | None, demucs_shifts: int,
                 demucs_segment_s: float | None, target_lufs: float | None, source_gain_db: float | None,
                 clip_gain_db: float | None, start_s: float, duration_s: float, fps: int) -> list[dict]:
    """The lineage steps of one curated clip, in order; each names its tool, version and parameters."""
    v = tool_versions()
    sep = {"model": separator, "weights": weights_hash(separator, demucs_repo)}
    if separator != "none":
        sep |= {"shifts": demucs_shifts, "segment_s": demucs_segment_s}
    return [
        {"step": "download", "tool": "yt-dlp", "version": v["yt-dlp"], "params": {"format": download_format}},
        {"step": "separate", "tool": "demucs" if separator != "none" else "none",
         "version": v["demucs"] if separator != "none" else None, "params": sep},
        {"step": "loudness", "tool": "pyloudnorm", "version": v["pyloudnorm"],
         "params": {"target_lufs": target_lufs, "source_gain_db": source_gain_db, "clip_gain_db": clip_gain_db}}
        if target_lufs is not None else  # no loudness change: recorded as such, as "separate" records "none"
        {"step": "loudness", "tool": "none", "version": None, "params": {"target_lufs": NO_LOUDNESS_CHANGE}},
        {"step": "clip", "tool": "ffmpeg", "version": v["ffmpeg"],
         "params": {"start_s": start_s, "duration_s": duration_s, "fps": fps, "video": "libx264",
                    "audio": " ".join(AAC_ARGS)}},
        {"step": "qc", "tool": "vidmusician", "version": v["vidmusician"], "params": {"analysis_width": qc.ANALYSIS_WIDTH, "still_lag_s": qc.STILL_LAG_S,
                                                                 "cut_threshold": qc.CUT_THRESHOLD}},
        {"step": "fingerprint", "tool": "chromaprint (ffmpeg muxer)", "version": v["ffmpeg"],
         "params": {"algorithm": 1, "format": "raw", "checksum": "sha256 of 32 kHz stereo f32 PCM"}},
    ]
