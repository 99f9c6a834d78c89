"""The ``runs`` table: which stage ran for which key (a source or clip id) with which parameters, and
how it ended. A re-run skips what is recorded as done with the same parameters."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from sqlalchemy import select

from dvmset.batches import batches
from dvmset.catalog import Catalog
from dvmset.tables import Run


def params_hash(params: dict) -> str:
    """A short, stable hash of a stage's parameters (sorted JSON)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_done(cat: Catalog, stage: str, key: str, params: str) -> bool:
    with cat.session() as s:
        return s.scalar(select(Run.id).where(Run.stage == stage, Run.key == key, Run.params_hash == params,
                                             Run.status == "done")) is not None


def done_keys(cat: Catalog, stage: str, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` with a run of ``stage`` recorded as done (whatever its parameters)."""
    done: set[str] = set()
    with cat.session() as s:
        for chunk in batches(sorted(set(keys))):
            done.update(s.scalars(select(Run.key).where(Run.stage == stage, Run.key.in_(chunk),
                                                        Run.status == "done")))
    return done


def record_run(cat: Catalog, stage: str, key: str, params: str, seconds: float, error: str | None = None) -> None:
    """Record (or overwrite) how ``stage`` ended for ``key``: done, or failed with ``error``."""
    status = "failed" if error else "done"
    with cat.session() as s:
        row = s.scalar(select(Run).where(Run.stage == stage, Run.key == key, Run.params_hash == params))
        if row is None:
            s.add(Run(stage=stage, key=key, params_hash=params, status=status, error=error, duration_s=seconds))
        else:
            row.status, row.error, row.duration_s = status, error, seconds
