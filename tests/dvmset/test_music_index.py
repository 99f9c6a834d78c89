"""The shared-music index kept in the catalog: clips matched one at a time as they are made equal a full
rebuild in bulk, and equal grouping every fingerprint from scratch; status reads the stored groups."""

from __future__ import annotations

import numpy as np
import pytest

from dvmset import music_index, status
from dvmset.lineage import record_lineage
from dvmset.music_groups import (
    MusicClip,
    best_alignment,
    encode_fingerprint,
    same_music_pairs,
)
from dvmset.music_index import bucket_values, rebuild_index, stored_groups
from dvmset.records import ClipStatus, SourceStatus
from dvmset.tables import Clip, MusicBucket, MusicLink, Source

LIVE = [s.value for s in status.LIVE_MUSIC]


def _noisy(rng, song: np.ndarray, start: int, n: int, flips: float) -> np.ndarray:
    """``n`` items of ``song`` from ``start`` with a share ``flips`` of the bits flipped (a re-encode)."""
    x = song[start:start + n].copy()
    bits = rng.random((len(x), 32)) < flips
    return x ^ (bits * (1 << np.arange(32, dtype=np.uint64))).sum(1).astype(np.uint32)


def _synthetic(rng, n_sources: int = 40) -> list[tuple[str, str, np.ndarray]]:
    """(clip id, source id, fingerprint) in the order they are made: 12 songs, each reaching 1-4 sources at
    various offsets and re-encodes, plus unrelated music, a silent clip and two clips of one source."""
    songs = [rng.integers(0, 2**32, size=1400, dtype=np.uint64).astype(np.uint32) for _ in range(12)]
    out = []
    for s in range(n_sources):
        song = songs[int(rng.integers(0, 12))] if rng.random() < 0.5 else None  # a source's soundtrack
        for k in range(int(rng.integers(1, 4))):
            cid = f"v{s:03d}-{k * 60:05d}"
            if song is not None:  # the known song, somewhere in it, lightly re-encoded
                fp = _noisy(rng, song, int(rng.integers(0, 900)), 480, 0.03)
            else:
                fp = rng.integers(0, 2**32, size=480, dtype=np.uint64).astype(np.uint32)
            out.append((cid, f"v{s:03d}", fp))
    out.append(("silent-00000", "silent", np.full(480, 0x5A5A5A5A, np.uint32)))  # one value all along
    return out


def _add(cat, rows, *, index: bool) -> None:
    for cid, sid, fp in rows:
        with cat.session() as s:
            if s.get(Source, sid) is None:
                s.add(Source(id=sid, url=f"https://example.invalid/{sid}", status=SourceStatus.DONE))
                s.flush()
            s.add(Clip(id=cid, source_id=sid, start_s=0.0, duration_s=60.0, status=ClipStatus.PENDING_REVIEW))
        if index:  # as curation does: the lineage (and fingerprint) recorded once the clip is cut
            record_lineage(cat, cid, [], music_sha256=None, music_fingerprint=encode_fingerprint(fp))
        else:
            with cat.session() as s:
                s.get(Clip, cid).music_fingerprint = encode_fingerprint(fp)


def _links(cat) -> set[tuple]:
    with cat.session() as s:
        return {(r.clip_a, r.clip_b, r.source_a, r.source_b, round(r.ber, 9)) for r in s.query(MusicLink)}


def test_sampling_is_consistent_and_keeps_enough_of_a_clip():
    rng = np.random.default_rng(0)
    song = rng.integers(0, 2**32, size=1000, dtype=np.uint64).astype(np.uint32)
    a, b = bucket_values(song[:480]), bucket_values(song[200:680])
    assert 40 <= len(a) <= 90  # ~1/8 of 480 distinct values
    shared = set(song[200:480].tolist())
    assert {v for v in a.tolist() if v in shared} == {v for v in b.tolist() if v in shared}  # kept in both or neither
    assert len(bucket_values(song[:20])) == 16  # a short clip keeps its 16 smallest hashes
    assert len(bucket_values(np.full(480, 7, np.uint32))) == 0  # silence: one value all along, nothing kept


def test_incremental_index_equals_a_full_rebuild_and_a_regrouping(any_catalog):
    cat = any_catalog
    rng = np.random.default_rng(1)
    rows = _synthetic(rng)
    _add(cat, rows[:70], index=True)
    with cat.session() as s:  # status changes between clips: a takedown, a failure, a rejection
        s.get(Clip, rows[3][0]).status = ClipStatus.TAKEN_DOWN
        s.get(Clip, rows[10][0]).status = ClipStatus.FAILED
        s.get(Clip, rows[11][0]).status = ClipStatus.REJECTED
    _add(cat, rows[70:], index=True)
    # a clip whose fingerprint changes (re-cut) is matched again, its old links dropped
    record_lineage(cat, rows[0][0], [], music_sha256=None, music_fingerprint=encode_fingerprint(rows[1][2]))
    rows[0] = (rows[0][0], rows[0][1], rows[1][2])
    incremental, live_groups = _links(cat), stored_groups(cat, LIVE)
    assert len(incremental) >= 10 and len(live_groups) >= 4  # the synthetic catalog does share music

    with cat.session() as s:
        n_buckets = s.query(MusicBucket).count()
        s.query(MusicLink).delete()
        s.query(MusicBucket).delete()
    summary = rebuild_index(cat)
    assert _links(cat) == incremental  # the bulk rebuild finds exactly the links made clip by clip
    with cat.session() as s:
        assert s.query(MusicBucket).count() == n_buckets and summary["links"] == len(incremental)

    assert stored_groups(cat, LIVE) == live_groups

    # against comparing every live fingerprint from scratch (dvmset.music_groups, every exact value): every
    # stored link is one of its pairs, and every pair overlapping by half a clip (30 s) or more is stored
    # (a shorter overlap shares fewer sampled values and may be missed; the rebuild misses it alike)
    with cat.session() as s:
        live = {c.id for c in s.query(Clip) if c.status in LIVE}
    fp_of = {c: fp for c, _, fp in rows}
    exact = {(a, b) for a, b, _ in same_music_pairs([MusicClip(c, sid, fp) for c, sid, fp in rows if c in live])}
    exact = {tuple(sorted(p)) for p in exact}
    stored = {(a, b) for a, b, _, _ in music_index.stored_links(cat, LIVE)}
    long = {(a, b) for a, b in exact if 480 - abs(best_alignment(fp_of[a], fp_of[b])[1]) >= 240}
    assert stored <= exact and long <= stored and len(long) >= 10


def test_status_reads_the_stored_groups_and_follows_status_changes(any_catalog, monkeypatch):
    cat = any_catalog
    rng = np.random.default_rng(2)
    song = rng.integers(0, 2**32, size=600, dtype=np.uint64).astype(np.uint32)
    other = rng.integers(0, 2**32, size=480, dtype=np.uint64).astype(np.uint32)
    _add(cat, [("s0-00000", "s0", song[:480]), ("s1-00000", "s1", _noisy(rng, song, 60, 480, 0.02)),
               ("s2-00000", "s2", other)], index=True)

    def no_decoding(*_a, **_k):
        raise AssertionError("status decoded a fingerprint: it regrouped instead of reading the index")

    monkeypatch.setattr(music_index, "decode_fingerprint", no_decoding)
    assert status.shared_music(cat) == {"clips": 2, "groups": 1, "sources": 2}
    with cat.session() as s:
        s.get(Clip, "s1-00000").status = ClipStatus.TAKEN_DOWN
    assert status.shared_music(cat) == {"clips": 0, "groups": 0, "sources": 0}


@pytest.mark.parametrize("bulk", [False, True])
def test_clips_written_without_indexing_are_caught_up(catalog, monkeypatch, bulk):
    rng = np.random.default_rng(3)
    rows = _synthetic(rng, 25)
    _add(catalog, rows, index=False)  # a catalog from before revision 0009, or a writer that does not index
    monkeypatch.setattr(music_index, "BULK_CATCH_UP", 0 if bulk else 10_000)
    with catalog.session() as s:
        assert s.query(Clip).filter(Clip.music_indexed.is_(False)).count() == len(rows)
    rebuilt = stored_groups(catalog, LIVE)  # catches up first
    with catalog.session() as s:
        links = _links(catalog)
        s.query(MusicLink).delete()
        s.query(MusicBucket).delete()
        s.query(Clip).update({Clip.music_indexed: False})
    monkeypatch.setattr(music_index, "BULK_CATCH_UP", 10_000 if bulk else 0)  # the other way
    assert rebuilt and stored_groups(catalog, LIVE) == rebuilt and _links(catalog) == links
    with catalog.session() as s:
        assert s.query(Clip).filter(Clip.music_indexed.is_(False)).count() == 0


def test_the_rebuild_command_recomputes_a_damaged_index(data_root, catalog, capsys):
    from flows import cli

    rng = np.random.default_rng(5)
    rows = _synthetic(rng, 20)
    _add(catalog, rows, index=True)
    want = stored_groups(catalog, LIVE)
    with catalog.session() as s:  # a damaged index: links lost
        s.query(MusicLink).delete()
    assert stored_groups(catalog, LIVE) == []
    assert cli.main(["music-groups", "--rebuild", "--root", str(data_root.path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(want)} groups of sources share music" in out and "rebuilt the shared-music index" in out
    assert stored_groups(catalog, LIVE) == want
