"""The agreement report from a summary kept in the catalog, so a page load costs the decisions made since
the last one, not every decision (dvmset.agreement computes the same report from scratch).

Every statistic of the report is a sum over clips of what each clip's live verdicts contribute (the joint
labels of each annotator pair, the labels among a clip's first m raters for Fleiss' kappa, the rater count,
each annotator's verdicts and timed seconds), except the medians, read from an index. So the summary is
counters (``agreement_counts``) plus the live verdicts they were counted from (``agreement_verdicts``). Before a
report, :func:`catch_up` takes the decisions not yet counted (``decisions.summarised`` false: any writer,
in any commit order), and for each clip they touch takes back the clip's old contribution, recomputes its
live verdicts from all its decisions (dvmset.agreement.live_verdicts: undos, changes) and adds the new one.
It runs under the catalog's write lock (Postgres: an advisory lock), so two reports never count a decision
twice; a decision committed while it runs is left for the next.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from sqlalchemy import (
    Column,
    MetaData,
    Select,
    String,
    Table,
    case,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from dvmset.agreement import (
    EFFECTIVE_VERDICT_RULE,
    UNDO,
    DecisionRow,
    _cohen_from_counts,
    _fleiss_from_histogram,
    _nan_to_none,
    live_verdicts,
)
from dvmset.batches import batches, padded
from dvmset.records import RejectReason, Verdict
from dvmset.tables import AgreementCount, AgreementVerdict, Annotator, Decision

CLIPS_PER_BATCH = 5_000
_LOCK_ID = 4711023  # Postgres advisory lock of the summary's catch-up
_LABELLINGS = ("", *(r.value for r in RejectReason))  # "" is the verdict itself
_FIRST = {"": Verdict.ACCEPT.value}  # the label whose count among m raters Fleiss' histogram keys on


def _labels(verdict: str, reasons: Iterable[str]) -> dict[str, str]:
    rs = set(reasons)
    return {"": verdict, **{r: "yes" if r in rs else "no" for r in _LABELLINGS[1:]}}


def contribution(live: Mapping[int, tuple[str, tuple[str, ...], float | None]]) -> Counter:
    """The counters one clip adds: ``live`` is annotator -> (verdict, reasons, seconds spent) (pure). Keys
    are JSON lists; ``["pace_s", a]`` sums seconds, every other key counts."""
    out: Counter = Counter()
    if not live:
        return out
    raters = sorted(live)
    labels = {a: _labels(live[a][0], live[a][1]) for a in raters}
    out[json.dumps(["raters", len(raters)])] += 1
    for a in raters:
        verdict, _, secs = live[a]
        out[json.dumps(["verdict", a, verdict])] += 1
        if secs is not None and secs > 0:
            out[json.dumps(["pace", a])] += 1
            out[json.dumps(["pace_s", a])] += secs
    for i, x in enumerate(raters):
        for y in raters[i + 1:]:
            for lab in _LABELLINGS:
                out[json.dumps(["pair", lab, x, y, labels[x][lab], labels[y][lab]])] += 1
    for m in range(2, len(raters) + 1):  # Fleiss over the first m raters, for whichever m is the mode
        first = raters[:m]
        for lab in _LABELLINGS:
            c = sum(labels[a][lab] == _FIRST.get(lab, "yes") for a in first)
            out[json.dumps(["fleiss", lab, m, c])] += 1
    return out


def _lock(session: Session) -> None:
    """Take the catalog's write lock before reading what to count (SQLite: a write statement takes it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
    else:
        session.execute(update(AgreementCount).where(AgreementCount.key == "").values(n=AgreementCount.n))


def _stored(session: Session, clip_ids: list[str]) -> dict[str, dict[int, tuple]]:
    out: dict[str, dict[int, tuple]] = {}
    for c, a, v, r, s in session.execute(select(AgreementVerdict.clip_id, AgreementVerdict.annotator_id,
                                                AgreementVerdict.verdict, AgreementVerdict.reasons,
                                                AgreementVerdict.seconds_spent).where(AgreementVerdict.clip_id.in_(clip_ids))):
        out.setdefault(c, {})[a] = (v, tuple(json.loads(r)), s)
    return out


def _recomputed(session: Session, clip_ids: list[str]) -> tuple[dict[str, dict[int, tuple]], list[int], Counter]:
    """The clips' live verdicts from all their decisions, the ids read, and the undo rows per annotator
    among those not counted before."""
    rows, seen, undone = [], [], Counter()
    q = (select(Decision.id, Decision.clip_id, Decision.annotator_id, Decision.verdict, Decision.reasons,
                Decision.voids, Decision.seconds_spent, Decision.summarised).where(Decision.clip_id.in_(clip_ids)))
    for i, c, a, v, r, vo, s, done in session.execute(q):
        rows.append(DecisionRow(id=i, clip_id=c, annotator_id=a, verdict=v, reasons=tuple(r or ()), voids=vo,
                                seconds_spent=s))
        if not done:
            seen.append(i)
            undone[a] += v == UNDO
    live = {c: {a: (r.verdict, r.reasons, r.seconds_spent) for a, r in per.items()}
            for c, per in live_verdicts(rows).items()}
    return live, seen, undone


def _write_counts(session: Session, delta: Counter) -> None:
    """Add ``delta`` to the stored counters (a ``pace_s`` counter adds seconds to ``total``, the rest to ``n``);
    counters back at zero are removed."""
    old = {}
    for ks in batches(sorted(delta)):
        old.update({k: (n, t) for k, n, t in session.execute(
            select(AgreementCount.key, AgreementCount.n, AgreementCount.total).where(AgreementCount.key.in_(ks)))})
    changed = {}
    for k, d in delta.items():
        n, t = old.get(k, (0, 0.0))
        changed[k] = (n, t + d) if k.startswith('["pace_s"') else (n + int(round(d)), t)
    for ks in batches(sorted(changed)):
        session.execute(delete(AgreementCount).where(AgreementCount.key.in_(ks)))
    rows = [{"key": k, "n": n, "total": t} for k, (n, t) in changed.items() if n or abs(t) > 1e-6]
    for lo in range(0, len(rows), 10_000):
        session.execute(AgreementCount.__table__.insert(), rows[lo:lo + 10_000])


_PENDING_TABLE = Table(  # the clips with uncounted decisions, when more than a batch (a TEMP table: this connection)
    "agreement_pending", MetaData(), Column("clip_id", String(160), primary_key=True), prefixes=["TEMPORARY"])


def _pending_batches(session: Session, pending: Select) -> Iterator[list[str]]:
    """The ``pending`` clip ids, sorted, :data:`CLIPS_PER_BATCH` at a time. A batch or fewer (a page load during
    review) are read at once; more (a catalog from before the summary, or bulk-imported: every decided clip)
    are copied once into a temporary table and read back a batch at a time, so Python holds a batch of ids,
    not every decided clip (~300 MB at a million sources)."""
    first = sorted(session.scalars(pending.limit(CLIPS_PER_BATCH + 1)))
    if len(first) <= CLIPS_PER_BATCH:
        if first:
            yield first
        return
    conn = session.connection()
    _PENDING_TABLE.drop(conn, checkfirst=True)
    _PENDING_TABLE.create(conn)
    try:
        conn.execute(_PENDING_TABLE.insert().from_select(["clip_id"], pending))
        page = select(_PENDING_TABLE.c.clip_id).order_by(_PENDING_TABLE.c.clip_id).limit(CLIPS_PER_BATCH)
        ids = list(conn.scalars(page))
        while ids:
            yield ids
            ids = list(conn.scalars(page.where(_PENDING_TABLE.c.clip_id > ids[-1])))
    finally:
        _PENDING_TABLE.drop(conn, checkfirst=True)


def catch_up(session: Session) -> int:
    """Count the decisions not counted yet (see the module doc); returns how many. The caller commits."""
    pending = select(Decision.clip_id).where(Decision.summarised.is_(False))
    if not session.scalar(select(exists(pending))):
        return 0
    _lock(session)
    counted = 0
    for ids in _pending_batches(session, pending.distinct()):
        old = _stored(session, ids)
        new, seen, undone = _recomputed(session, ids)
        delta: Counter = Counter()
        for c in ids:
            delta.update(contribution(new.get(c, {})))
            delta.subtract(contribution(old.get(c, {})))
        for a, n in undone.items():
            if n:
                delta[json.dumps(["undone", a])] += n
        _write_counts(session, delta)
        session.execute(delete(AgreementVerdict).where(AgreementVerdict.clip_id.in_(ids)))
        live_rows = [{"clip_id": c, "annotator_id": a, "verdict": v, "reasons": json.dumps(list(r)),
                      "seconds_spent": s} for c, per in new.items() for a, (v, r, s) in per.items()]
        for lo in range(0, len(live_rows), 10_000):
            session.execute(AgreementVerdict.__table__.insert(), live_rows[lo:lo + 10_000])
        for part in batches(seen):
            session.execute(update(Decision).where(Decision.id.in_(part)).values(summarised=True))
        counted += len(seen)
    return counted


def verdict_counts(session: Session, clip_ids: list[str]) -> dict[str, tuple[int, int]]:
    """clip id -> (live verdicts, accepts among them) of the clips in ``clip_ids`` that have any, read from the
    summary (call :func:`catch_up` first): one aggregate row per clip, no decision row loaded."""
    q = (select(AgreementVerdict.clip_id, func.count(),
                func.sum(case((AgreementVerdict.verdict == Verdict.ACCEPT.value, 1), else_=0)))
         .where(AgreementVerdict.clip_id.in_(padded(clip_ids))).group_by(AgreementVerdict.clip_id))
    return {c: (int(n), int(acc)) for c, n, acc in session.execute(q)}


def _median(session: Session, annotator: int, n: int) -> float | None:
    """The median of the annotator's ``n`` positive times, read from the (annotator, seconds) index."""
    if not n:
        return None
    q = (select(AgreementVerdict.seconds_spent).where(AgreementVerdict.annotator_id == annotator,
                                                   AgreementVerdict.seconds_spent > 0)
         .order_by(AgreementVerdict.seconds_spent).offset((n - 1) // 2).limit(2 - n % 2))
    return statistics.mean(session.scalars(q))


def report_from_counts(counts: Mapping[tuple, tuple[int, float]], names: Mapping[int, str],
                       median: Mapping[int, float | None]) -> dict:
    """dvmset.agreement.agreement_report's dict from the summary's counters (pure)."""
    joint: dict[str, dict[tuple[int, int], Counter]] = {lab: {} for lab in _LABELLINGS}
    hist: dict[tuple[str, int], Counter] = {}
    sizes: Counter = Counter()
    verdicts: dict[int, Counter] = {}
    pace, undone = {}, {}
    for key, (n, total) in counts.items():
        kind = key[0]
        if kind == "pair":
            _, lab, x, y, la, lb = key
            joint[lab].setdefault((x, y), Counter())[(la, lb)] += n
        elif kind == "fleiss":
            _, lab, m, c = key
            hist.setdefault((lab, m), Counter())[c] += n
        elif kind == "raters":
            sizes[key[1]] += n
        elif kind == "verdict":
            verdicts.setdefault(key[1], Counter())[key[2]] += n
        elif kind == "pace":
            pace[key[1]] = (n, pace.get(key[1], (0, 0.0))[1])
        elif kind == "pace_s":
            pace[key[1]] = (pace.get(key[1], (0, 0.0))[0], total)
        elif kind == "undone":
            undone[key[1]] = n
    multi = {k: n for k, n in sizes.items() if k >= 2 and n}
    m = max(multi.items(), key=lambda kv: (kv[1], kv[0]))[0] if multi else None
    each = {}
    for lab in _LABELLINGS:
        pairs = [{"a": names.get(x, str(x)), "b": names.get(y, str(y)), "items": sum(cnt.values()),
                  "kappa": _nan_to_none(_cohen_from_counts(cnt))}
                 for (x, y), cnt in sorted(joint[lab].items()) if sum(cnt.values())]
        fleiss = ({"kappa": None, "items": 0, "raters_per_item": None} if m is None
                  else _fleiss_from_histogram(+hist.get((lab, m), Counter()), m))
        each[lab] = {"pairs": pairs, "fleiss": fleiss}
    people = []
    for a in sorted(set(names) | {a for a, v in verdicts.items() if sum(v.values())}):
        n, total = pace.get(a, (0, 0.0))
        med = median.get(a)
        v = verdicts.get(a, Counter())
        people.append({
            "name": names.get(a, str(a)),
            "decisions": sum(v.values()),
            "accepted": v[Verdict.ACCEPT.value],
            "rejected": v[Verdict.REJECT.value],
            "undone": undone.get(a, 0),
            "median_seconds": None if med is None else round(med, 2),
            "clips_per_hour": None if not n else round(3600.0 * n / total, 1),
        })
    return {
        "rule": EFFECTIVE_VERDICT_RULE,
        "clips_rated": sum(sizes.values()),
        "clips_multi_rated": sum(multi.values()),
        "overall": each[""],
        "per_reason": {r.value: each[r.value] for r in RejectReason},
        "annotators": people,
    }


def agreement_report(session: Session) -> dict:
    """The agreement report (the same dict as dvmset.agreement.agreement_report) from the summary, after
    counting the decisions made since the last report; commits the session (the catch-up's writes)."""
    if catch_up(session):
        session.commit()
    names = dict(session.execute(select(Annotator.id, Annotator.name)).tuples().all())
    counts = {tuple(json.loads(k)): (n, t) for k, n, t in
              session.execute(select(AgreementCount.key, AgreementCount.n, AgreementCount.total))}
    timed = {k[1]: n for k, (n, _) in counts.items() if k[0] == "pace"}
    return report_from_counts(counts, names, {a: _median(session, a, n) for a, n in timed.items()})
