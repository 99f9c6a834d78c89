"""Leases in the catalog: which worker holds a source (curation) or a clip (features), until when.

The cross-host coordination of workers sharing one data root and one catalog (flock stays only as a
same-host guard: over NFS it is emulated or node-local depending on mount options). A key is claimed
with an owner and an expiry, renewed while worked on, finished only by its owner, and taken over by
anyone once the expiry has passed. ``attempts`` counts claims not ended by a finish: a key whose
workers keep dying on it is given up after ``max_attempts`` (a source becomes a failed row with the
reason), instead of crashing every worker that picks it up.

Postgres claims with ``SELECT ... FOR UPDATE SKIP LOCKED`` (a row another transaction is claiming is
passed over, not waited for); SQLite has no row locks (SQLAlchemy silently drops ``skip_locked``
there), so each key is claimed by a compare-and-set UPDATE whose row count says who won. Expiries are
compared with the claimer's clock: hosts need synchronised clocks (NTP); leases last minutes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, case, or_, select, update

from dvmset.catalog import Catalog
from dvmset.records import SourceStatus
from dvmset.tables import Clip, Source

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseLost(RuntimeError):
    """A renew or finish by a worker that no longer holds the lease (it expired and was taken over)."""


@dataclass(frozen=True)
class LeaseKind:
    """A table whose rows are leased, and the column values that give up a key (None: leave the row)."""

    name: str
    table: Table
    give_up: Mapping[str, Any] | None = None  # plus ``error``: the reason, where the table has one


SOURCES = LeaseKind("source", Source.__table__, {"status": SourceStatus.FAILED.value, "stage": "worker"})
CLIPS = LeaseKind("clip", Clip.__table__)  # a clip's review status stays; the features run records the failure


@dataclass(frozen=True)
class LeasePolicy:
    """How long a claim lasts without renewal, and how many unfinished claims give a key up."""

    ttl_s: float = 600.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.ttl_s <= 0:
            raise ValueError(f"lease ttl_s must be positive, got {self.ttl_s}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3


@dataclass
class Claim:
    """The outcome of a claim: keys now ours, keys held live by others, keys given up (with why)."""

    claimed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    exhausted: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # no such row


def new_owner() -> str:
    """A worker's name: host, process and a random part (a pid is reused; a restarted worker is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_pid(owner: str) -> int | None:
    """The process id in an owner name made by :func:`new_owner` (None for another form)."""
    parts = owner.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def owner_is_gone(owner: str) -> bool:
    """True when ``owner`` was a process of this host that no longer runs: its lease needs no waiting out.

    Only a positive answer counts (a reused pid reads as alive, another host's owner as unknown): the
    safe direction is to wait for the expiry.
    """
    host, pid = owner.rsplit(":", 2)[0], owner_pid(owner)
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _claimable(t: Table, now: dt.datetime, gone: list[str]):  # noqa: ANN202 - a SQL boolean clause
    free = [t.c.lease_owner.is_(None), t.c.lease_expires_at.is_(None), t.c.lease_expires_at < now]
    return or_(*free, t.c.lease_owner.in_(gone)) if gone else or_(*free)


def _gone(conn, t: Table, keys: list[str], now: dt.datetime) -> list[str]:  # noqa: ANN001 - a Connection
    """Owners of live leases on ``keys`` that were processes of this host and have died."""
    owners = conn.scalars(select(t.c.lease_owner).distinct().where(
        t.c.id.in_(keys), t.c.lease_owner.is_not(None), t.c.lease_expires_at >= now))
    return [o for o in owners if owner_is_gone(o)]


def _reason(kind: LeaseKind, key: str, attempts: int, last_owner: str | None) -> str:
    return (f"gave up on {kind.name} {key}: {attempts} workers died while on it (the last was {last_owner}); "
            "see that worker's log, then try again with --retry-failed")


def claim(cat: Catalog, kind: LeaseKind, keys: Iterable[str], owner: str, policy: LeasePolicy = LeasePolicy(),
          *, limit: int | None = None, count: bool = True, clock: Clock = utcnow) -> Claim:
    """Claim up to ``limit`` of ``keys`` (all by default) for ``owner`` until now + ``policy.ttl_s``.

    A key is free when unleased, when its lease has expired, or when its owner was a process of this
    host that has died (:func:`owner_is_gone`: a killed run's re-run on the same host need not wait).
    ``count=False`` claims without counting an attempt: a worker that holds many keys but works on one
    at a time counts each when it starts on it (:func:`start`), so a death is charged to that key only.
    """
    keys = list(dict.fromkeys(keys))
    if cat.engine.dialect.name == "postgresql":
        return _claim_skip_locked(cat, kind, keys, owner, policy, limit, clock(), int(count))
    return _claim_compare_and_set(cat, kind, keys, owner, policy, limit, clock(), int(count))


def _give_up_values(kind: LeaseKind, reason: str) -> dict[str, Any]:
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "attempts": 0}
    if kind.give_up is not None:
        values.update(kind.give_up)
        if "error" in kind.table.c:
            values["error"] = reason
    return values


def _claim_skip_locked(cat: Catalog, kind: LeaseKind, keys: list[str], owner: str, policy: LeasePolicy,
                       limit: int | None, now: dt.datetime, step: int) -> Claim:
    t, out = kind.table, Claim()
    expires = now + dt.timedelta(seconds=policy.ttl_s)
    with cat.engine.begin() as conn:
        existing = set(conn.scalars(select(t.c.id).where(t.c.id.in_(keys))))
        rows = conn.execute(select(t.c.id, t.c.lease_owner, t.c.attempts)
                            .where(t.c.id.in_(keys), _claimable(t, now, _gone(conn, t, keys, now)))
                            .order_by(t.c.id).with_for_update(skip_locked=True)).all()
        free = {r.id: r for r in rows}
        for key in keys:
            if key not in existing:
                out.missing.append(key)
            elif key not in free or (limit is not None and len(out.claimed) >= limit):
                out.held.append(key)
            elif free[key].attempts >= policy.max_attempts:
                out.exhausted[key] = _reason(kind, key, free[key].attempts, free[key].lease_owner)
                conn.execute(update(t).where(t.c.id == key).values(**_give_up_values(kind, out.exhausted[key])))
            else:
                conn.execute(update(t).where(t.c.id == key).values(
                    lease_owner=owner, lease_expires_at=expires, attempts=t.c.attempts + step))
                out.claimed.append(key)
    _log(kind, out)
    return out


def _claim_compare_and_set(cat: Catalog, kind: LeaseKind, keys: list[str], owner: str, policy: LeasePolicy,
                           limit: int | None, now: dt.datetime, step: int) -> Claim:
    t, out = kind.table, Claim()
    expires = now + dt.timedelta(seconds=policy.ttl_s)
    with cat.engine.connect() as conn:
        with conn.begin():
            gone = _gone(conn, t, keys, now)
        for key in keys:
            if limit is not None and len(out.claimed) >= limit:
                out.held.append(key)
                continue
            with conn.begin():  # each key its own short write, so a long list never holds SQLite's lock
                won = conn.execute(update(t).where(t.c.id == key, _claimable(t, now, gone),
                                                   t.c.attempts < policy.max_attempts)
                                   .values(lease_owner=owner, lease_expires_at=expires,
                                           attempts=t.c.attempts + step)).rowcount
                if won == 1:
                    out.claimed.append(key)
                    continue
                row = conn.execute(select(t.c.lease_owner, t.c.attempts).where(t.c.id == key)).first()
                if row is None:
                    out.missing.append(key)
                    continue
                reason = _reason(kind, key, row.attempts, row.lease_owner)
                gave_up = conn.execute(update(t).where(t.c.id == key, _claimable(t, now, gone),
                                                       t.c.attempts >= policy.max_attempts)
                                       .values(**_give_up_values(kind, reason))).rowcount
                if gave_up == 1:
                    out.exhausted[key] = reason
                else:
                    out.held.append(key)
    _log(kind, out)
    return out


def _log(kind: LeaseKind, out: Claim) -> None:
    for reason in out.exhausted.values():
        log.warning("%s", reason)
    if out.held:
        log.info("%d %ss held by other workers, left to them: %s", len(out.held), kind.name, out.held[:5])


def renew(cat: Catalog, kind: LeaseKind, keys: Iterable[str], owner: str, policy: LeasePolicy = LeasePolicy(),
          *, clock: Clock = utcnow) -> None:
    """Extend ``owner``'s leases on ``keys``; :class:`LeaseLost` names the keys it no longer holds."""
    keys, t = list(keys), kind.table
    expires = clock() + dt.timedelta(seconds=policy.ttl_s)
    with cat.engine.begin() as conn:
        conn.execute(update(t).where(t.c.id.in_(keys), t.c.lease_owner == owner).values(lease_expires_at=expires))
        ours = set(conn.scalars(select(t.c.id).where(t.c.id.in_(keys), t.c.lease_owner == owner)))
    lost = [k for k in keys if k not in ours]
    if lost:
        raise LeaseLost(f"{kind.name}s {lost} are no longer leased to {owner}: the lease expired and another "
                        "worker took them over (raise the lease time if this worker is merely slow)")


def finish(cat: Catalog, kind: LeaseKind, key: str, owner: str, **values: Any) -> None:
    """End ``owner``'s lease on ``key``, writing ``values`` (e.g. the final status) in the same statement.

    Refused with :class:`LeaseLost` when ``owner`` does not hold it: its work may have been redone by
    the worker that took it over, whose result must not be overwritten.
    """
    t = kind.table
    with cat.engine.begin() as conn:
        done = conn.execute(update(t).where(t.c.id == key, t.c.lease_owner == owner).values(
            lease_owner=None, lease_expires_at=None, attempts=0, **values)).rowcount
    if done != 1:
        raise LeaseLost(f"{kind.name} {key} is not leased to {owner}: its finish is refused "
                        "(the lease expired and another worker took it over)")


def _count(cat: Catalog, kind: LeaseKind, key: str, owner: str, step: int, **values: Any) -> bool:
    t = kind.table
    attempts = t.c.attempts + step if step > 0 else case((t.c.attempts + step > 0, t.c.attempts + step), else_=0)
    with cat.engine.begin() as conn:
        n = conn.execute(update(t).where(t.c.id == key, t.c.lease_owner == owner)
                         .values(attempts=attempts, **values)).rowcount
    return n == 1


def start(cat: Catalog, kind: LeaseKind, key: str, owner: str) -> bool:
    """Count an attempt on ``key`` as ``owner`` starts working on it (claimed with ``count=False``): if the
    worker dies now, this key, and no other it holds, is charged. False when ``owner`` does not hold it."""
    return _count(cat, kind, key, owner, 1)


def survived(cat: Catalog, kind: LeaseKind, key: str, owner: str) -> bool:
    """Take back the attempt :func:`start` counted: the work on ``key`` ended (done or failed with a reason)
    and the worker did not die on it; it keeps the lease."""
    return _count(cat, kind, key, owner, -1)


def release(cat: Catalog, kind: LeaseKind, key: str, owner: str, *, give_back: bool = True) -> bool:
    """Let go of ``owner``'s lease on ``key`` without finishing it; ``give_back`` takes back the attempt its
    claim counted: the worker stopped for a reason that is not the key's (a full disk, an interrupt), so
    the key is free at once and no closer to being given up. False when ``owner`` no longer held it."""
    return _count(cat, kind, key, owner, -int(give_back), lease_owner=None, lease_expires_at=None)


def holder(cat: Catalog, kind: LeaseKind, key: str) -> tuple[str | None, dt.datetime | None, int]:
    """(owner, expiry, attempts) of ``key``'s lease."""
    t = kind.table
    with cat.engine.connect() as conn:
        row = conn.execute(select(t.c.lease_owner, t.c.lease_expires_at, t.c.attempts).where(t.c.id == key)).first()
    if row is None:
        raise KeyError(f"no {kind.name} {key!r} in the catalog")
    return row.lease_owner, row.lease_expires_at, row.attempts


def held_by_others(cat: Catalog, kind: LeaseKind, owner: str, *, clock: Clock = utcnow) -> list[str]:
    """Keys whose live lease belongs to another owner."""
    t, now = kind.table, clock()
    with cat.engine.connect() as conn:
        return list(conn.scalars(select(t.c.id).where(and_(t.c.lease_owner.is_not(None), t.c.lease_owner != owner,
                                                           t.c.lease_expires_at >= now)).order_by(t.c.id)))


class Heartbeat:
    """Renew ``owner``'s leases on ``keys`` every ``policy.renew_every_s`` in a daemon thread.

    ``lost`` is set when a renewal finds the lease gone; the worker checks it between steps and
    stops (another worker has the key now). A failed renewal for another reason (the database
    briefly down) is logged and retried at the next beat.
    """

    def __init__(self, cat: Catalog, kind: LeaseKind, keys: Iterable[str], owner: str,
                 policy: LeasePolicy = LeasePolicy()) -> None:
        self._args = (cat, kind, list(keys), owner, policy)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{kind.name}", daemon=True)

    def _beat(self) -> None:
        cat, kind, keys, owner, policy = self._args
        while not self._stop.wait(policy.renew_every_s):
            try:
                renew(cat, kind, keys, owner, policy)
            except LeaseLost as err:
                log.warning("%s", err)
                self.lost.set()
                return
            except Exception as err:  # noqa: BLE001 - a database hiccup: the next beat tries again
                log.warning("renewing the lease on %s %s failed (will retry): %s", kind.name, keys, err)

    def check(self) -> None:
        """Raise :class:`LeaseLost` if a renewal found the lease gone."""
        if self.lost.is_set():
            _, kind, keys, owner, _ = self._args
            raise LeaseLost(f"{kind.name}s {keys}: lease lost by {owner}; stopping, another worker has them")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
