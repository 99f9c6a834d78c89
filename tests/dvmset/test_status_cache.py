"""status's shared-music count is stored with the catalog state it was computed from: an unchanged
catalog answers without grouping again; any write to a live fingerprinted clip (a new clip, a status
change, a takedown) makes the next status group again."""

from __future__ import annotations

import numpy as np
import pytest

from dvmset import status
from dvmset.music_groups import encode_fingerprint
from dvmset.records import ClipStatus, SourceStatus
from dvmset.tables import Clip, Source


def _fp(rng, song=None):
    f = rng.integers(0, 2**32, size=480, dtype=np.uint64).astype(np.uint32) if song is None else song.copy()
    return encode_fingerprint(f)


@pytest.fixture
def grouped(any_catalog):
    rng = np.random.default_rng(0)
    song = rng.integers(0, 2**32, size=480, dtype=np.uint64).astype(np.uint32)
    with any_catalog.session() as s:
        for n, fp in enumerate([_fp(rng, song), _fp(rng, song[30:]), _fp(rng)]):
            s.add(Source(id=f"s{n}", url=f"https://example.invalid/{n}", status=SourceStatus.DONE))
            s.flush()
            s.add(Clip(id=f"s{n}-00000", source_id=f"s{n}", start_s=0.0, duration_s=60.0,
                       status=ClipStatus.ACCEPTED, music_fingerprint=fp))
    return any_catalog, rng


def _no_grouping(*_a, **_k):
    raise AssertionError("grouped again although the catalog did not change")


def test_an_unchanged_catalog_reads_the_stored_count_and_a_write_invalidates_it(grouped, tmp_path, monkeypatch):
    cat, rng = grouped
    cache = tmp_path / "cache" / status.SHARED_MUSIC_CACHE
    want = {"clips": 2, "groups": 1, "sources": 2}
    assert status.shared_music(cat, cache) == want and cache.is_file()
    real = status.group_by_music
    monkeypatch.setattr(status, "group_by_music", _no_grouping)
    assert status.shared_music(cat, cache) == want  # from the store

    with cat.session() as s:  # a status change of a fingerprinted clip
        s.get(Clip, "s1-00000").status = ClipStatus.TAKEN_DOWN
    with pytest.raises(AssertionError, match="grouped again"):
        status.shared_music(cat, cache)
    monkeypatch.setattr(status, "group_by_music", real)
    assert status.shared_music(cat, cache) == {"clips": 0, "groups": 0, "sources": 0}

    with cat.session() as s:  # a new clip
        s.add(Clip(id="s2-00060", source_id="s2", start_s=60.0, duration_s=60.0, status=ClipStatus.PENDING_REVIEW,
                   music_fingerprint=_fp(rng)))
    monkeypatch.setattr(status, "group_by_music", _no_grouping)
    with pytest.raises(AssertionError, match="grouped again"):
        status.shared_music(cat, cache)

    monkeypatch.setattr(status, "group_by_music", real)
    status.shared_music(cat, cache)
    monkeypatch.setattr(status, "group_by_music", _no_grouping)
    with cat.session() as s:  # live to live: the count stays, the last change moves
        s.get(Clip, "s0-00000").status = ClipStatus.REJECTED
    with pytest.raises(AssertionError, match="grouped again"):
        status.shared_music(cat, cache)

    cache.write_text("not json")  # a damaged store is recomputed, not trusted
    monkeypatch.setattr(status, "group_by_music", real)
    assert status.shared_music(cat, cache) == {"clips": 0, "groups": 0, "sources": 0}
    assert status.shared_music(cat) == {"clips": 0, "groups": 0, "sources": 0}  # no cache: always in full
