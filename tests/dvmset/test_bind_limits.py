"""No query binds a parameter per clip: export's queries over a catalog of 70,000 accepted clips (past
psycopg's 65,535 parameters and stock SQLite's 32,766) work on SQLite and on Postgres, where binding every
id in one ``IN`` list fails on both (checked first, so the catalog is known to be past the limits)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import DBAPIError

from dvmset.batches import MAX_BIND, batches, padded
from dvmset.catalog import Catalog
from dvmset.export import _record_splits
from dvmset.export_plan import ExportPlan
from dvmset.music_groups import encode_fingerprint
from dvmset.music_index import stored_groups
from dvmset.records import TEST, TRAIN, ClipStatus, SourceStatus
from dvmset.release import distinct_steps, release_frame
from dvmset.shards import FeatureStore
from dvmset.tables import Clip, Source

N_CLIPS = 70_000  # accepted clips, 2 per source
STOCK_SQLITE_LIMIT = 32_766  # SQLITE_MAX_VARIABLE_NUMBER's default since 3.32 (Debian builds allow 250,000)


def _stock_sqlite_limit(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
    dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, STOCK_SQLITE_LIMIT)


@pytest.fixture(params=["sqlite", "postgres"])
def big_catalog(request, data_root):
    if request.param == "sqlite":
        cat = Catalog(data_root.catalog_url)
        event.listen(cat.engine, "connect", _stock_sqlite_limit)
        cat.engine.dispose()  # connections made from now on have the stock limit
    else:
        cat = request.getfixturevalue("postgres_catalog")
    rng = np.random.default_rng(0)
    shared = rng.integers(0, 2**32, size=480, dtype=np.uint64).astype(np.uint32)
    fp = {"s00000-00000": encode_fingerprint(shared), "s00007-00060": encode_fingerprint(shared[40:]),
          "s00003-00000": encode_fingerprint(rng.integers(0, 2**32, 480, dtype=np.uint64).astype(np.uint32))}
    lineage = [{"steps": [{"step": "clip", "tool": "ffmpeg", "version": v, "params": {"fps": 8, "start_s": 0.0}}]}
               for v in ("6.1", "7.0")]
    sources = [{"id": f"s{n:05d}", "url": f"https://example.invalid/{n}", "query": f"q{n % 7}",
                "status": SourceStatus.DONE.value} for n in range(N_CLIPS // 2)]
    clips = [{"id": f"s{n // 2:05d}-{(n % 2) * 60:05d}", "source_id": f"s{n // 2:05d}", "start_s": (n % 2) * 60.0,
              "duration_s": 30.0, "status": ClipStatus.ACCEPTED.value, "lineage": lineage[n % 2], "split": None}
             for n in range(N_CLIPS)]
    for c in clips:
        c["music_fingerprint"] = fp.get(c["id"])
    with cat.engine.begin() as conn:
        conn.execute(insert(Source.__table__), sources)
        conn.execute(insert(Clip.__table__), clips)
        conn.execute(insert(Clip.__table__), [{**clips[0], "id": "gone-00000", "status": ClipStatus.REJECTED.value,
                                               "music_fingerprint": None, "split": TRAIN}])
    yield cat, [c["id"] for c in clips]
    if request.param == "sqlite":
        cat.dispose()


def test_batches_are_bounded_consecutive_and_complete():
    assert [len(b) for b in batches(range(25_001))] == [MAX_BIND, MAX_BIND, 5_001]
    assert list(batches([])) == [] and [x for b in batches(range(7), 3) for x in b] == list(range(7))
    with pytest.raises(ValueError):
        next(batches([1], 0))


def test_padded_lists_bind_a_few_shapes_and_the_same_ids():
    shapes = {len(padded(list(range(n)))) for n in range(1, MAX_BIND + 1)}
    assert len(shapes) <= 20 and max(shapes) == MAX_BIND  # not one statement per length; never past a batch
    for n in (1, 3, 1000, 1025, 9999):
        got = padded([f"c{i}" for i in range(n)])
        assert len(got) >= n and set(got) == {f"c{i}" for i in range(n)} and got[:n] == [f"c{i}" for i in range(n)]
    assert padded([]) == []


def test_export_queries_past_every_driver_parameter_limit(big_catalog, tmp_path):
    cat, ids = big_catalog
    with cat.session() as s, pytest.raises(DBAPIError):  # one parameter per clip: what used to break
        s.execute(select(Clip.id).where(Clip.id.in_(ids))).all()

    groups = stored_groups(cat, [ClipStatus.ACCEPTED.value])  # the export's shared-music groups
    assert [(g.sources, g.clips) for g in groups] == [(("s00000", "s00007"), ("s00000-00000", "s00007-00060"))]

    split = {cid: TEST if n % 10 == 0 else TRAIN for n, cid in enumerate(ids)}
    frame = release_frame(cat, split)
    assert len(frame) == N_CLIPS and frame.clip_id.is_monotonic_increasing
    assert (frame.split == frame.clip_id.map(split)).all() and frame.fps.eq(8).all()

    assert sorted(s["version"] for s in distinct_steps(cat, ids)) == ["6.1", "7.0"]

    with ExportPlan(tmp_path) as plan:
        plan.add_clips((cid, cid.rpartition("-")[0]) for cid in ids)
        plan.set_splits(split.items())
        _record_splits(cat, FeatureStore(tmp_path / "features"), plan)
        with cat.session() as s:
            got = dict(s.execute(select(Clip.id, Clip.split)).all())
        assert got.pop("gone-00000") is None  # rejected since an earlier export: its split is cleared
        assert got == split
        plan.set_splits([(ids[1], TEST)])  # a second export moves one clip: only that row changes
        _record_splits(cat, FeatureStore(tmp_path / "features"), plan)
    with cat.session() as s:
        assert s.scalar(select(Clip.split).where(Clip.id == ids[1])) == TEST
