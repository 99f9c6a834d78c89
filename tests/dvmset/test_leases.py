"""Leases straight on the database, SQLite and Postgres: one holder per key, takeover after expiry, finish
only by the owner, a key whose workers keep dying given up as a failed row; revision 0004."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import threading
import time

import pytest
from alembic import command
from sqlalchemy import create_engine, text

import dvmset.catalog as catalog_mod
from dvmset import leases
from dvmset.catalog import Catalog, upgrade_schema
from dvmset.leases import CLIPS, SOURCES, LeaseLost, LeasePolicy
from dvmset.records import ClipStatus, SourceStatus
from dvmset.sources import record_clip, upsert_source
from dvmset.tables import Clip, Source

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
POLICY = LeasePolicy(ttl_s=60, max_attempts=3)


def at(seconds: float):
    return lambda: T0 + dt.timedelta(seconds=seconds)


def _sources(cat: Catalog, n: int) -> list[str]:
    keys = [f"v{i:03d}" for i in range(n)]
    for k in keys:
        upsert_source(cat, k, url=f"https://example.invalid/{k}")
    return keys


def test_two_claimers_never_hold_one_source(any_catalog):
    keys = _sources(any_catalog, 40)
    got: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def worker(name: str) -> None:
        cat = Catalog(any_catalog.url)  # its own engine, as another host would have
        try:
            start.wait()
            mine: list[str] = []
            for i in range(0, len(keys), 5):  # claim in small batches, racing the others
                mine += leases.claim(cat, SOURCES, keys[i:i + 5], name, POLICY).claimed
            got[name] = mine
        finally:
            cat.dispose()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    claimed = [k for mine in got.values() for k in mine]
    assert sorted(claimed) == keys  # every key claimed once: none twice, none lost
    for name, mine in got.items():
        for k in mine:
            assert leases.holder(any_catalog, SOURCES, k)[0] == name


def test_a_live_lease_is_held_and_an_expired_one_is_taken_over(any_catalog):
    (key,) = _sources(any_catalog, 1)
    assert leases.claim(any_catalog, SOURCES, [key], "a", POLICY, clock=at(0)).claimed == [key]
    early = leases.claim(any_catalog, SOURCES, [key], "b", POLICY, clock=at(59))
    assert early.claimed == [] and early.held == [key]
    late = leases.claim(any_catalog, SOURCES, [key], "b", POLICY, clock=at(61))
    assert late.claimed == [key]
    owner, expires, attempts = leases.holder(any_catalog, SOURCES, key)
    assert owner == "b" and attempts == 2  # a's claim never finished: it counts
    assert expires.replace(tzinfo=dt.UTC) == T0 + dt.timedelta(seconds=61 + POLICY.ttl_s)
    with pytest.raises(LeaseLost, match="no longer leased to a"):
        leases.renew(any_catalog, SOURCES, [key], "a", POLICY, clock=at(62))


def test_a_finish_by_a_non_owner_is_refused_and_the_owners_is_kept(any_catalog):
    (key,) = _sources(any_catalog, 1)
    leases.claim(any_catalog, SOURCES, [key], "a", POLICY, clock=at(0))
    with pytest.raises(LeaseLost, match="finish is refused"):
        leases.finish(any_catalog, SOURCES, key, "b", status=SourceStatus.DONE)
    with any_catalog.session() as s:
        assert s.get(Source, key).status == SourceStatus.PENDING
    leases.finish(any_catalog, SOURCES, key, "a", status=SourceStatus.DONE)
    assert leases.holder(any_catalog, SOURCES, key) == (None, None, 0)  # a finish resets the attempts
    with any_catalog.session() as s:
        assert s.get(Source, key).status == SourceStatus.DONE
    with pytest.raises(LeaseLost):
        leases.finish(any_catalog, SOURCES, key, "a")  # twice: it holds nothing any more


def test_a_source_whose_workers_keep_dying_becomes_a_failed_row_with_the_reason(any_catalog):
    (key,) = _sources(any_catalog, 1)
    for i in range(POLICY.max_attempts):  # each claimer dies: the lease just runs out
        assert leases.claim(any_catalog, SOURCES, [key], f"w{i}", POLICY, clock=at(100 * i)).claimed == [key]
    out = leases.claim(any_catalog, SOURCES, [key], "last", POLICY, clock=at(100 * POLICY.max_attempts))
    assert out.claimed == [] and list(out.exhausted) == [key]
    with any_catalog.session() as s:
        row = s.get(Source, key)
        assert (row.status, row.stage) == (SourceStatus.FAILED, "worker")
        assert "3 workers died" in row.error and "w2" in row.error
    assert leases.holder(any_catalog, SOURCES, key) == (None, None, 0)  # --retry-failed starts afresh


def test_a_clip_given_up_keeps_its_review_status(any_catalog):
    (src,) = _sources(any_catalog, 1)
    record_clip(any_catalog, f"{src}-00000", src, 0.0, 60.0, error="x")
    with any_catalog.session() as s:
        s.get(Clip, f"{src}-00000").status = ClipStatus.ACCEPTED
    policy = LeasePolicy(ttl_s=10, max_attempts=1)
    assert leases.claim(any_catalog, CLIPS, [f"{src}-00000"], "a", policy, clock=at(0)).claimed
    out = leases.claim(any_catalog, CLIPS, [f"{src}-00000", "nope"], "b", policy, clock=at(11))
    assert list(out.exhausted) == [f"{src}-00000"] and out.missing == ["nope"]
    with any_catalog.session() as s:
        assert s.get(Clip, f"{src}-00000").status == ClipStatus.ACCEPTED


def test_limit_claims_at_most_that_many_and_leaves_the_rest(any_catalog):
    keys = _sources(any_catalog, 5)
    out = leases.claim(any_catalog, SOURCES, keys, "a", POLICY, limit=2)
    assert out.claimed == keys[:2] and out.held == keys[2:]
    assert leases.held_by_others(any_catalog, SOURCES, "b") == keys[:2]
    assert leases.held_by_others(any_catalog, SOURCES, "a") == []


def test_the_heartbeat_renews_and_notices_a_takeover(catalog):
    (key,) = _sources(catalog, 1)
    policy = LeasePolicy(ttl_s=0.3)
    leases.claim(catalog, SOURCES, [key], "a", policy)
    first = leases.holder(catalog, SOURCES, key)[1]
    with leases.Heartbeat(catalog, SOURCES, [key], "a", policy) as beat:
        deadline = time.monotonic() + 20
        while leases.holder(catalog, SOURCES, key)[1] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leases.holder(catalog, SOURCES, key)[1] > first
        later = lambda: leases.utcnow() + dt.timedelta(seconds=5)  # noqa: E731 - as if "a" had stalled
        assert leases.claim(catalog, SOURCES, [key], "b", LeasePolicy(ttl_s=60), clock=later).claimed == [key]
        assert beat.lost.wait(20)
        with pytest.raises(LeaseLost):
            beat.check()
    assert leases.holder(catalog, SOURCES, key)[0] == "b"


def test_owner_names_carry_the_process_id():
    assert leases.owner_pid(leases.new_owner()) == os.getpid()
    assert leases.owner_pid("elsewhere") is None


def test_a_live_lease_of_a_dead_process_of_this_host_is_taken_over_at_once(any_catalog):
    keys = _sources(any_catalog, 3)
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead = f"{socket.gethostname()}:{ended.pid}:0badc0de"
    for key, owner in zip(keys, (dead, f"other-host:{ended.pid}:0badc0de", leases.new_owner()), strict=True):
        leases.claim(any_catalog, SOURCES, [key], owner, POLICY, clock=at(0))
    out = leases.claim(any_catalog, SOURCES, keys, "b", POLICY, clock=at(1))  # every lease still live
    assert out.claimed == keys[:1] and out.held == keys[1:]  # another host's, or a live process's: wait
    assert leases.holder(any_catalog, SOURCES, keys[0])[::2] == ("b", 2)


def test_revision_0004_adds_the_lease_columns_keeping_rows(data_root):
    engine = create_engine(data_root.catalog_url)
    with engine.begin() as conn:
        command.upgrade(catalog_mod._alembic(conn), "0003")
        conn.execute(text("INSERT INTO sources (id, url, status, created_at, updated_at) "
                          "VALUES ('v1', 'https://x.invalid/v', 'done', '2026-01-01', '2026-01-01')"))
    engine.dispose()
    assert upgrade_schema(data_root.catalog_url, "0004") == ("0003", "0004")
    engine = create_engine(data_root.catalog_url)
    with engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT lease_owner, lease_expires_at, attempts FROM sources")).one()) \
            == (None, None, 0)
    with engine.begin() as conn:
        command.downgrade(catalog_mod._alembic(conn), "0003")
        for table in ("sources", "clips"):
            cols = {r[1] for r in conn.execute(text(f"PRAGMA table_info({table})"))}
            assert not cols & {"lease_owner", "lease_expires_at", "attempts"}
    engine.dispose()
