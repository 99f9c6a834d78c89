"""Review v2 over HTTP: the minimum-listening question, spans checked, undo of a skip, skipped clips, and
the caller's own verdicts with their notes; the command's --min-listen-seconds."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from review_helpers import make_annotator, seed
from sqlalchemy import select

from annotation_ui.app import create_app
from dvmset.tables import Decision
from flows.cli import build_parser


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_verdict_too_soon_asks_to_confirm_and_the_listening_time_is_stored(data_root, catalog):
    ids = seed(catalog, data_root, 2)
    _, token = make_annotator(catalog, "ann")
    with TestClient(create_app(data_root, catalog, min_listen_s=0.5)) as c:
        h = bearer(token)
        assert c.get("/api/next", headers=h).json()["clip"]["id"] == ids[0]
        body = {"clip_id": ids[0], "verdict": "accept", "spans": [{"start_s": 50, "end_s": 55, "reason": "noise"}]}
        r = c.post("/api/decisions", json=body, headers=h)
        assert r.status_code == 409 and r.json()["needs_confirmation"] is True and r.json()["min_listen_s"] == 0.5
        assert "confirm to give it anyway" in r.json()["detail"]
        time.sleep(0.6)
        r = c.post("/api/decisions", json=body, headers=h)  # listened long enough now: no question
        assert r.status_code == 201 and r.json()["listened_s"] >= 0.5
        assert c.get("/api/next", headers=h).json()["clip"]["id"] == ids[1]
        r = c.post("/api/decisions", json={"clip_id": ids[1], "verdict": "reject", "reasons": ["noise", "static"],
                                           "note": "a hum", "confirm": True}, headers=h)
        assert r.status_code == 201
        bad = c.post("/api/decisions", json={"clip_id": ids[1], "verdict": "accept",
                                             "spans": [{"start_s": 1, "end_s": 2, "reason": "speech"}]}, headers=h)
        assert bad.status_code == 422
        mine = c.get("/api/decisions/mine", headers=h).json()["decisions"]
    assert [(d["clip_id"], d["reasons"], d["note"]) for d in mine] == [(ids[1], ["noise", "static"], "a hum"),
                                                                     (ids[0], [], None)]
    assert mine[1]["spans"] == [[50.0, 55.0, "noise"]]
    with catalog.session() as s:
        assert [d.listened_s is not None for d in s.scalars(select(Decision).order_by(Decision.id))] == [True, True]


def test_undo_after_a_skip_and_bringing_skipped_clips_back(data_root, catalog):
    ids = seed(catalog, data_root, 2)
    _, token = make_annotator(catalog, "ann")
    _, other = make_annotator(catalog, "bob")
    with TestClient(create_app(data_root, catalog)) as c:
        h = bearer(token)
        assert c.get("/api/next", headers=h).json()["clip"]["id"] == ids[0]
        assert c.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}, headers=h).status_code == 201
        assert c.get("/api/next", headers=h).json()["clip"]["id"] == ids[1]
        c.post("/api/skip", json={"clip_id": ids[1]}, headers=h)
        nxt = c.get("/api/next", headers=h).json()
        assert nxt["clip"] is None and nxt["waiting"]["skipped"] == 1 and nxt["waiting"]["held_by_others"] == 0
        assert [k["clip_id"] for k in c.get("/api/skipped", headers=h).json()["skipped"]] == [ids[1]]
        u = c.post("/api/undo", headers=h).json()
        assert (u["undid"], u["clip_id"], u["handed_back"]) == ("skip", ids[1], True)  # not the accept before it
        assert c.get("/api/next", headers=h).json()["clip"]["id"] == ids[1]
        c.post("/api/skip", json={"clip_id": ids[1]}, headers=h)
        assert c.post("/api/unskip", json={"clip_id": ids[1]}, headers=h).json()["handed_back"] is True
        assert c.post("/api/unskip", json={"clip_id": ids[1]}, headers=h).status_code == 404
        c.post("/api/skip", json={"clip_id": ids[1]}, headers=h)
        assert c.get("/api/next", headers=bearer(other)).json()["clip"]["id"] == ids[1]  # bob takes it
        w = c.get("/api/next", headers=h).json()["waiting"]
        assert (w["held_by_others"], w["skipped"]) == (1, 1) and w["held_until"] and w["skipped_next"]
        u = c.post("/api/undo", headers=h).json()
        assert (u["undid"], u["handed_back"]) == ("skip", False)  # bob holds it: only the skip is gone


def test_the_command_takes_the_minimum_listening_time():
    p = build_parser()
    assert p.parse_args(["review"]).min_listen_seconds == 10.0
    assert p.parse_args(["review", "--min-listen-seconds", "0"]).min_listen_seconds == 0.0
    with pytest.raises(SystemExit):
        p.parse_args(["review", "--min-listen-seconds", "-3"])
