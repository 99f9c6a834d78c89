"""The review policy (verdicts per clip, lease and skip lengths) as stored in the catalog, the review
server's URL, and the review tool's refusals. Changing the policy re-decides clips: dvmset.review.set_policy."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dvmset.tables import ReviewSettings

SETTINGS_ID = 1  # the one row of review_settings
MIN_LEASE_S = 10.0  # the page renews at a third of the lease: shorter ones would be renewed every few seconds


class ReviewError(Exception):
    """Base class for refusals the review tool turns into 4xx responses."""


class NotFound(ReviewError):
    pass


class Conflict(ReviewError):
    pass


class InvalidDecision(ReviewError, ValueError):
    pass


class PolicyMismatch(ValueError):
    """A review server was started with a policy other than the catalog's."""


@dataclass(frozen=True)
class QueuePolicy:
    """overlap: verdicts each clip needs (1 = default mode); lease_s: how long a handed-out clip is
    reserved; skip_s: how long a skipped clip stays out of that annotator's queue."""

    overlap: int = 1
    lease_s: float = 600.0
    skip_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 1 <= self.overlap <= 50:
            raise ValueError(f"overlap must be between 1 and 50 verdicts per clip, got {self.overlap}")
        if self.lease_s <= 0 or self.skip_s <= 0:
            raise ValueError(f"lease_s and skip_s must be positive, got {self.lease_s}, {self.skip_s}")

    def describe(self) -> str:
        return f"overlap {self.overlap}, leases {self.lease_s:g} s, skips {self.skip_s:g} s"


_POLICY_KEY = "review_policy"  # session.info: the policy read in this session (a request's one transaction)


def current_policy(session: Session) -> QueuePolicy:
    """The catalog's review policy (the defaults while nobody has set one); read once per session (a
    session of the review server is one transaction, so every step of a request follows the same one)."""
    cached = session.info.get(_POLICY_KEY)
    if cached is not None:
        return cached
    row = session.get(ReviewSettings, SETTINGS_ID)
    policy = QueuePolicy() if row is None else QueuePolicy(row.overlap, row.lease_s, row.skip_s)
    session.info[_POLICY_KEY] = policy
    return policy


@functools.cache
def policy_columns() -> tuple:
    """The policy's three values as scalar subqueries (NULL while nobody has set one), to read the policy
    in the same statement as something else a request needs; :func:`adopt_policy` takes them back."""
    rs = ReviewSettings.__table__
    return tuple(select(c).where(rs.c.id == SETTINGS_ID).scalar_subquery().label(f"policy_{c.name}")
                 for c in (rs.c.overlap, rs.c.lease_s, rs.c.skip_s))


def adopt_policy(session: Session, overlap: int | None, lease_s: float | None, skip_s: float | None) -> QueuePolicy:
    """The policy read through :func:`policy_columns`, kept as this session's (as :func:`current_policy`
    keeps what it reads); the one the session read first, if it already read one."""
    cached = session.info.get(_POLICY_KEY)
    if cached is not None:
        return cached
    policy = QueuePolicy() if overlap is None else QueuePolicy(overlap, lease_s, skip_s)
    session.info[_POLICY_KEY] = policy
    return policy


def store_policy(session: Session, policy: QueuePolicy) -> None:
    """Write the policy row (keeping the server URL). Callers re-decide clips: dvmset.review.set_policy."""
    row = session.get(ReviewSettings, SETTINGS_ID)
    if row is None:
        session.add(ReviewSettings(id=SETTINGS_ID, overlap=policy.overlap, lease_s=policy.lease_s,
                                   skip_s=policy.skip_s))
    else:
        row.overlap, row.lease_s, row.skip_s = policy.overlap, policy.lease_s, policy.skip_s
    session.flush()
    session.info[_POLICY_KEY] = policy


def server_url(session: Session) -> str | None:
    """The base URL the last `vidmusician review` on this catalog served at (login links point there)."""
    row = session.get(ReviewSettings, SETTINGS_ID)
    return None if row is None else row.server_url


def record_server_url(session: Session, url: str) -> None:
    row = session.get(ReviewSettings, SETTINGS_ID)
    if row is None:
        p = QueuePolicy()
        session.add(ReviewSettings(id=SETTINGS_ID, overlap=p.overlap, lease_s=p.lease_s, skip_s=p.skip_s,
                                   server_url=url))
    else:
        row.server_url = url
