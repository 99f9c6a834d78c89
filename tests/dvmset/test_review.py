"""The review queue in the catalog (dvmset.review): leases, expiry, and writers kept apart by the database alone."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from sqlalchemy import select

from dvmset import review
from dvmset.agreement import live_verdicts, load_decision_rows
from dvmset.catalog import Catalog
from dvmset.review import QueuePolicy
from dvmset.tables import Clip, Source


def seed(catalog: Catalog, n: int, source_id: str = "vid1") -> list[str]:
    """One source and ``n`` pending clips (no media: the queue never reads it)."""
    ids = [f"{source_id}-{i * 60:05d}" for i in range(n)]
    with catalog.session() as s:
        s.add(Source(id=source_id, url=f"https://www.youtube.com/watch?v={source_id}", status="done",
                     query="food commercial", title="A food commercial"))
        s.flush()
        s.add_all(Clip(id=c, source_id=source_id, start_s=i * 60.0, duration_s=60.0, status="pending_review")
                  for i, c in enumerate(ids))
    return ids


def make_annotator(catalog: Catalog, name: str) -> int:
    with catalog.session() as s:
        ann, _token = review.add_annotator(s, name)
        return ann.id


def test_default_mode_leases_keep_annotators_apart_and_expire(catalog):
    ids = seed(catalog, 3)
    a = make_annotator(catalog, "ann")
    b = make_annotator(catalog, "bob")
    pol = review.QueuePolicy(lease_s=60)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with catalog.session() as s:
        assert review.claim_next(s, a, pol, now=t0) == ids[0]
    with catalog.session() as s:
        assert review.claim_next(s, b, pol, now=t0) == ids[1]
    with catalog.session() as s:  # bob may not decide ann's leased clip
        with pytest.raises(review.Conflict):
            review.decide(s, b, ids[0], "accept", policy=pol, now=t0)
    with catalog.session() as s:
        review.decide(s, b, ids[1], "accept", policy=pol, now=t0)
    with catalog.session() as s:
        assert review.claim_next(s, b, pol, now=t0) == ids[2]  # ids[0] is still ann's
    later = t0 + dt.timedelta(seconds=120)  # ann walked away: her lease expired
    with catalog.session() as s:
        review.decide(s, b, ids[2], "reject", ["static"], policy=pol, now=later)
    with catalog.session() as s:
        assert review.claim_next(s, b, pol, now=later) == ids[0]
    with catalog.session() as s:  # ann comes back: the clip is bob's now, her queue is empty
        assert review.claim_next(s, a, pol, now=later) is None
        with pytest.raises(review.Conflict):
            review.decide(s, a, ids[0], "accept", policy=pol, now=later)


def _work_direct(catalog: Catalog, me: int, policy: QueuePolicy, handed: list[str], errors: list[str]) -> None:
    """The same loop straight on dvmset.review, one session per step and no app-level lock: the
    database alone must keep workers (or several server processes) apart."""
    try:
        while True:
            with catalog.session() as s:
                clip_id = review.claim_next(s, me, policy)
            if clip_id is None:
                return
            handed.append(clip_id)
            with catalog.session() as s:
                if len(handed) % 3:
                    review.decide(s, me, clip_id, "accept", policy=policy)
                else:
                    review.decide(s, me, clip_id, "reject", ["noise"], policy=policy)
    except Exception as exc:  # noqa: BLE001 - reported to the test thread
        errors.append(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("overlap,workers,clips", [(1, 3, 60), (2, 3, 30)])
def test_database_alone_serialises_claims_and_decisions(any_catalog, overlap, workers, clips):
    """Also on PostgreSQL, where a table lock does what SQLite's write lock does."""
    catalog = any_catalog
    ids = seed(catalog, clips)
    annotators = [make_annotator(catalog, f"w{i}") for i in range(workers)]
    handed: list[list[str]] = [[] for _ in annotators]
    errors: list[str] = []
    policy = QueuePolicy(overlap=overlap)
    threads = [threading.Thread(target=_work_direct, args=(catalog, a, policy, h, errors))
               for a, h in zip(annotators, handed, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert errors == []
    for h in handed:
        assert len(h) == len(set(h)), "an annotator got the same clip twice"
    assert Counter(c for h in handed for c in h) == {c: overlap for c in ids}
    with catalog.session() as s:
        live = live_verdicts(load_decision_rows(s))
        assert set(s.scalars(select(Clip.status)).all()) <= {"accepted", "rejected"}
    assert {c: len(per) for c, per in live.items()} == {c: overlap for c in ids}


def test_a_verdicts_row_is_the_stored_row_and_its_status_the_catalogs(any_catalog):
    """give_verdict inserts without the ORM's flush: the row it answers is the one the session holds, with
    the stored values, and the status it reports is the one the catalog keeps."""
    ids = seed(any_catalog, 2)
    a = make_annotator(any_catalog, "ann")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with any_catalog.session() as s:
        assert review.claim_next(s, a, now=t0) == ids[0]
    with any_catalog.session() as s:
        done = review.give_verdict(s, a, ids[0], "reject", ["static", "noise"], note=" still ",
                                   now=t0 + dt.timedelta(seconds=30))
        assert s.get(review.Decision, done.row.id) is done.row and done.clip_status == "rejected"
    with any_catalog.session() as s:
        stored = s.get(review.Decision, done.row.id)
        assert s.get(Clip, ids[0]).status == "rejected"
        assert s.scalar(select(review.Lease.clip_id).where(review.Lease.annotator_id == a)) is None
    got = {k: getattr(done.row, k) for k in ("clip_id", "annotator_id", "verdict", "reasons", "note", "voids",
                                                "seconds_spent", "listened_s", "spans", "summarised")}
    assert got == {k: getattr(stored, k) for k in got}
    assert got["reasons"] == ["noise", "static"] and got["note"] == "still" and got["listened_s"] == 30.0
