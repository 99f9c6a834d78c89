"""Small parts of the review server, each testable alone: a TTL cache and the in-process write queue (SQLite)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from dvmset.catalog import Catalog

T = TypeVar("T")


class TtlCache(Generic[T]):
    """One value, recomputed when older than ``ttl_s`` (by ``clock``, monotonic seconds).

    Used for the per-query progress table, which joins every clip: annotators see counts at most
    ``ttl_s`` old instead of paying that join on every request. One caller computes at a time;
    the others wait for its value rather than compute the same thing again.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {ttl_s}")
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._value: T | None = None

    def get(self, compute: Callable[[], T]) -> T:
        """The cached value, or ``compute()``'s when there is none or it is too old."""
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at > self.ttl_s:
                self._value = compute()
                self._at = now
            return self._value  # type: ignore[return-value]

    def clear(self) -> None:
        with self._lock:
            self._at, self._value = None, None


class SerialWriter:
    """Catalog sessions for writes: one at a time in this process on SQLite, side by side on Postgres.

    SQLite takes one writer at a time anyway, and its busy handler polls with sleeps of up to 100 ms,
    which made the tail latency with two annotators: writers queue on a lock here instead. Postgres
    serialises writers per clip with row locks (dvmset.review), so a process-wide lock would only make
    32 annotators wait for each other's unrelated clips. Correctness never rests on this lock: the
    database serialises writers from other processes too.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock: contextlib.AbstractContextManager = (
            threading.Lock() if catalog.engine.dialect.name == "sqlite" else contextlib.nullcontext())

    @property
    def serialised(self) -> bool:
        """Whether writers in this process wait for each other here."""
        return not isinstance(self._lock, contextlib.nullcontext)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on a clean exit (rolls back on an error), holding the write lock on SQLite."""
        with self._lock, self._catalog.session() as s:
            yield s
