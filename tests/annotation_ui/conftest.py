"""Fixtures for the review tool: real clip files and a TestClient over a fresh app."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from annotation_ui.app import create_app
from dvmset.catalog import Catalog
from dvmset.review import QueuePolicy


@pytest.fixture(scope="session")
def clip_media(media_factory) -> Path:
    return media_factory("review", duration_s=8.0, size="160x120", fps=25, cut_every_s=2.0)


@pytest.fixture
def make_client(data_root, catalog):
    """make_client(overlap=1) -> TestClient over a fresh app on the test's catalog."""

    def make(overlap: int = 1, **kw) -> TestClient:
        return TestClient(create_app(data_root, catalog, QueuePolicy(overlap=overlap, **kw)))

    return make


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a Unix socket (no TCP); skips where Postgres or psycopg is absent."""
    pytest.importorskip("psycopg")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not on PATH")
    base = Path(tempfile.mkdtemp(prefix="vidmusician-pg-"))  # outside pytest's root-only tmp tree
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server")
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        if shutil.which("runuser") is None:
            pytest.skip("running as root and no runuser to start the server as 'postgres'")
        prefix = ["runuser", "-u", "postgres", "--"]
    made = subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"initdb failed: {made.stderr[-300:]}")
    opts = f"-k {sock} -c listen_addresses='' -c fsync=off -c max_connections=60"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", opts, "-w", "-t", "60", "-l", str(base / "log"),
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/{{db}}?host={sock}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def any_catalog(request, data_root):
    """The test's catalog on SQLite (the data root's file) and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        cat = Catalog(data_root.catalog_url)
    else:
        import psycopg

        template = request.getfixturevalue("postgres_server")
        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(template.replace("postgresql+psycopg", "postgresql").format(db="postgres"),
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        cat = Catalog(template.format(db=name))
    yield cat
    cat.dispose()
