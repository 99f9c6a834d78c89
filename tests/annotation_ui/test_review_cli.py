"""`vidmusician annotators add/list` and `decisions export` through the real CLI."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from review_helpers import seed
from sqlalchemy import func, select

from annotation_ui.app import create_app
from dvmset import adjudication, gold, review
from dvmset.catalog import Catalog
from dvmset.review import add_annotator
from flows.cli import build_parser, main


def test_annotators_and_export(data_root, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    root = str(data_root.path)
    assert main(["annotators", "add", "ann", "--root", root, "--url", "http://127.0.0.1:9999"]) == 0
    out = capsys.readouterr().out
    link = re.search(r"login link: (\S+)", out).group(1)
    assert link.startswith("http://127.0.0.1:9999/login?token=")
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert main(["annotators", "add", "ann", "--root", root]) == 2  # names are unique
    capsys.readouterr()

    catalog = Catalog(data_root.catalog_url)
    ids = seed(catalog, data_root, 2, title='say "hi", then, go')
    client = TestClient(create_app(data_root, catalog))
    assert "Sign in as <bdi>ann</bdi>" in client.get(link.removeprefix("http://127.0.0.1:9999")).text
    client.post("/login", data={"token": token})  # the printed link's button signs in
    assert client.post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"}).status_code == 201
    client.post("/api/decisions", json={"clip_id": ids[1], "verdict": "reject", "reasons": ["noise", "other"],
                                        "note": 'hum, "buzz"'})
    client.post("/api/undo")
    catalog.dispose()

    assert main(["annotators", "list", "--root", root]) == 0
    assert re.search(r"^ann\t1 decisions\t1 undone$", capsys.readouterr().out, re.M)
    for fmt in ("csv", "parquet"):
        out_path = tmp_path / f"decisions.{fmt}"
        assert main(["decisions", "export", "--root", root, "--format", fmt, "--out", str(out_path)]) == 0
        df = pd.read_csv(out_path) if fmt == "csv" else pd.read_parquet(out_path)
        assert list(df["verdict"]) == ["accept", "reject", "undo"]
        assert list(df["live"]) == [True, False, False]
        assert df["note"].iloc[1] == 'hum, "buzz"' and df["reasons"].iloc[1] == "noise;other"
        assert int(df["voids"].iloc[2]) == int(df["id"].iloc[1])
        assert set(df["annotator"]) == {"ann"}


def test_export_has_gold_answers_and_adjudications(data_root, tmp_path, capsys, monkeypatch):
    """A gold answer carries the lead's gold verdict and goes out of force when undone; of two adjudications
    of one clip only the latest is in force; ordinary decisions are unchanged."""
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    catalog = Catalog(data_root.catalog_url)
    ids = seed(catalog, data_root, 3)
    now = dt.datetime.now(dt.UTC)
    with catalog.session() as s:
        ann, _ = add_annotator(s, "ann")
        bob, _ = add_annotator(s, "bob")
        lead, _ = add_annotator(s, "lea", "lead")
        gold.add_gold(s, ids[0], "reject", ["noise"], lead_id=lead.id)
        gold.answer(s, ann.id, ids[0], "accept", [], 7.0, now)
        gold.answer(s, bob.id, ids[0], "reject", ["noise"], 9.0, now).undone_at = now
        review.decide(s, ann.id, ids[1], "accept", policy=review.QueuePolicy(overlap=2))
        review.decide(s, bob.id, ids[1], "reject", ["mismatch"], policy=review.QueuePolicy(overlap=2))
        adjudication.adjudicate(s, lead.id, ids[1], "accept", note="music fits")
        adjudication.adjudicate(s, lead.id, ids[1], "reject", ["noise"], note="hum at 40 s")
    catalog.dispose()
    out = tmp_path / "d.parquet"
    assert main(["decisions", "export", "--root", str(data_root.path), "--format", "parquet", "--out", str(out)]) == 0
    assert "2 decisions, 2 gold answers, 2 adjudications" in capsys.readouterr().out
    df = pd.read_parquet(out)
    rows = {k: g.reset_index(drop=True) for k, g in df.groupby("kind")}
    assert list(rows["decision"]["verdict"]) == ["accept", "reject"] and rows["decision"]["live"].all()
    g = rows["gold_answer"]
    assert list(zip(g["annotator"], g["verdict"], g["gold_verdict"], g["live"], strict=True)) == [
        ("ann", "accept", "reject", True), ("bob", "reject", "reject", False)]
    assert set(g["clip_id"]) == {ids[0]} and list(g["seconds_spent"]) == [7.0, 9.0]
    a = rows["adjudication"]
    assert list(zip(a["annotator"], a["verdict"], a["note"], a["live"], strict=True)) == [
        ("lea", "accept", "music fits", False), ("lea", "reject", "hum at 40 s", True)]
    assert a["reasons"].iloc[1] == "noise" and set(a["clip_id"]) == {ids[1]}


def test_export_refuses_unknown_format(data_root):
    with pytest.raises(SystemExit):
        main(["decisions", "export", "--root", str(data_root.path), "--format", "xlsx", "--out", "x"])


def test_review_command_defaults_to_localhost():
    args = build_parser().parse_args(["review", "--overlap", "3"])
    assert (args.host, args.port, args.overlap) == ("127.0.0.1", 8000, 3)


@pytest.mark.parametrize(("trusted", "secure"), [("127.0.0.1", True), ("10.9.9.9", False)])
def test_sign_in_cookie_is_secure_behind_a_trusted_https_proxy(data_root, monkeypatch, trusted, secure, clip_media):
    """The real `vidmusician review` server (uvicorn): X-Forwarded-Proto counts only from a trusted proxy;
    a clip curated before peaks were stored gets its peaks file from the command's own decoder."""
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    catalog = Catalog(data_root.catalog_url)
    ids = seed(catalog, data_root, 1, clip_media)
    with catalog.session() as s:
        _, token = add_annotator(s, "ann")
    catalog.dispose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "review", "--root", str(data_root.path), "--port",
                             str(port), "--forwarded-allow-ips", trusted], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/login", data={"token": token},
                               headers={"X-Forwarded-Proto": "https"}, timeout=30)
                break
            except (httpx.ConnectError, httpx.ReadTimeout):  # not listening yet, or a loaded machine
                assert proc.poll() is None and time.monotonic() < deadline, "the review server did not start"
                time.sleep(0.2)
        cookie = r.headers["set-cookie"].lower()
        assert r.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie
        assert ("secure" in cookie.split("; ")) is secure
        r = httpx.get(f"http://127.0.0.1:{port}/api/clips/{ids[0]}/peaks", params={"n": 100},
                      headers={"Authorization": f"Bearer {token}"}, timeout=120)
        assert r.status_code == 200 and len(r.json()["peaks"]) == 100
        assert data_root.peaks_path(ids[0]).is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_new_link_replaces_the_old_and_revoke_signs_out_for_good(data_root, capsys, monkeypatch):
    from dvmset.tables import Decision, Lease

    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    root = ["--root", str(data_root.path)]

    def token_from(out: str) -> str:
        return parse_qs(urlsplit(re.search(r"login link: (\S+)", out).group(1)).query)["token"][0]

    assert main(["annotators", "add", "ann", *root]) == 0
    old = token_from(capsys.readouterr().out)
    catalog = Catalog(data_root.catalog_url)
    ids = seed(catalog, data_root, 3)
    app = create_app(data_root, catalog)
    h_old = {"Authorization": f"Bearer {old}"}
    assert TestClient(app).post("/api/decisions", json={"clip_id": ids[0], "verdict": "accept"},
                                headers=h_old).status_code == 201

    assert main(["annotators", "link", "ann", *root]) == 0
    new = token_from(capsys.readouterr().out)
    assert new != old
    assert TestClient(app).get("/api/next", headers=h_old).status_code == 401  # the old link is dead
    h_new = {"Authorization": f"Bearer {new}"}
    held = TestClient(app).get("/api/next", headers=h_new).json()["clip"]["id"]  # leased to ann now

    assert main(["annotators", "revoke", "ann", *root]) == 0
    assert "1 reserved clip(s) back in the queue" in capsys.readouterr().out
    assert TestClient(app).get("/api/next", headers=h_new).status_code == 401
    assert TestClient(app).get(f"/login?token={new}").status_code == 401
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Lease)) == 0  # `held` is free for others
        assert s.scalars(select(Decision.clip_id)).all() == [ids[0]]  # the verdict stays
    assert held in ids[1:]
    assert main(["annotators", "list", *root]) == 0
    assert re.search(r"^ann\t1 decisions\t0 undone\trevoked$", capsys.readouterr().out, re.M)

    assert main(["annotators", "link", "ann", *root]) == 0  # signs them in again
    assert TestClient(app).get("/api/next", headers={"Authorization": f"Bearer {token_from(capsys.readouterr().out)}"}
                               ).status_code == 200
    for action in ("link", "revoke"):
        assert main(["annotators", action, "nobody", *root]) == 2
        assert "no annotator named 'nobody'" in capsys.readouterr().err
    catalog.dispose()
