"""Reading the review's state: progress overall, per query and per annotator, and every decision row."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dvmset import clip_counts
from dvmset.agreement import UNDO, in_force
from dvmset.records import ClipStatus
from dvmset.tables import Adjudication, Annotator, Clip, Decision, GoldAnswer, GoldClip


def progress_by_query(session: Session) -> list[dict]:
    """Done / left per query (done = accepted or rejected; left = pending_review), from the clip counts the
    database keeps (dvmset.clip_counts): no clip is read."""
    by_query, _ = clip_counts.kept_counts(session.connection())
    done = (ClipStatus.ACCEPTED.value, ClipStatus.REJECTED.value)
    out = []
    for query, counts in sorted(by_query.items()):
        if any(s in counts for s in (*done, ClipStatus.PENDING_REVIEW.value)):
            out.append({"query": query, "done": sum(counts.get(s, 0) for s in done),
                        "left": counts.get(ClipStatus.PENDING_REVIEW.value, 0)})
    return out


def progress_overall(session: Session, annotator_id: int | None = None) -> dict:
    """Done / left over all clips, and how many live verdicts this annotator has given."""
    counts = dict(session.execute(select(Clip.status, func.count()).group_by(Clip.status)).tuples().all())
    out = {
        "done": counts.get(ClipStatus.ACCEPTED.value, 0) + counts.get(ClipStatus.REJECTED.value, 0),
        "left": counts.get(ClipStatus.PENDING_REVIEW.value, 0),
    }
    if annotator_id is not None:
        out["mine"] = session.scalar(
            select(func.count()).select_from(Decision).where(Decision.annotator_id == annotator_id,
                                                             in_force(Decision))
        )
    return out


def progress(session: Session, annotator_id: int | None = None) -> dict:
    """Done / left overall and per query, and this annotator's count ("mine") when given."""
    return {**progress_overall(session, annotator_id), "by_query": progress_by_query(session)}


def decision_records(session: Session) -> list[dict]:
    """Every verdict row with its annotator's name and whether it is in force, by ``kind``: ``decision``
    (undo rows included), ``gold_answer`` (a verdict on a gold clip, with the lead's ``gold_verdict``; in
    force until `U` took it back) and ``adjudication`` (a lead's verdict; the latest per clip is in force).
    ``id`` counts within a kind."""
    names = dict(session.execute(select(Annotator.id, Annotator.name)).tuples().all())
    rows = session.scalars(select(Decision).order_by(Decision.id)).all()
    voided = {r.voids for r in rows if r.verdict == UNDO}
    out = [
        {
            "kind": "decision", "id": r.id, "clip_id": r.clip_id,
            "annotator": names.get(r.annotator_id, str(r.annotator_id)),
            "verdict": r.verdict, "reasons": ";".join(r.reasons or []), "note": r.note or "",
            "voids": r.voids, "live": r.verdict != UNDO and r.id not in voided,
            "seconds_spent": r.seconds_spent, "created_at": r.created_at, "gold_verdict": None,
        }
        for r in rows
    ]
    gold = dict(session.execute(select(GoldClip.clip_id, GoldClip.verdict)).tuples().all())
    out += [
        {
            "kind": "gold_answer", "id": a.id, "clip_id": a.clip_id,
            "annotator": names.get(a.annotator_id, str(a.annotator_id)),
            "verdict": a.verdict, "reasons": ";".join(a.reasons or []), "note": "", "voids": None,
            "live": a.undone_at is None, "seconds_spent": a.seconds_spent, "created_at": a.created_at,
            "gold_verdict": gold.get(a.clip_id),  # None once a lead removed the clip from gold
        }
        for a in session.scalars(select(GoldAnswer).order_by(GoldAnswer.id))
    ]
    settled = session.scalars(select(Adjudication).order_by(Adjudication.id)).all()
    latest = {a.clip_id: a.id for a in settled}
    out += [
        {
            "kind": "adjudication", "id": a.id, "clip_id": a.clip_id,
            "annotator": names.get(a.lead_id, str(a.lead_id)),
            "verdict": a.verdict, "reasons": ";".join(a.reasons or []), "note": a.note or "", "voids": None,
            "live": latest[a.clip_id] == a.id, "seconds_spent": None, "created_at": a.created_at,
            "gold_verdict": None,
        }
        for a in settled
    ]
    return out
