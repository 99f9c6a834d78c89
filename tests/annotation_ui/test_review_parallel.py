"""Parallel annotators against a real server: nothing lost, nothing handed out twice."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
from review_helpers import LiveServer, make_annotator, seed
from sqlalchemy import select

from annotation_ui.app import create_app
from dvmset import review
from dvmset.agreement import live_verdicts, load_decision_rows
from dvmset.review import QueuePolicy
from dvmset.tables import Clip, Lease


def _work(base: str, token: str, handed: list[str], errors: list[str]) -> None:
    """Review until the queue is empty: next, then a verdict (reject every third clip)."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        while True:
            r = c.get("/api/next")
            if r.status_code != 200:
                errors.append(f"next {r.status_code} {r.text}")
                return
            clip = r.json()["clip"]
            if clip is None:
                return
            handed.append(clip["id"])
            body = {"clip_id": clip["id"], "verdict": "accept"}
            if len(handed) % 3 == 0:
                body = {"clip_id": clip["id"], "verdict": "reject", "reasons": ["mismatch"]}
            r = c.post("/api/decisions", json=body)
            if r.status_code != 201:
                errors.append(f"decide {clip['id']}: {r.status_code} {r.text}")
                return


def _run(app, tokens: list[str]) -> tuple[list[list[str]], list[str]]:
    handed: list[list[str]] = [[] for _ in tokens]
    errors: list[str] = []
    with LiveServer(app) as base:
        threads = [threading.Thread(target=_work, args=(base, t, h, errors)) for t, h in zip(tokens, handed,
                                                                                              strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert not any(t.is_alive() for t in threads), "a client hung"
    return handed, errors


@pytest.mark.slow
def test_two_annotators_200_clips_none_lost_none_double_assigned(catalog, data_root):
    ids = seed(catalog, data_root, 200)
    (a, ta), (b, tb) = make_annotator(catalog, "ann"), make_annotator(catalog, "bob")
    handed, errors = _run(create_app(data_root, catalog, QueuePolicy()), [ta, tb])
    assert errors == []
    assert set(handed[0]).isdisjoint(handed[1]), "a clip was handed to both annotators"
    assert sorted(handed[0] + handed[1]) == sorted(ids)
    assert handed[0] and handed[1], "both annotators should have worked"
    with catalog.session() as s:
        rows = load_decision_rows(s)
        statuses = Counter(s.scalars(select(Clip.status)).all())
        leases = s.scalars(select(Lease)).all()
    assert len(rows) == 200 and len({r.clip_id for r in rows}) == 200
    by = {r.clip_id: r.annotator_id for r in rows}
    assert all(by[c] == a for c in handed[0]) and all(by[c] == b for c in handed[1])
    assert statuses["pending_review"] == 0 and statuses["accepted"] + statuses["rejected"] == 200
    assert leases == []


def _work_direct(catalog, me: int, policy: QueuePolicy, handed: list[str], errors: list[str]) -> None:
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
def test_database_alone_serialises_claims_and_decisions(any_catalog, data_root, overlap, workers, clips):
    """Also on PostgreSQL, where a table lock does what SQLite's write lock does."""
    catalog = any_catalog
    ids = seed(catalog, data_root, clips)
    annotators = [make_annotator(catalog, f"w{i}")[0] for i in range(workers)]
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
