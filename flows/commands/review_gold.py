"""`vidmusician review gold add|list|remove|rate`: clips with a known verdict, mixed unmarked into
annotators' queues to measure each annotator's accuracy (dvmset.gold)."""

from __future__ import annotations

import argparse
import sys

from flows.settings import add_root_arg, existing_root, open_catalog


def register_gold(review_parser: argparse.ArgumentParser) -> None:
    sub = review_parser.add_subparsers(dest="review_command", required=False, metavar="gold")
    g = sub.add_parser("gold", help="gold clips: a known verdict, mixed unmarked into every queue")
    gsub = g.add_subparsers(dest="gold_command", required=True, metavar="ACTION")
    a = gsub.add_parser("add", help="mark clips gold with their known verdict (their status becomes it)")
    a.add_argument("clip_ids", nargs="+", metavar="CLIP_ID")
    a.add_argument("--verdict", choices=("accept", "reject"), required=True)
    a.add_argument("--reason", action="append", default=[], dest="reasons",
                   help="a reject's reason (non_music, noise, static, mismatch, other); repeat for several")
    a.add_argument("--note", default=None)
    add_root_arg(a)
    a.set_defaults(func=cmd_gold_add)
    a = gsub.add_parser("list", help="gold clips, their verdicts and how annotators answered them")
    add_root_arg(a)
    a.set_defaults(func=cmd_gold_list)
    a = gsub.add_parser("remove", help="unmark gold clips (answers stay recorded, no longer scored)")
    a.add_argument("clip_ids", nargs="+", metavar="CLIP_ID")
    add_root_arg(a)
    a.set_defaults(func=cmd_gold_remove)
    a = gsub.add_parser("rate", help="the share of handed-out clips that are gold, in percent (0 to 50)")
    a.add_argument("percent", type=float)
    add_root_arg(a)
    a.set_defaults(func=cmd_gold_rate)


def _run(args: argparse.Namespace, action) -> int:  # noqa: ANN001 - action(session) -> None
    from dvmset.review_policy import ReviewError

    catalog = open_catalog(existing_root(args.root))
    try:
        with catalog.session() as s:
            action(s)
    except (ReviewError, ValueError) as exc:
        print(f"error: {exc}; nothing was changed", file=sys.stderr)
        return 2
    return 0


def cmd_gold_add(args: argparse.Namespace) -> int:
    from dvmset.gold import add_gold

    def add(s) -> None:  # noqa: ANN001
        for clip_id in args.clip_ids:
            add_gold(s, clip_id, args.verdict, args.reasons, args.note)
    rc = _run(args, add)
    if rc == 0:
        print(f"{len(args.clip_ids)} gold clip(s) marked {args.verdict}")
    return rc


def cmd_gold_remove(args: argparse.Namespace) -> int:
    from dvmset.gold import remove_gold

    def remove(s) -> None:  # noqa: ANN001
        for clip_id in args.clip_ids:
            n = remove_gold(s, clip_id)
            print(f"{clip_id}: no longer gold ({n} answer(s) kept, not scored)")
    return _run(args, remove)


def cmd_gold_rate(args: argparse.Namespace) -> int:
    from dvmset.gold import set_gold_rate

    rc = _run(args, lambda s: set_gold_rate(s, args.percent / 100.0))
    if rc == 0:
        print(f"gold clips are now {args.percent:g} % of the clips handed out")
    return rc


def cmd_gold_list(args: argparse.Namespace) -> int:
    from dvmset.gold import gold_rate, list_gold

    catalog = open_catalog(existing_root(args.root))
    with catalog.session() as s:
        rows, rate = list_gold(s), gold_rate(s)
    print(f"{len(rows)} gold clip(s), mixed in at {rate * 100:g} %")
    for g in rows:
        why = f" ({', '.join(g['reasons'])})" if g["reasons"] else ""
        print(f"{g['clip_id']}\t{g['verdict']}{why}\t{g['correct']}/{g['answers']} answers agree")
    return 0
