"""Export: split accepted clips by source video, stratified by query, and write the hand-off files.

``exports/{name}/``: ``manifest.parquet``; audiocraft ``AudioMeta`` lines (path, duration,
sample_rate, amplitude, weight, info_path, plus description) as ``train.jsonl`` / ``valid.jsonl`` /
``test.jsonl`` and in audiocraft's own layout ``egs/{train,valid,test}/data.jsonl`` (what
``AudioDataset.from_meta`` and MusicGen's solver ``dset=`` read); ``audio/`` with a link per clip beside its MusicInfo ``.json`` (where MusicDataset
looks) and those JSONs in ``audio/info.zip`` (``info_path``; a large export spreads them over several zips,
dvmset.info_zips); ``DATASET.md``.
**[paper §4]** no source video in two splits; every split holds every query (with enough sources); 268 / 3,839 test. The paper
names no validation split: ``valid`` (as large as test by default) is drawn the same way, from what the
paper trained on, and is what ``train`` chooses best.pt on; test is read only by ``generate``/``evaluate``.
Durations come from the catalog; the sample rate from ``audio_rate`` (the commands probe the files).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import or_, select, update

from dvmset import release as rel
from dvmset.batches import batches
from dvmset.catalog import Catalog
from dvmset.constants import TEST_FRACTION, VALID_FRACTION
from dvmset.export_card import EXPORT_PARAMS, music_groups_of, write_card
from dvmset.info_zips import write_info_zips
from dvmset.io import atomic_path, atomic_write_text, file_lock, remove_partials, write_texts_then_sync
from dvmset.layout import DataRoot
from dvmset.music_groups import MusicGroup, source_groups
from dvmset.records import SPLITS, TEST, TRAIN, VALID, ClipStatus
from dvmset.shards import FeatureStore
from dvmset.spans import Span, excluded_spans, seconds_kept, write_spans_file
from dvmset.tables import Clip, Source

log = logging.getLogger(__name__)
LOCK = ".lock"  # exports/{name}/.lock: held by whoever writes the export (an export, a takedown)


def export_lock(out: Path):  # noqa: ANN201 - a context manager
    """The lock of one export folder: one writer at a time (export or takedown), so a writer may sweep the
    temp files in it (:func:`sweep_partials`) knowing none is live."""
    return file_lock(out / LOCK)


def sweep_partials(out: Path) -> list[Path]:
    """Delete the temp files (``.info.*.part.zip``, ``.manifest.*.part.parquet``, ...) that a writer killed
    mid-write left in the export: they may hold a taken-down clip's metadata. The caller holds
    :func:`export_lock`."""
    removed = []
    for d in (out, out / "audio", *sorted((out / "egs").glob("*"))):
        removed += remove_partials(d)
    if removed:
        log.info("removed %d temp file(s) of an interrupted write in %s", len(removed), out)
    return removed


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
    valid_fraction: float = VALID_FRACTION,
) -> dict[str, str]:
    """clip id -> "train"|"valid"|"test": whole sources per split, about ``test_fraction`` and
    ``valid_fraction`` of each query's clips.

    Sources in ``fixed`` keep their split (a re-export never moves a video across splits), with one
    exception: when the recorded split has no valid part yet (exports before validation splits), its train
    sources may be drawn into valid, never into test. A query with two or more sources gets at least one
    train and one test source, with three or more also a valid one.
    """
    for what, f in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{what} must be in [0, 1), got {f}")
    if test_fraction + valid_fraction >= 1.0:
        raise ValueError(f"test_fraction + valid_fraction must leave clips to train on, got "
                         f"{test_fraction} + {valid_fraction}")
    fixed = dict(fixed or {})
    if bad := {s for s in fixed.values() if s not in SPLITS}:
        raise ValueError(f"fixed splits must be one of {', '.join(SPLITS)}, got {sorted(bad)}")
    # an earlier split without a valid part lends it train sources (test ones never move)
    lend = valid_fraction > 0 and VALID not in fixed.values()
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
        split_of.update(_split_query(q, sorted(sources), clips_of, fixed, lend, test_fraction, valid_fraction, seed))
    return {c: split_of[s] for s, cs in clips_of.items() for c in cs}


def _split_query(q: str, sources: list[str], clips_of: Mapping[str, list[str]], fixed: Mapping[str, str],
                 lend: bool, test_fraction: float, valid_fraction: float, seed: int) -> dict[str, str]:
    """One query's sources -> split: a seeded order, each source to test, then valid, while it fits the target."""
    rng = np.random.default_rng([seed, zlib.crc32(q.encode())])
    size = {s: len(clips_of[s]) for s in sources}
    total = sum(size.values())
    target = {TEST: test_fraction * total, VALID: valid_fraction * total}
    free = [s for s in sources if s not in fixed or (lend and fixed[s] == TRAIN)]
    final = {s: fixed[s] for s in sources if s not in free}
    have = {p: sum(size[s] for s in final if final[s] == p) for p in (TEST, VALID)}
    for i in rng.permutation(len(free)):
        s = free[i]
        final[s] = TRAIN
        for part in (VALID,) if s in fixed else (TEST, VALID):  # a recorded train source never becomes test
            if have[part] + size[s] <= target[part] + 0.5:
                final[s], have[part] = part, have[part] + size[s]
                break
    required = [TEST] if test_fraction > 0 and len(sources) >= 2 else []
    if valid_fraction > 0 and len(sources) >= 2 + len(required):
        required.append(VALID)
    for want in [*required, TRAIN] if required else []:  # every split holds every query (paper §4)
        if want in final.values():
            continue
        count = {p: sum(v == p for v in final.values()) for p in SPLITS}
        movable = [s for s in free if final[s] != want and count[final[s]] >= 2 and (want != TEST or s not in fixed)]
        if movable:
            s = min(movable, key=lambda x: (final[x] != TRAIN, size[x], x))
            final[s] = want
    return final


@dataclass(frozen=True)
class ExportSummary:
    name: str
    path: Path
    train: int
    test: int
    sources: int
    missing: int  # accepted clips whose file is gone (left out)
    music_groups: int = 0  # groups of sources sharing music, each kept in one split
    release: Path | None = None  # release.parquet when asked for (ids only, no media)
    no_features: tuple[str, ...] = ()  # accepted clips left out: features were extracted, theirs were not
    valid: int = 0  # clips in the validation split (best.pt is chosen on it)
    no_rate: int = 0  # clips whose audio sample rate could not be read (null in the manifest and the JSONL)


@dataclass(frozen=True)
class _Entry:
    """One exported clip: its catalog row, split and file."""

    row: object  # a Row of _accepted_rows
    split: str
    clip_path: Path
    link: Path

    @property
    def description(self) -> str | None:
        """The text a text-conditioned trainer reads (MusicGen's ``description``): the query and the title."""
        return description(self.row.query, self.row.title)

    @property
    def info(self) -> dict:
        """The clip's MusicInfo (what audiocraft's MusicDataset reads beside the audio): every field it
        requires by default (``info_fields_required``), None where the catalog does not know it."""
        r = self.row
        return {**dict.fromkeys(("key", "bpm", "genre", "moods", "instrument")), "name": r.id,
                "title": r.title, "artist": r.uploader, "description": self.description, "keywords": r.query,
                "clip_id": r.id, "source_id": r.source_id, "url": r.webpage_url or r.url, "start_s": r.start_s}


def description(query: str | None, title: str | None) -> str | None:
    """``"<query>. <title>"``, either alone when the other is missing, None when both are."""
    return ". ".join(t.strip() for t in (query, title) if t and t.strip()) or None


def _accepted_rows(catalog: Catalog) -> list:
    with catalog.session() as s:
        rows = s.execute(
            select(Clip.id, Clip.source_id, Source.query, Clip.start_s, Clip.duration_s, Clip.split,
                   Source.title, Source.uploader, Source.webpage_url, Source.url, Source.license)
            .join(Source, Source.id == Clip.source_id).where(Clip.status == ClipStatus.ACCEPTED)
        ).all()
    if not rows:
        raise ValueError(f"no accepted clips in {catalog.url}: review clips before exporting")
    return sorted(rows, key=lambda r: r.id)


def _recorded_splits(rows: list) -> dict[str, str]:
    """{source id: split} as earlier exports recorded them (a re-export keeps them)."""
    fixed: dict[str, str] = {}
    for r in rows:
        if r.split in SPLITS and fixed.setdefault(r.source_id, r.split) != r.split:
            raise ValueError(f"source {r.source_id} already has clips in both splits; re-export with keep_existing=False")
    return fixed


def _own_splits(out: Path) -> dict[str, str]:
    """{source id: split} of this export's manifest, when it was exported before: its videos keep their split
    even when another export (``--reshuffle``) has since recorded others in the catalog."""
    manifest = out / "manifest.parquet"
    if not manifest.is_file():
        return {}
    m = pd.read_parquet(manifest, columns=["source_id", "split"]).dropna()
    return {str(s): str(p) for s, p in zip(m.source_id, m.split, strict=True) if p in SPLITS}


def _split_items(rows: list, groups: list[MusicGroup], fixed: dict[str, str]) -> tuple[list[SplitItem], dict[str, str]]:
    """Split items with the sources of one music group as one unit (its first source's query and recorded
    split), so that the same music never straddles the split; and the fixed splits by unit."""
    unit = source_groups(groups)
    query_of = {r.source_id: r.query for r in rows}
    key = {s: unit.get(s, s) for s in query_of}
    items = [SplitItem(r.id, key[r.source_id], query_of.get(key[r.source_id], r.query)) for r in rows]
    fixed_units: dict[str, str] = {}
    for source, part in sorted(fixed.items(), key=lambda kv: (unit.get(kv[0], kv[0]) != kv[0], kv[0])):
        fixed_units.setdefault(unit.get(source, source), part)  # a group keeps its first source's split
    return items, fixed_units


def _record_splits(catalog: Catalog, store: FeatureStore, split: dict[str, str]) -> None:
    """The split into the catalog and the feature index, under the store's lock (all or nothing)."""
    with store.exclusive("`vidmusician export`"):  # taken before the catalog changes
        with catalog.session() as s:  # one transaction; statements bound in batches, whatever the size
            c = Clip.__table__.c
            stale = [i for i in s.scalars(select(Clip.id).where(Clip.split.is_not(None))) if i not in split]
            for ids in batches(stale):  # no longer accepted (rejected since): no split
                s.execute(update(Clip).where(Clip.id.in_(ids)).values(split=None))
            for part in sorted(set(split.values())):  # one UPDATE per split and batch, not one per clip
                for ids in batches(i for i, p in split.items() if p == part):
                    s.execute(update(Clip.__table__).where(c.id.in_(ids), or_(c.split.is_(None), c.split != part))
                              .values(split=part))
        store.set_splits(split, exclusive=True)


def _link_audio(root: DataRoot, audio_dir: Path, rows: list, split: dict[str, str]) -> tuple[list[_Entry], int]:
    """A link per clip file in ``audio_dir`` beside its MusicInfo JSON; returns (entries, clips without a file)."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    for stale in audio_dir.iterdir():  # an earlier export under this name may list other clips
        if stale.is_symlink() or stale.suffix == ".json":
            stale.unlink()
    entries, missing = [], 0
    for r in rows:
        clip_path = root.clip_path(r.id)
        if not clip_path.is_file():
            log.warning("accepted clip %s has no file at %s; left out of the export", r.id, clip_path)
            missing += 1
            continue
        e = _Entry(r, split[r.id], clip_path, audio_dir / clip_path.name)
        e.link.unlink(missing_ok=True)
        os.symlink(os.path.relpath(clip_path, e.link.parent), e.link)
        entries.append(e)
    # each JSON renamed into place whole, and one sync for all of them (an fsync per clip cost 177 s at 165 K)
    write_texts_then_sync(((e.link.with_suffix(".json"), json.dumps(e.info, sort_keys=True)) for e in entries),
                          audio_dir)
    return entries, missing


def _audio_meta(e: _Entry, sample_rate: int | None, info_zip: Path) -> dict:
    """An audiocraft AudioMeta line; ``info_path`` is ``<zip>:<member>`` (audiocraft's PathInZip)."""
    zip_path = str(info_zip.absolute())
    info_path = None if ":" in zip_path else f"{zip_path}:{e.row.id}.json"  # PathInZip splits on the one ':'
    return {"path": str(e.link.absolute()), "duration": e.row.duration_s, "sample_rate": sample_rate,
            "amplitude": None, "weight": None, "info_path": info_path, "description": e.description}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _write_manifest(path: Path, root: DataRoot, entries: list[_Entry], rates: dict[str, int | None],
                    store: FeatureStore) -> pd.DataFrame:
    shard_of = store.index().set_index("clip_id")["shard"]
    manifest = pd.DataFrame([{
        "clip_id": e.row.id, "source_id": e.row.source_id, "query": e.row.query, "split": e.split,
        "path": str(e.clip_path.relative_to(root.path)), "start_s": e.row.start_s, "duration_s": e.row.duration_s,
        "sample_rate": rates[e.row.id], "shard": shard_of.get(e.row.id), "title": e.row.title,
        "description": e.description,
        "url": e.row.webpage_url or e.row.url, "license": e.row.license,
    } for e in entries])
    with atomic_path(path) as tmp:
        manifest.to_parquet(tmp, index=False)
    return manifest


def export_dataset(
    root: DataRoot,
    catalog: Catalog,
    name: str,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    keep_existing: bool = True,
    audio_rate: Callable[[Path], int | None] | None = None,
    release: bool = False,
    valid_fraction: float = VALID_FRACTION,
) -> ExportSummary:
    """Split the accepted clips, record the split in the catalog and the feature index, write the export.

    ``audio_rate(clip_path)`` gives a clip's audio sample rate for the manifest and the AudioMeta lines (the
    catalog does not hold it and dvmset decodes nothing: the commands pass ``pipeline.probe.audio_rate``);
    without it, or where it gives None, the rate is null and the export warns. Sources whose processed music
    is the same recording (dvmset.music_groups) are split as one. The export's ``manifest.parquet`` is its
    split, fixed from now on: training reads it (not the shared feature index, which the latest export
    rewrites). ``release`` also writes the ids-only release (release.parquet / .csv / .json).
    """
    out = root.export_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    with export_lock(out):
        sweep_partials(out)
        return _export(root, catalog, name, out, (test_fraction, valid_fraction), seed, keep_existing, audio_rate,
                       release)


def _export(root: DataRoot, catalog: Catalog, name: str, out: Path, fractions: tuple[float, float], seed: int,
            keep_existing: bool, audio_rate: Callable[[Path], int | None] | None, release: bool) -> ExportSummary:
    test_fraction, valid_fraction = fractions
    rows = _accepted_rows(catalog)
    fixed = {**_recorded_splits(rows), **_own_splits(out)} if keep_existing else {}
    groups = music_groups_of(catalog, [r.id for r in rows])
    items, fixed_units = _split_items(rows, groups, fixed)
    split = plan_split(items, test_fraction, seed, fixed_units, valid_fraction)
    store = FeatureStore(root.features_dir)
    _record_splits(catalog, store, split)
    spans = _record_spans(catalog, store, split)
    rows, no_features = _with_features(rows, store)
    entries, missing = _link_audio(root, out / "audio", rows, split)
    rates = {e.row.id: audio_rate(e.clip_path) if audio_rate else None for e in entries}
    if no_rate := [c for c, r in rates.items() if r is None]:
        log.warning("%d clips have no known audio sample rate (%s): null in the manifest and the JSONL",
                    len(no_rate), "nothing read their files" if audio_rate is None else f"unreadable, e.g. {no_rate[0]}")
    info = {e.row.id: e for e in entries}
    info_zip = write_info_zips(out / "audio", list(info), lambda c: json.dumps(info[c].info, sort_keys=True))
    manifest = _with_spans(out / "manifest.parquet", _write_manifest(out / "manifest.parquet", root, entries, rates,
                                                                     store), spans)
    for part in SPLITS:
        lines = _cut_before_spans([_audio_meta(e, rates[e.row.id], info_zip[e.row.id]) for e in entries if e.split == part],
                                  entries, spans)
        _write_jsonl(out / f"{part}.jsonl", lines)
        (out / "egs" / part).mkdir(parents=True, exist_ok=True)
        _write_jsonl(out / "egs" / part / "data.jsonl", lines)
    params = {"test_fraction": test_fraction, "valid_fraction": valid_fraction, "seed": seed, "missing": missing}
    atomic_write_text(out / EXPORT_PARAMS, json.dumps(params, sort_keys=True) + "\n")
    release_path = _write_release(out, name, catalog, entries, params) if release else _drop_release(out)
    write_card(out, manifest, catalog, **params)
    n = manifest.split.value_counts() if len(manifest) else pd.Series(dtype=int)
    return ExportSummary(name, out, int(n.get(TRAIN, 0)), int(n.get(TEST, 0)),
                         int(manifest.source_id.nunique()) if len(manifest) else 0, missing, len(groups), release_path,
                         tuple(no_features), int(n.get(VALID, 0)), len(no_rate))


def _record_spans(catalog: Catalog, store: FeatureStore, split: dict[str, str]) -> dict[str, list[Span]]:
    """The exported clips' excluded spans (dvmset.spans), written beside the features where FeatureWindows
    reads them, so no training window overlaps one."""
    with catalog.session() as s:
        spans = excluded_spans(s, split)
    with store.exclusive("`vidmusician export`"):
        write_spans_file(store.dir, spans)
    return spans


def _with_spans(path: Path, manifest: pd.DataFrame, spans: dict[str, list[Span]]) -> pd.DataFrame:
    """The manifest with each clip's excluded spans (JSON) and the seconds it keeps, written again."""
    if not len(manifest):
        return manifest
    manifest = manifest.assign(
        excluded_spans=[json.dumps([s.as_list() for s in spans[c]]) if spans.get(c) else None for c in manifest.clip_id],
        kept_s=[seconds_kept(d, spans.get(c, ())) for c, d in zip(manifest.clip_id, manifest.duration_s, strict=True)])
    with atomic_path(path) as tmp:
        manifest.to_parquet(tmp, index=False)
    return manifest


def _cut_before_spans(lines: list[dict], entries: list[_Entry], spans: dict[str, list[Span]]) -> list[dict]:
    """AudioMeta can only say how long a file is, and audiocraft reads segments anywhere before that: a clip
    with excluded spans is listed up to its first span (left out when that leaves nothing)."""
    first = {str(e.link.absolute()): min(s.start_s for s in spans[e.row.id]) for e in entries if spans.get(e.row.id)}
    out = []
    for line in lines:
        if line["path"] in first:
            if first[line["path"]] <= 0:
                continue
            line = {**line, "duration": min(line["duration"], first[line["path"]])}
        out.append(line)
    return out


def _with_features(rows: list, store: FeatureStore) -> tuple[list, list[str]]:
    """Once features exist, an export lists only clips that have them (a manifest row with no shard would
    fail a trainer later): the rest are left out with a warning (extract or retry them, then re-export).
    Before any features an export is of audio alone and lists every accepted clip."""
    have = set(store.index().clip_id)
    if not have:
        return rows, []
    left = [r.id for r in rows if r.id not in have]
    if left:
        log.warning("%d accepted clips have no features (not extracted yet, or failed): left out of the export: %s",
                    len(left), left[:5])
    return [r for r in rows if r.id in have], left


def _write_release(out: Path, name: str, catalog: Catalog, entries: list[_Entry], params: dict) -> Path:
    """The ids-only release of this export (dvmset.release): no media."""
    ids = {e.row.id: e.split for e in entries}
    steps = rel.distinct_steps(catalog, list(ids))
    return rel.write_release_batches(out, rel.release_batches(catalog, ids), name=name,
                                     extra={"split": params, "steps": steps})[0]


def _drop_release(out: Path) -> None:
    """An export made without ``release`` keeps no release of an earlier run (it would list other clips)."""
    for f in rel.FILES:
        (out / f).unlink(missing_ok=True)
