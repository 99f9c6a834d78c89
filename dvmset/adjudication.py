"""Adjudication: clips whose annotators' live verdicts disagree, and a lead's verdict that settles one.

A lead's verdict is an ``Adjudication`` row (append-only; the latest per clip stands) and sets the
clip's status; the annotators' votes stay as they were, so agreement figures still show the
disagreement. An adjudicated clip leaves the list.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from dvmset.agreement import DecisionRow, live_verdicts
from dvmset.clip_locks import lock_clip
from dvmset.gold import check_verdict
from dvmset.records import ClipStatus, Verdict
from dvmset.review_policy import Conflict, NotFound
from dvmset.tables import Adjudication, Annotator, Clip, Decision

QC_FIELDS = ("silence_ratio", "still_s", "scene_cuts", "vocal_energy", "loudness_lufs", "loudness_range_lu",
             "limiting_db")
_STATUS_OF = {Verdict.ACCEPT.value: ClipStatus.ACCEPTED.value, Verdict.REJECT.value: ClipStatus.REJECTED.value}


def _live(session: Session, clip_ids: Sequence[str] | None = None) -> dict[str, dict[int, Decision]]:
    """clip id -> annotator id -> their live Decision row (undo applied)."""
    stmt = select(Decision).order_by(Decision.id)
    if clip_ids is not None:
        stmt = stmt.where(Decision.clip_id.in_(list(clip_ids)))
    rows = session.scalars(stmt).all()
    by_id = {r.id: r for r in rows}
    live = live_verdicts(DecisionRow(id=r.id, clip_id=r.clip_id, annotator_id=r.annotator_id, verdict=r.verdict,
                                     voids=r.voids) for r in rows)
    return {c: {a: by_id[d.id] for a, d in per.items()} for c, per in live.items()}


def spans_of(decision: Decision) -> list[dict]:
    """The excluded spans stored with a verdict, as [{"start_s", "end_s", "reason"}], where the catalog
    stores spans on decisions (a ``spans`` attribute of {start_s, end_s, reason} objects or [start, end,
    reason?] lists); [] otherwise or for anything unreadable."""
    out = []
    for sp in getattr(decision, "spans", None) or []:
        try:
            if isinstance(sp, dict):
                start, end, reason = sp.get("start_s", sp.get("start")), sp.get("end_s", sp.get("end")), sp.get("reason")
            else:
                start, end, reason = sp[0], sp[1], (sp[2] if len(sp) > 2 else None)
            out.append({"start_s": float(start), "end_s": float(end), "reason": reason})
        except (TypeError, ValueError, IndexError, KeyError):
            continue
    return out


def adjudicated(session: Session) -> dict[str, Adjudication]:
    """clip id -> its standing (latest) adjudication."""
    out: dict[str, Adjudication] = {}
    for row in session.scalars(select(Adjudication).order_by(Adjudication.id)):
        out[row.clip_id] = row
    return out


def disagreements(session: Session, *, include_settled: bool = False) -> list[dict]:
    """Clips whose live verdicts include both an accept and a reject, oldest clip id first: each with its
    votes (who, verdict, reasons, note, excluded spans where the catalog stores them), QC hints and
    status; clips a lead already settled are left out unless ``include_settled``."""
    names = dict(session.execute(select(Annotator.id, Annotator.name)).tuples().all())
    settled = adjudicated(session)
    out = []
    for clip_id, per in sorted(_live(session).items()):
        verdicts = {d.verdict for d in per.values()}
        if verdicts != {Verdict.ACCEPT.value, Verdict.REJECT.value}:
            continue
        if clip_id in settled and not include_settled:
            continue
        clip = session.get(Clip, clip_id)
        votes = [{"annotator": names.get(a, str(a)), "verdict": d.verdict, "reasons": list(d.reasons or []),
                  "note": d.note, "spans": spans_of(d)}
                 for a, d in sorted(per.items(), key=lambda kv: names.get(kv[0], ""))]
        adj = settled.get(clip_id)
        out.append({
            "clip_id": clip_id, "status": clip.status, "start_s": clip.start_s, "duration_s": clip.duration_s,
            "qc": {f: getattr(clip, f) for f in QC_FIELDS},
            "votes": votes,
            "adjudicated": None if adj is None else {"verdict": adj.verdict, "by": names.get(adj.lead_id),
                                                     "note": adj.note},
        })
    return out


def adjudicate(session: Session, lead_id: int, clip_id: str, verdict: str, reasons: Sequence[str] = (),
               note: str | None = None) -> Adjudication:
    """Settle a clip whose verdicts disagree with a lead's verdict; the caller checks the role."""
    verdict, reasons = check_verdict(verdict, reasons)
    lock_clip(session, clip_id)  # a vote or undo in flight on the clip finishes first; its verdicts read after
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFound(f"clip {clip_id!r} is not in the catalog")
    per = _live(session, [clip_id]).get(clip_id, {})
    if {d.verdict for d in per.values()} != {Verdict.ACCEPT.value, Verdict.REJECT.value}:
        raise Conflict(f"clip {clip_id!r} has no disagreeing verdicts to settle")
    if clip.status not in (ClipStatus.PENDING_REVIEW, ClipStatus.ACCEPTED, ClipStatus.REJECTED):
        raise Conflict(f"clip {clip_id!r} is {clip.status}: it cannot be settled")
    row = Adjudication(clip_id=clip_id, lead_id=lead_id, verdict=verdict, reasons=reasons,
                       note=(note or "").strip() or None)
    session.add(row)
    clip.status = _STATUS_OF[verdict]
    session.flush()
    return row


