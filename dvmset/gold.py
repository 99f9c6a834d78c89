"""Gold clips: clips whose verdict a lead knows, mixed unmarked into each annotator's queue at a rate.

An annotator's verdict on a gold clip is a ``GoldAnswer``: scored against the gold verdict (accuracy
with a Wilson 95 % interval on the agreement page), never a vote on the clip. Marking a clip gold
settles its status to the gold verdict, so the ordinary queue no longer hands it out; only
:func:`claim` does, to annotators who have not answered it.

Whether the next clip handed to an annotator is gold is a draw keyed by (annotator, how many clips
they have answered), so it is the same draw however often the page asks, differs from annotator to
annotator, and over many clips approaches the rate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dvmset.clip_locks import lock_clip
from dvmset.records import ClipStatus, RejectReason, Verdict
from dvmset.review_policy import Conflict, InvalidDecision, NotFound
from dvmset.tables import Annotator, Clip, Decision, GoldAnswer, GoldClip, Lease, ReviewSettings

DEFAULT_RATE = 0.1
SETTINGS_ID = 1  # dvmset.review_policy's one settings row
_STATUS_OF = {Verdict.ACCEPT.value: ClipStatus.ACCEPTED.value, Verdict.REJECT.value: ClipStatus.REJECTED.value}
_SETTLED = frozenset({ClipStatus.PENDING_REVIEW, ClipStatus.ACCEPTED, ClipStatus.REJECTED})


# --- the rate ---------------------------------------------------------------------------------


def gold_rate(session: Session) -> float:
    """The share of handed-out clips that are gold (DEFAULT_RATE until a lead sets one)."""
    row = session.get(ReviewSettings, SETTINGS_ID)
    return DEFAULT_RATE if row is None or row.gold_rate is None else row.gold_rate


def set_gold_rate(session: Session, rate: float) -> None:
    if not 0.0 <= rate <= 0.5:
        raise ValueError(f"gold rate {rate}: give a share from 0 (none) to 0.5 (every other clip)")
    row = session.get(ReviewSettings, SETTINGS_ID)
    if row is None:
        from dvmset.review_policy import QueuePolicy, store_policy

        store_policy(session, QueuePolicy())
        session.flush()
        row = session.get(ReviewSettings, SETTINGS_ID)
    row.gold_rate = rate


def draws_gold(annotator_id: int, answered: int, rate: float) -> bool:
    """This annotator's draw for their ``answered``-th clip: gold with probability ``rate``."""
    digest = hashlib.sha256(f"gold:{annotator_id}:{answered}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < rate


# --- marking ----------------------------------------------------------------------------------


def check_verdict(verdict: str, reasons: Sequence[str]) -> tuple[str, list[str]]:
    if verdict not in _STATUS_OF:
        raise InvalidDecision(f"verdict {verdict!r}: expected 'accept' or 'reject'")
    known = {r.value for r in RejectReason}
    bad = sorted(set(reasons) - known)
    if bad:
        raise InvalidDecision(f"unknown reasons {bad}: expected some of {sorted(known)}")
    if verdict == Verdict.ACCEPT and reasons:
        raise InvalidDecision("an accept takes no reject reasons")
    if verdict == Verdict.REJECT and not reasons:
        raise InvalidDecision(f"a reject needs at least one reason of {sorted(known)}")
    return verdict, sorted(set(reasons))


def add_gold(session: Session, clip_id: str, verdict: str, reasons: Sequence[str] = (), note: str | None = None,
             lead_id: int | None = None) -> GoldClip:
    """Mark a clip gold with its known verdict (or change its gold verdict); its status becomes that verdict."""
    verdict, reasons = check_verdict(verdict, reasons)
    lock_clip(session, clip_id)  # a vote in flight on the clip finishes first (dvmset.clip_locks)
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFound(f"clip {clip_id!r} is not in the catalog (`vidmusician status` lists clips)")
    if clip.status not in _SETTLED:
        raise Conflict(f"clip {clip_id!r} is {clip.status}: only a clip in review can be gold")
    row = session.get(GoldClip, clip_id)
    if row is None:
        row = GoldClip(clip_id=clip_id, verdict=verdict, reasons=reasons, note=(note or "").strip() or None,
                       added_by=lead_id)
        session.add(row)
    else:
        row.verdict, row.reasons, row.note = verdict, reasons, (note or "").strip() or row.note
    clip.status = _STATUS_OF[verdict]
    session.flush()
    return row


def remove_gold(session: Session, clip_id: str) -> int:
    """Unmark a gold clip; its answers stay recorded but no longer count. A clip without a live vote goes
    back to the queue; one with votes keeps its status. Returns the answers it had."""
    lock_clip(session, clip_id)
    row = session.get(GoldClip, clip_id)
    if row is None:
        raise NotFound(f"clip {clip_id!r} is not gold (`vidmusician review gold list` shows them)")
    answers = session.scalar(select(func.count()).where(GoldAnswer.clip_id == clip_id,
                                                        GoldAnswer.undone_at.is_(None))) or 0
    session.delete(row)
    from dvmset.agreement import in_force

    voted = session.scalar(select(func.count()).select_from(Decision).where(Decision.clip_id == clip_id,
                                                                           in_force(Decision)))
    clip = session.get(Clip, clip_id)
    if not voted and clip.status in _SETTLED:
        clip.status = ClipStatus.PENDING_REVIEW.value
    session.execute(delete(Lease).where(Lease.clip_id == clip_id))
    return answers


def list_gold(session: Session) -> list[dict]:
    """Every gold clip with its verdict, reasons, note and how its answers went."""
    answers: dict[str, list[str]] = {}
    for clip_id, verdict in session.execute(select(GoldAnswer.clip_id, GoldAnswer.verdict)
                                            .where(GoldAnswer.undone_at.is_(None))):
        answers.setdefault(clip_id, []).append(verdict)
    out = []
    for g in session.scalars(select(GoldClip).order_by(GoldClip.clip_id)):
        got = answers.get(g.clip_id, [])
        out.append({"clip_id": g.clip_id, "verdict": g.verdict, "reasons": list(g.reasons or []), "note": g.note,
                    "answers": len(got), "correct": sum(v == g.verdict for v in got)})
    return out


# --- the queue's hook -------------------------------------------------------------------------


def claim(session: Session, annotator_id: int, now: dt.datetime, until: dt.datetime, rate: float | None = None) -> str | None:
    """The queue's gold hook (dvmset.review.claim_next calls it first, inside its write lock): the gold
    clip this annotator holds (renewed), else a new gold clip when their draw says so and one is left
    that they have neither answered nor skipped; None leaves the choice to the ordinary queue."""
    gold = set(session.scalars(select(GoldClip.clip_id)))
    if not gold:
        return None
    held = session.scalars(select(Lease).where(Lease.annotator_id == annotator_id, Lease.skipped.is_(False))).all()
    for lease in held:
        if lease.clip_id in gold:
            lease.expires_at = until
            return lease.clip_id
    if held:
        return None  # they hold an ordinary clip: the queue renews it
    rate = gold_rate(session) if rate is None else rate
    answered = set(session.scalars(select(GoldAnswer.clip_id).where(GoldAnswer.annotator_id == annotator_id,
                                                                    GoldAnswer.undone_at.is_(None))))
    done = session.scalar(select(func.count()).select_from(Decision).where(
        Decision.annotator_id == annotator_id, Decision.verdict != "undo")) or 0
    if not draws_gold(annotator_id, done + len(answered), rate):
        return None
    skipped = set(session.scalars(select(Lease.clip_id).where(
        Lease.annotator_id == annotator_id, Lease.skipped.is_(True), Lease.expires_at > now)))
    left = sorted(gold - answered - skipped,
                  key=lambda c: hashlib.sha256(f"{annotator_id}:{c}".encode()).digest())  # a different order each
    for clip_id in left:
        if session.get(Clip, clip_id).status in _SETTLED:
            session.add(Lease(clip_id=clip_id, annotator_id=annotator_id, expires_at=until, skipped=False,
                              handed_at=now))
            session.flush()
            return clip_id
    return None


def gold_verdict(session: Session, clip_id: str) -> GoldClip | None:
    return session.get(GoldClip, clip_id)


def answer(session: Session, annotator_id: int, clip_id: str, verdict: str, reasons: Sequence[str],
           seconds_spent: float | None, now: dt.datetime) -> GoldAnswer:
    """Record an annotator's verdict on a gold clip (dvmset.review.decide's hook); one per annotator."""
    mine = session.scalar(select(func.count()).where(GoldAnswer.clip_id == clip_id, GoldAnswer.undone_at.is_(None),
                                                     GoldAnswer.annotator_id == annotator_id))
    if mine:
        raise Conflict(f"clip {clip_id!r} already has your verdict")
    session.execute(delete(Lease).where(Lease.clip_id == clip_id, Lease.annotator_id == annotator_id))
    row = GoldAnswer(clip_id=clip_id, annotator_id=annotator_id, verdict=verdict, reasons=list(reasons),
                     seconds_spent=seconds_spent, created_at=now)
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class GoldUndo:
    """What dvmset.review.undo_last answers when it took back a gold answer (the fields of an undo row)."""

    id: int  # the answer's id
    voids: int
    clip_id: str


def undo_latest(session: Session, annotator_id: int, since: dt.datetime | None, until: dt.datetime,
                now: dt.datetime) -> GoldUndo | None:
    """dvmset.review.undo_last's hook: when this annotator's latest action was an answer on a gold clip
    (newer than ``since``, their latest verdict in force), mark it undone and hand the clip back to them
    (a lease until ``until``), as an undo does for any verdict; None otherwise."""
    last = session.scalars(select(GoldAnswer).where(GoldAnswer.annotator_id == annotator_id,
                                                    GoldAnswer.undone_at.is_(None))
                           .order_by(GoldAnswer.id.desc()).limit(1)).first()
    if last is None or (since is not None and _aware(last.created_at) <= _aware(since)):
        return None
    if session.get(GoldClip, last.clip_id) is None:
        return None  # no longer gold: nothing to hand back
    last.undone_at = now
    session.execute(delete(Lease).where(Lease.annotator_id == annotator_id,
                                        (Lease.skipped.is_(False)) | (Lease.clip_id == last.clip_id)))
    session.add(Lease(clip_id=last.clip_id, annotator_id=annotator_id, expires_at=until, skipped=False,
                      handed_at=now))
    session.flush()
    return GoldUndo(last.id, last.id, last.clip_id)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC


def shown_status(session: Session, clip_id: str, verdict: str | None) -> str:
    """The clip status an annotator is told after answering (``verdict``) or taking back (None) a gold
    clip: what an ordinary clip would show with that one verdict, so the answer does not reveal gold."""
    from dvmset.agreement import effective_verdict
    from dvmset.review_policy import current_policy

    eff = None if verdict is None else effective_verdict([verdict], current_policy(session).overlap)
    return _STATUS_OF[eff] if eff is not None else ClipStatus.PENDING_REVIEW.value


def answers_given(session: Session, annotator_id: int) -> int:
    """This annotator's answers on gold clips in force: their "done by you" count includes them, as it
    would an ordinary verdict."""
    return session.scalar(select(func.count()).where(GoldAnswer.annotator_id == annotator_id,
                                                     GoldAnswer.undone_at.is_(None))) or 0


# --- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    answered: int
    correct: int
    low: float  # Wilson 95 % interval
    high: float

    @property
    def share(self) -> float:
        return self.correct / self.answered


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % for the default z); (0, 1) with no trials."""
    if not 0 <= correct <= n:
        raise ValueError(f"wilson: {correct} correct of {n} trials")
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_by_annotator(session: Session) -> dict[str, Accuracy]:
    """Each annotator's answers on clips that are gold now: how many agree with the gold verdict."""
    rows = session.execute(
        select(Annotator.name, GoldAnswer.verdict, GoldClip.verdict)
        .join(GoldAnswer, GoldAnswer.annotator_id == Annotator.id)
        .join(GoldClip, GoldClip.clip_id == GoldAnswer.clip_id)
        .where(GoldAnswer.undone_at.is_(None))
    ).all()
    tally: dict[str, list[int]] = {}
    for name, given, truth in rows:
        t = tally.setdefault(name, [0, 0])
        t[0] += 1
        t[1] += given == truth
    return {name: Accuracy(n, k, *wilson(k, n)) for name, (n, k) in tally.items()}
