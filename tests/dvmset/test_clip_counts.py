"""Clip counts by query and status are kept by the database (revision 0011): after every kind of write -
ORM and Core inserts, review decisions and undos, direct updates, a takedown, a source's query changed,
deletes - ``counts()`` equals a recount of every clip, on SQLite and Postgres; folding keeps it equal; a 0010
catalog upgraded gets its existing clips counted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from alembic import command
from sqlalchemy import create_engine, delete, func, insert, select, text, update

import dvmset.catalog as catalog_mod
from dvmset import clip_counts, review, review_stats
from dvmset.catalog import Catalog, upgrade_schema
from dvmset.review import QueuePolicy
from dvmset.sources import upsert_source
from dvmset.tables import Annotator, Clip, ClipCount
from dvmset.takedown import mark_catalog, plan_takedown


def _same(cat: Catalog) -> dict:
    with cat.engine.connect() as conn:
        want = clip_counts.recount_clips(conn)
    got = cat.counts()["clips_by_query"]
    assert got == want
    with cat.session() as s:  # the review's progress by query reads them too
        assert review_stats.progress_by_query(s) == [
            {"query": q, "done": c.get("accepted", 0) + c.get("rejected", 0), "left": c.get("pending_review", 0)}
            for q, c in sorted(want.items()) if {"accepted", "rejected", "pending_review"} & set(c)]
    return got


def _rows(cat: Catalog) -> int:
    with cat.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(ClipCount))


def _clip(cid: str, source: str, status: str = "pending_review") -> dict:
    return {"id": cid, "source_id": source, "start_s": 0.0, "duration_s": 60.0, "status": status}


def test_counts_follow_every_writer(any_catalog, monkeypatch):
    cat = any_catalog
    assert cat.counts()["clips_by_query"] == {}
    upsert_source(cat, "a", url="https://x.invalid/a", query="cats", status="done")
    upsert_source(cat, "b", url="https://x.invalid/b", query="dogs", status="done")
    upsert_source(cat, "u", url="https://x.invalid/u", status="done")  # query NULL: "(url)"
    with cat.session() as s:  # ORM
        s.add_all([Clip(**_clip(f"a-{i:05d}", "a")) for i in range(4)])
        s.add(Clip(**_clip("u-00000", "u", "failed")))
    assert _same(cat) == {"cats": {"pending_review": 4}, "(url)": {"failed": 1}}
    with cat.engine.begin() as conn:  # Core bulk insert, as benchmarks/bench_scale.py builds
        conn.execute(insert(Clip), [_clip(f"b-{i:05d}", "b") for i in range(5)])
    assert _same(cat)["dogs"] == {"pending_review": 5}

    with cat.session() as s:
        s.add_all([Annotator(name=n, token_hash=n) for n in ("x", "y")])
    with cat.session() as s:
        x, y = s.scalars(select(Annotator.id).order_by(Annotator.id)).all()
    pol = QueuePolicy(overlap=1)
    with cat.session() as s:  # the review path (review_sql.move_clip, Core)
        review.decide(s, x, "a-00000", "accept", policy=pol)
    with cat.session() as s:
        review.decide(s, y, "a-00001", "reject", ["noise"], policy=pol)
    assert _same(cat)["cats"] == {"pending_review": 2, "accepted": 1, "rejected": 1}
    with cat.session() as s:  # an undo moves it back
        review.undo_last(s, x, pol)
    assert _same(cat)["cats"] == {"pending_review": 3, "rejected": 1}

    with cat.session() as s:  # ORM, directly; an update that leaves the status alone counts nothing
        s.get(Clip, "b-00000").status = "accepted"
        s.get(Clip, "b-00001").status = "pending_review"
        s.get(Clip, "b-00002").error = "touched"
    with cat.engine.begin() as conn:  # Core, several rows at once
        conn.execute(update(Clip).where(Clip.id.in_(["b-00003", "b-00004"])).values(status="rejected"))
    assert _same(cat)["dogs"] == {"pending_review": 2, "accepted": 1, "rejected": 2}

    mark_catalog(cat, plan_takedown(cat, video="b", reason="uploader asked"))  # a takedown
    mark_catalog(cat, plan_takedown(cat, clip="a-00002", reason="rights holder"))
    assert _same(cat)["dogs"] == {"taken_down": 5}

    upsert_source(cat, "a", query="kittens")  # a re-curate from another query moves the clips with it
    upsert_source(cat, "u", query="")  # "" is shown as "(url)", as NULL is
    got = _same(cat)
    assert "cats" not in got and got["kittens"] == {"pending_review": 2, "rejected": 1, "taken_down": 1}
    upsert_source(cat, "u", query="birds")
    assert _same(cat)["birds"] == {"failed": 1}

    with cat.session() as s:  # deletes, ORM and Core
        s.delete(s.get(Clip, "u-00000"))
    with cat.engine.begin() as conn:
        conn.execute(delete(Clip).where(Clip.id == "a-00003"))
    assert "birds" not in _same(cat)

    monkeypatch.setattr(clip_counts, "FOLD_ROWS", 3)  # the next read folds the rows into one per (query, status)
    before = _same(cat)
    assert _rows(cat) == sum(len(v) for v in before.values())
    with cat.session() as s:  # and the counts keep following after a fold
        s.add(Clip(**_clip("a-00009", "a", "accepted")))
    assert _same(cat)["kittens"] == {**before["kittens"], "accepted": 1}


def test_a_fold_deletes_only_the_rows_it_summed(any_catalog):
    cat = any_catalog
    upsert_source(cat, "a", url="https://x.invalid/a", query="cats", status="done")
    with cat.engine.begin() as conn:
        conn.execute(insert(Clip), [_clip(f"a-{i:05d}", "a") for i in range(20)])
        conn.execute(update(Clip).where(Clip.id < "a-00010").values(status="accepted"))
    assert _rows(cat) == 40
    assert clip_counts.fold(cat.engine)
    assert _rows(cat) == 2 and _same(cat) == {"cats": {"accepted": 10, "pending_review": 10}}
    with cat.engine.begin() as conn:  # all moved back: the fold leaves no zero row
        conn.execute(update(Clip).values(status="pending_review"))
    assert clip_counts.fold(cat.engine)
    assert _rows(cat) == 1 and _same(cat) == {"cats": {"pending_review": 20}}


def test_a_0010_catalog_upgraded_counts_its_clips(data_root):
    engine = create_engine(data_root.catalog_url)
    with engine.begin() as conn:
        command.upgrade(catalog_mod._alembic(conn), "0010")
        for sid, q in (("v1", "'cats'"), ("v2", "NULL")):
            conn.execute(text("INSERT INTO sources (id, url, query, status, created_at, updated_at) "
                              f"VALUES ('{sid}', 'https://x.invalid/{sid}', {q}, 'done', '2026-01-01', '2026-01-01')"))
        for i, (sid, status) in enumerate([("v1", "accepted"), ("v1", "accepted"), ("v1", "pending_review"),
                                           ("v2", "rejected")]):
            conn.execute(text("INSERT INTO clips (id, source_id, start_s, duration_s, status, created_at, updated_at) "
                              f"VALUES ('{sid}-0000{i}', '{sid}', {i}, 60, '{status}', '2026-01-01', '2026-01-01')"))
    engine.dispose()
    assert upgrade_schema(data_root.catalog_url)[0] == "0010"
    cat = Catalog(data_root.catalog_url)
    assert _same(cat) == {"cats": {"accepted": 2, "pending_review": 1}, "(url)": {"rejected": 1}}
    with cat.session() as s:  # and the triggers keep them from here
        s.get(Clip, "v1-00002").status = "rejected"
    assert _same(cat)["cats"] == {"accepted": 2, "rejected": 1}
    cat.dispose()
    engine = create_engine(data_root.catalog_url)
    with engine.begin() as conn:  # and back down: the table and its triggers go
        command.downgrade(catalog_mod._alembic(conn), "0010")
        conn.execute(text("UPDATE clips SET status = 'accepted'"))
        assert not conn.execute(text("SELECT name FROM sqlite_master WHERE name LIKE 'clip_counts%'")).all()
    engine.dispose()


def test_postgres_a_fold_or_a_query_change_beside_uncommitted_status_changes(postgres_catalog):
    """A fold while another transaction's count rows are uncommitted keeps them (it deletes what it summed);
    a query change waits for status changes in flight on its clips and counts them as committed."""
    cat = postgres_catalog
    upsert_source(cat, "a", url="https://x.invalid/a", query="cats", status="done")
    with cat.engine.begin() as conn:
        conn.execute(insert(Clip), [_clip(f"a-{i:05d}", "a") for i in range(6)])
    with cat.engine.connect() as other:
        other.execute(update(Clip).where(Clip.id < "a-00003").values(status="accepted"))  # not committed yet
        assert clip_counts.fold(cat.engine)
        other.commit()
    assert _same(cat) == {"cats": {"accepted": 3, "pending_review": 3}}

    with cat.engine.connect() as other:
        other.execute(update(Clip).where(Clip.id == "a-00004").values(status="rejected"))  # holds a-00004
        pool = ThreadPoolExecutor(1)
        moved = pool.submit(upsert_source, cat, "a", query="kittens")  # locks a's clips: waits for `other`
        time.sleep(0.5)
        assert not moved.done()
        other.commit()
        moved.result(timeout=30)
        pool.shutdown()
    assert _same(cat) == {"kittens": {"accepted": 3, "pending_review": 2, "rejected": 1}}
