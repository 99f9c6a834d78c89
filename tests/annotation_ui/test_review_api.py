"""The review API: auth, media ranges, bad input and security, the queue, undo, overlap, agreement."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.routing import APIRoute
from review_helpers import make_annotator, seed
from sqlalchemy import func, select

from dvmset import review
from dvmset.tables import Clip, Decision, Lease


def n_rows(catalog, table) -> int:
    with catalog.session() as s:
        return s.scalar(select(func.count()).select_from(table))


def status_of(catalog, clip_id) -> str:
    with catalog.session() as s:
        return s.get(Clip, clip_id).status


def api_routes(routes) -> list[APIRoute]:  # noqa: ANN001 - a route table
    """Every APIRoute the app serves, also those of included routers (FastAPI >= 0.13x keeps them nested)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif getattr(route, "original_router", None) is not None:
            out += api_routes(route.original_router.routes)
    return out


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_login_sets_strict_httponly_cookie_and_unknown_token_is_refused(make_client, catalog, data_root, clip_media):
    ids = seed(catalog, data_root, 2, clip_media)
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    assert client.get("/login", params={"token": "nope"}).status_code == 401
    assert client.get("/", follow_redirects=False).status_code == 401  # no cookie yet
    r = client.get("/login", params={"token": token}, follow_redirects=False)
    assert r.status_code == 200 and "set-cookie" not in r.headers and "Sign in as <bdi>ann</bdi>" in r.text
    r = client.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = client.get("/")
    assert page.status_code == 200 and ids[0] in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    with catalog.session() as s:  # only the hash is stored
        assert s.scalar(select(func.count()).select_from(review.Annotator).where(
            review.Annotator.token_hash == token)) == 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                                     {"Cookie": "vm_token=wrong"}])
def test_missing_or_wrong_token_is_401_and_writes_nothing(make_client, catalog, data_root, headers):
    ids = seed(catalog, data_root, 1)
    make_annotator(catalog, "ann")
    client = make_client()
    for method, url, body in [("GET", "/api/next", None), ("GET", f"/media/{ids[0]}", None),
                              ("POST", "/api/decisions", {"clip_id": ids[0], "verdict": "accept"}),
                              ("POST", "/api/undo", None), ("GET", "/api/agreement", None)]:
        r = client.request(method, url, json=body, headers=headers)
        assert r.status_code == 401, (url, r.text)
    assert n_rows(catalog, Decision) == 0 and n_rows(catalog, Lease) == 0


def test_range_requests_return_206_with_the_right_bytes(make_client, catalog, data_root, clip_media):
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    blob = clip_media.read_bytes()
    size = len(blob)
    r = client.get(f"/media/{ids[0]}", headers={**bearer(token), "Range": "bytes=100-1099"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-1099/{size}"
    assert r.content == blob[100:1100] and r.headers["content-length"] == "1000"
    r = client.get(f"/media/{ids[0]}", headers={**bearer(token), "Range": "bytes=-500"})
    assert r.status_code == 206 and r.content == blob[-500:]
    r = client.get(f"/media/{ids[0]}", headers={**bearer(token), "Range": f"bytes={size - 10}-"})
    assert r.status_code == 206 and r.content == blob[-10:]
    r = client.get(f"/media/{ids[0]}", headers={**bearer(token), "Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    r = client.get(f"/media/{ids[0]}", headers={**bearer(token), "Range": "bytes=0-"})
    assert r.status_code == 206 and r.content == blob[: len(r.content)]
    assert r.headers["accept-ranges"] == "bytes"


def test_open_range_is_capped_never_whole_file():
    from annotation_ui.media import RangeNotSatisfiable, parse_range

    big = 50 * 1024 * 1024
    rng = parse_range("bytes=0-", big)
    assert rng.start == 0 and rng.length < big
    assert parse_range("bytes=10-19", 100).content_range == "bytes 10-19/100"
    assert parse_range("bytes=90-500", 100).end == 99
    assert parse_range("BYTES=10-19", 100).content_range == "bytes 10-19/100"  # units are case-insensitive
    assert parse_range("bytes= , 10-19, 50-60", 100).content_range == "bytes 10-19/100"  # empty list items
    assert parse_range("items=0-1", 100) is None  # an unknown unit is ignored: the whole file
    for bad in ("bytes=5-1", "bytes=-0", "bytes=-", "bytes=abc", "bytes=" + "9" * 4400, "bytes=0-" + "9" * 19,
                "=0-1", "bytes 0-1", "bytes=1--2", "bytes=0x10-20", "bytes=", "bytes=٣-٥", "by tes=0-1"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 100)


def test_path_traversal_is_refused(make_client, catalog, data_root, clip_media, tmp_path):
    seed(catalog, data_root, 1, clip_media)
    secret = data_root.path.parent / "secret.txt"
    secret.write_text("top secret")
    with catalog.session() as s:  # a clip row whose stored path points outside the root
        s.add(Clip(id="evil-00000", source_id="vid1", start_s=0, duration_s=60, status="pending_review",
                   path="../secret.txt"))
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    for url in ["/media/..%2Fsecret.txt", "/media/%2e%2e", "/media/%2e%2e%2fsecret.txt", "/media/evil-00000",
                "/media/..%5c..%5csecret.txt", "/api/clips/..%2F..%2Fsecret.txt/peaks", "/media/a%00b",
                "/static/..%2F..%2Fapp.py"]:
        r = client.get(url, headers=bearer(token))
        assert 400 <= r.status_code < 500, (url, r.status_code)
        assert "top secret" not in r.text and "def create_app" not in r.text
    for bad in ["../secret", "vid1/../../x", "..", "a/b"]:
        r = client.post("/api/decisions", json={"clip_id": bad, "verdict": "accept"}, headers=bearer(token))
        assert r.status_code == 422
    assert n_rows(catalog, Decision) == 0


def test_titles_and_links_from_the_internet_are_escaped(make_client, catalog, data_root, clip_media):
    title = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
    seed(catalog, data_root, 1, clip_media, title=title, url="javascript:alert(1)")
    _, token = make_annotator(catalog, "<b>bob</b>")
    client = make_client()
    page = client.get("/", headers=bearer(token)).text
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>bob</b>" not in page
    assert "&lt;b&gt;bob&lt;/b&gt;" in page
    blob = re.search(r'<script id="initial-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob)
    assert data["clip"]["source"]["title"] == title  # intact as data, inert as markup
    assert data["clip"]["source"]["link"] is None  # javascript: never reaches an href
    agreement = client.get("/agreement", headers=bearer(token)).text
    assert "<b>bob</b>" not in agreement


def test_decision_flow_undo_and_append_only_rows(make_client, catalog, data_root, clip_media):
    ids = seed(catalog, data_root, 3, clip_media)
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    h = bearer(token)
    first = client.get("/api/next", headers=h).json()
    assert first["clip"]["id"] == ids[0]
    assert client.get("/api/progress", headers=h).json()["left"] == 3
    assert client.get("/api/next", headers=h).json()["clip"]["id"] == ids[0]  # same lease on reload
    r = client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept", "seconds_spent": 4.5}, headers=h)
    assert r.status_code == 201 and r.json()["clip_status"] == "accepted"
    nxt = client.get("/api/next", headers=h).json()
    assert nxt["clip"]["id"] == ids[1]
    prog = client.get("/api/progress", headers=h).json()
    assert (prog["done"], prog["left"], prog["mine"]) == (1, 2, 1)
    r = client.post("/api/decisions", json={"clip_id": ids[1], "verdict": "reject", "reasons": ["noise", "static"]},
                    headers=h)
    assert r.json()["clip_status"] == "rejected"
    u = client.post("/api/undo", headers=h).json()
    assert u["clip_id"] == ids[1] and u["clip_status"] == "pending_review"
    assert client.get("/api/next", headers=h).json()["clip"]["id"] == ids[1]  # the undone clip comes back
    client.post("/api/decisions", json={"clip_id": ids[1], "verdict": "reject", "reasons": ["other"],
                                        "note": "talking head"}, headers=h)
    with catalog.session() as s:
        rows = s.scalars(select(Decision).order_by(Decision.id)).all()
        verdicts = [(r.clip_id, r.verdict, r.voids) for r in rows]
    assert verdicts == [(ids[0], "accept", None), (ids[1], "reject", None), (ids[1], "undo", rows[1].id),
                        (ids[1], "reject", None)]
    assert status_of(catalog, ids[1]) == "rejected"


def test_bad_decisions_are_4xx_and_write_nothing(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 2)
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    h = bearer(token)
    cases = [
        ({"clip_id": "nope-00000", "verdict": "accept"}, 404),
        ({"clip_id": ids[0], "verdict": "maybe"}, 422),
        ({"clip_id": ids[0], "verdict": "reject"}, 422),  # no reason
        ({"clip_id": ids[0], "verdict": "reject", "reasons": ["ugly"]}, 422),
        ({"clip_id": ids[0], "verdict": "reject", "reasons": ["other"]}, 422),  # other needs a note
        ({"clip_id": ids[0], "verdict": "accept", "reasons": ["noise"]}, 422),
        ({"clip_id": ids[0], "verdict": "accept", "admin": True}, 422),
        ({"clip_id": ids[0], "verdict": "accept", "seconds_spent": -1}, 422),
        ({"clip_id": ids[0], "verdict": "accept", "note": "x" * 5000}, 422),
        ({"clip_id": ids[0], "verdict": "reject", "reasons": ["x" * 10_000]}, 422),
        ({"clip_id": ids[0], "verdict": "reject", "reasons": "noise"}, 422),
        ({"verdict": "accept"}, 422),
    ]
    for body, code in cases:
        r = client.post("/api/decisions", json=body, headers=h)
        assert r.status_code == code, (body, r.text)
        assert "Traceback" not in r.text
    for raw in (b"{not json", b"[]", b"null"):
        r = client.post("/api/decisions", content=raw, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 422
    assert client.post("/api/undo", headers=h).status_code == 409  # nothing to undo
    assert n_rows(catalog, Decision) == 0 and status_of(catalog, ids[0]) == "pending_review"
    # A clip already decided by this annotator: 409, no second row.
    assert client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}, headers=h).status_code == 201
    r = client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "reject", "reasons": ["noise"]}, headers=h)
    assert r.status_code == 409 and n_rows(catalog, Decision) == 1
    assert status_of(catalog, ids[0]) == "accepted"


def test_skip_moves_on_and_leaves_the_clip_to_others(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 2)
    _, ta = make_annotator(catalog, "ann")
    _, tb = make_annotator(catalog, "bob")
    client = make_client()
    assert client.get("/api/next", headers=bearer(ta)).json()["clip"]["id"] == ids[0]
    assert client.post("/api/skip", json={"clip_id": ids[0]}, headers=bearer(ta)).status_code == 200
    assert client.get("/api/next", headers=bearer(ta)).json()["clip"]["id"] == ids[1]
    assert client.get("/api/next", headers=bearer(tb)).json()["clip"]["id"] == ids[0]
    assert client.post("/api/skip", json={"clip_id": "../x"}, headers=bearer(ta)).status_code == 422
    assert client.post("/api/skip", json={"clip_id": "none-00000"}, headers=bearer(ta)).status_code == 404


def test_overlap_mode_collects_n_independent_verdicts(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 2)
    tokens = [make_annotator(catalog, n)[1] for n in ("ann", "bob", "cyd")]
    client = make_client(overlap=2)
    got = [client.get("/api/next", headers=bearer(t)).json()["clip"] for t in tokens]
    assert got[0]["id"] == got[1]["id"] == ids[0]  # two verdicts wanted: both get it
    assert got[2]["id"] == ids[1]  # the third does not: ids[0] already has two reviewers
    client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}, headers=bearer(tokens[0]))
    assert status_of(catalog, ids[0]) == "pending_review"  # one verdict of two
    client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "reject", "reasons": ["mismatch"]},
                headers=bearer(tokens[1]))
    assert status_of(catalog, ids[0]) == "rejected"  # a tie rejects
    r = client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}, headers=bearer(tokens[2]))
    assert r.status_code == 409  # enough verdicts already
    client.post("/api/undo", headers=bearer(tokens[1]))
    assert status_of(catalog, ids[0]) == "pending_review"
    rep = client.get("/api/agreement", headers=bearer(tokens[0])).json()  # an annotator: their own figures
    assert rep["clips_rated"] == 1 and {p["name"] for p in rep["annotators"]} == {"ann"}
    _, lead = make_annotator(catalog, "lea", role="lead")
    rep = client.get("/api/agreement", headers=bearer(lead)).json()  # a lead: everyone's
    assert {p["name"] for p in rep["annotators"]} == {"ann", "bob", "cyd", "lea"}


def test_peaks_follow_the_audio(make_client, catalog, data_root, clip_media):
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    r = client.get(f"/api/clips/{ids[0]}/peaks", params={"n": 200}, headers=bearer(token))
    peaks = r.json()["peaks"]
    assert len(peaks) == 200 and max(peaks) == pytest.approx(1.0) and min(peaks) >= 0
    assert min(peaks) < 0.8  # the kick decays between beats: the envelope is not flat
    assert client.get(f"/api/clips/{ids[0]}/peaks", params={"n": 0}, headers=bearer(token)).status_code == 422
    page = client.get("/agreement", headers=bearer(token))
    assert page.status_code == 200 and "Fleiss" in page.text


def test_progress_per_query(make_client, catalog, data_root):
    seed(catalog, data_root, 3, source_id="vidA", query="food commercial")
    seed(catalog, data_root, 2, source_id="vidB", query="city video guide")
    a, token = make_annotator(catalog, "ann")
    with catalog.session() as s:
        review.decide(s, a, "vidB-00000", "reject", ["static"])
    with catalog.session() as s:
        s.get(Clip, "vidA-00060").status = "failed"  # failed clips are neither done nor left
    prog = make_client().get("/api/progress", headers=bearer(token)).json()
    assert (prog["done"], prog["left"], prog["mine"]) == (1, 3, 1)
    assert prog["by_query"] == [{"query": "city video guide", "done": 1, "left": 1},
                                {"query": "food commercial", "done": 0, "left": 2}]


def test_per_query_progress_shows_this_servers_own_verdicts_at_once(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 2)
    _, token = make_annotator(catalog, "ann")
    client = make_client()
    assert client.get("/api/progress", headers=bearer(token)).json()["by_query"][0]["done"] == 0  # cached now
    client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}, headers=bearer(token))
    prog = client.get("/api/progress", headers=bearer(token)).json()
    assert (prog["done"], prog["by_query"][0]["done"], prog["by_query"][0]["left"]) == (1, 1, 1)
    client.post("/api/undo", headers=bearer(token))
    assert client.get("/api/progress", headers=bearer(token)).json()["by_query"][0]["done"] == 0


def test_every_route_but_login_refuses_a_request_without_a_token(make_client, catalog, data_root, clip_media):
    """Walk the app's own route table, so a route added later without the login check fails here."""
    ids = seed(catalog, data_root, 1, clip_media)
    client = make_client()
    open_routes = {"/login", "/logout"}
    checked = 0
    for route in api_routes(client.app.routes):
        if route.path in open_routes:
            continue
        path = re.sub(r"\{[^}]+\}", ids[0], route.path)
        for method in route.methods - {"HEAD", "OPTIONS"}:
            r = client.request(method, path, json={"clip_id": ids[0], "verdict": "accept"},
                               headers={"Authorization": "Bearer not-a-token"}, follow_redirects=False)
            assert r.status_code == 401, (method, route.path, r.status_code)
            checked += 1
    assert checked >= 8
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 0
        assert s.scalar(select(func.count()).select_from(Lease)) == 0
