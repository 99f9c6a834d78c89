"""Revision 0006 (decisions: spans, listened_s; leases: handed_at) upgrades a 0005 catalog in place, keeping
its verdicts and leases, and a lease from before it gets a hand-out time when next renewed."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

import dvmset.catalog as catalog_mod
from dvmset import review
from dvmset.catalog import Catalog, upgrade_schema
from dvmset.spans import excluded_spans
from dvmset.tables import Lease


def test_a_0005_catalog_upgrades_to_0006_keeping_its_rows(data_root):
    engine = create_engine(data_root.catalog_url)
    with engine.begin() as conn:
        command.upgrade(catalog_mod._alembic(conn), "0005")
        conn.execute(text("INSERT INTO sources (id, url, status, created_at, updated_at) "
                          "VALUES ('v1', 'https://x.invalid/v', 'done', '2026-01-01', '2026-01-01')"))
        for i in range(2):
            conn.execute(text("INSERT INTO clips (id, source_id, start_s, duration_s, status, created_at, updated_at) "
                              f"VALUES ('v1-0000{i}', 'v1', {i}, 60, 'pending_review', '2026-01-01', '2026-01-01')"))
        conn.execute(text("INSERT INTO annotators (id, name, token_hash, created_at) VALUES (1, 'a', 'h', '2026-01-01')"))
        conn.execute(text("INSERT INTO decisions (clip_id, annotator_id, verdict, reasons, created_at) "
                          "VALUES ('v1-00000', 1, 'accept', '[]', '2026-01-01')"))
        conn.execute(text("INSERT INTO leases (clip_id, annotator_id, expires_at, skipped) "
                          "VALUES ('v1-00001', 1, '2999-01-01', 0)"))
    engine.dispose()
    assert upgrade_schema(data_root.catalog_url)[0] == "0005"  # to the head: 0006 and whatever follows it
    cat = Catalog(data_root.catalog_url)
    with cat.session() as s:
        assert excluded_spans(s) == {}  # an old accept keeps the whole clip
        row = s.execute(text("SELECT verdict, spans, listened_s FROM decisions")).one()
        assert tuple(row) == ("accept", None, None)
        assert s.get(Lease, ("v1-00001", 1)).handed_at is None
        assert review.claim_next(s, 1, review.QueuePolicy()) == "v1-00001"  # renewed: now it has one
        assert s.get(Lease, ("v1-00001", 1)).handed_at is not None
    cat.dispose()
    engine = create_engine(data_root.catalog_url)
    with engine.begin() as conn:
        command.downgrade(catalog_mod._alembic(conn), "0005")
        dec = {r[1] for r in conn.execute(text("PRAGMA table_info(decisions)"))}
        lea = {r[1] for r in conn.execute(text("PRAGMA table_info(leases)"))}
        n = conn.execute(text("SELECT count(*) FROM decisions")).scalar()
    engine.dispose()
    assert not dec & {"spans", "listened_s"} and "handed_at" not in lea and n == 1
