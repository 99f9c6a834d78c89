"""The catalog's schema is versioned (Alembic): new catalogs start at the head, the migrations build
exactly the tables the code uses, older or foreign schemas are refused with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from dvmset.catalog import Catalog, CatalogSchemaError, head_revision
from dvmset.tables import Base, Source
from flows.cli import main


def _version(url: str) -> str | None:
    engine = create_engine(url)
    with engine.connect() as conn:
        v = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return v


def test_a_new_catalog_is_at_the_head_and_the_migrations_build_the_models_tables(any_catalog):
    """A change to dvmset/tables.py without a migration fails here (on SQLite and on Postgres)."""
    assert _version(any_catalog.url) == head_revision()
    with any_catalog.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    Catalog(any_catalog.url).dispose()  # opening it again changes nothing
    assert _version(any_catalog.url) == head_revision()


def test_a_catalog_made_before_migrations_is_adopted_when_its_tables_match(data_root):
    engine = create_engine(data_root.catalog_url)
    Base.metadata.create_all(engine)  # how earlier builds made catalogs: no version table
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sources (id, url, status, created_at, updated_at) "
                          "VALUES ('v1', 'https://x.invalid/v', 'done', '2026-01-01', '2026-01-01')"))
    engine.dispose()
    cat = Catalog(data_root.catalog_url)
    assert _version(cat.url) == head_revision()
    with cat.session() as s:
        assert s.get(Source, "v1").status == "done"  # nothing lost
    cat.dispose()


def test_a_catalog_that_differs_or_is_newer_is_refused_with_what_to_do(data_root, capsys, monkeypatch):
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    root = ["--root", str(data_root.path)]
    engine = create_engine(data_root.catalog_url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:  # an older build's catalog: one column fewer, no version table
        conn.execute(text("ALTER TABLE clips DROP COLUMN loudness_range_lu"))
    with pytest.raises(CatalogSchemaError, match="predates schema versions.*loudness_range_lu.*db stamp"):
        Catalog(data_root.catalog_url)
    assert main(["status", *root]) == 2  # every command says so, none alters it
    assert "db stamp" in capsys.readouterr().err
    assert main(["db", "upgrade", *root]) == 2
    assert _version(data_root.catalog_url) is None

    with engine.begin() as conn:  # the user adds the column by hand: now it can be adopted
        conn.execute(text("ALTER TABLE clips ADD COLUMN loudness_range_lu FLOAT"))
    assert main(["db", "upgrade", *root]) == 0
    assert f"-> {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", *root]) == 0
    assert "up to date" in capsys.readouterr().out

    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    with pytest.raises(CatalogSchemaError, match="f00d.*newer vidmusician"):
        Catalog(data_root.catalog_url)


def test_db_upgrade_creates_a_new_catalog(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    assert main(["db", "upgrade", "--root", str(tmp_path / "fresh")]) == 0
    assert f"(new) -> {head_revision()}" in capsys.readouterr().out


NEXT_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "next"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("clips", sa.Column("reviewed_by_model", sa.Float(), nullable=True))


def downgrade():
    op.drop_column("clips", "reviewed_by_model")
'''


def test_an_older_catalog_is_refused_until_db_upgrade_migrates_it_keeping_its_rows(
        data_root, tmp_path, capsys, monkeypatch):
    """The path every future schema change takes: a catalog at today's head, a build with one more revision."""
    import shutil

    import dvmset.catalog as catalog_mod

    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    head = head_revision()
    cat = Catalog(data_root.catalog_url)  # at today's head, with a row in it
    with cat.session() as s:
        s.add(Source(id="v1", url="https://x.invalid/v", status="done"))
    cat.dispose()

    scripts = tmp_path / "migrations"  # the next build's migrations: ours plus one more revision
    shutil.copytree(Path(catalog_mod.__file__).parent / "migrations", scripts,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_next.py").write_text(NEXT_REVISION.format(head=head))
    real = catalog_mod._alembic

    def next_build(conn=None):
        cfg = real(conn)
        cfg.set_main_option("script_location", str(scripts))
        return cfg

    monkeypatch.setattr(catalog_mod, "_alembic", next_build)
    assert head_revision() == "next"
    with pytest.raises(CatalogSchemaError, match=f"schema {head}; this version uses next.*db upgrade"):
        Catalog(data_root.catalog_url)
    assert main(["db", "current", "--root", str(data_root.path)]) == 0
    assert f"schema {head}; this version uses next (run `vidmusician db upgrade`)" in capsys.readouterr().out
    assert main(["db", "upgrade", "--root", str(data_root.path)]) == 0
    assert f"{head} -> next" in capsys.readouterr().out
    cat = Catalog(data_root.catalog_url)  # opens now
    with cat.session() as s:
        assert s.get(Source, "v1").status == "done"
        assert s.execute(text("SELECT reviewed_by_model FROM clips")).all() == []  # the new column exists
    cat.dispose()


_OPEN_NEW = """
import sys
from dvmset.catalog import Catalog
Catalog(sys.argv[1]).dispose()
"""


def test_processes_opening_a_new_catalog_together_all_get_it(tmp_path):
    """Four processes open the same not-yet-existing catalog at once: one creates it, all use it."""
    import subprocess
    import sys

    for trial in range(3):
        url = f"sqlite:///{tmp_path}/new-{trial}.sqlite"
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_NEW, url], stderr=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).resolve().parents[2]) for _ in range(4)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        assert _version(url) == head_revision()


def test_stamp_and_current_refuse_what_is_not_there(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    missing = tmp_path / "typo"
    assert main(["db", "current", "--root", str(missing)]) == 1
    assert "no catalog at" in capsys.readouterr().out and not missing.exists()  # a read creates nothing
    assert main(["db", "stamp", "0001", "--root", str(tmp_path / "empty")]) == 2
    assert "no catalog there to stamp" in capsys.readouterr().err
    assert main(["db", "stamp", "9999", "--root", str(tmp_path / "empty")]) == 2
    assert "no schema revision '9999'" in capsys.readouterr().err
