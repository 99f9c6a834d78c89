"""The two requests an annotator makes per clip (next clip, verdict), as built for speed: what they answer
is what the catalog holds, a policy change reaches them at once, and every answer carries the security headers."""

from __future__ import annotations

from review_helpers import make_annotator, seed
from sqlalchemy import select

from annotation_ui.app import SECURITY_HEADERS
from dvmset import review
from dvmset.tables import Clip, Lease, Source


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def status_of(catalog, clip_id: str) -> str:  # noqa: ANN001
    with catalog.session() as s:
        return s.get(Clip, clip_id).status


def test_next_clip_describes_the_catalogs_clip_and_source(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 2)
    with catalog.session() as s:  # a source without a page URL links to its URL
        s.get(Source, "vid1").webpage_url = None
        c = s.get(Clip, ids[0])
        c.still_s, c.limiting_db, c.clip_gain_db = 12.5, 0.4, -1.5
    _, token = make_annotator(catalog, "ann")
    got = make_client().get("/api/next", headers=bearer(token)).json()["clip"]
    assert got["id"] == ids[0] and got["start_s"] == 0.0 and got["duration_s"] == 60.0
    assert got["qc"] == {"silence_ratio": 0.02, "static_ratio": 0.5, "still_s": 12.5, "scene_cuts": 3,
                         "loudness_lufs": -14.2, "limiting_db": 0.4, "clip_gain_db": -1.5, "vocal_energy": 0.01}
    assert got["source"] == {"id": "vid1", "title": "A food commercial", "query": "food commercial",
                             "link": "https://www.youtube.com/watch?v=vid1"}


def test_a_verdicts_answer_reports_the_status_the_catalog_holds(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 1)
    tokens = [make_annotator(catalog, n)[1] for n in ("ann", "bob")]
    client = make_client(overlap=2)
    for t, verdict, want in ((tokens[0], "accept", "pending_review"), (tokens[1], "accept", "accepted")):
        assert client.get("/api/next", headers=bearer(t)).json()["clip"]["id"] == ids[0]
        r = client.post("/api/decisions", json={"clip_id": ids[0], "verdict": verdict}, headers=bearer(t))
        assert r.status_code == 201 and r.json()["clip_status"] == want == status_of(catalog, ids[0])


def test_a_policy_change_reaches_a_running_server_at_the_next_request(make_client, catalog, data_root):
    """The policy is read in every request's transaction (no copy kept between requests): set through the
    documented path (`vidmusician review-policy set` calls review.set_policy) it governs the next claim and verdict."""
    ids = seed(catalog, data_root, 2)
    tokens = [make_annotator(catalog, n)[1] for n in ("ann", "bob")]
    client = make_client(overlap=1, lease_s=600)
    first = client.get("/api/next", headers=bearer(tokens[0])).json()
    assert first["clip"]["id"] == ids[0] and first["lease_s"] == 600
    with catalog.session() as s:
        review.set_policy(s, overlap=2, lease_s=900)
    second = client.get("/api/next", headers=bearer(tokens[1])).json()
    assert second["clip"]["id"] == ids[0] and second["lease_s"] == 900  # two verdicts wanted now: bob shares it
    r = client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}, headers=bearer(tokens[0]))
    assert r.json()["clip_status"] == "pending_review"  # one verdict of two


def test_a_held_clip_is_renewed_and_the_annotators_other_leases_dropped(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 3)
    ann, token = make_annotator(catalog, "ann")
    client = make_client(lease_s=600)
    assert client.get("/api/next", headers=bearer(token)).json()["clip"]["id"] == ids[0]
    with catalog.session() as s:
        held = s.get(Lease, (ids[0], ann))
        handed, expires = held.handed_at, held.expires_at
        s.add(Lease(clip_id=ids[2], annotator_id=ann, expires_at=expires, skipped=False, handed_at=handed))
    assert client.get("/api/next", headers=bearer(token)).json()["clip"]["id"] == ids[0]  # the first held, renewed
    with catalog.session() as s:
        leases = s.scalars(select(Lease).where(Lease.annotator_id == ann)).all()
        assert [(x.clip_id, x.handed_at) for x in leases] == [(ids[0], handed)]  # handed-out time kept
        assert leases[0].expires_at >= expires


def test_every_answer_carries_the_security_headers(make_client, catalog, data_root):
    seed(catalog, data_root, 1)
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    answers = [
        client.get("/", headers=bearer(token)),  # a page
        client.get("/login"),  # the sign-in page, unauthenticated
        client.get("/api/next", headers=bearer(token)),  # JSON from a route
        client.get("/api/next"),  # 401 from the token dependency
        client.post("/api/skip", json={"clip_id": "x"}),  # 401 from the guard
        client.post("/api/skip", json={"clip_id": "x"}, headers={"Origin": "https://evil.example"}),  # 403
        client.get("/no/such/route"),  # 404
    ]
    assert [r.status_code for r in answers] == [200, 401, 200, 401, 401, 403, 404]
    for r in answers:
        for k, v in SECURITY_HEADERS.items():
            assert r.headers.get(k) == v, (r.request.url, k)
