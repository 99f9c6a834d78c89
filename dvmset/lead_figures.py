"""What the agreement page adds to the agreement report: each annotator's listening time and gold
accuracy, and which figures a viewer may see (a lead everyone's, an annotator their own).

Listening time comes from the decisions' ``listened_s`` column (the server's measure from handing a
clip out to its verdict) where the catalog has it; a catalog without it, or rows without a value,
show no figure rather than a guess.
"""

from __future__ import annotations

import statistics

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from dvmset.agreement import in_force
from dvmset.annotators import is_lead
from dvmset.gold import accuracy_by_annotator
from dvmset.tables import Annotator, Decision


def has_listening(session: Session) -> bool:
    """Whether this catalog's decisions carry a measured ``listened_s``."""
    if "listened_s" not in Decision.__table__.c:
        return False
    return any(c["name"] == "listened_s" for c in inspect(session.get_bind()).get_columns("decisions"))


def listening_by_annotator(session: Session) -> dict[str, dict]:
    """name -> {"median_s", "total_h", "clips"} over their live verdicts with a measured listening time;
    empty where the catalog does not measure it."""
    if not has_listening(session):
        return {}
    col = Decision.__table__.c.listened_s
    rows = session.execute(select(Annotator.name, col).join(Decision, Decision.annotator_id == Annotator.id)
                           .where(in_force(Decision), col.is_not(None))).all()
    per: dict[str, list[float]] = {}
    for name, secs in rows:
        per.setdefault(name, []).append(float(secs))
    return {name: {"median_s": round(statistics.median(v), 1), "total_h": round(sum(v) / 3600.0, 2),
                   "clips": len(v)} for name, v in per.items()}


def lead_figures(session: Session) -> dict[str, dict]:
    """name -> {"listening": {...} | None, "gold": {"answered", "correct", "accuracy", "low", "high"} | None}."""
    listening = listening_by_annotator(session)
    gold = accuracy_by_annotator(session)
    names = session.scalars(select(Annotator.name).order_by(Annotator.name)).all()
    out = {}
    for name in names:
        acc = gold.get(name)
        out[name] = {
            "listening": listening.get(name),
            "gold": None if acc is None else {"answered": acc.answered, "correct": acc.correct,
                                              "accuracy": round(acc.share, 4), "low": round(acc.low, 4),
                                              "high": round(acc.high, 4)},
        }
    return out


def visible_to(report: dict, figures: dict[str, dict], viewer: Annotator) -> tuple[dict, dict[str, dict]]:
    """The agreement report and figures as ``viewer`` may see them: a lead everything; an annotator
    their own row, the pairs they are in, and the overall (anonymous) kappas."""
    if is_lead(viewer):
        return report, figures
    me = viewer.name

    def mine(block: dict) -> dict:
        return {**block, "pairs": [p for p in block["pairs"] if me in (p["a"], p["b"])]}

    own = {**report,
           "overall": mine(report["overall"]),
           "per_reason": {k: mine(v) for k, v in report["per_reason"].items()},
           "annotators": [p for p in report["annotators"] if p["name"] == me]}
    return own, {k: v for k, v in figures.items() if k == me}
