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
from dvmset.agreement import load_decision_rows
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


@pytest.mark.slow
@pytest.mark.parametrize("overlap", [1, 2])
def test_sixteen_annotators_on_postgres_no_clip_over_its_overlap_every_verdict_once(postgres_catalog, data_root,
                                                                                    overlap):
    """Postgres writers run side by side (no process-wide lock): still no clip is handed to more than
    ``overlap`` annotators, nobody gets a clip twice, and each verdict is recorded exactly once."""
    ids = seed(postgres_catalog, data_root, 96)
    anns = [make_annotator(postgres_catalog, f"a{i:02d}") for i in range(16)]
    with postgres_catalog.session() as s:
        review.set_policy(s, overlap=overlap)
    app = create_app(data_root, postgres_catalog, QueuePolicy(overlap=overlap))
    assert not app.state.review.writer.serialised
    handed, errors = _run(app, [t for _, t in anns])
    assert errors == []
    for h in handed:
        assert len(h) == len(set(h)), "an annotator was handed the same clip twice"
    per_clip = Counter(c for h in handed for c in h)
    assert set(per_clip) == set(ids) and set(per_clip.values()) == {overlap}
    with postgres_catalog.session() as s:
        rows = load_decision_rows(s)
        statuses = Counter(s.scalars(select(Clip.status)).all())
        leases = s.scalars(select(Lease)).all()
    assert len(rows) == overlap * len(ids)
    assert Counter((r.clip_id, r.annotator_id) for r in rows) == Counter(
        (c, a) for (a, _), h in zip(anns, handed, strict=True) for c in h)
    assert statuses["pending_review"] == 0 and leases == []
    assert sum(1 for h in handed if h) > 1, "only one annotator worked"
