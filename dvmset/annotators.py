"""Annotators of the review tool: personal tokens (only their SHA-256 is stored), new links, revocation,
and roles: an ``annotator`` sees their own figures; a ``lead`` sees everyone's, marks gold clips and
adjudicates disagreements."""

from __future__ import annotations

import functools
import hashlib
import secrets

from sqlalchemy import Select, bindparam, delete, select
from sqlalchemy.orm import Session, make_transient_to_detached

from dvmset.review_policy import Conflict, NotFound, ReviewError
from dvmset.tables import Annotator, Lease


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


ANNOTATOR, LEAD = "annotator", "lead"
ROLES = (ANNOTATOR, LEAD)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    return role


class LeadsOnly(ReviewError):
    """An annotator asked for what only a lead may see or do (403)."""


def is_lead(ann: Annotator) -> bool:
    return ann.role == LEAD


def require_lead(ann: Annotator, what: str) -> None:
    if not is_lead(ann):
        raise LeadsOnly(f"{what} is for leads; whoever runs the catalog can make you one (vidmusician annotators role NAME lead)")


def add_annotator(session: Session, name: str, role: str = ANNOTATOR) -> tuple[Annotator, str]:
    """Create an annotator (or a lead); returns it and its token (shown once; only the hash is stored)."""
    check_role(role)
    name = name.strip()
    if not 1 <= len(name) <= 64 or not name.isprintable():
        raise ValueError(f"annotator name {name!r}: use 1-64 printable characters")
    if session.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
        raise Conflict(f"annotator {name!r} already exists; pick another name")
    token = secrets.token_urlsafe(32)
    ann = Annotator(name=name, token_hash=hash_token(token), role=role)
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


def set_role(session: Session, name: str, role: str) -> Annotator:
    """Make an annotator a lead or back; their link and decisions stay."""
    check_role(role)
    ann = _annotator_named(session, name)
    ann.role = role
    return ann


def revoke_annotator(session: Session, name: str) -> int:
    """No token of this annotator works any more; their decisions stay. Returns the leases released
    (their reserved clips go back to the queue at once instead of when the lease expires)."""
    ann = _annotator_named(session, name)
    ann.token_hash = REVOKED + secrets.token_hex(16)
    return session.execute(delete(Lease).where(Lease.annotator_id == ann.id)).rowcount or 0


def is_revoked(ann: Annotator) -> bool:
    return ann.token_hash.startswith(REVOKED)


def annotator_for_token(session: Session, token: str | None) -> Annotator | None:
    """The token's annotator, detached (as a caller holds it once its session closes): read-only here;
    set_role, new_token and revoke_annotator change annotators."""
    if not token or len(token) > 256:
        return None
    row = session.execute(_by_token_hash(), {"token_hash": hash_token(token)}).first()
    if row is None:
        return None
    ann = Annotator(**row._asdict())
    make_transient_to_detached(ann)  # as the ORM would load it, without its per-object work (every request asks)
    return ann


@functools.cache
def _by_token_hash() -> Select:
    t = Annotator.__table__
    return select(*t.c).where(t.c.token_hash == bindparam("token_hash"))
