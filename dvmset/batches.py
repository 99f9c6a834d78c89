"""Lists of ids bound in fixed-size batches: no query binds one parameter per clip of the catalog.

Drivers cap a statement's parameters (psycopg: 65,535; SQLite: 32,766 by default since 3.32, 999
before), so ``col.in_(ids)`` over every accepted clip breaks at some catalog size. Every query over a
caller's list of ids goes through :func:`batches` instead, one statement per batch of at most
:data:`MAX_BIND` ids, each a bounded statement whatever the catalog holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
