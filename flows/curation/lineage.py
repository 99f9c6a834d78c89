"""Recording a clip's lineage, music checksum and fingerprint after it is cut (curate and rebuild)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dvmset.catalog import Catalog
from dvmset.lineage import record_lineage
from dvmset.sources import record_clip
from dvmset.tables import Clip
from flows.config import CurateConfig
from pipeline import provenance
from pipeline.clip import ClipSpan, clip_id
from pipeline.download import ACCESS_KEY
from pipeline.errors import item_failure
from pipeline.fingerprint import window_music
from pipeline.process import ProcessedAudio
from pipeline.source_files import Downloaded

log = logging.getLogger(__name__)


def record_clip_lineage(cat: Catalog, cfg: CurateConfig, clip_id: str, span: ClipSpan, audio: ProcessedAudio,
                        got: Downloaded, *, clip_gain_db: float | None, origin: str = "curated") -> None:
    """The clip's steps (versions, parameters), its window's music checksum and fingerprint, and its
    source's extractor and upload date."""
    sha, fp = window_music(audio.music_path, span.start_s, span.duration_s)
    steps = provenance.curate_steps(
        download_format=cfg.download_options().format, separator=cfg.separator_label,
        demucs_repo=cfg.demucs_repo, demucs_shifts=cfg.demucs_shifts, demucs_segment_s=cfg.demucs_segment_s,
        target_lufs=cfg.target_lufs, source_gain_db=audio.gain.gain_db if audio.gain else None,
        clip_gain_db=clip_gain_db, start_s=span.start_s, duration_s=span.duration_s, fps=cfg.fps)
    steps[0]["params"] |= download_access(got.info_json_path)
    record_lineage(cat, clip_id, steps, music_sha256=sha, music_fingerprint=fp, origin=origin,
                   **provenance.download_facts(got.info_json_path))


def download_access(info_json: Path) -> dict:
    """How the source's download reached its site (cookies used, browser, proxy host, sleep, yt-dlp options;
    never a secret), as pipeline.download recorded it in info.json; empty when nothing special was used."""
    try:
        info = json.loads(Path(info_json).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    access = info.get(ACCESS_KEY)
    return {"access": access} if isinstance(access, dict) and access else {}


def record_made_clip(cat: Catalog, cfg: CurateConfig, source_id: str, span: ClipSpan, audio: ProcessedAudio,
                     got: Downloaded) -> str | None:
    """Curation's call after a clip is made: its lineage; a fingerprint that fails fails only the clip (its row
    says why, and so does the return value; None when the lineage was recorded)."""
    cid = clip_id(source_id, span.start_s)
    with cat.session() as s:
        gain = s.get(Clip, cid).clip_gain_db
    try:
        record_clip_lineage(cat, cfg, cid, span, audio, got, clip_gain_db=gain)
    except Exception as err:  # noqa: BLE001 - the one failure policy: any per-clip error fails only this clip
        log.warning("clip %s: no lineage/fingerprint: %s", cid, err)
        error = item_failure(err)
        record_clip(cat, cid, source_id, span.start_s, span.duration_s, error=error)
        return error
    return None
