"""Export: split accepted clips by source video, stratified by query, and write the hand-off files.

``exports/{name}/``: ``manifest.parquet``, audiocraft-style ``train.jsonl`` / ``test.jsonl`` (each
line an ``AudioMeta``: path, duration, sample_rate, amplitude, weight, info_path), ``audio/`` with a
link per clip beside its MusicInfo ``.json`` (where audiocraft's MusicDataset looks), ``DATASET.md``.
**[paper §4]** no source video in two splits; both splits hold every query; 268 / 3,839 test.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select

from dvmset.agreement import agreement_report
from dvmset.catalog import Catalog
from dvmset.constants import TEST_FRACTION
from dvmset.io import atomic_path, atomic_write_text
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus
from dvmset.shards import FeatureStore
from dvmset.tables import Clip, Source

log = logging.getLogger(__name__)

TRAIN, TEST = "train", "test"


@dataclass(frozen=True)
class SplitItem:
    clip_id: str
    source_id: str
    query: str | None


def plan_split(
    items: Sequence[SplitItem],
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    fixed: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """clip id -> "train"|"test": whole sources per split, about ``test_fraction`` of each query's clips.

    Sources in ``fixed`` keep their split (a re-export never moves a video across splits). A query
    with two or more sources gets at least one of each split.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    fixed = dict(fixed or {})
    if bad := {s for s in fixed.values() if s not in (TRAIN, TEST)}:
        raise ValueError(f"fixed splits must be train/test, got {sorted(bad)}")
    clips_of: dict[str, list[str]] = defaultdict(list)
    query_of: dict[str, str] = {}
    for it in items:
        q = it.query or "(url)"
        if query_of.setdefault(it.source_id, q) != q:
            raise ValueError(f"source {it.source_id} has clips under two queries: {query_of[it.source_id]!r}, {q!r}")
        clips_of[it.source_id].append(it.clip_id)
    sources_by_query: dict[str, list[str]] = defaultdict(list)
    for s, q in query_of.items():
        sources_by_query[q].append(s)
    split_of: dict[str, str] = {}
    for q, sources in sorted(sources_by_query.items()):
        rng = np.random.default_rng([seed, zlib.crc32(q.encode())])
        sources = sorted(sources)
        target = test_fraction * sum(len(clips_of[s]) for s in sources)
        n_test = sum(len(clips_of[s]) for s in sources if fixed.get(s) == TEST)
        free = [s for s in sources if s not in fixed]
        for i in rng.permutation(len(free)):
            s = free[i]
            take = n_test + len(clips_of[s]) <= target + 0.5
            split_of[s] = TEST if take else TRAIN
            n_test += len(clips_of[s]) if take else 0
        final = {s: fixed.get(s) or split_of[s] for s in sources}
        if len(sources) >= 2 and test_fraction > 0:
            for want in (TEST, TRAIN):  # both splits hold every query (paper §4)
                movable = [s for s in free if final[s] != want]
                if want not in final.values() and movable:
                    s = min(movable, key=lambda x: (len(clips_of[x]), x))
                    split_of[s] = final[s] = want
        split_of.update({s: fixed[s] for s in sources if s in fixed})
    return {c: split_of[s] for s, cs in clips_of.items() for c in cs}


def _audio_info(path: Path) -> tuple[float | None, int | None]:
    """(duration s, sample rate) of a clip's audio stream, from the container header."""
    import av

    try:
        with av.open(str(path)) as f:
            if not f.streams.audio:
                return None, None
            st = f.streams.audio[0]
            dur = float(st.duration * st.time_base) if st.duration else (f.duration or 0) / 1e6
            return dur, int(st.sample_rate)
    except (OSError, av.FFmpegError) as err:
        log.warning("%s: unreadable (%s)", path, err)
        return None, None


@dataclass(frozen=True)
class ExportSummary:
    name: str
    path: Path
    train: int
    test: int
    sources: int
    missing: int  # accepted clips whose file is gone (left out)


def _link(target: Path, link: Path) -> None:
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def export_dataset(
    root: DataRoot,
    catalog: Catalog,
    name: str,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    keep_existing: bool = True,
) -> ExportSummary:
    """Split the accepted clips, record the split in the catalog and the feature index, write the export."""
    out = root.export_dir(name)
    with catalog.session() as s:
        rows = s.execute(
            select(Clip.id, Clip.source_id, Source.query, Clip.start_s, Clip.duration_s, Clip.split,
                   Source.title, Source.uploader, Source.webpage_url, Source.url, Source.license)
            .join(Source, Source.id == Clip.source_id).where(Clip.status == ClipStatus.ACCEPTED)
        ).all()
    if not rows:
        raise ValueError(f"no accepted clips in {catalog.url}: review clips before exporting")
    fixed: dict[str, str] = {}
    if keep_existing:
        for r in rows:
            if r.split in (TRAIN, TEST) and fixed.setdefault(r.source_id, r.split) != r.split:
                raise ValueError(f"source {r.source_id} already has clips in both splits; re-export with keep_existing=False")
    split = plan_split([SplitItem(r.id, r.source_id, r.query) for r in rows], test_fraction, seed, fixed)
    store = FeatureStore(root.features_dir)
    with store.exclusive("`vidmusician export`"):  # checked before the catalog changes: all or nothing
        with catalog.session() as s:
            for clip in s.scalars(select(Clip).where(Clip.id.in_(list(split)) | Clip.split.is_not(None))):
                clip.split = split.get(clip.id)  # None for a clip no longer accepted (rejected since)
        store.set_splits(split, exclusive=True)
    index = store.index().set_index("clip_id")

    records, jsonl, missing = [], {TRAIN: [], TEST: []}, 0
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for stale in audio_dir.iterdir():  # an earlier export under this name may list other clips
        if stale.is_symlink() or stale.suffix == ".json":
            stale.unlink()
    for r in sorted(rows, key=lambda r: r.id):
        clip_path = root.clip_path(r.id)
        if not clip_path.is_file():
            log.warning("accepted clip %s has no file at %s; left out of the export", r.id, clip_path)
            missing += 1
            continue
        dur, sr = _audio_info(clip_path)
        dur = dur or r.duration_s
        link = audio_dir / clip_path.name
        _link(clip_path, link)
        info = {"title": r.title, "artist": r.uploader, "description": r.query, "keywords": r.query,
                "clip_id": r.id, "source_id": r.source_id, "url": r.webpage_url or r.url, "start_s": r.start_s}
        atomic_write_text(link.with_suffix(".json"), json.dumps(info, sort_keys=True))
        jsonl[split[r.id]].append({"path": str(link.absolute()), "duration": dur, "sample_rate": sr,
                                   "amplitude": None, "weight": None, "info_path": None})
        records.append({
            "clip_id": r.id, "source_id": r.source_id, "query": r.query, "split": split[r.id],
            "path": str(clip_path.relative_to(root.path)), "start_s": r.start_s, "duration_s": dur,
            "sample_rate": sr, "shard": index["shard"].get(r.id), "title": r.title,
            "url": r.webpage_url or r.url, "license": r.license,
        })
    manifest = pd.DataFrame(records)
    with atomic_path(out / "manifest.parquet") as tmp:
        manifest.to_parquet(tmp, index=False)
    for part in (TRAIN, TEST):
        _write_jsonl(out / f"{part}.jsonl", jsonl[part])
    atomic_write_text(out / "DATASET.md", _card(name, manifest, catalog, test_fraction, seed, missing))
    n = manifest.split.value_counts() if len(manifest) else pd.Series(dtype=int)
    return ExportSummary(name, out, int(n.get(TRAIN, 0)), int(n.get(TEST, 0)),
                         int(manifest.source_id.nunique()) if len(manifest) else 0, missing)


def _review_stats(catalog: Catalog) -> tuple[dict[str, dict[str, int]], dict]:
    """Clip counts by query and status, and the annotator agreement report."""
    by_query = catalog.counts()["clips_by_query"]
    with catalog.session() as s:
        return by_query, agreement_report(s)


def _kappa(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _card(name: str, m: pd.DataFrame, catalog: Catalog, test_fraction: float, seed: int, missing: int) -> str:
    """DATASET.md: what is in the export, how it was split, and how the review went."""
    by_query, agree = _review_stats(catalog)
    acc = sum(v.get(ClipStatus.ACCEPTED, 0) for v in by_query.values())
    rej = sum(v.get(ClipStatus.REJECTED, 0) for v in by_query.values())
    total = sum(sum(v.values()) for v in by_query.values())
    hours = m.duration_s.sum() / 3600 if len(m) else 0.0
    lines = [
        f"# DVMSet export `{name}`", "",
        f"{len(m)} clips ({hours:.2f} h) from {m.source_id.nunique() if len(m) else 0} source videos and "
        f"{m['query'].nunique() if len(m) else 0} queries. Split by source video (no video in two splits), "
        f"stratified by query; target test fraction {test_fraction:.4f}, seed {seed}.", "",
        "| split | clips | sources | hours |", "|---|---:|---:|---:|",
    ]
    for part in (TRAIN, TEST):
        p = m[m.split == part] if len(m) else m
        lines.append(f"| {part} | {len(p)} | {p.source_id.nunique() if len(p) else 0} | "
                     f"{(p.duration_s.sum() / 3600 if len(p) else 0):.2f} |")
    if len(m):
        d = m.duration_s
        lines += ["", f"Clip durations: min {d.min():.2f} s, median {d.median():.2f} s, max {d.max():.2f} s."]
    reviewed = acc + rej
    lines += ["", "## Review", "",
              f"{total} clips cut, {reviewed} reviewed, {acc} accepted: acceptance rate "
              f"{(acc / reviewed if reviewed else float('nan')):.1%} of reviewed clips "
              f"({(acc / total if total else float('nan')):.1%} of all clips).", ""]
    if missing:
        lines += [f"**{missing} accepted clips had no file and were left out.**", ""]
    lines += ["| query | train | test | accepted | rejected | all clips | acceptance |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    # URL-sourced clips have no query; the catalog's counts call that group "(url)", and so must this.
    counts = (m.assign(query=m["query"].fillna("(url)")).groupby(["query", "split"]).size()
              .unstack(fill_value=0) if len(m) else pd.DataFrame())
    for q in sorted(set(by_query) | set(counts.index)):
        st = by_query.get(q, {})
        a, r = st.get(ClipStatus.ACCEPTED, 0), st.get(ClipStatus.REJECTED, 0)
        tr = int(counts.at[q, TRAIN]) if TRAIN in counts and q in counts.index else 0
        te = int(counts.at[q, TEST]) if TEST in counts and q in counts.index else 0
        rate = f"{a / (a + r):.1%}" if a + r else "n/a"
        lines.append(f"| {q} | {tr} | {te} | {a} | {r} | {sum(st.values())} | {rate} |")
    lines += ["", "## Annotator agreement", ""]
    ov = agree["overall"]
    lines += [f"Effective verdict: {agree['rule'].rstrip('.')}.",
              f"{agree['clips_rated']} clips rated, {agree['clips_multi_rated']} by two or more annotators. "
              f"Fleiss' kappa (accept/reject): {_kappa(ov['fleiss']['kappa'])} over {ov['fleiss']['items']} clips.", ""]
    if ov["pairs"]:
        lines += ["| annotators | shared clips | Cohen's kappa |", "|---|---:|---:|"]
        lines += [f"| {p['a']} / {p['b']} | {p['items']} | {_kappa(p['kappa'])} |"
                  for p in ov["pairs"]]
    lines += ["", "| reason | Fleiss' kappa |", "|---|---:|"]
    lines += [f"| {k} | {_kappa(v['fleiss']['kappa'])} |" for k, v in agree["per_reason"].items()]
    lines += ["", "| annotator | decisions | accepted | rejected | median s/clip |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {p['name']} | {p['decisions']} | {p['accepted']} | {p['rejected']} | "
              f"{p['median_seconds'] if p['median_seconds'] is not None else 'n/a'} |" for p in agree["annotators"]]
    lines += ["", "## Files", "",
              "- `manifest.parquet`: one row per clip (clip_id, source_id, query, split, path, start_s, duration_s, "
              "sample_rate, shard, title, url, license).",
              "- `train.jsonl`, `test.jsonl`: audiocraft AudioMeta lines; `audio/{clip_id}.json` holds MusicInfo.",
              "- Features: `features/index.parquet` + `features/shard-*.safetensors` under the data root "
              "(global [T, D] fp16 at 1 fps, rhythm [T*50] fp32 and, from shard format 2, rhythm_global [T*50] fp32, "
              "codes [4, T*50] int16).", ""]
    return "\n".join(lines)
