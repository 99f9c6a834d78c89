"""Inter-annotator agreement (Cohen's and Fleiss' kappa) and the effective-verdict rule.

The effective-verdict rule (documented here once, used by the review tool and the dataset card):

* A decision row is *live* unless a later ``undo`` row voids it; ``undo`` rows are never live.
* Each annotator counts once per clip: their latest live verdict.
* A clip needs ``required`` live verdicts (1 by default; N in overlap mode). With fewer it stays
  ``pending_review``.
* With enough verdicts, the clip is **accepted only when a strict majority accept**; a tie or a
  majority of rejects rejects it (a doubtful clip costs less than a bad training example).
"""

from __future__ import annotations

import contextlib
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from sqlalchemy import (
    Column,
    ColumnElement,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from dvmset.records import RejectReason, Verdict
from dvmset.tables import Annotator, Decision

UNDO = "undo"

EFFECTIVE_VERDICT_RULE = (
    "Each annotator's latest live (not undone) verdict counts once. A clip is decided once it has "
    "as many verdicts as the review asks for (one, or N with the review policy's overlap N): accepted if a strict "
    "majority accept, otherwise rejected. Until then it waits for review."
)


@dataclass(frozen=True)
class DecisionRow:
    """The fields of a ``decisions`` row that the rule and the statistics need."""

    id: int
    clip_id: str
    annotator_id: int
    verdict: str
    reasons: tuple[str, ...] = ()
    voids: int | None = None
    seconds_spent: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in (Verdict.ACCEPT, Verdict.REJECT, UNDO):
            raise ValueError(f"decision {self.id}: unknown verdict {self.verdict!r}")
        if self.verdict == UNDO and self.voids is None:
            raise ValueError(f"decision {self.id}: an undo row must name the row it voids")


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels on the same items; NaN when undefined (chance agreement 1)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} labels vs {len(b)}: both raters must label the same items")
    if not a:
        raise ValueError("cohen_kappa: no items rated by both raters")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if p_e >= 1.0:
        return float("nan")
    return (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from counts [items, categories]; every item needs the same number (≥ 2) of ratings.

    NaN when undefined (every rating in one category).
    """
    counts = np.asarray(counts, dtype=np.float64)  # [N, K]
    if counts.ndim != 2 or counts.shape[0] == 0 or counts.shape[1] == 0:
        raise ValueError(f"fleiss_kappa: counts must be a non-empty [items, categories] array, got {counts.shape}")
    if (counts < 0).any():
        raise ValueError("fleiss_kappa: counts must be non-negative")
    per_item = counts.sum(axis=1)  # [N]
    m = per_item[0]
    if m < 2 or not np.all(per_item == m):
        raise ValueError(
            f"fleiss_kappa: every item needs the same number (>= 2) of ratings, got {sorted(set(per_item.tolist()))}"
        )
    n_items = counts.shape[0]
    p_j = counts.sum(axis=0) / (n_items * m)  # [K]
    p_i = ((counts * (counts - 1)).sum(axis=1)) / (m * (m - 1))  # [N]
    p_bar = float(p_i.mean())
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return float("nan")
    return (p_bar - p_e) / (1.0 - p_e)


def live_verdicts(rows: Iterable[DecisionRow]) -> dict[str, dict[int, DecisionRow]]:
    """clip id → annotator id → that annotator's latest live verdict row (undo rows applied)."""
    rows = sorted(rows, key=lambda r: r.id)
    voided = {r.voids for r in rows if r.verdict == UNDO}
    out: dict[str, dict[int, DecisionRow]] = defaultdict(dict)
    for r in rows:
        if r.verdict != UNDO and r.id not in voided:
            out[r.clip_id][r.annotator_id] = r
    return dict(out)


def in_force(decision) -> ColumnElement[bool]:  # noqa: ANN001 - the Decision class or an alias of its table
    """The clause "this decision row is in force": a verdict (not an undo row) that no undo row voids."""
    cols = getattr(decision, "c", decision)
    voider = Decision.__table__.alias()
    return and_(cols.verdict != UNDO, ~exists().where(voider.c.voids == cols.id))


def effective_verdict(verdicts: Sequence[str], required: int = 1) -> str | None:
    """The clip's verdict from its live verdicts (one per annotator), or None while too few exist."""
    if required < 1:
        raise ValueError(f"required verdicts must be >= 1, got {required}")
    bad = [v for v in verdicts if v not in (Verdict.ACCEPT, Verdict.REJECT)]
    if bad:
        raise ValueError(f"unknown verdicts {bad}: expected 'accept' or 'reject'")
    if len(verdicts) < required:
        return None
    accepts = sum(v == Verdict.ACCEPT for v in verdicts)
    return Verdict.ACCEPT.value if accepts * 2 > len(verdicts) else Verdict.REJECT.value


def _nan_to_none(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)


def _agreement_for(labels: Mapping[str, Mapping[int, str]], names: Mapping[int, str]) -> dict:
    """Pairwise Cohen and Fleiss for one labelling: clip → annotator → label."""
    pairs = []
    annotators = sorted({a for per in labels.values() for a in per})
    for x, y in combinations(annotators, 2):
        shared = [c for c, per in labels.items() if x in per and y in per]
        if not shared:
            continue
        k = cohen_kappa([labels[c][x] for c in shared], [labels[c][y] for c in shared])
        pairs.append({"a": names.get(x, str(x)), "b": names.get(y, str(y)), "items": len(shared),
                      "kappa": _nan_to_none(k)})
    # Fleiss needs a constant rater count: use the most common count >= 2 (items with more are cut
    # to their first m raters by annotator id, so no item is dropped for having extra verdicts).
    sizes = Counter(len(per) for per in labels.values() if len(per) >= 2)
    fleiss: dict = {"kappa": None, "items": 0, "raters_per_item": None}
    if sizes:
        m = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
        cats = sorted({v for per in labels.values() for v in per.values()})
        rows = []
        for per in labels.values():
            if len(per) >= m:
                chosen = [per[a] for a in sorted(per)[:m]]
                rows.append([chosen.count(c) for c in cats])
        fleiss = {"kappa": _nan_to_none(fleiss_kappa(np.array(rows))), "items": len(rows), "raters_per_item": m}
    return {"pairs": pairs, "fleiss": fleiss}


def agreement_from_rows(rows: Iterable[DecisionRow], names: Mapping[int, str]) -> dict:
    """The agreement report (see ``agreement_report``) from decision rows; pure."""
    rows = list(rows)
    live = live_verdicts(rows)
    overall = {c: {a: r.verdict for a, r in per.items()} for c, per in live.items()}
    per_reason = {}
    for reason in RejectReason:
        lab = {c: {a: ("yes" if reason.value in r.reasons else "no") for a, r in per.items()}
               for c, per in live.items()}
        per_reason[reason.value] = _agreement_for(lab, names)
    undone = Counter(r.annotator_id for r in rows if r.verdict == UNDO)
    mine: dict[int, list[DecisionRow]] = defaultdict(list)
    for per in live.values():
        for a, r in per.items():
            mine[a].append(r)
    people = []
    for a in sorted(set(names) | set(mine)):
        rs = mine.get(a, [])
        secs = [r.seconds_spent for r in rs if r.seconds_spent is not None and r.seconds_spent > 0]
        med = statistics.median(secs) if secs else None
        people.append({
            "name": names.get(a, str(a)),
            "decisions": len(rs),
            "accepted": sum(r.verdict == Verdict.ACCEPT for r in rs),
            "rejected": sum(r.verdict == Verdict.REJECT for r in rs),
            "undone": undone.get(a, 0),
            "median_seconds": None if med is None else round(med, 2),
            "clips_per_hour": None if not secs else round(3600.0 * len(secs) / sum(secs), 1),
        })
    return {
        "rule": EFFECTIVE_VERDICT_RULE,
        "clips_rated": len(live),
        "clips_multi_rated": sum(len(per) >= 2 for per in live.values()),
        "overall": _agreement_for(overall, names),
        "per_reason": per_reason,
        "annotators": people,
    }


def load_decision_rows(session: Session) -> list[DecisionRow]:
    """Every decision row in the catalog, oldest first."""
    cols = select(Decision.id, Decision.clip_id, Decision.annotator_id, Decision.verdict, Decision.reasons,
                  Decision.voids, Decision.seconds_spent).order_by(Decision.id)  # columns: no ORM objects
    return [DecisionRow(id=i, clip_id=c, annotator_id=a, verdict=v, reasons=tuple(r or ()), voids=vo, seconds_spent=s)
            for i, c, a, v, r, vo, s in session.execute(cols.execution_options(yield_per=20_000))]


_LIVE_TABLE = Table(  # the live verdicts of one report, materialised once (a TEMP table: this connection only)
    "agreement_live", MetaData(), Column("id", Integer, primary_key=True), Column("clip_id", String(160)),
    Column("annotator_id", Integer), Column("verdict", String(16)), Column("reasons", Text),
    Column("seconds_spent", Float), prefixes=["TEMPORARY"])


@contextlib.contextmanager
def _live(session: Session):  # noqa: ANN202 - a context manager yielding the table
    """Each annotator's latest in-force verdict row per clip (the rule above), written once into a temporary
    table indexed by clip, so the report's self-joins and window queries scan it, not the decisions."""
    latest = (select(func.max(Decision.id).label("id")).where(in_force(Decision))
              .group_by(Decision.clip_id, Decision.annotator_id).subquery("latest"))
    rows = (select(Decision.id, Decision.clip_id, Decision.annotator_id, Decision.verdict,
                   cast(Decision.reasons, Text), Decision.seconds_spent).join(latest, latest.c.id == Decision.id))
    conn = session.connection()
    _LIVE_TABLE.drop(conn, checkfirst=True)
    _LIVE_TABLE.create(conn)
    try:
        conn.execute(_LIVE_TABLE.insert().from_select([c.name for c in _LIVE_TABLE.c], rows))
        conn.execute(text("CREATE INDEX agreement_live_clip ON agreement_live (clip_id, annotator_id)"))
        yield _LIVE_TABLE
    finally:
        _LIVE_TABLE.drop(conn, checkfirst=True)


def _cohen_from_counts(cnt: Mapping[tuple[str, str], int]) -> float:
    """Cohen's kappa from the joint label counts {(label of a, label of b): clips}."""
    n = sum(cnt.values())
    p_o = sum(k for (u, v), k in cnt.items() if u == v) / n
    ca: Counter = Counter()
    cb: Counter = Counter()
    for (u, v), k in cnt.items():
        ca[u] += k
        cb[v] += k
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return float("nan") if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def _fleiss_from_histogram(hist: Mapping[int, int], m: int) -> dict:
    """Fleiss' kappa of two labels from {count of the first label among an item's m ratings: items}."""
    items = sum(hist.values())
    first = sum(k * n for k, n in hist.items())
    same = sum(n * (k * (k - 1) + (m - k) * (m - k - 1)) for k, n in hist.items())
    p_bar = same / (items * m * (m - 1))
    p_e = (first / (items * m)) ** 2 + (1 - first / (items * m)) ** 2
    kappa = float("nan") if p_e >= 1.0 else (p_bar - p_e) / (1.0 - p_e)
    return {"kappa": _nan_to_none(kappa), "items": items, "raters_per_item": m}


def _labellings(row_verdict: str, row_reasons: str | None) -> dict[str | None, str]:
    """A live row's label in each labelling: None -> its verdict, reason -> "yes" / "no"."""
    text = row_reasons or ""
    return {None: row_verdict, **{r.value: "yes" if f'"{r.value}"' in text else "no" for r in RejectReason}}


def _sql_agreements(session: Session, live, names: Mapping[int, str]) -> dict[str | None, dict]:  # noqa: ANN001
    """``_agreement_for`` of the verdicts (key None) and of each reason, from two SQL aggregates: the joint
    (verdict, reasons) counts per annotator pair over the clips both rated, and the histogram of each clip's
    (accepts, reason counts) among its first m raters (m the most common number of raters >= 2)."""
    keys = [None, *(r.value for r in RejectReason)]
    a, b = live.alias("a"), live.alias("b")
    joint: dict[str | None, dict[tuple[int, int], Counter]] = {k: defaultdict(Counter) for k in keys}
    q = (select(a.c.annotator_id, b.c.annotator_id, a.c.verdict, a.c.reasons, b.c.verdict, b.c.reasons, func.count())
         .join(b, and_(b.c.clip_id == a.c.clip_id, b.c.annotator_id > a.c.annotator_id))
         .group_by(a.c.annotator_id, b.c.annotator_id, a.c.verdict, a.c.reasons, b.c.verdict, b.c.reasons))
    for x, y, va, ra, vb, rb, n in session.execute(q):
        la, lb = _labellings(va, ra), _labellings(vb, rb)
        for k in keys:
            joint[k][(x, y)][(la[k], lb[k])] += n
    out: dict[str | None, dict] = {}
    for k in keys:
        out[k] = {"pairs": [{"a": names.get(x, str(x)), "b": names.get(y, str(y)), "items": sum(cnt.values()),
                             "kappa": _nan_to_none(_cohen_from_counts(cnt))} for (x, y), cnt in sorted(joint[k].items())],
                  "fleiss": {"kappa": None, "items": 0, "raters_per_item": None}}

    raters = select(live.c.clip_id, func.count().label("k")).group_by(live.c.clip_id).subquery("raters")
    sizes = dict(session.execute(select(raters.c.k, func.count()).where(raters.c.k >= 2).group_by(raters.c.k)).all())
    if not sizes:
        return out
    m = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    ranked = (select(live.c.clip_id, live.c.verdict, live.c.reasons,
                     func.row_number().over(partition_by=live.c.clip_id, order_by=live.c.annotator_id).label("r"),
                     func.count().over(partition_by=live.c.clip_id).label("k")).subquery("ranked"))
    first = [func.sum(case((ranked.c.verdict == Verdict.ACCEPT.value, 1), else_=0)).label("accept")]
    first += [func.sum(case((ranked.c.reasons.like(f'%"{r.value}"%'), 1), else_=0)).label(f"r{i}")
              for i, r in enumerate(RejectReason)]
    per_item = (select(*first).where(ranked.c.k >= m, ranked.c.r <= m).group_by(ranked.c.clip_id)
                .subquery("per_item"))
    hist: dict[str | None, Counter] = {k: Counter() for k in keys}
    for row in session.execute(select(*per_item.c, func.count()).group_by(*per_item.c)):
        *counts, n = row
        for k, c in zip(keys, counts, strict=True):
            hist[k][int(c)] += n
    for k in keys:  # the labels present among all live verdicts decide nothing here: Fleiss of 2 categories
        out[k]["fleiss"] = _fleiss_from_histogram(hist[k], m)
    return out


def _annotator_stats(session: Session, live, names: Mapping[int, str]) -> list[dict]:  # noqa: ANN001
    """Each annotator's live verdicts, undos and pace (median and rate of the positive times), by SQL."""
    verdicts = defaultdict(Counter)
    for a, v, n in session.execute(select(live.c.annotator_id, live.c.verdict, func.count())
                                   .group_by(live.c.annotator_id, live.c.verdict)):
        verdicts[a][v] = n
    undone = dict(session.execute(select(Decision.annotator_id, func.count()).where(Decision.verdict == UNDO)
                                  .group_by(Decision.annotator_id)).all())
    timed = live.c.seconds_spent > 0
    pace = {a: (n, total) for a, n, total in session.execute(
        select(live.c.annotator_id, func.count(), func.sum(live.c.seconds_spent)).where(timed)
        .group_by(live.c.annotator_id))}
    ranked = (select(live.c.annotator_id, live.c.seconds_spent,
                     func.row_number().over(partition_by=live.c.annotator_id, order_by=live.c.seconds_spent).label("r"),
                     func.count().over(partition_by=live.c.annotator_id).label("n")).where(timed).subquery("timed"))
    middle = defaultdict(list)  # the one or two middle times of each annotator's sorted times
    for a, sec in session.execute(select(ranked.c.annotator_id, ranked.c.seconds_spent)
                                  .where(or_(ranked.c.r == (ranked.c.n + 1) // 2, ranked.c.r == (ranked.c.n + 2) // 2))
                                  .order_by(ranked.c.annotator_id, ranked.c.r)):
        middle[a].append(sec)
    people = []
    for a in sorted(set(names) | set(verdicts)):
        n, total = pace.get(a, (0, 0.0))
        med = statistics.mean(middle[a]) if middle.get(a) else None
        people.append({
            "name": names.get(a, str(a)),
            "decisions": sum(verdicts[a].values()),
            "accepted": verdicts[a][Verdict.ACCEPT.value],
            "rejected": verdicts[a][Verdict.REJECT.value],
            "undone": undone.get(a, 0),
            "median_seconds": None if med is None else round(med, 2),
            "clips_per_hour": None if not n else round(3600.0 * n / total, 1),
        })
    return people


def agreement_report(session: Session) -> dict:
    """Overall and per-reason agreement (Cohen per pair, Fleiss for all), each annotator's count and pace.

    Kappas are None where undefined (too few shared items, or every label the same). Computed by SQL
    aggregates over the live verdicts (joint label counts per annotator pair, per-clip label counts),
    never loading the decision rows: the same numbers as :func:`agreement_from_rows` on them.
    """
    names = dict(session.execute(select(Annotator.id, Annotator.name)).tuples().all())
    with _live(session) as live:
        per_clip = select(func.count().label("k")).select_from(live).group_by(live.c.clip_id).subquery("per_clip")
        rated = session.execute(select(func.count(), func.sum(case((per_clip.c.k >= 2, 1), else_=0)))).one()
        return {
            "rule": EFFECTIVE_VERDICT_RULE,
            "clips_rated": rated[0] or 0,
            "clips_multi_rated": int(rated[1] or 0),
            "overall": (each := _sql_agreements(session, live, names))[None],
            "per_reason": {r.value: each[r.value] for r in RejectReason},
            "annotators": _annotator_stats(session, live, names),
        }
