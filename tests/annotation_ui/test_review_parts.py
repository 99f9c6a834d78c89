"""The review server's parts alone: the TTL cache, the in-process write queue, the routers' wiring."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from annotation_ui.app import ROUTERS
from annotation_ui.context import plural
from annotation_ui.serving import SerialWriter, TtlCache
from dvmset.tables import Annotator


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_ttl_cache_recomputes_only_when_older_than_its_ttl():
    clock, calls = Clock(), []

    def compute() -> int:
        calls.append(clock.t)
        return len(calls)

    cache = TtlCache(5.0, clock=clock)
    assert cache.get(compute) == 1
    clock.t += 5.0
    assert cache.get(compute) == 1  # exactly ttl old: still fresh
    clock.t += 0.5
    assert cache.get(compute) == 2 and calls == [100.0, 105.5]
    cache.clear()
    assert cache.get(compute) == 3
    with pytest.raises(ValueError, match="ttl_s"):
        TtlCache(-1)


def test_ttl_cache_computes_once_for_callers_arriving_together():
    cache: TtlCache[int] = TtlCache(60.0)
    entered, release, calls = threading.Event(), threading.Event(), []

    def slow() -> int:
        calls.append(1)
        entered.set()
        release.wait(timeout=30)
        return 7

    got: list[int] = []
    first = threading.Thread(target=lambda: got.append(cache.get(slow)))
    first.start()
    assert entered.wait(timeout=30)
    others = [threading.Thread(target=lambda: got.append(cache.get(slow))) for _ in range(3)]
    for t in others:
        t.start()
    release.set()
    for t in (first, *others):
        t.join(timeout=30)
    assert got == [7, 7, 7, 7] and calls == [1]


def test_serial_writer_lets_writers_side_by_side_on_postgres(catalog):
    """Postgres serialises per clip (row locks): two writers are inside at once, or the barrier breaks."""
    writer = SerialWriter(catalog)
    if catalog.engine.dialect.name == "sqlite":
        assert writer.serialised
        return
    both_in = threading.Barrier(2, timeout=20)
    errors: list[str] = []

    def write(i: int) -> None:
        try:
            with writer.session() as s:
                both_in.wait()
                s.add(Annotator(name=f"p{i}", token_hash=f"{i + 100:064d}"))
        except Exception as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and not writer.serialised
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Annotator)) == 2


def test_serial_writer_lets_one_writer_in_at_a_time_and_commits(catalog):
    writer = SerialWriter(catalog)
    if not writer.serialised:
        pytest.skip("Postgres writers are not serialised in the process (see the test above)")
    inside, most, errors = [0], [0], []
    guard = threading.Lock()

    def write(i: int) -> None:
        try:
            with writer.session() as s:
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.005)  # gives a second writer every chance to get in
                s.add(Annotator(name=f"w{i}", token_hash=f"{i:064d}"))
                with guard:
                    inside[0] -= 1
        except Exception as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and most[0] == 1
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Annotator)) == 8
    with pytest.raises(RuntimeError), writer.session() as s:  # an error rolls back and frees the lock
        s.add(Annotator(name="lost", token_hash="f" * 64))
        raise RuntimeError("boom")
    with writer.session() as s:
        assert s.scalar(select(func.count()).select_from(Annotator).where(Annotator.name == "lost")) == 0


def test_each_concern_has_its_own_router_and_no_path_is_served_twice():
    paths = [(m, r.path) for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) for m in r.methods]
    assert len(paths) == len(set(paths))
    assert all(router.routes for router in ROUTERS)


@pytest.mark.parametrize(("n", "text"), [(0, "0 clips"), (1, "1 clip"), (2, "2 clips"), (None, "0 clips")])
def test_plural(n, text):
    assert plural(n, "clip") == text
