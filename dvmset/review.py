"""The review queue in the catalog: annotators, leases, append-only decisions, undo (progress: review_stats).

Every function takes an open session and leaves committing to the caller (``Catalog.session()``),
so each one is one transaction. Writers are serialised before they read: on SQLite the first
statement is a write (SQLite then holds the database's write lock, and busy_timeout makes the
others wait); on Postgres the ``leases`` table is locked in a self-exclusive mode. So "claim the
next clip" and "decide" are atomic: no clip is handed to two annotators at once (default mode) or
to more than N (overlap mode), and no decision is lost.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, exists, func, select, text
from sqlalchemy.orm import Session, aliased

from dvmset.agreement import UNDO, DecisionRow, effective_verdict, in_force, live_verdicts
from dvmset.records import ClipStatus, RejectReason, Verdict
from dvmset.review_stats import (  # noqa: F401 - the read side, re-exported where the review server looks
    decision_records,
    progress,
    progress_by_query,
    progress_overall,
)
from dvmset.tables import Annotator, Clip, Decision, Lease, utcnow

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 2000


class ReviewError(Exception):
    """Base class for refusals the review tool turns into 4xx responses."""


class NotFound(ReviewError):
    pass


class Conflict(ReviewError):
    pass


class InvalidDecision(ReviewError, ValueError):
    pass


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


# --- annotators -------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_annotator(session: Session, name: str) -> tuple[Annotator, str]:
    """Create an annotator; returns it and its token (shown once; only the hash is stored)."""
    name = name.strip()
    if not 1 <= len(name) <= 64 or not name.isprintable():
        raise ValueError(f"annotator name {name!r}: use 1-64 printable characters")
    if session.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
        raise Conflict(f"annotator {name!r} already exists; pick another name")
    token = secrets.token_urlsafe(32)
    ann = Annotator(name=name, token_hash=hash_token(token))
    session.add(ann)
    session.flush()
    return ann, token


#: token_hash prefix of a revoked annotator: never equal to a SHA-256 hex digest, so no token matches
REVOKED = "revoked-"


def _annotator_named(session: Session, name: str) -> Annotator:
    ann = session.scalars(select(Annotator).where(Annotator.name == name.strip())).first()
    if ann is None:
        raise NotFound(f"no annotator named {name!r} (`vidmusician annotators list` shows them)")
    return ann


def new_token(session: Session, name: str) -> str:
    """Give an annotator a fresh token (a lost or leaked link); the old one stops working at once."""
    ann = _annotator_named(session, name)
    token = secrets.token_urlsafe(32)
    ann.token_hash = hash_token(token)
    return token


def revoke_annotator(session: Session, name: str) -> int:
    """No token of this annotator works any more; their decisions stay. Returns the leases released
    (their reserved clips go back to the queue at once instead of when the lease expires)."""
    ann = _annotator_named(session, name)
    ann.token_hash = REVOKED + secrets.token_hex(16)
    return session.execute(delete(Lease).where(Lease.annotator_id == ann.id)).rowcount or 0


def is_revoked(ann: Annotator) -> bool:
    return ann.token_hash.startswith(REVOKED)


def annotator_for_token(session: Session, token: str | None) -> Annotator | None:
    if not token or len(token) > 256:
        return None
    return session.scalars(select(Annotator).where(Annotator.token_hash == hash_token(token))).first()


# --- queue ------------------------------------------------------------------------------------


def _serialise_writers(session: Session, now: dt.datetime) -> None:
    """Take the catalog's write lock before reading anything (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE leases IN SHARE ROW EXCLUSIVE MODE"))
    session.execute(delete(Lease).where(Lease.expires_at <= now))


def _live_rows(session: Session, clip_id: str) -> dict[int, DecisionRow]:
    rows = [
        DecisionRow(id=d.id, clip_id=d.clip_id, annotator_id=d.annotator_id, verdict=d.verdict,
                    reasons=tuple(d.reasons or ()), voids=d.voids, seconds_spent=d.seconds_spent)
        for d in session.scalars(select(Decision).where(Decision.clip_id == clip_id).order_by(Decision.id))
    ]
    return live_verdicts(rows).get(clip_id, {})


def _set_status(clip: Clip, live: dict[int, DecisionRow], policy: QueuePolicy) -> None:
    eff = effective_verdict([r.verdict for r in live.values()], policy.overlap)
    new = {None: ClipStatus.PENDING_REVIEW, Verdict.ACCEPT: ClipStatus.ACCEPTED,
           Verdict.REJECT: ClipStatus.REJECTED}[eff]
    if clip.status != new:
        clip.status = new.value


@functools.cache
def _claimable_stmt():
    """Pending clips among :ids that :me may be handed at :now, first by id (one statement, built once,
    with bound parameters, so SQLAlchemy compiles it once)."""
    clips, leases = Clip.__table__, Lease.__table__
    d, md = (Decision.__table__.alias(n) for n in ("d", "md"))
    me, now = bindparam("me"), bindparam("now", type_=Lease.__table__.c.expires_at.type)
    live_count = (
        select(func.count()).select_from(d)
        .where(d.c.clip_id == clips.c.id, in_force(d))
        .scalar_subquery()
    )
    others = leases.alias("o")
    others_leased = (
        select(func.count()).select_from(others)
        .where(others.c.clip_id == clips.c.id, others.c.annotator_id != me,
               others.c.skipped.is_(False), others.c.expires_at > now)
        .scalar_subquery()
    )
    mine = exists().where(md.c.clip_id == clips.c.id, md.c.annotator_id == me, in_force(md))
    mine_l = leases.alias("ml")
    skipped = exists().where(mine_l.c.clip_id == clips.c.id, mine_l.c.annotator_id == me,
                             mine_l.c.skipped.is_(True), mine_l.c.expires_at > now)
    return (
        select(clips.c.id)
        .where(clips.c.id.in_(bindparam("ids", expanding=True)),
               clips.c.status == ClipStatus.PENDING_REVIEW.value, ~mine, ~skipped,
               live_count + others_leased < bindparam("overlap"))
        .order_by(clips.c.id)
        .limit(1)
    )


@functools.cache
def _pending_page_stmt(page: int):
    clips = Clip.__table__
    return (
        select(clips.c.id)
        .where(clips.c.status == ClipStatus.PENDING_REVIEW.value, clips.c.id > bindparam("after"))
        .order_by(clips.c.id)
        .limit(page)
    )


def _claimable(session: Session, annotator_id: int, policy: QueuePolicy, now: dt.datetime, n: int = 1,
               exclude: frozenset[str] = frozenset(), page: int = 200) -> list[str]:
    """The first ``n`` clips this annotator may be handed, in id order, ``exclude`` left out. Walks the
    pending clips a page at a time, so the per-clip checks run on a page, not on the whole queue (a
    single ORDER BY ... LIMIT 1 made SQLite check all 10,000 clips first)."""
    found: list[str] = []
    after = ""
    while len(found) < n:
        ids = session.scalars(_pending_page_stmt(page), {"after": after}).all()
        if not ids:
            break
        candidates = [c for c in ids if c not in exclude]
        while len(found) < n and candidates:
            hit = session.scalar(_claimable_stmt(), {"ids": candidates, "me": annotator_id, "now": now,
                                                     "overlap": policy.overlap})
            if hit is None:
                break
            found.append(hit)
            candidates.remove(hit)
        after = ids[-1]
    return found


def likely_next(session: Session, annotator_id: int, policy: QueuePolicy, exclude: str, n: int = 2) -> list[str]:
    """Read-only: the clips this annotator's queue would most likely hand out after ``exclude`` (the
    one they hold now), as things stand; used to prepare them (waveforms) ahead of time."""
    return _claimable(session, annotator_id, policy, utcnow(), n, frozenset({exclude}))


def claim_next(session: Session, annotator_id: int, policy: QueuePolicy, now: dt.datetime | None = None) -> str | None:
    """Lease the next clip to this annotator (or renew the one it holds); None when its queue is empty."""
    now = now or utcnow()
    _serialise_writers(session, now)
    until = now + dt.timedelta(seconds=policy.lease_s)
    held = session.scalars(
        select(Lease).where(Lease.annotator_id == annotator_id, Lease.skipped.is_(False)).order_by(Lease.clip_id)
    ).all()
    for lease in held:
        clip = session.get(Clip, lease.clip_id)
        if clip is not None and clip.status == ClipStatus.PENDING_REVIEW and annotator_id not in _live_rows(
            session, lease.clip_id
        ):
            lease.expires_at = until
            for other in held:
                if other is not lease:
                    session.delete(other)
            return lease.clip_id
        session.delete(lease)
    first = _claimable(session, annotator_id, policy, now)
    if not first:
        return None
    clip_id = first[0]
    session.add(Lease(clip_id=clip_id, annotator_id=annotator_id, expires_at=until, skipped=False))
    session.flush()
    return clip_id


def _check_decision(verdict: str, reasons: Sequence[str], note: str | None) -> tuple[str, list[str], str | None]:
    try:
        verdict = Verdict(verdict).value
    except ValueError:
        raise InvalidDecision(f"verdict {verdict!r}: expected 'accept' or 'reject'") from None
    known = {r.value for r in RejectReason}
    bad = [r for r in reasons if r not in known]
    if bad:
        raise InvalidDecision(f"unknown reasons {bad}: expected some of {sorted(known)}")
    reasons = sorted(set(reasons))
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise InvalidDecision(f"note is {len(note)} characters; keep it under {MAX_NOTE_CHARS}")
    if verdict == Verdict.ACCEPT and reasons:
        raise InvalidDecision("an accept takes no reject reasons")
    if verdict == Verdict.REJECT and not reasons:
        raise InvalidDecision(f"a reject needs at least one reason of {sorted(known)}")
    if RejectReason.OTHER in reasons and note is None:
        raise InvalidDecision("reason 'other' needs a note saying what is wrong")
    return verdict, reasons, note


def decide(
    session: Session,
    annotator_id: int,
    clip_id: str,
    verdict: str,
    reasons: Sequence[str] = (),
    note: str | None = None,
    seconds_spent: float | None = None,
    policy: QueuePolicy = QueuePolicy(),
    now: dt.datetime | None = None,
) -> Decision:
    """Append this annotator's verdict on a clip and move the clip's status by the effective-verdict rule."""
    now = now or utcnow()
    verdict, reasons, note = _check_decision(verdict, reasons, note)
    if seconds_spent is not None and not 0 <= seconds_spent <= 86400:
        raise InvalidDecision(f"seconds_spent {seconds_spent} is outside 0..86400")
    _serialise_writers(session, now)
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFound(f"clip {clip_id!r} is not in the catalog")
    live = _live_rows(session, clip_id)
    if annotator_id in live:
        raise Conflict(f"clip {clip_id!r} already has your verdict; undo it first to change it")
    others_leased = session.scalar(
        select(func.count()).select_from(Lease).where(
            Lease.clip_id == clip_id, Lease.annotator_id != annotator_id,
            Lease.skipped.is_(False), Lease.expires_at > now)
    )
    if clip.status != ClipStatus.PENDING_REVIEW or len(live) + others_leased >= policy.overlap:
        raise Conflict(f"clip {clip_id!r} is not open for review (status {clip.status}, "
                       f"{len(live)} verdicts, {others_leased} other reviewers holding it)")
    session.execute(delete(Lease).where(Lease.clip_id == clip_id, Lease.annotator_id == annotator_id))
    row = Decision(clip_id=clip_id, annotator_id=annotator_id, verdict=verdict, reasons=reasons, note=note,
                   seconds_spent=seconds_spent, created_at=now)
    session.add(row)
    session.flush()
    live[annotator_id] = DecisionRow(row.id, clip_id, annotator_id, verdict, tuple(reasons))
    _set_status(clip, live, policy)
    return row


def undo_last(session: Session, annotator_id: int, policy: QueuePolicy = QueuePolicy(),
              now: dt.datetime | None = None) -> Decision:
    """Void this annotator's latest live verdict with an undo row; the clip comes back to them next."""
    now = now or utcnow()
    _serialise_writers(session, now)
    last = session.scalars(
        select(Decision).where(Decision.annotator_id == annotator_id, in_force(Decision))
        .order_by(Decision.id.desc()).limit(1)
    ).first()
    if last is None:
        raise Conflict("nothing to undo: you have no decision in force")
    row = Decision(clip_id=last.clip_id, annotator_id=annotator_id, verdict=UNDO, voids=last.id, created_at=now)
    session.add(row)
    session.flush()
    clip = session.get(Clip, last.clip_id)
    _set_status(clip, _live_rows(session, last.clip_id), policy)
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.skipped.is_(False)))
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.clip_id == last.clip_id))
    session.add(Lease(clip_id=last.clip_id, annotator_id=annotator_id,
                      expires_at=now + dt.timedelta(seconds=policy.lease_s), skipped=False))
    return row


def skip(session: Session, annotator_id: int, clip_id: str, policy: QueuePolicy = QueuePolicy(),
         now: dt.datetime | None = None) -> None:
    """Put a clip out of this annotator's queue for ``policy.skip_s``; others may take it at once."""
    now = now or utcnow()
    _serialise_writers(session, now)
    if session.get(Clip, clip_id) is None:
        raise NotFound(f"clip {clip_id!r} is not in the catalog")
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.clip_id == clip_id))
    session.add(Lease(clip_id=clip_id, annotator_id=annotator_id,
                      expires_at=now + dt.timedelta(seconds=policy.skip_s), skipped=True))


def sync_statuses(session: Session, policy: QueuePolicy) -> int:
    """Decide pending clips that already hold enough verdicts (after a restart with a smaller overlap)."""
    d = aliased(Decision)
    ids = session.scalars(
        select(Clip.id).where(Clip.status == ClipStatus.PENDING_REVIEW.value,
                              exists().where(d.clip_id == Clip.id, in_force(d)))
    ).all()
    changed = 0
    for clip_id in ids:
        clip = session.get(Clip, clip_id)
        _set_status(clip, _live_rows(session, clip_id), policy)
        changed += clip.status != ClipStatus.PENDING_REVIEW
    if changed:
        log.info("decided %d pending clips that already had %d verdicts", changed, policy.overlap)
    return changed
