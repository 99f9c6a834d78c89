"""One clip's row lock: what every review writer on Postgres takes before it reads a clip's verdicts.

Annotators' verdicts, undos and skips (dvmset.review), a lead's adjudication (dvmset.adjudication) and gold
marks (dvmset.gold) all change a clip's status from what they read of its verdicts; each takes this lock
first, so they meet one at a time on the clip they touch and never on others. SQLite has no row locks: its
writers hold the whole database's write lock already, so there the call is a no-op.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dvmset.tables import Clip


def on_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_clip(session: Session, clip_id: str, *, skip_locked: bool = False) -> bool:
    """Postgres: lock the clip's row for this transaction (waiting for another holder, or with
    ``skip_locked`` passing it over: False). SQLite holds the whole database already: always True."""
    if not on_postgres(session):
        return True
    stmt = select(Clip.__table__.c.id).where(Clip.__table__.c.id == clip_id).with_for_update(skip_locked=skip_locked)
    return session.execute(stmt).first() is not None
