"""`vidmusician annotators add/list` and `decisions export` through the real CLI."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from review_helpers import seed

from annotation_ui.app import create_app
from dvmset.catalog import Catalog
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
    client.get(f"/login?token={token}")  # the printed link signs in
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


def test_export_refuses_unknown_format(data_root):
    with pytest.raises(SystemExit):
        main(["decisions", "export", "--root", str(data_root.path), "--format", "xlsx", "--out", "x"])


def test_review_command_defaults_to_localhost():
    args = build_parser().parse_args(["review", "--overlap", "3"])
    assert (args.host, args.port, args.overlap) == ("127.0.0.1", 8000, 3)
