"""Shared-music groups kept in the catalog as clips are made, so nothing regroups the whole catalog.

Each clip's fingerprint is reduced to a few sampled values (:func:`bucket_values`: the values whose hash
falls in a fixed 1/8 of the hash space, and at least the 16 smallest hashes of a short clip), stored in
``music_buckets`` (value -> clips), as AcoustID's index keeps sub-fingerprint values. A new clip looks up
the clips sharing at least :data:`MIN_BUCKET_HITS` of its values, checks each by bit error rate
(dvmset.music_groups.best_alignment) and stores the same-music pairs in ``music_links``. The sampling is
consistent (a value is kept in every clip or in none, by its hash), so two clips of one recording share
their kept values as they share their values.

``status`` and ``export`` read the links of the clips they count (:func:`stored_groups`);
:func:`rebuild_index` recomputes everything from the fingerprints in bulk (numpy, not clip by clip), and a
test checks that it equals the clip-by-clip index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
from sqlalchemy import delete, func, select, update

from dvmset.batches import batches
from dvmset.catalog import Catalog
from dvmset.music_groups import (
    SAME_MUSIC_BER,
    MusicGroup,
    best_alignment,
    candidate_pairs,
    decode_fingerprint,
    union_groups,
)
from dvmset.tables import Clip, MusicBucket, MusicLink

log = logging.getLogger(__name__)

SAMPLE_BITS = 3  # a value is kept when its hash's top 3 bits are 0: 1/8 of the values, ~60 for a 60 s clip
MIN_SAMPLED = 16  # a short clip keeps at least its 16 smallest hashes
MIN_BUCKET_HITS = 2  # kept values two clips must share to be compared
STATIONARY_SHARE = 0.25  # a value filling a quarter of its clip (silence, a drone) is not kept
BULK_CATCH_UP = 2_000  # more unindexed clips than this: rebuild in bulk rather than clip by clip
_HASH = np.uint64(0x9E3779B1)  # Knuth's multiplicative hash of a uint32 value
_MASK = np.uint64(0xFFFFFFFF)


def bucket_values(fp: np.ndarray) -> np.ndarray:
    """The sampled values of a fingerprint [items] uint32, sorted, as int64 (pure)."""
    u, counts = np.unique(np.asarray(fp, np.uint32), return_counts=True)
    u = u[counts <= max(2.0, STATIONARY_SHARE * len(fp))]
    if not len(u):
        return np.zeros(0, np.int64)
    h = (u.astype(np.uint64) * _HASH) & _MASK
    limit = np.uint64(1 << (32 - SAMPLE_BITS))
    if len(h) > MIN_SAMPLED:
        limit = max(limit, np.partition(h, MIN_SAMPLED - 1)[MIN_SAMPLED - 1] + np.uint64(1))
    else:
        limit = np.uint64(1 << 32)
    return np.sort(u[h < limit]).astype(np.int64)


def _same_music(a: tuple[str, str, np.ndarray], b: tuple[str, str, np.ndarray],
                threshold: float) -> tuple[str, str, str, str, float] | None:
    """The link row of two clips (id, source, fingerprint) of different sources with the same music."""
    (ca, sa, fa), (cb, sb, fb) = sorted((a, b), key=lambda c: c[0])
    if sa == sb:
        return None
    found = best_alignment(fa, fb)
    return (ca, cb, sa, sb, found[0]) if found is not None and found[0] <= threshold else None


_LINK_COLUMNS = ("clip_a", "clip_b", "source_a", "source_b", "ber")


def _mark_indexed():  # noqa: ANN202 - an UPDATE statement
    """Set ``music_indexed``, leaving ``updated_at`` as it was (indexing is no change to the clip)."""
    return update(Clip).values(music_indexed=True, updated_at=Clip.updated_at)


def _add_links(s, rows: Iterable[tuple[str, str, str, str, float]]) -> int:  # noqa: ANN001 - a Session
    n = 0
    for ca, cb, sa, sb, ber in rows:
        if s.get(MusicLink, (ca, cb)) is None:  # found by both clips when indexed at the same time
            s.add(MusicLink(clip_a=ca, clip_b=cb, source_a=sa, source_b=sb, ber=ber))
            n += 1
    return n


def _forget(s, clip_ids: list[str]) -> None:  # noqa: ANN001 - a Session
    for ids in batches(clip_ids):
        s.execute(delete(MusicBucket).where(MusicBucket.clip_id.in_(ids)))
        s.execute(delete(MusicLink).where(MusicLink.clip_a.in_(ids)))
        s.execute(delete(MusicLink).where(MusicLink.clip_b.in_(ids)))


def index_clip(cat: Catalog, clip_id: str, threshold: float = SAME_MUSIC_BER) -> int:
    """(Re)index one clip: store its sampled values, then link it to the clips of other sources whose music
    is the same; returns the links added. Its values are committed before the look-up, so of two clips
    indexed at once the later look-up sees the other (no pair is missed)."""
    with cat.session() as s:
        row = s.execute(select(Clip.source_id, Clip.music_fingerprint).where(Clip.id == clip_id)).one_or_none()
        _forget(s, [clip_id])
        if row is None or not row.music_fingerprint:
            s.execute(_mark_indexed().where(Clip.id == clip_id))
            return 0
        fp = decode_fingerprint(row.music_fingerprint)
        values = bucket_values(fp).tolist()
        s.add_all(MusicBucket(bucket=v, clip_id=clip_id) for v in values)
    hits: dict[str, int] = {}
    with cat.session() as s:
        for vs in batches(values):
            q = (select(MusicBucket.clip_id, func.count()).where(MusicBucket.bucket.in_(vs),
                                                                 MusicBucket.clip_id != clip_id)
                 .group_by(MusicBucket.clip_id))
            for cid, n in s.execute(q):
                hits[cid] = hits.get(cid, 0) + n
        near = sorted(c for c, n in hits.items() if n >= MIN_BUCKET_HITS)
        links = []
        for ids in batches(near):
            for cid, sid, text in s.execute(select(Clip.id, Clip.source_id, Clip.music_fingerprint)
                                            .where(Clip.id.in_(ids), Clip.music_fingerprint.is_not(None))):
                if (link := _same_music((clip_id, row.source_id, fp), (cid, sid, decode_fingerprint(text)),
                                        threshold)) is not None:
                    links.append(link)
        added = _add_links(s, links)
        s.execute(_mark_indexed().where(Clip.id == clip_id))
    return added


def rebuild_index(cat: Catalog, threshold: float = SAME_MUSIC_BER,
                  on_progress: Callable[[str], None] | None = None) -> dict:
    """Recompute the whole index from the fingerprints in bulk: every clip's values, the candidate pairs
    (numpy, dvmset.music_groups.candidate_pairs on the sampled values), each checked by bit error rate."""
    ids: list[str] = []
    sources: list[str] = []
    sampled: list[np.ndarray] = []
    with cat.session() as s:
        s.execute(delete(MusicBucket))
        s.execute(delete(MusicLink))
        q = (select(Clip.id, Clip.source_id, Clip.music_fingerprint).where(Clip.music_fingerprint.is_not(None))
             .order_by(Clip.id).execution_options(yield_per=5_000))
        for cid, sid, text in s.execute(q):
            ids.append(cid)
            sources.append(sid)
            sampled.append(bucket_values(decode_fingerprint(text)))
        for lo in range(0, len(ids), 5_000):
            s.execute(MusicBucket.__table__.insert(), [{"bucket": int(v), "clip_id": ids[i]}
                                                        for i in range(lo, min(lo + 5_000, len(ids)))
                                                        for v in sampled[i]])
    if on_progress:
        on_progress(f"{len(ids)} fingerprints sampled")
    pairs = [(i, j) for i, j in candidate_pairs(sampled, MIN_BUCKET_HITS, max_holders=None)
             if sources[i] != sources[j]]
    links = []
    with cat.session() as s:
        for block in batches(pairs, 2_000):
            want = sorted({ids[k] for p in block for k in p})
            prints = dict(s.execute(select(Clip.id, Clip.music_fingerprint).where(Clip.id.in_(want))).all())
            for i, j in block:
                link = _same_music((ids[i], sources[i], decode_fingerprint(prints[ids[i]])),
                                   (ids[j], sources[j], decode_fingerprint(prints[ids[j]])), threshold)
                if link is not None:
                    links.append(link)
        if links:
            s.execute(MusicLink.__table__.insert(), [dict(zip(_LINK_COLUMNS, r, strict=True)) for r in links])
        s.execute(_mark_indexed().where(Clip.music_indexed.is_(False)))
    return {"clips": len(ids), "candidates": len(pairs), "links": len(links)}


def catch_up(cat: Catalog) -> int:
    """Index the clips not indexed yet (made before this revision, or by a writer that does not index);
    in bulk when there are many. Returns how many were indexed."""
    with cat.session() as s:
        todo = s.scalar(select(func.count()).select_from(Clip).where(Clip.music_indexed.is_(False)))
    if not todo:
        return 0
    if todo > BULK_CATCH_UP:
        log.info("%d clips not in the shared-music index: rebuilding it", todo)
        rebuild_index(cat)
        return todo
    with cat.session() as s:
        pending = list(s.scalars(select(Clip.id).where(Clip.music_indexed.is_(False)).order_by(Clip.id)))
    for cid in pending:
        index_clip(cat, cid)
    return len(pending)


def stored_links(cat: Catalog, statuses: Iterable[str]) -> list[tuple[str, str, str, str]]:
    """(clip a, clip b, source a, source b) of the stored links whose two clips have one of ``statuses``:
    the links (few: same-music pairs), then the statuses of their clips only, in bounded batches (a join
    with two aliases of ``clips`` let SQLite's planner pair every clip with every clip)."""
    keep = set(statuses)
    with cat.session() as s:
        links = [tuple(r) for r in s.execute(select(MusicLink.clip_a, MusicLink.clip_b, MusicLink.source_a,
                                                    MusicLink.source_b).order_by(MusicLink.clip_a, MusicLink.clip_b))]
        status: dict[str, str] = {}
        for ids in batches(sorted({c for r in links for c in r[:2]})):
            status.update(s.execute(select(Clip.id, Clip.status).where(Clip.id.in_(ids))).tuples().all())
    return [r for r in links if status.get(r[0]) in keep and status.get(r[1]) in keep]


def stored_groups(cat: Catalog, statuses: Iterable[str], clip_ids: Iterable[str] | None = None) -> list[MusicGroup]:
    """The shared-music groups among the clips with ``statuses`` (and in ``clip_ids`` when given), from the
    stored links: what dvmset.music_groups.group_by_music finds over those clips' fingerprints."""
    catch_up(cat)
    links = stored_links(cat, statuses)
    if clip_ids is not None:
        keep = set(clip_ids)
        links = [r for r in links if r[0] in keep and r[1] in keep]
    return union_groups((ca, cb, sa, sb) for ca, cb, sa, sb in links)
