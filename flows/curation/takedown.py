"""The takedown of a video or a clip (``vidmusician takedown``): the request recorded first, then the
catalog marks, the feature shards and index, the media files, every export; each step idempotent,
so the same command run again after an interruption finishes the job."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dvmset import takedown as td
from dvmset.catalog import Catalog
from dvmset.layout import DataRoot, id_problem
from dvmset.peaks import hints_path, spectrogram_path
from dvmset.shards import FeatureStore, StoreBusy
from dvmset.spans import drop_from_spans_file
from dvmset.tables import Source
from pipeline.source_files import Downloaded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TakedownResult:
    video_id: str
    clip_ids: tuple[str, ...]
    reason: str
    shards_rewritten: tuple[str, ...]
    exports_changed: tuple[str, ...]
    files_deleted: int
    already_finished: bool


def _scrub_features_waiting(store: FeatureStore, clip_ids: tuple[str, ...], wait_s: float) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with store.exclusive("`vidmusician takedown`"):
                return td.scrub_features(store, clip_ids)
        except StoreBusy:
            if time.monotonic() >= deadline:
                raise
            log.info("the feature store is busy; waiting to remove the clips from it")
            time.sleep(0.5)


def _delete_media(root: DataRoot, plan: td.TakedownPlan) -> int:
    """The clips' files and, for a video, its source folder. An id against the rule (a row an older version
    stored) names no file: every writer builds paths through DataRoot, which refuses it."""
    n = 0
    for cid in plan.clip_ids:
        if id_problem(cid) is not None:
            continue
        for p in (root.clip_path(cid), root.peaks_path(cid), spectrogram_path(root.peaks_path(cid)),
                  hints_path(root.peaks_path(cid))):
            if p.exists():
                p.unlink()
                n += 1
    if plan.clip_id is None and root.source_dir(plan.video_id).exists():
        n += sum(1 for p in root.source_dir(plan.video_id).rglob("*") if p.is_file())
        shutil.rmtree(root.source_dir(plan.video_id))
    return n


def _card_writer(cat: Catalog):  # noqa: ANN202 - Callable[[Path, pa.Table], None]
    from dvmset.export_card import EXPORT_PARAMS, write_card

    def write(out: Path, manifest: pa.Table) -> None:
        params_path = out / EXPORT_PARAMS
        params = json.loads(params_path.read_text(encoding="utf-8")) if params_path.is_file() else {}
        write_card(out, manifest, cat, **{**params, "reuse_facts": True})  # only fewer clips: facts kept

    return write


def refused_video(cat: Catalog, root: DataRoot, url: str, got: Downloaded) -> str | None:
    """Why curation must not take this downloaded video (a takedown names it), or None. A video taken
    down whole and downloaded again under another URL loses the new download."""
    why = td.refusal(cat, video_id=got.id, url=url)
    if why:
        with cat.session() as s:
            row = s.get(Source, got.id)
            if row is not None and row.status == td.TAKEN_DOWN:
                shutil.rmtree(root.source_dir(got.id), ignore_errors=True)
    return why


def run_takedown(root: DataRoot, cat: Catalog, *, video: str | None = None, clip: str | None = None,
                 reason: str, wait_s: float = 600.0) -> TakedownResult:
    """Take the video or clip down everywhere (see module doc); safe to run again at any point."""
    plan = td.plan_takedown(cat, video=video, clip=clip, reason=reason)
    td.mark_catalog(cat, plan)  # from here no export, release or review serves them
    shards = _scrub_features_waiting(FeatureStore(root.features_dir), plan.clip_ids, wait_s)
    drop_from_spans_file(root.features_dir, plan.clip_ids)  # their seconds, beside the features
    deleted = _delete_media(root, plan)
    write_card = _card_writer(cat)
    exports = [d.name for d in sorted(root.exports_dir.glob("*")) if d.is_dir()
               and td.scrub_export(d, plan.clip_ids, write_card)]
    td.finish(cat, plan)
    log.info("took down %s (%d clips): %s", plan.clip_id or plan.video_id, len(plan.clip_ids), plan.reason)
    return TakedownResult(plan.video_id, plan.clip_ids, plan.reason, tuple(shards), tuple(exports), deleted,
                          plan.finished)
