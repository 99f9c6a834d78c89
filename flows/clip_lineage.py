"""Recording a clip's lineage, music checksum and fingerprint after it is cut (curate and rebuild)."""

from __future__ import annotations

from dvmset.catalog import Catalog
from dvmset.lineage import record_lineage
from flows.config import CurateConfig
from pipeline import provenance
from pipeline.clip import ClipSpan
from pipeline.fingerprint import window_music
from pipeline.process import ProcessedAudio
from pipeline.source_files import Downloaded


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
    record_lineage(cat, clip_id, steps, music_sha256=sha, music_fingerprint=fp, origin=origin,
                   **provenance.download_facts(got.info_json_path))
