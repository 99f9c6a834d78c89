"""Site pauses in the catalog (SQLite and Postgres): a block pauses a site for every worker, blocks in a
row back off, a block met during a pause is the same episode, a download that gets through ends the
streak; the status line; revision 0008."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

import dvmset.catalog as catalog_mod
from dvmset import site_blocks
from dvmset.catalog import Catalog, upgrade_schema
from dvmset.site_blocks import Pause, PausePolicy, active_pauses, got_through, ordinal, paused, record_block
from dvmset.status import site_pause_lines

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
POLICY = PausePolicy(first_s=600, factor=2, max_s=3600)


def at(seconds: float):
    return lambda: T0 + dt.timedelta(seconds=seconds)


def test_the_cool_down_backs_off_and_is_capped_and_honours_retry_after():
    assert [POLICY.cool_down_s(n) for n in (1, 2, 3, 4, 9)] == [600, 1200, 2400, 3600, 3600]
    assert POLICY.cool_down_s(1, retry_after_s=1800) == 1800  # the site asked for longer
    assert POLICY.cool_down_s(3, retry_after_s=5) == 2400
    for bad in ({"first_s": 0}, {"factor": 0.5}, {"first_s": 100, "max_s": 50}, {"first_s": float("nan")}):
        with pytest.raises(ValueError):
            PausePolicy(**bad)


def test_blocks_in_a_row_back_off_and_every_worker_sees_the_pause(any_catalog):
    first = record_block(any_catalog, "youtube", "bot check", "Sign in", policy=POLICY, clock=at(0))
    assert (first.times, first.until) == (1, T0 + dt.timedelta(seconds=600))
    other_worker = Catalog(any_catalog.url)  # another process's engine on the same catalog
    try:
        assert paused(other_worker, "youtube", clock=at(599)) == first
        assert paused(other_worker, "youtube", clock=at(600)) is None  # over
        assert paused(other_worker, "vimeo", clock=at(1)) is None  # per site
    finally:
        other_worker.dispose()
    # a second worker, mid-download when the first block came, reports it again: the same episode
    again = record_block(any_catalog, "youtube", "HTTP 429", policy=POLICY, clock=at(30))
    assert (again.times, again.until, again.kind) == (1, first.until, "bot check")
    second = record_block(any_catalog, "youtube", "HTTP 429", "429", policy=POLICY, clock=at(700))
    third = record_block(any_catalog, "youtube", "bot check", policy=POLICY, clock=at(700 + 1300))
    assert (second.times, second.until - T0) == (2, dt.timedelta(seconds=700 + 1200))
    assert (third.times, third.until - T0) == (3, dt.timedelta(seconds=2000 + 2400))
    assert active_pauses(any_catalog, clock=at(2001)) == [third]


def test_a_download_that_gets_through_ends_the_streak_but_not_a_running_pause(any_catalog):
    record_block(any_catalog, "youtube", "bot check", policy=POLICY, clock=at(0))
    record_block(any_catalog, "youtube", "bot check", policy=POLICY, clock=at(601))
    got_through(any_catalog, "youtube", clock=at(700))  # during the pause (a file found on disk): kept
    assert paused(any_catalog, "youtube", clock=at(700)).times == 2
    got_through(any_catalog, "youtube", clock=at(601 + 1200))
    fresh = record_block(any_catalog, "youtube", "bot check", policy=POLICY, clock=at(5000))
    assert fresh.times == 1 and fresh.until == T0 + dt.timedelta(seconds=5600)


def test_racing_first_blocks_of_a_site_make_one_pause(any_catalog):
    out: list[Pause] = []
    errors: list[BaseException] = []

    def block() -> None:
        try:
            out.append(record_block(any_catalog, "example.org", "HTTP 429", policy=POLICY, clock=at(0)))
        except BaseException as err:  # noqa: BLE001 - collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=block) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(out) == 4
    assert {(p.times, p.until) for p in out} == {(1, T0 + dt.timedelta(seconds=600))}


def test_the_status_line_names_site_time_reason_and_count(catalog):
    p = Pause("youtube", "bot check", 3, dt.datetime(2026, 12, 1, 14, 20, tzinfo=dt.UTC))
    assert p.describe(now=T0) == "youtube paused until 14:20 UTC (bot check, 3rd time)"
    assert p.describe(now=T0 + dt.timedelta(days=1)) == "youtube paused until 2026-12-01 14:20 UTC (bot check, 3rd time)"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]
    assert site_pause_lines(catalog) == []
    now = site_blocks.utcnow()
    for ago in (7200, 3600, 0):  # three blocks in a row, each after the last pause ended
        last = record_block(catalog, "youtube", "bot check", policy=POLICY,
                            clock=lambda ago=ago: now - dt.timedelta(seconds=ago))
    assert site_pause_lines(catalog) == [last.describe()]
    assert last.describe().startswith("youtube paused until ") and last.describe().endswith("(bot check, 3rd time)")
    assert last.until - now == dt.timedelta(seconds=2400)


def test_revision_0008_adds_the_site_blocks_table(data_root):
    engine = create_engine(data_root.catalog_url)
    with engine.begin() as conn:
        command.upgrade(catalog_mod._alembic(conn), "0005")
    engine.dispose()
    assert upgrade_schema(data_root.catalog_url, "0008") == ("0005", "0008")
    engine = create_engine(data_root.catalog_url)
    assert {c["name"] for c in inspect(engine).get_columns("site_blocks")} == \
        {"site", "kind", "times", "paused_until", "message", "updated_at"}
    with engine.begin() as conn:
        command.downgrade(catalog_mod._alembic(conn), "0005")
    assert "site_blocks" not in inspect(engine).get_table_names()
    engine.dispose()
