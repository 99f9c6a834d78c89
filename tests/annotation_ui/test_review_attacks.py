"""The review server attacked through uvicorn on loopback (issue 22): a taken-down clip stays down,
cross-origin writes are refused, ranges follow RFC 9110, the token is checked before the body is read and
bodies are capped, people get HTML pages, and a catalog outage is a 503 with Retry-After."""

from __future__ import annotations

import dataclasses
import socket
import time

import httpx
import pytest
from review_helpers import LiveServer, make_annotator, outage, seed
from sqlalchemy import func, select

from annotation_ui.app import create_app
from dvmset import review
from dvmset.sources import record_clip
from dvmset.tables import Clip, ClipTakenDown, Decision
from flows.cli import main


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def status_of(catalog, clip_id: str) -> str:  # noqa: ANN001
    with catalog.session() as s:
        return s.get(Clip, clip_id).status


@dataclasses.dataclass
class _Qc:
    silence_ratio: float = 0.0


def test_a_taken_down_clip_never_leaves_taken_down(data_root, catalog, clip_media, monkeypatch, capsys):
    """Issue 22 item 1: accept, take down, undo -> still taken_down, never handed out, not decidable; an
    overlap change and a re-curate leave it down too."""
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    ids = seed(catalog, data_root, 2, clip_media)
    _, token = make_annotator(catalog, "ann")
    with LiveServer(create_app(data_root, catalog)) as base, httpx.Client(base_url=base, headers=bearer(token)) as c:
        assert c.get("/api/next").json()["clip"]["id"] == ids[0]
        assert c.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}).status_code == 201
        assert main(["takedown", "--root", str(data_root.path), "--clip", ids[0], "--reason", "x"]) == 0
        capsys.readouterr()
        r = c.post("/api/undo")
        assert r.status_code == 200 and r.json()["clip_status"] == "taken_down"
        assert status_of(catalog, ids[0]) == "taken_down"
        assert c.get("/api/next").json()["clip"]["id"] == ids[1]  # never handed out again
        r = c.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"})
        assert r.status_code == 409 and "taken_down" in r.json()["detail"]
        assert c.post("/api/undo").status_code == 409  # the voided verdict is gone; nothing else to undo
    with catalog.session() as s:
        for overlap in (2, 1):
            review.set_policy(s, overlap=overlap)
    assert record_clip(catalog, ids[0], "vid1", 0.0, 60.0, path=f"clips/{ids[0]}.mp4", report=_Qc()) == "taken_down"
    assert status_of(catalog, ids[0]) == "taken_down"
    with catalog.session() as s:  # the undo row is there: the verdict was voided, not lost
        assert [d.verdict for d in s.scalars(select(Decision).order_by(Decision.id))] == ["accept", "undo"]
    with pytest.raises(ClipTakenDown, match="it stays taken_down"), catalog.session() as s:
        s.get(Clip, ids[0]).status = "accepted"  # what a writer setting it directly (a rebuild) would do
    assert status_of(catalog, ids[0]) == "taken_down"


def test_cross_origin_writes_are_refused(data_root, catalog, clip_media):
    """Item 3: Origin / Sec-Fetch-Site on every state-changing request; another port of the same host is
    another origin. Non-browser clients (no Origin, no Sec-Fetch-Site) keep working."""
    ids = seed(catalog, data_root, 2, clip_media)
    _, token = make_annotator(catalog, "ann")
    with LiveServer(create_app(data_root, catalog)) as base, httpx.Client(base_url=base) as c:
        c.cookies.set("vm_token", token)
        assert c.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}).status_code == 201
        port = int(base.rsplit(":", 1)[1])
        other = f"http://127.0.0.1:{port + 1}"
        for headers in ({"Origin": other}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                        {"Sec-Fetch-Site": "cross-site", "Origin": base}, {"Origin": base.replace("http:", "https:")}):
            for path in ("/api/undo", "/logout", "/api/skip", "/login"):
                r = c.post(path, headers=headers, data={"token": token}, follow_redirects=False)
                assert r.status_code == 403 and "cross-origin" in r.json()["detail"], (path, headers, r.text)
        assert status_of(catalog, ids[0]) == "accepted"  # no undo got through
        assert c.post("/api/undo", headers={"Origin": base}).status_code == 200  # our own page's origin
        assert c.post("/api/skip", headers={"Sec-Fetch-Site": "same-origin"}, json={"clip_id": ids[1]}).status_code == 200
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 2  # the accept and one undo


def test_ranges_follow_rfc_9110_and_head_is_served(data_root, catalog, clip_media):
    """Item 5: absurd or malformed ranges are 416 (not a 500), unit names are case-insensitive, unknown
    units are ignored (the whole file), HEAD answers the headers GET would."""
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    size = clip_media.stat().st_size
    with LiveServer(create_app(data_root, catalog)) as base, httpx.Client(base_url=base, headers=bearer(token)) as c:
        url = f"/media/{ids[0]}"
        for bad in ("bytes=" + "1" * 4400 + "-", "bytes=0-" + "9" * 4400, "bytes=abc", "bytes=5-1", "bytes=-0",
                    f"bytes={size}-", "bytes", "=0-1"):
            r = c.get(url, headers={"Range": bad})
            assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}", (bad[:20], r.status_code)
        r = c.get(url, headers={"Range": "BYTES=0-9"})
        assert r.status_code == 206 and r.content == clip_media.read_bytes()[:10]
        r = c.get(url, headers={"Range": "items=0-9"})
        assert r.status_code == 200 and r.content == clip_media.read_bytes()
        r = c.head(url)
        assert (r.status_code, r.headers["content-length"], r.content) == (200, str(size), b"")
        r = c.head(url, headers={"Range": "bytes=-100"})
        assert r.status_code == 206 and r.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
        assert r.content == b""


def _raw_post(base: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, float]:
    """POST with exactly these headers over a socket; (status, seconds to the answer)."""
    host, port = base.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode() + body)
        head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1]), time.monotonic() - t0


def test_token_is_checked_before_the_body_and_bodies_are_capped(data_root, catalog, clip_media):
    """Item 6: a 200 MB Content-Length without a token is refused before one body byte is sent; with a
    token, a body over the route's cap is 413, announced or streamed."""
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    with LiveServer(create_app(data_root, catalog)) as base:
        big = {"Content-Type": "application/json", "Content-Length": str(200 * 1024 * 1024)}
        status, took = _raw_post(base, "/api/decisions", big)  # no body sent: an answer means it was not awaited
        assert status == 401 and took < 5
        status, _ = _raw_post(base, "/api/decisions", {**big, "Authorization": "Bearer nope"})
        assert status == 401
        status, took = _raw_post(base, "/api/decisions", {**big, **bearer(token)})
        assert status == 413 and took < 5
        status, _ = _raw_post(base, "/api/undo", {"Content-Length": "5000", **bearer(token)})
        assert status == 413
        with httpx.Client(base_url=base, headers=bearer(token)) as c:
            note = "x" * 5 * 1024 * 1024  # the 5 MB note of the report, sent chunked (no Content-Length)
            r = c.post("/api/decisions", content=iter([b'{"clip_id": "', ids[0].encode(), b'", "note": "',
                                                       note.encode(), b'"}']),
                       headers={"Content-Type": "application/json"})
            assert r.status_code == 413
            r = c.post("/api/decisions", json={"clip_id": ids[0], "verdict": "reject", "reasons": ["other"],
                                               "note": "ü" * review.MAX_NOTE_CHARS})  # the largest real note fits
            assert r.status_code == 201, r.text
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 1


def test_people_get_html_pages_machines_get_json(data_root, catalog):
    """Item 15: a too-long login link and an unknown path answer a browser with a page, the API with JSON."""
    with LiveServer(create_app(data_root, catalog)) as base, httpx.Client(base_url=base) as c:
        for url, status in ((f"/login?token={'a' * 300}", 401), ("/no/such/page", 404), ("/login?token=x&token=", 401)):
            r = c.get(url, headers={"Accept": "text/html"})
            assert r.status_code == status and r.headers["content-type"].startswith("text/html"), (url, r.text[:200])
            assert "<h1>" in r.text and '"detail"' not in r.text
        r = c.get("/api/no-such-route")
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"


@pytest.mark.slow
def test_a_catalog_outage_is_a_503_with_retry_after(data_root, postgres_catalog, clip_media):
    """Item 23 (server side): the catalog's database refuses connections -> every route answers 503 with
    Retry-After (JSON for the API, a page for people), not a plain-text 500; afterwards all is as before."""
    from sqlalchemy import text

    catalog = postgres_catalog
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    with LiveServer(create_app(data_root, catalog)) as base, httpx.Client(base_url=base, headers=bearer(token)) as c:
        assert c.get("/api/next").status_code == 200
        with outage(catalog):
            for method, url in (("POST", "/api/decisions"), ("GET", "/api/next"), ("POST", "/api/undo")):
                r = c.request(method, url, json={"clip_id": ids[0], "verdict": "accept"})
                assert r.status_code == 503 and r.headers["retry-after"] == "5", (url, r.status_code, r.text[:200])
                assert "catalog is not answering" in r.json()["detail"]
            r = c.get("/", headers={"Accept": "text/html"})
            assert r.status_code == 503 and "text/html" in r.headers["content-type"] and "Try again shortly" in r.text
        assert c.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}).status_code == 201
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 1
        assert s.execute(text("select 1")).scalar() == 1
