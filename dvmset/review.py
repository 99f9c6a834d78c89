"""The review queue in the catalog: annotators, leases, append-only decisions, undo (progress: review_stats).

Every function takes an open session and leaves committing to the caller (``Catalog.session()``),
so each one is one transaction. On SQLite writers are serialised before they read: the first
statement is a write (SQLite then holds the database's write lock, and busy_timeout makes the
others wait). On Postgres writers run side by side and meet only on the clip they touch: each
locks that clip's row (``FOR UPDATE``; a claim passes over a row another claim holds, ``SKIP
LOCKED``) and reads who holds it and its verdicts after the lock, in a statement of its own (READ
COMMITTED gives each statement a fresh snapshot, so it sees what the lock's last holder committed).
A policy change locks ``leases`` in a mode that waits for every writer (they take ROW EXCLUSIVE
first: their first statement is a DELETE on it). So "claim the next clip" and "decide" are atomic:
no clip is handed to two annotators at once (default mode) or to more than N (overlap mode), and no
decision is lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, exists, select, text
from sqlalchemy.orm import Session, aliased, make_transient_to_detached, object_session

from dvmset import gold, review_order
from dvmset import review_sql as sql
from dvmset.agreement import UNDO, DecisionRow, effective_verdict, in_force, live_verdicts
from dvmset.annotators import (  # noqa: F401 - re-exported: the review tool's one import
    REVOKED,
    add_annotator,
    annotator_for_token,
    hash_token,
    is_revoked,
    new_token,
    revoke_annotator,
)
from dvmset.clip_locks import lock_clip
from dvmset.clip_locks import on_postgres as _postgres
from dvmset.records import ClipStatus, RejectReason, Verdict
from dvmset.review_policy import (  # noqa: F401 - re-exported: the review tool's one import
    Conflict,
    InvalidDecision,
    NotFound,
    PolicyMismatch,
    QueuePolicy,
    ReviewError,
    adopt_policy,
    current_policy,
    store_policy,
)
from dvmset.review_sql import clip_and_source  # noqa: F401 - re-exported: what the page shows of a clip
from dvmset.review_stats import (  # noqa: F401 - the read side, re-exported where the review server looks
    decision_records,
    progress,
    progress_by_query,
    progress_overall,
)
from dvmset.spans import InvalidSpan, check_spans
from dvmset.tables import (  # noqa: F401 - Annotator re-exported
    Adjudication,
    Annotator,
    Clip,
    Decision,
    GoldAnswer,
    GoldClip,
    Lease,
    utcnow,
)

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 2000


class TooSoon(Conflict):
    """A verdict given before the minimum listening time: sent again with ``confirm`` it is taken."""

    def __init__(self, listened_s: float, min_listen_s: float) -> None:
        self.listened_s, self.min_listen_s = listened_s, min_listen_s
        super().__init__(f"you had this clip for {listened_s:.0f} s, under the {min_listen_s:.0f} s to listen "
                         "before a verdict: confirm to give it anyway")


# --- queue ------------------------------------------------------------------------------------


def _serialise_writers(session: Session, now: dt.datetime, annotator_id: int | None = None) -> None:
    """Start a write before reading anything (see the module docstring): on SQLite take the database's write
    lock; on Postgres the table lock every writer shares but a policy change waits for. Expired leases go: all of
    them on SQLite, the annotator's own on Postgres (rows no other writer touches, so no two writers wait on
    each other here; every query ignores others' expired leases)."""
    if not _postgres(session):
        session.execute(sql.drop_expired(False), {"now": now})
        return
    if annotator_id is None:  # a policy change: wait for every writer, then purge the whole table
        session.execute(text("LOCK TABLE leases IN SHARE ROW EXCLUSIVE MODE"))
        session.execute(sql.drop_expired(False), {"now": now})
        return
    # a DELETE takes ROW EXCLUSIVE on leases even when it deletes nothing: the lock a policy change waits for
    session.execute(sql.drop_expired(True), {"now": now, "me": annotator_id})


def _live_rows(session: Session, clip_id: str) -> dict[int, DecisionRow]:
    rows = [
        DecisionRow(id=d.id, clip_id=d.clip_id, annotator_id=d.annotator_id, verdict=d.verdict,
                    reasons=tuple(d.reasons or ()), voids=d.voids, seconds_spent=d.seconds_spent)
        for d in session.scalars(select(Decision).where(Decision.clip_id == clip_id).order_by(Decision.id))
    ]
    return live_verdicts(rows).get(clip_id, {})


def new_status(status: str, settled: bool, live: dict[int, DecisionRow], policy: QueuePolicy) -> str | None:
    """Where the effective-verdict rule moves a clip now in ``status`` (None: it stays); a taken-down (or
    failed) clip never moves, nor does one a lead settled (dvmset.adjudication) or marked gold (dvmset.gold)."""
    if status not in _REVIEWABLE or settled:
        return None
    eff = effective_verdict([r.verdict for r in live.values()], policy.overlap)
    new = {None: ClipStatus.PENDING_REVIEW, Verdict.ACCEPT: ClipStatus.ACCEPTED,
           Verdict.REJECT: ClipStatus.REJECTED}[eff]
    return None if status == new else new.value


def _set_status(clip: Clip, live: dict[int, DecisionRow], policy: QueuePolicy) -> None:
    """Move a clip by the effective-verdict rule (see new_status)."""
    if clip.status in _REVIEWABLE:
        new = new_status(clip.status, settled_by_lead(clip), live, policy)
        if new is not None:
            clip.status = new


def settled_by_lead(clip: Clip) -> bool:
    """Whether a lead's verdict (an adjudication or a gold mark) holds this clip's status."""
    session = object_session(clip)
    return session is not None and bool(session.scalar(select(
        exists().where(GoldClip.clip_id == clip.id) | exists().where(Adjudication.clip_id == clip.id))))


_REVIEWABLE = frozenset({ClipStatus.PENDING_REVIEW, ClipStatus.ACCEPTED, ClipStatus.REJECTED})


def _claimable(session: Session, annotator_id: int, policy: QueuePolicy, now: dt.datetime, n: int = 1,
               exclude: frozenset[str] = frozenset(), page: int = 200, lock: bool = False) -> list[str]:
    """The first ``n`` clips this annotator may be handed, in id order, ``exclude`` left out. Walks the
    pending clips a page at a time, so the per-clip checks run on a page, not on the whole queue (a
    single ORDER BY ... LIMIT 1 made SQLite check all 10,000 clips first); usually the first page holds
    one, and that takes one statement. ``lock``: see dvmset.review_sql.first_in_page."""
    found: list[str] = []
    after = ""
    while len(found) < n:
        hit = session.scalar(sql.first_in_page(page, lock), {
            "after": after, "exclude": [*exclude, *found], "me": annotator_id, "now": now,
            "overlap": policy.overlap})
        if hit is not None:
            found.append(hit)
            continue
        after = session.scalar(sql.page_end(page), {"after": after})
        if after is None:
            break
    return found


def _claimable_ranked(session: Session, annotator_id: int, policy: QueuePolicy, now: dt.datetime,
                      ranked: Sequence[str], page: int = 200, exclude: frozenset[str] = frozenset(),
                      lock: bool = False) -> list[str]:
    """The first clip of ``ranked`` (a review order, dvmset.review_order) this annotator may be handed
    (``lock``: whose row it could lock at once, see lock_clip)."""
    for i in range(0, len(ranked), page):
        chunk = [c for c in ranked[i:i + page] if c not in exclude]
        ok = set(session.scalars(sql.claimable(False), {"ids": chunk, "me": annotator_id, "now": now,
                                                          "overlap": policy.overlap}))
        for c in chunk:
            if c in ok and (not lock or lock_clip(session, c, skip_locked=True)):
                return [c]
    return []


def _still_claimable(session: Session, annotator_id: int, policy: QueuePolicy, now: dt.datetime,
                     clip_id: str) -> bool:
    """Whether ``clip_id`` may be handed out, read in a statement of its own after its row was locked."""
    return session.scalar(sql.claimable(), {"ids": [clip_id], "me": annotator_id, "now": now,
                                              "overlap": policy.overlap}) is not None


def _pick(session: Session, annotator_id: int, policy: QueuePolicy, now: dt.datetime, order: str) -> str | None:
    """The clip to hand out next (its row locked on Postgres), or None."""
    lock = _postgres(session)
    ranked = review_order.RANKINGS.get(session, order) if order != "queue" else ()
    exclude: set[str] = set()
    while True:
        # ranked by a model of the verdicts so far; clips it has not ranked yet follow in id order
        first = (_claimable_ranked(session, annotator_id, policy, now, ranked, exclude=frozenset(exclude), lock=lock)
                 or _claimable(session, annotator_id, policy, now, exclude=frozenset(exclude), lock=lock))
        if not first and lock:
            # every claimable row was locked: a verdict being written on it holds it for milliseconds, so
            # "queue empty" would be false (and the page would say so); wait for that row instead
            first = _claimable(session, annotator_id, policy, now, exclude=frozenset(exclude))
            if first:
                lock_clip(session, first[0])
        if not first:
            return None
        if not lock or _still_claimable(session, annotator_id, policy, now, first[0]):
            return first[0]
        exclude.add(first[0])  # taken by a claim that committed while this one's query ran


def likely_next(session: Session, annotator_id: int, policy: QueuePolicy, exclude: str, n: int = 2) -> list[str]:
    """Read-only: the clips this annotator's queue would most likely hand out after ``exclude`` (the
    one they hold now), as things stand; used to prepare them (waveforms) ahead of time."""
    return _claimable(session, annotator_id, policy, utcnow(), n, frozenset({exclude}))


def claim_next(session: Session, annotator_id: int, policy: QueuePolicy | None = None,
               now: dt.datetime | None = None, order: str = "queue") -> str | None:
    """Lease the next clip to this annotator (or renew the one it holds); None when its queue is empty.
    ``policy``: the catalog's (read in this transaction) unless given; ``order``: dvmset.review_order's."""
    now = now or utcnow()
    _serialise_writers(session, now, annotator_id)
    first = session.execute(sql.policy_and_gold()).one()
    policy = policy or adopt_policy(session, first.policy_overlap, first.policy_lease_s, first.policy_skip_s)
    until = now + dt.timedelta(seconds=policy.lease_s)
    if first.any_gold:
        gold_clip = gold.claim(session, annotator_id, now, until)  # a gold clip mixed in, unmarked (dvmset.gold)
        if gold_clip is not None:
            return gold_clip
    held = session.execute(sql.held_leases(), {"me": annotator_id}).all()
    renewed = next((h.clip_id for h in held if h.renewable), None)  # the first the annotator may still decide
    dropped = [h.clip_id for h in held if h.clip_id != renewed]
    if dropped:
        session.execute(sql.drop_leases(), {"me": annotator_id, "ids": dropped})
    if renewed is not None:
        session.execute(sql.renew_lease(), {"clip": renewed, "me": annotator_id, "until": until, "now": now})
        return renewed
    clip_id = _pick(session, annotator_id, policy, now, order)
    if clip_id is None:
        return None
    session.execute(sql.add_lease(), {"clip_id": clip_id, "annotator_id": annotator_id, "expires_at": until,
                                      "skipped": False, "handed_at": now})
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


@dataclass(frozen=True)
class Decided:
    """A verdict taken: its row, and the clip's status after it (None for a gold clip, whose answer shows
    what an ordinary clip's would: gold.shown_status)."""

    row: Decision | GoldAnswer
    clip_status: str | None


def decide(session: Session, annotator_id: int, clip_id: str, verdict: str, reasons: Sequence[str] = (),
           note: str | None = None, seconds_spent: float | None = None, policy: QueuePolicy | None = None,
           now: dt.datetime | None = None, spans: Sequence = (), min_listen_s: float = 0.0,
           confirm: bool = False) -> Decision | GoldAnswer:
    """Append this annotator's verdict on a clip and move the clip's status: :func:`give_verdict`'s row."""
    return give_verdict(session, annotator_id, clip_id, verdict, reasons, note, seconds_spent, policy, now, spans,
                        min_listen_s, confirm).row


def give_verdict(
    session: Session,
    annotator_id: int,
    clip_id: str,
    verdict: str,
    reasons: Sequence[str] = (),
    note: str | None = None,
    seconds_spent: float | None = None,
    policy: QueuePolicy | None = None,
    now: dt.datetime | None = None,
    spans: Sequence = (),
    min_listen_s: float = 0.0,
    confirm: bool = False,
) -> Decided:
    """Append this annotator's verdict on a clip and move the clip's status by the effective-verdict rule.

    ``spans``: stretches excluded from an accept (dvmset.spans). The listening time is the server's: from
    handing the clip out to now; under ``min_listen_s`` the verdict is refused (TooSoon) unless ``confirm``."""
    now = now or utcnow()
    verdict, reasons, note = _check_decision(verdict, reasons, note)
    if seconds_spent is not None and not 0 <= seconds_spent <= 86400:
        raise InvalidDecision(f"seconds_spent {seconds_spent} is outside 0..86400")
    if spans and verdict != Verdict.ACCEPT:
        raise InvalidDecision("spans mark what to leave out of an accepted clip; a reject takes none")
    _serialise_writers(session, now, annotator_id)
    before = session.execute(sql.before_lock(), {"clip": clip_id, "me": annotator_id}).one()
    listened_s = None
    if before.handed_at is not None:
        handed = before.handed_at if before.handed_at.tzinfo else before.handed_at.replace(tzinfo=dt.UTC)
        listened_s = round(max(0.0, (now - handed).total_seconds()), 1)
    if min_listen_s > 0 and not confirm and (listened_s or 0.0) < min_listen_s:
        raise TooSoon(listened_s or 0.0, min_listen_s)
    read = adopt_policy(session, before.policy_overlap, before.policy_lease_s, before.policy_skip_s)
    # a gold clip asks the same question as any clip (the annotator cannot tell it apart), then is scored
    # against the gold verdict, not counted as a vote
    if before.gold:
        return Decided(gold.answer(session, annotator_id, clip_id, verdict, reasons, seconds_spent, now), None)
    policy = policy or read
    # on Postgres the clip's row is locked first; then its verdicts and holders are read, in a statement of
    # their own, as the last writer on it left them
    clip = session.execute(sql.clip_row(_postgres(session)), {"clip": clip_id}).first()
    if clip is None:
        raise NotFound(f"clip {clip_id!r} is not in the catalog")
    try:
        checked = check_spans(spans, clip.duration_s)
    except InvalidSpan as exc:
        raise InvalidDecision(str(exc)) from None
    rows = session.execute(sql.verdicts_and_holders(), {"clip": clip_id, "me": annotator_id, "now": now}).all()
    others_leased, settled = rows[0].others_leased, bool(rows[0].settled)
    live = live_verdicts(
        DecisionRow(id=r.id, clip_id=clip_id, annotator_id=r.annotator_id, verdict=r.verdict,
                    reasons=tuple(r.reasons or ()), voids=r.voids, seconds_spent=r.seconds_spent)
        for r in rows if r.id is not None
    ).get(clip_id, {})
    if annotator_id in live:
        raise Conflict(f"clip {clip_id!r} already has your verdict; undo it first to change it")
    if clip.status != ClipStatus.PENDING_REVIEW or len(live) + others_leased >= policy.overlap:
        raise Conflict(f"clip {clip_id!r} is not open for review (status {clip.status}, "
                       f"{len(live)} verdicts, {others_leased} other reviewers holding it)")
    session.execute(sql.drop_my_lease(), {"clip": clip_id, "me": annotator_id})
    values = {"clip_id": clip_id, "annotator_id": annotator_id, "verdict": verdict, "reasons": reasons, "note": note,
              "voids": None, "seconds_spent": seconds_spent, "created_at": now, "listened_s": listened_s,
              "spans": [sp.as_list() for sp in checked] or None, "summarised": False}
    row = Decision(id=session.scalar(sql.add_decision(), values), **values)
    make_transient_to_detached(row)  # the row just inserted, as the session would hold it after a flush
    session.add(row)
    live[annotator_id] = DecisionRow(row.id, clip_id, annotator_id, verdict, tuple(reasons))
    status = new_status(clip.status, settled, live, policy)
    if status is not None:
        session.execute(sql.move_clip(), {"clip": clip_id, "status": status})
    return Decided(row, status or clip.status)


def undo_last(session: Session, annotator_id: int, policy: QueuePolicy | None = None,
              now: dt.datetime | None = None) -> Decision:
    """Void this annotator's latest live verdict with an undo row; the clip comes back to them next,
    unless it left review meanwhile (taken down): then the verdict is voided and nothing is handed out."""
    now = now or utcnow()
    _serialise_writers(session, now, annotator_id)
    policy = policy or current_policy(session)
    last = session.scalars(
        select(Decision).where(Decision.annotator_id == annotator_id, in_force(Decision))
        .order_by(Decision.id.desc()).limit(1)
    ).first()
    took_back = gold.undo_latest(session, annotator_id, last.created_at if last else None,
                                 now + dt.timedelta(seconds=policy.lease_s), now)
    if took_back is not None:  # the latest verdict was on a gold clip (dvmset.gold)
        return took_back
    if last is None:
        raise Conflict("nothing to undo: you have no decision in force")
    lock_clip(session, last.clip_id)
    row = Decision(clip_id=last.clip_id, annotator_id=annotator_id, verdict=UNDO, voids=last.id, created_at=now)
    session.add(row)
    session.flush()
    clip = session.get(Clip, last.clip_id)
    _set_status(clip, _live_rows(session, last.clip_id), policy)
    if clip.status != ClipStatus.PENDING_REVIEW:  # taken down since: voided, but not handed out again
        return row
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.skipped.is_(False)))
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.clip_id == last.clip_id))
    session.add(Lease(clip_id=last.clip_id, annotator_id=annotator_id,
                      expires_at=now + dt.timedelta(seconds=policy.lease_s), skipped=False, handed_at=now))
    return row


def skip(session: Session, annotator_id: int, clip_id: str, policy: QueuePolicy | None = None,
         now: dt.datetime | None = None) -> None:
    """Put a clip out of this annotator's queue for ``policy.skip_s``; others may take it at once."""
    now = now or utcnow()
    _serialise_writers(session, now, annotator_id)
    policy = policy or current_policy(session)
    if session.get(Clip, clip_id) is None:
        raise NotFound(f"clip {clip_id!r} is not in the catalog")
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.clip_id == clip_id))
    session.add(Lease(clip_id=clip_id, annotator_id=annotator_id,
                      expires_at=now + dt.timedelta(seconds=policy.skip_s), skipped=True, handed_at=now))


def redecide(session: Session, policy: QueuePolicy, *, write: bool = True) -> dict[str, str]:
    """Pending clips that already hold enough verdicts under ``policy`` (a smaller overlap): their new
    status by clip id, written when ``write``. Clips already decided keep their status."""
    d = aliased(Decision)
    ids = session.scalars(
        select(Clip.id).where(Clip.status == ClipStatus.PENDING_REVIEW.value,
                              exists().where(d.clip_id == Clip.id, in_force(d))).order_by(Clip.id)
    ).all()
    out: dict[str, str] = {}
    for clip_id in ids:
        eff = effective_verdict([r.verdict for r in _live_rows(session, clip_id).values()], policy.overlap)
        if eff is not None:
            out[clip_id] = (ClipStatus.ACCEPTED if eff == Verdict.ACCEPT else ClipStatus.REJECTED).value
    if write:
        for clip_id, status in out.items():
            session.get(Clip, clip_id).status = status
    return out


@dataclass(frozen=True)
class PolicyChange:
    old: QueuePolicy
    new: QueuePolicy
    decided: dict[str, str]  # clip id -> accepted | rejected: pending clips the new overlap decides
    kept: int  # clips decided with fewer verdicts than a raised overlap needs: they stay decided


def set_policy(session: Session, overlap: int | None = None, lease_s: float | None = None,
               skip_s: float | None = None, *, dry_run: bool = False) -> PolicyChange:
    """Change the catalog's review policy and re-decide, in one transaction serialised with every
    verdict: pending clips that hold enough verdicts under a smaller overlap are decided now."""
    _serialise_writers(session, utcnow())
    old = current_policy(session)
    new = QueuePolicy(overlap=old.overlap if overlap is None else overlap,
                      lease_s=old.lease_s if lease_s is None else lease_s,
                      skip_s=old.skip_s if skip_s is None else skip_s)
    decided = redecide(session, new, write=not dry_run)
    kept = 0
    if new.overlap > old.overlap:
        live = session.scalars(select(Decision).where(in_force(Decision))).all()
        per_clip: dict[str, set[int]] = {}
        for r in live:
            per_clip.setdefault(r.clip_id, set()).add(r.annotator_id)
        decided_ids = set(session.scalars(select(Clip.id).where(
            Clip.status.in_([ClipStatus.ACCEPTED.value, ClipStatus.REJECTED.value]))))
        kept = sum(1 for c, who in per_clip.items() if c in decided_ids and len(who) < new.overlap)
    if not dry_run:
        store_policy(session, new)
    return PolicyChange(old, new, decided, kept)


def check_policy(session: Session, wanted: QueuePolicy) -> QueuePolicy:
    """The catalog's policy, which a review server must follow: refused (PolicyMismatch, with what to
    do) when ``wanted`` differs, or when pending clips already hold enough verdicts under it."""
    have = current_policy(session)
    if wanted != have:
        raise PolicyMismatch(
            f"this catalog's review policy is {have.describe()}; you asked for {wanted.describe()}. "
            "Start `vidmusician review` without --overlap/--lease-seconds to follow the catalog, or change "
            "the policy for every server with `vidmusician review-policy set` (try --dry-run first: it "
            "lists the clips the change would decide)")
    stale = redecide(session, have, write=False)
    if stale:
        raise PolicyMismatch(
            f"{len(stale)} pending clip(s) already hold {have.overlap} verdict(s) (a server ran with a larger "
            f"overlap before the policy lived in the catalog): run `vidmusician review-policy set --overlap "
            f"{have.overlap}` to decide them, or set the overlap they were collected under")
    return have
