"""Export: split accepted clips by source video, stratified by query, and write the hand-off files.

``exports/{name}/``: ``manifest.parquet``; audiocraft ``AudioMeta`` lines (path, duration,
sample_rate, amplitude, weight, info_path, plus description) as ``train.jsonl`` / ``valid.jsonl`` /
``test.jsonl`` and in audiocraft's own layout ``egs/{train,valid,test}/data.jsonl`` (what
``AudioDataset.from_meta`` and MusicGen's solver ``dset=`` read; each a relative link to ``{split}.jsonl``, so
one file per split is written, and rewritten by a takedown); ``audio/`` with a link per clip beside its MusicInfo ``.json`` (where MusicDataset
looks) and those JSONs in ``audio/info.zip`` (``info_path``; a large export spreads them over several zips,
dvmset.info_zips); ``DATASET.md``.
**[paper §4]** no source video in two splits; every split holds every query (with enough sources); 268 / 3,839 test. The paper
names no validation split: ``valid`` (as large as test by default) is drawn the same way, from what the
paper trained on, and is what ``train`` chooses best.pt on; test is read only by ``generate``/``evaluate``.
Durations come from the catalog; the sample rate from ``audio_rate`` (the commands probe the files).

Memory is bounded by a batch of :data:`BATCH` clips, not by the catalog: every per-clip list (the accepted clips,
their sources and splits, which are exported, which info zip and release part each goes in) is kept in a scratch
SQLite file beside the export (dvmset.export_plan) and read back sorted a batch at a time; the split is planned a
query at a time. Each batch is linked, appended to the JSONL files and written as one row group of the manifest,
whose column types are fixed (:data:`MANIFEST_SCHEMA`) instead of inferred from all rows at once (a column with no
value reads back as missing values of its type, not as None). The info zips and the release parts read their
clips' rows a zip or a part at a time, the card reads the manifest a batch at a time (dvmset.card_scratch), and
the feature index is rewritten with the splits a batch at a time (dvmset.shards). Still held whole: the clips with
excluded spans.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from dvmset import release as rel
from dvmset import release_layout
from dvmset.batches import MAX_BIND, batches, padded
from dvmset.catalog import Catalog
from dvmset.constants import TEST_FRACTION, VALID_FRACTION
from dvmset.export_card import EXPORT_PARAMS, write_card
from dvmset.export_plan import ExportPlan
from dvmset.info_zips import INFO_ZIPS, write_info_zips, zip_count, zip_file, zip_name
from dvmset.io import atomic_path, atomic_write_text, file_lock, remove_partials, write_texts_then_sync
from dvmset.layout import DataRoot
from dvmset.music_index import stored_groups
from dvmset.records import SPLITS, TEST, TRAIN, VALID, ClipStatus
from dvmset.shards import FeatureStore
from dvmset.spans import Span, excluded_spans, seconds_kept, write_spans_file
from dvmset.tables import Clip, Source

log = logging.getLogger(__name__)
LOCK = ".lock"  # exports/{name}/.lock: held by whoever writes the export (an export, a takedown)
CLEAN = ".clean"  # exports/{name}/.clean: the last writer ended without an error (see export_writing)
BATCH = 1_000  # clips read from the catalog, linked and written at once (one row group of the manifest)
MANIFEST = "manifest.parquet"
MANIFEST_COLUMNS = ["clip_id", "source_id", "query", "split", "path", "start_s", "duration_s", "sample_rate", "shard",
                    "title", "description", "url", "license", "excluded_spans", "kept_s"]
_FLOAT = ("start_s", "duration_s", "kept_s")
MANIFEST_SCHEMA = pa.schema([pa.field(c, pa.float64() if c in _FLOAT else pa.int64() if c == "sample_rate"
                                      else pa.string()) for c in MANIFEST_COLUMNS])  # every batch, whatever it holds


def export_lock(out: Path):  # noqa: ANN201 - a context manager
    """The lock of one export folder: one writer at a time (export or takedown), so a writer may sweep the
    temp files in it (:func:`sweep_partials`) knowing none is live."""
    return file_lock(out / LOCK)


def sweep_partials(out: Path, *, audio: bool = True) -> list[Path]:
    """Delete the temp files (``.info.*.part.zip``, ``.manifest.*.part.parquet``, ...) that a writer killed
    mid-write left in the export: they may hold a taken-down clip's metadata. ``audio``: the audio folder too
    (two entries per clip: the longest look). The caller holds :func:`export_lock`."""
    removed = []
    dirs = (out, *([out / "audio"] if audio else []), *sorted((out / "egs").glob("*")), *(out / f for f in rel.FILES[:2]))
    for d in dirs:
        removed += remove_partials(d)
    if removed:
        log.info("removed %d temp file(s) of an interrupted write in %s", len(removed), out)
    return removed


@contextlib.contextmanager
def export_writing(out: Path) -> Iterator[list[Path]]:
    """Hold the export's lock to write it, the temp files a killed writer left swept first; yields what was
    swept. ``.clean`` in the folder says the last writer ended without an error: it is taken away while this
    one writes and put back when the block ends cleanly, so the audio folder (two entries per clip: seconds to
    list at a million clips) is looked through only after a writer that did not end so (killed, failed, or
    of a version before the mark)."""
    mark = out / CLEAN
    with export_lock(out):
        removed = sweep_partials(out, audio=not mark.is_file())
        mark.unlink(missing_ok=True)
        yield removed
        mark.touch()


@dataclass(frozen=True)
class SplitItem:
    clip_id: str
    source_id: str
    query: str | None


def plan_split(
    items: Iterable[SplitItem],
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
        q = it.query if isinstance(it.query, str) and it.query else "(url)"  # None, or NaN read from a manifest
        if query_of.setdefault(it.source_id, q) != q:
            raise ValueError(f"source {it.source_id} has clips under two queries: {query_of[it.source_id]!r}, {q!r}")
        clips_of[it.source_id].append(it.clip_id)
    sources_by_query: dict[str, list[str]] = defaultdict(list)
    for s, q in query_of.items():
        sources_by_query[q].append(s)
    size = {s: len(cs) for s, cs in clips_of.items()}
    split_of: dict[str, str] = {}
    for q, sources in sorted(sources_by_query.items()):
        split_of.update(_split_query(q, sorted(sources), size, fixed, lend, test_fraction, valid_fraction, seed))
    return {c: split_of[s] for s, cs in clips_of.items() for c in cs}


def _split_query(q: str, sources: list[str], size: Mapping[str, int], fixed: Mapping[str, str],
                 lend: bool, test_fraction: float, valid_fraction: float, seed: int) -> dict[str, str]:
    """One query's sources (in id order) -> split: a seeded order, each source to test, then valid, while it fits
    the target. ``size``: each source's clips; ``fixed``: the recorded splits (of these sources at least)."""
    rng = np.random.default_rng([seed, zlib.crc32(q.encode())])
    total = sum(size[s] for s in sources)
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

    row: object  # a row of _rows
    split: str
    clip_path: Path
    link: Path

    @property
    def description(self) -> str | None:
        """The text a text-conditioned trainer reads (MusicGen's ``description``): the query and the title."""
        return description(self.row.query, self.row.title)


def _info_json(r: object) -> str:
    """The clip's MusicInfo (what audiocraft's MusicDataset reads beside the audio) as JSON: every field it
    requires by default (``info_fields_required``), None where the catalog does not know it."""
    info = {**dict.fromkeys(("key", "bpm", "genre", "moods", "instrument")), "name": r.id,
            "title": r.title, "artist": r.uploader, "description": description(r.query, r.title), "keywords": r.query,
            "clip_id": r.id, "source_id": r.source_id, "url": r.webpage_url or r.url, "start_s": r.start_s}
    return json.dumps(info, sort_keys=True)


def description(query: str | None, title: str | None) -> str | None:
    """``"<query>. <title>"``, either alone when the other is missing, None when both are."""
    return ". ".join(t.strip() for t in (query, title) if t and t.strip()) or None


def _record_splits(catalog: Catalog, store: FeatureStore, plan: ExportPlan) -> None:
    """The plan's split into the catalog and the feature index, under the store's lock (all or nothing)."""
    with store.exclusive("`vidmusician export`"):  # taken before the catalog changes
        with catalog.session() as s:  # one transaction; statements bound in batches, whatever the size
            c = Clip.__table__.c
            split = select(Clip.id).where(Clip.split.is_not(None)).execution_options(yield_per=MAX_BIND)
            stale = [i for ids in batches(s.scalars(split), MAX_BIND) for i in set(ids) - plan.known(ids)]
            for ids in batches(stale):  # no longer accepted (rejected since): no split
                s.execute(update(Clip).where(Clip.id.in_(ids)).values(split=None))
            for part in SPLITS:  # one UPDATE per split and batch, not one per clip
                for ids in plan.ids(part, kept_only=False, size=MAX_BIND):
                    s.execute(update(Clip.__table__).where(c.id.in_(ids), or_(c.split.is_(None), c.split != part))
                              .values(split=part))
        store.set_splits(plan.splits_of, exclusive=True)  # the index rewritten a batch at a time


def _drop_without_files(root: DataRoot, plan: ExportPlan) -> int:
    """Leave out the clips whose file is gone (with a warning) and return how many: known before any file is
    written, since the number of exported clips names the info zips each AudioMeta line points into."""
    gone = [cid for ids in plan.ids() for cid in ids if not root.clip_path(cid).is_file()]
    for cid in gone:
        log.warning("accepted clip %s has no file at %s; left out of the export", cid, root.clip_path(cid))
    plan.drop(gone)
    return len(gone)


def _rows(s: Session, ids: list[str]) -> list:
    """The catalog rows an export writes of these clips (at most :data:`~dvmset.batches.MAX_BIND`), in id order."""
    q = (select(Clip.id, Clip.source_id, Source.query, Clip.start_s, Clip.duration_s, Source.title, Source.uploader,
                Source.webpage_url, Source.url, Source.license).join(Source, Source.id == Clip.source_id))
    return sorted(s.execute(q.where(Clip.id.in_(padded(ids)))).all(), key=lambda r: r.id)


def _row_batches(catalog: Catalog, plan: ExportPlan) -> Iterator[tuple[list, dict[str, tuple[str, str | None]]]]:
    """The catalog rows of the exported clips (in id order) with their (split, feature shard), a batch of
    :data:`BATCH`."""
    with catalog.session() as s:
        for chunk in plan.rows(BATCH):
            yield _rows(s, [c for c, _, _, _ in chunk]), {c: (p, sh) for c, _, p, sh in chunk}


def _info_jsons(catalog: Catalog) -> Callable[[list[str]], list[str]]:
    """The MusicInfo JSONs of one info zip's clips, read from the catalog again (a zip's clips are spread over
    the id order the JSONs were first written in; reading the files back cost more)."""
    def texts(ids: list[str]) -> list[str]:
        with catalog.session() as s:
            rows = {r.id: r for chunk in batches(ids) for r in _rows(s, chunk)}
        return [_info_json(rows[c]) for c in ids]
    return texts


def _clear_audio_dir(audio_dir: Path) -> None:
    """An earlier export under this name may list other clips: its links and JSONs go."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    with os.scandir(audio_dir) as it:  # lazily: not a list of the folder's two entries per clip
        for stale in it:
            if stale.is_symlink() or stale.name.endswith(".json"):
                os.unlink(stale.path)


def _link(clip_path: Path, audio_dir: Path) -> None:
    """The clip's link in the export's audio folder (its MusicInfo JSON goes beside it)."""
    link = audio_dir / clip_path.name
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(clip_path, audio_dir), link)


def _audio_meta(e: _Entry, sample_rate: int | None, info_zip: Path) -> dict:
    """An audiocraft AudioMeta line; ``info_path`` is ``<zip>:<member>`` (audiocraft's PathInZip)."""
    zip_path = str(info_zip.absolute())
    info_path = None if ":" in zip_path else f"{zip_path}:{e.row.id}.json"  # PathInZip splits on the one ':'
    return {"path": str(e.link.absolute()), "duration": e.row.duration_s, "sample_rate": sample_rate,
            "amplitude": None, "weight": None, "info_path": info_path, "description": e.description}


def _cut_before_spans(line: dict, spans: Sequence[Span]) -> dict | None:
    """AudioMeta can only say how long a file is, and audiocraft reads segments anywhere before that: a clip
    with excluded spans is listed up to its first span (left out, None, when that leaves nothing)."""
    if not spans:
        return line
    first = min(s.start_s for s in spans)
    return None if first <= 0 else {**line, "duration": min(line["duration"], first)}


def _manifest_row(root: DataRoot, e: _Entry, rate: int | None, shard: str | None, spans: Sequence[Span]) -> dict:
    r = e.row
    return {"clip_id": r.id, "source_id": r.source_id, "query": r.query, "split": e.split,
            "path": str(e.clip_path.relative_to(root.path)), "start_s": r.start_s, "duration_s": r.duration_s,
            "sample_rate": rate, "shard": shard, "title": r.title, "description": e.description,
            "url": r.webpage_url or r.url, "license": r.license,
            "excluded_spans": json.dumps([s.as_list() for s in spans]) if spans else None,
            "kept_s": seconds_kept(r.duration_s, spans)}


def _manifest_table(rows: Sequence[dict]) -> pa.Table:
    """One batch of manifest rows as a table of :data:`MANIFEST_SCHEMA`: batches written apart agree."""
    return pa.Table.from_pydict({c: [r[c] for r in rows] for c in MANIFEST_COLUMNS}, schema=MANIFEST_SCHEMA)


@dataclass
class _Written:
    """What the export summary and the warnings need of the clips written: counts, not the clips."""

    splits: Counter
    no_rate: int = 0
    no_rate_example: str | None = None


def _write_clips(root: DataRoot, catalog: Catalog, out: Path, plan: ExportPlan,
                 spans: Mapping[str, list[Span]], audio_rate: Callable[[Path], int | None] | None) -> _Written:
    """Every clip's link, then per clip its MusicInfo JSON, its manifest row and its AudioMeta line, a batch of
    :data:`BATCH` clips at a time: each batch is one row group of the manifest and its lines appended to the
    JSONL files, so no more than a batch is held whatever the export's size. One file-system sync for all the
    JSONs (an fsync per clip cost 177 s at 165 K)."""
    audio_dir = out / "audio"
    _clear_audio_dir(audio_dir)
    for ids in plan.ids():  # every link, then every JSON, as before the export streamed (not one of each by turns)
        for cid in ids:
            _link(root.clip_path(cid), audio_dir)
    count = zip_count(plan.count())
    done = _Written(Counter())
    with contextlib.ExitStack() as stack:
        manifest = stack.enter_context(pq.ParquetWriter(stack.enter_context(atomic_path(out / MANIFEST)),
                                                        MANIFEST_SCHEMA))
        jsonl = {part: _open_jsonl(stack, out / f"{part}.jsonl") for part in SPLITS}

        def written() -> Iterator[tuple[Path, str]]:  # the JSONs, as write_texts_then_sync writes them
            for rows, planned in _row_batches(catalog, plan):
                table = []
                for r in rows:
                    clip_path = root.clip_path(r.id)
                    split, shard = planned[r.id]
                    e = _Entry(r, split, clip_path, audio_dir / clip_path.name)
                    yield e.link.with_suffix(".json"), _info_json(r)
                    rate = audio_rate(e.clip_path) if audio_rate else None
                    if rate is None:
                        done.no_rate += 1
                        done.no_rate_example = done.no_rate_example or r.id
                    table.append(_manifest_row(root, e, rate, shard, spans.get(r.id, ())))
                    line = _cut_before_spans(_audio_meta(e, rate, audio_dir / zip_name(r.id, count)), spans.get(r.id))
                    if line is not None:
                        text = json.dumps(line, sort_keys=True) + "\n"
                        jsonl[e.split].write(text)
                    done.splits[e.split] += 1
                manifest.write_table(_manifest_table(table), row_group_size=max(len(table), 1))

        write_texts_then_sync(written(), audio_dir)
    for part in SPLITS:
        _link_egs(out, part)
    return done


def _link_egs(out: Path, part: str) -> None:
    """``egs/{part}/data.jsonl`` (audiocraft's layout) as a relative link to ``{part}.jsonl``: the same lines,
    one file. Replaces an earlier export's copy atomically; a link already there is left."""
    dest = out / "egs" / part / "data.jsonl"
    target = os.path.relpath(out / f"{part}.jsonl", dest.parent)
    if dest.is_symlink() and os.readlink(dest) == target:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.part{dest.suffix}")  # a name sweep_partials knows
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, dest)


def _open_jsonl(stack: contextlib.ExitStack, path: Path) -> TextIO:
    """A JSONL file written line by line, renamed into place whole when the export's writing succeeds."""
    return stack.enter_context(open(stack.enter_context(atomic_path(path)), "w", encoding="utf-8"))


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
    with export_writing(out):
        return _export(root, catalog, name, out, (test_fraction, valid_fraction), seed, keep_existing, audio_rate,
                       release)


def _export(root: DataRoot, catalog: Catalog, name: str, out: Path, fractions: tuple[float, float], seed: int,
            keep_existing: bool, audio_rate: Callable[[Path], int | None] | None, release: bool) -> ExportSummary:
    test_fraction, valid_fraction = fractions
    with ExportPlan(out) as plan:  # every per-clip list on disk: the export holds a batch
        if not plan.load_accepted(catalog):
            raise ValueError(f"no accepted clips in {catalog.url}: review clips before exporting")
        if keep_existing:
            plan.load_own_splits(out / MANIFEST)
        groups = stored_groups(catalog, [ClipStatus.ACCEPTED.value])
        plan.set_groups(groups)
        plan.plan(_split_query, test_fraction, valid_fraction, seed, keep_existing)
        store = FeatureStore(root.features_dir)
        _record_splits(catalog, store, plan)
        spans = _record_spans(catalog, store, plan)
        indexed = plan.set_shards((c, sh) for b in store.index_batches(["clip_id", "shard"])
                                  for c, sh in zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True))
        no_features = _drop_without_features(plan, indexed)
        missing = _drop_without_files(root, plan)
        done = _write_clips(root, catalog, out, plan, spans, audio_rate)
        if done.no_rate:
            log.warning("%d clips have no known audio sample rate (%s): null in the manifest and the JSONL",
                        done.no_rate, "nothing read their files" if audio_rate is None
                        else f"unreadable, e.g. {done.no_rate_example}")
        count = zip_count(plan.count())
        write_info_zips(out / "audio", ((zip_file(b, count), ids) for b, ids in plan.buckets("zip", count)),
                        _info_jsons(catalog))
        params = {"test_fraction": test_fraction, "valid_fraction": valid_fraction, "seed": seed, "missing": missing}
        atomic_write_text(out / EXPORT_PARAMS, json.dumps({**params, INFO_ZIPS: count}, sort_keys=True) + "\n")
        release_path = _write_release(out, name, catalog, plan, params) if release else _drop_release(out)
        sources = plan.count("DISTINCT source")
    write_card(out, out / MANIFEST, catalog, **params)
    return ExportSummary(name, out, done.splits[TRAIN], done.splits[TEST], sources, missing, len(groups),
                         release_path, tuple(no_features), done.splits[VALID], done.no_rate)


def _record_spans(catalog: Catalog, store: FeatureStore, plan: ExportPlan) -> dict[str, list[Span]]:
    """The exported clips' excluded spans (dvmset.spans), written beside the features where FeatureWindows
    reads them, so no training window overlaps one. Only clips with spans are held."""
    spans: dict[str, list[Span]] = {}
    with catalog.session() as s:
        for ids in plan.ids(kept_only=False, size=MAX_BIND):
            spans.update(excluded_spans(s, ids))
    with store.exclusive("`vidmusician export`"):
        write_spans_file(store.dir, spans)
    return spans


def _drop_without_features(plan: ExportPlan, indexed: bool) -> list[str]:
    """Once features exist (``indexed``: the feature index has rows, their shards are in the plan), an export
    lists only clips that have them (a manifest row with no shard would fail a trainer later): the rest are left
    out with a warning (extract or retry them, then re-export) and returned. Before any features an export is of
    audio alone and lists every accepted clip."""
    if not indexed:
        return []
    left = list(plan.without_shard())
    if left:
        log.warning("%d accepted clips have no features (not extracted yet, or failed): left out of the export: %s",
                    len(left), left[:5])
        plan.drop(left)
    return left


def _write_release(out: Path, name: str, catalog: Catalog, plan: ExportPlan, params: dict) -> Path:
    """The ids-only release of this export (dvmset.release): no media, a part's rows at a time."""
    steps = rel.distinct_steps(catalog, (c for ids in plan.ids(size=MAX_BIND) for c in ids))
    rel.catch_up_verdicts(catalog)
    count = release_layout.part_count(plan.count())
    parts = plan.buckets("part", count) if count > 1 else iter([(0, [c for ids in plan.ids() for c in ids])])
    return rel.write_release_grouped(out, count, parts, lambda ids: rel.release_batches(
        catalog, plan.splits_of(ids), ids=ids, caught_up=True), name=name, extra={"split": params, "steps": steps})[0]


def _drop_release(out: Path) -> None:
    """An export made without ``release`` keeps no release of an earlier run (it would list other clips)."""
    release_layout.remove(out)
