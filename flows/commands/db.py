"""`vidmusician db current | upgrade | stamp REV`: the catalog's schema version (Alembic)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dvmset.catalog import head_revision, schema_state, stamp_schema, upgrade_schema
from flows.settings import add_root_arg, catalog_url, resolve_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="the catalog's schema version: show it, upgrade it")
    dsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    a = dsub.add_parser("current", help="the catalog's schema revision and this version's")
    add_root_arg(a)
    a.set_defaults(func=cmd_current)
    a = dsub.add_parser("upgrade", help="migrate the catalog to this version's schema (back it up first)")
    add_root_arg(a)
    a.set_defaults(func=cmd_upgrade)
    a = dsub.add_parser("stamp", help="record a pre-migration catalog's revision without changing it")
    a.add_argument("revision", help="the revision the catalog's tables already match (e.g. 0001)")
    add_root_arg(a)
    a.set_defaults(func=cmd_stamp)


def _where(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_current(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from dvmset.catalog import _revision

    url = catalog_url(resolve_root(args.root, create=False))  # a read: a mistyped --root creates nothing
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database and not Path(database).exists():
        print(f"no catalog at {_where(url)} (check --root / VIDMUSICIAN_DB)")
        return 1
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = _revision(conn)
    finally:
        engine.dispose()
    print(f"{_where(url)}: schema {current or '-'}; this version uses {head_revision()} ({schema_state(current)})")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    url = catalog_url(resolve_root(args.root))
    before, after = upgrade_schema(url)
    print(f"{_where(url)}: schema {before or '(new)'} -> {after}" if before != after
          else f"{_where(url)}: already at {after}")
    return 0


def cmd_stamp(args: argparse.Namespace) -> int:
    url = catalog_url(resolve_root(args.root))
    stamp_schema(url, args.revision)
    print(f"{_where(url)}: recorded as schema {args.revision}; now `vidmusician db upgrade`")
    return 0
