"""`db current` and `db stamp` on a catalog a newer vidmusician made, or one already versioned: advice that
fits (never `db upgrade` for a newer one), a one-line error and nothing changed (no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from dvmset.catalog import Catalog, head_revision


def _set_version(url: str, rev: str | None = None) -> str:
    engine = create_engine(url)
    with engine.begin() as conn:
        if rev is not None:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": rev})
        got = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    return got


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


def test_db_commands_on_a_newer_catalog_say_what_to_do_and_change_nothing(data_root):
    Catalog(data_root.catalog_url).dispose()
    root = ["--root", str(data_root.path)]
    _set_version(data_root.catalog_url, "f00d")

    out = _cli("db", "current", *root)
    assert out.returncode == 0, out.stderr
    assert "schema f00d" in out.stdout and "made by a newer vidmusician: upgrade vidmusician" in out.stdout
    assert "run `vidmusician db upgrade`" not in out.stdout

    for rev in ("0001", head_revision()):
        out = _cli("db", "stamp", rev, *root)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1 and "newer vidmusician" in out.stderr and "nothing was changed" in out.stderr
        assert _set_version(data_root.catalog_url) == "f00d"

    _set_version(data_root.catalog_url, head_revision())  # a versioned catalog is not re-stamped either
    out = _cli("db", "stamp", "0001", *root)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"already records schema {head_revision()}" in out.stderr and "db upgrade" in out.stderr
    assert _set_version(data_root.catalog_url) == head_revision()
