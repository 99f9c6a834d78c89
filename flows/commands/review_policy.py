"""`vidmusician review-policy show | set`: the review policy every review server on a catalog follows."""

from __future__ import annotations

import argparse
import sys

from flows.commands.review import lease_arg, overlap_arg
from flows.settings import add_root_arg, existing_root, open_catalog

SHOW_IDS = 20  # clip ids listed by `set`; the rest are counted


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review-policy", help="show or change the review policy (verdicts per clip, lease length)")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    a = psub.add_parser("show", help="the catalog's review policy")
    add_root_arg(a)
    a.set_defaults(func=cmd_show)
    a = psub.add_parser("set", help="change it for every review server on this catalog, running ones included; "
                                    "says which clips the change decides")
    add_root_arg(a)
    a.add_argument("--overlap", type=overlap_arg, metavar="N", help="independent verdicts each clip needs")
    a.add_argument("--lease-seconds", type=lease_arg, metavar="S", help="how long a handed-out clip is reserved")
    a.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    a.set_defaults(func=cmd_set)


def cmd_show(args: argparse.Namespace) -> int:
    from dvmset.review import current_policy

    with open_catalog(existing_root(args.root)).session() as s:
        print(f"review policy: {current_policy(s).describe()}")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    from dvmset.review import set_policy

    if args.overlap is None and args.lease_seconds is None:
        print("error: give --overlap and/or --lease-seconds", file=sys.stderr)
        return 2
    with open_catalog(existing_root(args.root)).session() as s:
        change = set_policy(s, args.overlap, args.lease_seconds, dry_run=args.dry_run)
        if args.dry_run:
            s.rollback()
    verb = "would be" if args.dry_run else "is now"
    print(f"review policy {verb}: {change.new.describe()} (was {change.old.describe()})")
    decided = change.decided
    if decided:
        acc = sum(1 for v in decided.values() if v == "accepted")
        listed = ", ".join(f"{c} {v}" for c, v in list(decided.items())[:SHOW_IDS])
        more = f" and {len(decided) - SHOW_IDS} more" if len(decided) > SHOW_IDS else ""
        print(f"{'would decide' if args.dry_run else 'decided'} {len(decided)} pending clip(s) that hold "
              f"{change.new.overlap} verdict(s): {acc} accepted, {len(decided) - acc} rejected ({listed}{more})")
    else:
        print("decides no clip: no pending clip holds enough verdicts under the new overlap")
    if change.kept:
        print(f"{change.kept} clip(s) decided with fewer than {change.new.overlap} verdicts keep their status "
              "(a raised overlap applies to clips still pending)")
    if change.new.lease_s != change.old.lease_s:
        print("leases already handed out keep their expiry; new ones and renewals use the new length")
    return 0
