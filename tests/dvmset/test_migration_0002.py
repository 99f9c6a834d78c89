"""Revision 0002 (clips: still_s, true_peak_dbtp, clip_gain_db, limiting_db) upgrades a baseline catalog in place."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

import dvmset.catalog as catalog_mod
from dvmset.catalog import upgrade_schema

NEW_COLUMNS = ("still_s", "true_peak_dbtp", "clip_gain_db", "limiting_db")


def test_a_baseline_catalog_upgrades_to_0002_keeping_its_rows(data_root):
    engine = create_engine(data_root.catalog_url)
    with engine.begin() as conn:
        command.upgrade(catalog_mod._alembic(conn), "0001")
        conn.execute(text("INSERT INTO sources (id, url, status, created_at, updated_at) "
                          "VALUES ('v1', 'https://x.invalid/v', 'done', '2026-01-01', '2026-01-01')"))
        conn.execute(text("INSERT INTO clips (id, source_id, start_s, duration_s, status, static_ratio, "
                          "created_at, updated_at) VALUES ('v1-00000', 'v1', 0, 60, 'pending_review', 0.5, "
                          "'2026-01-01', '2026-01-01')"))
    engine.dispose()
    before, after = upgrade_schema(data_root.catalog_url, "0002")
    assert (before, after) == ("0001", "0002")
    engine = create_engine(data_root.catalog_url)
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT static_ratio, {', '.join(NEW_COLUMNS)} FROM clips")).one()
    assert tuple(row) == (0.5, None, None, None, None)  # the old hint kept, the new ones empty until re-curated
    with engine.begin() as conn:
        command.downgrade(catalog_mod._alembic(conn), "0001")
        cols = {r[1] for r in conn.execute(text("PRAGMA table_info(clips)"))}
    engine.dispose()
    assert not cols & set(NEW_COLUMNS) and "static_ratio" in cols
