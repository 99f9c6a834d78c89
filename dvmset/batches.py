"""Lists of ids bound in fixed-size batches: no query binds one parameter per clip of the catalog.

Drivers cap a statement's parameters (psycopg: 65,535; SQLite: 32,766 by default since 3.32, 999
before), so ``col.in_(ids)`` over every accepted clip breaks at some catalog size. Every query over a
caller's list of ids goes through :func:`batches` instead, one statement per batch of at most
:data:`MAX_BIND` ids, each a bounded statement whatever the catalog holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

MAX_BIND = 10_000  # ids bound by one statement: far under every driver's limit, few round trips


def batches(items: Iterable[T], size: int = MAX_BIND) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size`` (none for no items), duplicates kept."""
    if size < 1:
        raise ValueError(f"a batch holds at least one item, not {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def padded(ids: Sequence[T]) -> list[T]:
    """``ids`` with its last repeated up to a power of two (a multiple of 1,024 past that, at most
    :data:`MAX_BIND` for a batch), for an ``IN`` list in a loop over many batches: its statements then have a
    few shapes, not one per length. SQLite's driver keeps 128 prepared statements per connection, and the
    export's ~1,000-id batches of varying length held ~100 MB of them at 100 K sources. Duplicates in ``IN``
    change no result."""
    n = len(ids)
    if n == 0:
        return []
    size = 1 << (n - 1).bit_length() if n <= 1024 else min(-(-n // 1024) * 1024, max(n, MAX_BIND))
    return [*ids, *[ids[-1]] * (size - n)]
