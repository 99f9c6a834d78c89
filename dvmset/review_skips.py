"""Skips an annotator can take back, the undo of whichever came last (a skip or a verdict), and what an
empty queue is waiting for (clips held by others, clips skipped), each with when it comes back.

Like dvmset.review, every function takes an open session and is one transaction, serialised with
every verdict.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dvmset.agreement import in_force
from dvmset.records import ClipStatus
from dvmset.review import (
    Conflict,
    NotFound,
    QueuePolicy,
    _live_rows,
    _serialise_writers,
    current_policy,
    lock_clip,
    undo_last,
)
from dvmset.tables import Clip, Decision, GoldAnswer, Lease, utcnow


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes for aware columns: they are UTC."""
    return t if t is None or t.tzinfo else t.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Undone:
    kind: str  # "skip" | "verdict"
    clip_id: str
    undo_id: int | None = None  # the undo row, for a verdict
    voided: int | None = None  # the voided decision, for a verdict
    handed_back: bool = True  # the clip is the annotator's again (False: someone else holds it now)


@dataclass(frozen=True)
class Skipped:
    clip_id: str
    back_at: dt.datetime  # when it returns to the queue by itself


def skipped(session: Session, annotator_id: int, now: dt.datetime | None = None) -> list[Skipped]:
    """This annotator's clips skipped and not back yet, latest skip first."""
    now = now or utcnow()
    rows = session.scalars(
        select(Lease).where(Lease.annotator_id == annotator_id, Lease.skipped.is_(True), Lease.expires_at > now)
        .order_by(Lease.handed_at.desc(), Lease.clip_id)
    ).all()
    return [Skipped(r.clip_id, _aware(r.expires_at)) for r in rows]


def _take_back(session: Session, annotator_id: int, clip_id: str, policy: QueuePolicy, now: dt.datetime) -> bool:
    """Drop this annotator's skip of ``clip_id`` and lease it to them when it is still open to them."""
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.clip_id == clip_id))
    lock_clip(session, clip_id)  # its holders and verdicts read after the lock (dvmset.review)
    clip = session.get(Clip, clip_id)
    live = _live_rows(session, clip_id)
    others = session.scalar(select(func.count()).select_from(Lease).where(
        Lease.clip_id == clip_id, Lease.annotator_id != annotator_id, Lease.skipped.is_(False),
        Lease.expires_at > now))
    if clip is None or clip.status != ClipStatus.PENDING_REVIEW or annotator_id in live \
            or len(live) + others >= policy.overlap:
        return False
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.skipped.is_(False)))
    session.add(Lease(clip_id=clip_id, annotator_id=annotator_id, skipped=False, handed_at=now,
                      expires_at=now + dt.timedelta(seconds=policy.lease_s)))
    return True


def unskip(session: Session, annotator_id: int, clip_id: str, policy: QueuePolicy | None = None,
           now: dt.datetime | None = None) -> bool:
    """Bring a skipped clip back now: it becomes the annotator's current clip (True), or, when someone else
    holds it or it was decided meanwhile, only leaves the skipped list (False)."""
    now = now or utcnow()
    _serialise_writers(session, now, annotator_id)
    policy = policy or current_policy(session)
    lease = session.get(Lease, (clip_id, annotator_id))
    if lease is None or not lease.skipped:
        raise NotFound(f"clip {clip_id!r} is not among your skipped clips")
    return _take_back(session, annotator_id, clip_id, policy, now)


def undo(session: Session, annotator_id: int, policy: QueuePolicy | None = None,
         now: dt.datetime | None = None) -> Undone:
    """Undo this annotator's latest action: a skip made after their latest verdict in force is taken back
    (the skipped clip is theirs again), otherwise that verdict is voided (dvmset.review.undo_last)."""
    now = now or utcnow()
    _serialise_writers(session, now, annotator_id)
    policy = policy or current_policy(session)
    last_skip = session.scalars(
        select(Lease).where(Lease.annotator_id == annotator_id, Lease.skipped.is_(True), Lease.expires_at > now,
                            Lease.handed_at.is_not(None))
        .order_by(Lease.handed_at.desc()).limit(1)
    ).first()
    verdict_times = (
        session.scalar(select(func.max(Decision.created_at))
                       .where(Decision.annotator_id == annotator_id, in_force(Decision))),
        session.scalar(select(func.max(GoldAnswer.created_at))  # an answer on a gold clip is a verdict too
                       .where(GoldAnswer.annotator_id == annotator_id, GoldAnswer.undone_at.is_(None))),
    )
    last_verdict = max((_aware(t) for t in verdict_times if t is not None), default=None)
    if last_skip is not None and (last_verdict is None or _aware(last_skip.handed_at) >= last_verdict):
        clip_id = last_skip.clip_id
        return Undone("skip", clip_id, handed_back=_take_back(session, annotator_id, clip_id, policy, now))
    try:
        row = undo_last(session, annotator_id, policy, now)
    except Conflict:
        raise Conflict("nothing to undo: you have no verdict in force and no skip to take back") from None
    return Undone("verdict", row.clip_id, row.id, row.voids)


@dataclass(frozen=True)
class Waiting:
    """Why a queue is empty: pending clips held by others (back by ``held_until`` at the latest, if their
    reservations lapse) and clips this annotator skipped (the first back at ``skipped_next``)."""

    held_by_others: int
    held_until: dt.datetime | None
    skipped: int
    skipped_next: dt.datetime | None


def waiting(session: Session, annotator_id: int, now: dt.datetime | None = None) -> Waiting:
    now = now or utcnow()
    held = session.execute(
        select(func.count(func.distinct(Lease.clip_id)), func.max(Lease.expires_at))
        .join(Clip, Clip.id == Lease.clip_id)
        .where(Lease.annotator_id != annotator_id, Lease.skipped.is_(False), Lease.expires_at > now,
               Clip.status == ClipStatus.PENDING_REVIEW.value)
    ).one()
    mine = session.execute(
        select(func.count(), func.min(Lease.expires_at))
        .join(Clip, Clip.id == Lease.clip_id)
        .where(Lease.annotator_id == annotator_id, Lease.skipped.is_(True), Lease.expires_at > now,
               Clip.status == ClipStatus.PENDING_REVIEW.value)
    ).one()
    return Waiting(int(held[0] or 0), _aware(held[1]), int(mine[0] or 0), _aware(mine[1]))
