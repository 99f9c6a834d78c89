"""The statements behind the two requests an annotator makes per clip (next clip, verdict), built once.

Each is built on first use with bound parameters, so SQLAlchemy builds and compiles it once per process,
and each names the columns it needs and returns plain rows: no ORM objects, identity map or unit of
work on the hot path. Where one statement answers what several did, it reads only what those read at
the same point of the transaction; dvmset.review says when each runs and why (locks, fresh snapshots).
"""

from __future__ import annotations

import functools

from sqlalchemy import (
    Delete,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)

from dvmset.agreement import in_force
from dvmset.records import ClipStatus
from dvmset.review_policy import policy_columns
from dvmset.tables import TAKEN_DOWN, Adjudication, Clip, Decision, GoldClip, Lease, Source

clips, leases, decisions = Clip.__table__, Lease.__table__, Decision.__table__
gold_clips, adjudications = GoldClip.__table__, Adjudication.__table__
PENDING = ClipStatus.PENDING_REVIEW.value


# --- the queue: which clips :me may be handed at :now ----------------------------------------------------


def _open_to_me():  # noqa: ANN202 - a SQL boolean clause
    """Whether a clip (a row of ``clips``) may be handed to :me at :now: pending, neither decided nor
    skipped by :me, fewer than :overlap verdicts in force plus others' live leases."""
    d, md = (decisions.alias(n) for n in ("d", "md"))
    me, now = bindparam("me"), bindparam("now", type_=leases.c.expires_at.type)
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
    return and_(clips.c.status == PENDING, ~mine, ~skipped, live_count + others_leased < bindparam("overlap"))


@functools.cache
def claimable(first_only: bool = True) -> Select:
    """Pending clips among :ids that :me may be handed at :now, first by id (every one of them when not
    ``first_only``)."""
    stmt = select(clips.c.id).where(clips.c.id.in_(bindparam("ids", expanding=True)), _open_to_me())
    return stmt.order_by(clips.c.id).limit(1) if first_only else stmt.order_by(clips.c.id)


@functools.cache
def _page_ids(page: int):  # noqa: ANN202 - a subquery
    """The ids of the next ``page`` pending clips after :after (the index on clips (status, id) serves it)."""
    p = clips.alias("page")
    return (select(p.c.id).where(p.c.status == PENDING, p.c.id > bindparam("after"))
            .order_by(p.c.id).limit(page).subquery())


@functools.cache
def first_in_page(page: int, lock: bool) -> Select:
    """The first clip among the next ``page`` pending ones after :after that :me may be handed, :exclude
    left out: the page and the checks in one statement. ``lock`` (Postgres): the first whose row no other
    transaction holds, locked (the queue's ``FOR UPDATE SKIP LOCKED``), so concurrent claims take
    different clips instead of queueing on one."""
    ids = _page_ids(page)
    stmt = (select(clips.c.id)
            .where(clips.c.id.in_(select(ids.c.id)), clips.c.id.not_in(bindparam("exclude", expanding=True)),
                   _open_to_me())
            .order_by(clips.c.id).limit(1))
    return stmt.with_for_update(skip_locked=True, of=clips) if lock else stmt


@functools.cache
def page_end(page: int) -> Select:
    ids = _page_ids(page)
    return select(func.max(ids.c.id))


@functools.cache
def drop_expired(mine_only: bool) -> Delete:
    """Drop the leases expired at :now (only :me's when ``mine_only``)."""
    stmt = delete(leases).where(leases.c.expires_at <= bindparam("now", type_=leases.c.expires_at.type))
    return stmt.where(leases.c.annotator_id == bindparam("me")) if mine_only else stmt


# --- next clip --------------------------------------------------------------------------------------------


def _mine_in_force(clip_id):  # noqa: ANN001, ANN202 - a column or bind parameter; a SQL boolean clause
    md = decisions.alias("md")
    return exists().where(md.c.clip_id == clip_id, md.c.annotator_id == bindparam("me"), in_force(md))


@functools.cache
def policy_and_gold() -> Select:
    """The review policy and whether any clip is gold: what a claim reads first."""
    return select(*policy_columns(), select(gold_clips.c.clip_id).exists().label("any_gold"))


@functools.cache
def held_leases() -> Select:
    """The clips :me holds (not skipped), by id, each with whether it may be renewed: still pending and
    without a verdict of theirs in force."""
    renewable = and_(clips.c.status == PENDING, ~_mine_in_force(leases.c.clip_id))
    return (select(leases.c.clip_id, renewable.label("renewable"))
            .select_from(leases.outerjoin(clips, clips.c.id == leases.c.clip_id))
            .where(leases.c.annotator_id == bindparam("me"), leases.c.skipped.is_(False))
            .order_by(leases.c.clip_id))


@functools.cache
def renew_lease() -> Update:
    """Renew :me's lease on :clip to :until (handed out at :now if it predates revision 0006)."""
    return (update(leases).where(leases.c.clip_id == bindparam("clip"), leases.c.annotator_id == bindparam("me"))
            .values(expires_at=bindparam("until"),
                    handed_at=func.coalesce(leases.c.handed_at, bindparam("now", type_=leases.c.handed_at.type))))


@functools.cache
def drop_leases() -> Delete:
    """Drop :me's leases on the clips :ids."""
    return delete(leases).where(leases.c.annotator_id == bindparam("me"),
                                leases.c.clip_id.in_(bindparam("ids", expanding=True)))


@functools.cache
def add_lease() -> Insert:
    return insert(leases)


@functools.cache
def clip_and_source() -> Select:
    """What the review page shows of clip :clip and its source."""
    src = Source.__table__
    return (select(clips.c.id, clips.c.start_s, clips.c.duration_s, clips.c.silence_ratio, clips.c.static_ratio,
                   clips.c.still_s, clips.c.scene_cuts, clips.c.loudness_lufs, clips.c.limiting_db,
                   clips.c.clip_gain_db, clips.c.vocal_energy, src.c.id.label("source_id"),
                   src.c.title.label("source_title"), src.c.query.label("source_query"),
                   src.c.webpage_url.label("source_webpage_url"), src.c.url.label("source_url"))
            .select_from(clips.outerjoin(src, src.c.id == clips.c.source_id))
            .where(clips.c.id == bindparam("clip")))


# --- verdict ----------------------------------------------------------------------------------------------


@functools.cache
def before_lock() -> Select:
    """What a verdict on :clip by :me reads before the clip's lock: when :me was handed it (NULL: not
    held, or skipped), whether it is gold, and the review policy."""
    handed_at = (select(leases.c.handed_at)
                 .where(leases.c.clip_id == bindparam("clip"), leases.c.annotator_id == bindparam("me"),
                        leases.c.skipped.is_(False))
                 .scalar_subquery().label("handed_at"))
    gold = exists().where(gold_clips.c.clip_id == bindparam("clip")).label("gold")
    return select(handed_at, gold, *policy_columns())


@functools.cache
def clip_row(lock: bool) -> Select:
    """Clip :clip's status and length; ``lock`` (Postgres): its row locked for this transaction, waiting
    for another holder (a locked row is read as that holder left it)."""
    stmt = select(clips.c.status, clips.c.duration_s).where(clips.c.id == bindparam("clip"))
    return stmt.with_for_update() if lock else stmt


@functools.cache
def verdicts_and_holders() -> Select:
    """Clip :clip's decisions rows by id (none: one row of NULLs), each with how many others than :me
    hold a live lease on it at :now and whether a lead settled it (gold or adjudicated)."""
    clip = bindparam("clip")
    others_leased = (select(func.count()).select_from(leases)
                     .where(leases.c.clip_id == clip, leases.c.annotator_id != bindparam("me"),
                            leases.c.skipped.is_(False),
                            leases.c.expires_at > bindparam("now", type_=leases.c.expires_at.type))
                     .scalar_subquery().label("others_leased"))
    settled = (exists().where(gold_clips.c.clip_id == clip) | exists().where(adjudications.c.clip_id == clip))
    d = decisions
    return (select(others_leased, settled.label("settled"), d.c.id, d.c.annotator_id, d.c.verdict, d.c.reasons,
                   d.c.voids, d.c.seconds_spent)
            .select_from(clips.outerjoin(d, d.c.clip_id == clips.c.id))
            .where(clips.c.id == clip)
            .order_by(d.c.id))


@functools.cache
def drop_my_lease() -> Delete:
    return delete(leases).where(leases.c.clip_id == bindparam("clip"), leases.c.annotator_id == bindparam("me"))


@functools.cache
def add_decision() -> Insert:
    """Insert a decisions row; returns its id."""
    return insert(decisions).returning(decisions.c.id)


@functools.cache
def move_clip() -> Update:
    """Set clip :clip's status to :status; a taken-down clip never moves (as dvmset.tables.Clip's guard)."""
    return (update(clips).where(clips.c.id == bindparam("clip"), clips.c.status != TAKEN_DOWN)
            .values(status=bindparam("status")))
