"""Postgres review writers without a global lock (dvmset.review): they meet only on the clip they touch.

Each test holds one transaction open at the point that matters and checks what a second writer does
meanwhile: a second claim takes another clip without waiting; a verdict on the held clip waits for the
claim's row lock (seen in pg_locks, not guessed from timing) and then refuses, because the clip is held.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dvmset import review
from dvmset.catalog import Catalog
from dvmset.tables import Clip, Decision, Lease, Source, utcnow


def _seed(catalog: Catalog, n: int) -> list[str]:
    ids = [f"vid1-{i * 60:05d}" for i in range(n)]
    with catalog.session() as s:
        s.add(Source(id="vid1", url="https://www.youtube.com/watch?v=vid1", status="done", query="q", title="t"))
        s.flush()
        s.add_all(Clip(id=c, source_id="vid1", start_s=i * 60.0, duration_s=60.0, status="pending_review")
                  for i, c in enumerate(ids))
    return ids


def _annotators(catalog: Catalog, *names: str) -> list[int]:
    with catalog.session() as s:
        return [review.add_annotator(s, n)[0].id for n in names]


def _in_thread(fn):  # noqa: ANN001, ANN202 - runs fn() in a thread; returns (thread, outcome dict)
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _wait_for_lock_wait(catalog: Catalog, deadline_s: float = 30.0) -> None:
    """Return once some backend of this database waits on a lock; fail if none does by the deadline."""
    end = time.monotonic() + deadline_s
    with catalog.engine.connect() as conn:
        while time.monotonic() < end:
            waiting = conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND wait_event_type = 'Lock'"))
            if waiting:
                return
            time.sleep(0.05)
    pytest.fail("no writer waited for the clip's row lock")


def test_a_second_claim_takes_another_clip_while_the_first_is_uncommitted(postgres_catalog):
    ids = _seed(postgres_catalog, 3)
    a, b = _annotators(postgres_catalog, "ann", "bob")
    with Session(postgres_catalog.engine) as first:
        got_a = review.claim_next(first, a)  # its row locked, its lease not committed yet
        t, out = _in_thread(lambda: _claim_and_commit(postgres_catalog, b))
        t.join(timeout=60)
        assert not t.is_alive(), "the second claim waited for the first (a global lock)"
        assert "error" not in out, out.get("error")
        first.commit()
    assert got_a == ids[0] and out["value"] == ids[1]


def _claim_and_commit(catalog: Catalog, annotator_id: int) -> str | None:
    with catalog.session() as s:
        return review.claim_next(s, annotator_id)


def test_a_verdict_on_an_expired_lease_waits_for_the_claim_that_took_the_clip_then_refuses(postgres_catalog):
    """Without the row lock the verdict would read before the new holder commits and both would count."""
    (clip,) = _seed(postgres_catalog, 1)
    a, b = _annotators(postgres_catalog, "ann", "bob")
    now = utcnow()
    with postgres_catalog.session() as s:  # ann's lease lapsed a minute ago
        s.add(Lease(clip_id=clip, annotator_id=a, skipped=False, handed_at=now - dt.timedelta(minutes=11),
                    expires_at=now - dt.timedelta(minutes=1)))
    with Session(postgres_catalog.engine) as claimer:
        assert review.claim_next(claimer, b) == clip  # bob takes it over; not committed yet
        t, out = _in_thread(lambda: _decide_and_commit(postgres_catalog, a, clip))
        _wait_for_lock_wait(postgres_catalog)
        claimer.commit()
        t.join(timeout=60)
    assert not t.is_alive()
    assert isinstance(out.get("error"), review.Conflict), out
    with postgres_catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 0
        assert s.get(Clip, clip).status == "pending_review"
        live = s.scalars(select(Lease).where(Lease.expires_at > utcnow())).all()  # ann's lapsed one stays
        assert [(x.annotator_id, x.skipped) for x in live] == [(b, False)]


def _decide_and_commit(catalog: Catalog, annotator_id: int, clip_id: str) -> None:
    with catalog.session() as s:
        review.decide(s, annotator_id, clip_id, "accept")


def test_many_claims_at_once_never_share_a_clip(postgres_catalog):
    ids = _seed(postgres_catalog, 40)
    anns = _annotators(postgres_catalog, *(f"a{i}" for i in range(12)))
    start = threading.Barrier(len(anns), timeout=60)

    def claim(ann: int) -> str | None:
        start.wait()
        return _claim_and_commit(postgres_catalog, ann)

    runs = [_in_thread(lambda ann=ann: claim(ann)) for ann in anns]
    for t, _ in runs:
        t.join(timeout=120)
    got = [out.get("value") for _, out in runs]
    assert all("error" not in out for _, out in runs), [out.get("error") for _, out in runs]
    assert len(set(got)) == len(anns) and set(got) <= set(ids)
    with postgres_catalog.session() as s:
        held = s.execute(select(Lease.clip_id, Lease.annotator_id)).all()
    assert sorted(held) == sorted(zip(got, anns, strict=True))


def test_a_claim_waits_for_a_verdict_in_flight_on_the_only_open_clip_instead_of_saying_the_queue_is_empty(
        postgres_catalog):
    """With overlap 2, ann's verdict on the only clip locks its row; bob may still be handed that clip. SKIP
    LOCKED alone passed it over and answered None ("queue empty"), which the page shows as a finished queue."""
    (clip,) = _seed(postgres_catalog, 1)
    a, b = _annotators(postgres_catalog, "ann", "bob")
    policy = review.QueuePolicy(overlap=2)
    with postgres_catalog.session() as s:
        assert review.claim_next(s, a, policy) == clip
    with Session(postgres_catalog.engine) as verdict:
        review.decide(verdict, a, clip, "accept", policy=policy)  # the clip's row locked, not committed yet
        t, out = _in_thread(lambda: _claim_with(postgres_catalog, b, policy))
        _wait_for_lock_wait(postgres_catalog)  # bob's claim waits on the row instead of skipping it
        verdict.commit()
        t.join(timeout=60)
    assert not t.is_alive() and "error" not in out, out
    assert out["value"] == clip


def _claim_with(catalog: Catalog, annotator_id: int, policy: review.QueuePolicy) -> str | None:
    with catalog.session() as s:
        return review.claim_next(s, annotator_id, policy)


def test_a_lead_settling_a_clip_waits_for_the_vote_in_flight_and_reads_it(postgres_catalog):
    """The vote that makes the disagreement is being written when the lead settles: the adjudication waits for
    the clip's row and then sees both verdicts. Read without the lock, it saw one and refused ("nothing to
    settle"), and a vote committing after an unlocked adjudication could read the clip as unsettled."""
    from dvmset.adjudication import adjudicate

    (clip,) = _seed(postgres_catalog, 1)
    a, b, lead = _annotators(postgres_catalog, "ann", "bob", "lee")
    policy = review.QueuePolicy(overlap=2)
    for who in (a, b):
        with postgres_catalog.session() as s:
            assert review.claim_next(s, who, policy) == clip
    with postgres_catalog.session() as s:
        review.decide(s, a, clip, "accept", policy=policy)
    with Session(postgres_catalog.engine) as vote:
        review.decide(vote, b, clip, "reject", ["noise"], policy=policy)  # locked, not committed yet
        t, out = _in_thread(lambda: _settle(postgres_catalog, lead, clip, adjudicate))
        _wait_for_lock_wait(postgres_catalog)
        vote.commit()
        t.join(timeout=60)
    assert not t.is_alive() and "error" not in out, out
    with postgres_catalog.session() as s:
        assert s.get(Clip, clip).status == "rejected"


def _settle(catalog: Catalog, lead: int, clip_id: str, adjudicate) -> None:  # noqa: ANN001
    with catalog.session() as s:
        adjudicate(s, lead, clip_id, "reject", ["noise"])
