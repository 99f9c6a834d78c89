"""A clip's lineage: where its source came from and every step that made it, with versions and
parameters (recorded by curation in ``clips.lineage``), plus the features config once it has features."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.music_index import index_clip
from dvmset.shards import FeatureStore
from dvmset.tables import Clip, Source

LINEAGE_FORMAT = "vidmusician-lineage/1"
_STEP_KEYS = {"step", "tool", "version", "params"}


class UnknownClip(KeyError):
    """No clip of that id in the catalog."""

    def __str__(self) -> str:
        return str(self.args[0])


def check_steps(steps: Sequence[dict]) -> list[dict]:
    """Steps as stored: each a dict with exactly step, tool, version and params (a dict)."""
    out = []
    for s in steps:
        if set(s) != _STEP_KEYS or not isinstance(s["params"], dict):
            raise ValueError(f"a lineage step needs exactly {sorted(_STEP_KEYS)} with params a dict, got {s!r}")
        out.append(dict(s))
    return out


def record_lineage(cat: Catalog, clip_id: str, steps: Sequence[dict], *, music_sha256: str | None,
                   music_fingerprint: str | None, origin: str = "curated", **source_values: Any) -> None:
    """Store a clip's steps, its music's checksum and fingerprint and its origin (and source facts such as
    ``extractor`` and ``upload_date`` on its source row), and match its fingerprint against the shared-music
    index (dvmset.music_index) so the groups are kept as clips are made."""
    record = {"format": LINEAGE_FORMAT, "steps": check_steps(steps)}
    with cat.session() as s:
        clip = s.get(Clip, clip_id)
        if clip is None:
            raise UnknownClip(f"clip {clip_id} is not in the catalog")
        clip.lineage, clip.music_sha256, clip.music_fingerprint, clip.origin = (
            record, music_sha256, music_fingerprint, origin)
        clip.music_indexed = False  # until index_clip below has matched it (a crash in between: catch_up does)
        src = s.get(Source, clip.source_id)
        for k, v in source_values.items():
            setattr(src, k, v)
    index_clip(cat, clip_id)


def clip_lineage(root: DataRoot, cat: Catalog, clip_id: str) -> dict:
    """Everything known of how ``clip_id`` was made, as JSON-able values."""
    with cat.session() as s:
        clip = s.get(Clip, clip_id)
        if clip is None:
            raise UnknownClip(f"clip {clip_id} is not in the catalog: see `vidmusician status`")
        src = s.get(Source, clip.source_id)
        out = {
            "clip_id": clip.id, "status": clip.status, "origin": clip.origin or "curated",
            "source": {"video_id": src.id, "url": src.webpage_url or src.url, "extractor": src.extractor,
                       "upload_date": src.upload_date, "license": src.license, "title": src.title,
                       "uploader": src.uploader, "duration_s": src.duration_s},
            "window": {"start_s": clip.start_s, "duration_s": clip.duration_s},
            "music": {"sha256": clip.music_sha256, "fingerprint": bool(clip.music_fingerprint)},
            "steps": list((clip.lineage or {}).get("steps", [])),
            "taken_down": None if clip.taken_down_at is None else
            {"at": clip.taken_down_at.isoformat(), "reason": clip.takedown_reason},
        }
    row = FeatureStore(root.features_dir).row(clip_id)
    if row is not None:
        out["steps"].append({"step": "features", "tool": "vidmusician", "version": None,
                             "params": {**json.loads(row["config"]), "shard": row["shard"]}})
    return out


def format_lineage(lin: dict) -> list[str]:
    """The lineage as lines of text, one per step, for the command line."""
    src, w = lin["source"], lin["window"]
    lines = [f"clip {lin['clip_id']} ({lin['status']}, {lin['origin']})",
             f"source {src['video_id']}: {src['url']} via {src['extractor'] or '?'}, uploaded "
             f"{src['upload_date'] or '?'}, licence {src['license'] or '?'}",
             f"window {w['start_s']:g} s + {w['duration_s']:g} s; music sha256 {lin['music']['sha256'] or '?'}"]
    if not lin["steps"]:
        lines.append("no steps recorded (curated before lineage was kept)")
    for st in lin["steps"]:
        params = ", ".join(f"{k}={v}" for k, v in st["params"].items())
        version = f" {st['version']}" if st["version"] else ""
        lines.append(f"  {st['step']}: {st['tool']}{version} ({params})")
    if lin["taken_down"]:
        lines.append(f"taken down {lin['taken_down']['at']}: {lin['taken_down']['reason']}")
    return lines
