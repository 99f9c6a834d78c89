"""Small parts of the review server, each testable alone: a TTL cache and the in-process write queue."""

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
    """Catalog sessions for writes, one at a time in this process.

    Writers queue on a lock before the database's own: SQLite's busy handler polls with sleeps of
    up to 100 ms, which made the tail latency with two annotators. The database still serialises
    writers from other processes (see dvmset.review), so this is about latency, not correctness.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on a clean exit (rolls back on an error), holding the write lock."""
        with self._lock, self._catalog.session() as s:
            yield s
