"""`vidmusician lineage | takedown`: a clip's lineage, and taking a video or clip down everywhere."""

from __future__ import annotations

import argparse
import json
import sys

from flows.settings import STORE_WAIT_S, add_root_arg, existing_root, open_catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lineage", help="where a clip came from and every step that made it (versions, parameters)")
    add_root_arg(p)
    p.add_argument("clip_id", metavar="CLIP_ID")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("takedown", help="remove a video or a clip from media, shards, exports and releases")
    add_root_arg(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--video", metavar="ID", help="a source video id: all its clips and its media")
    what.add_argument("--clip", metavar="ID", help="one clip id")
    p.add_argument("--reason", required=True, help="why (kept in the catalog as the audit record)")
    p.add_argument("--wait", type=float, default=STORE_WAIT_S, metavar="S",
                   help=f"seconds to wait for a features run or export holding the feature store ({STORE_WAIT_S:g})")
    p.set_defaults(func=cmd_takedown)


def cmd_lineage(args: argparse.Namespace) -> int:
    from dvmset.lineage import UnknownClip, clip_lineage, format_lineage

    root = existing_root(args.root)
    try:
        lin = clip_lineage(root, open_catalog(root), args.clip_id)
    except UnknownClip as err:
        print(f"lineage: {err}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(lin, sys.stdout, indent=2, sort_keys=True, default=str)
        print()
    else:
        print("\n".join(format_lineage(lin)))
    return 0


def cmd_takedown(args: argparse.Namespace) -> int:
    from dvmset.shards import StoreBusy
    from dvmset.takedown import TakedownError
    from flows.curation.takedown import run_takedown

    root = existing_root(args.root)
    try:
        r = run_takedown(root, open_catalog(root), video=args.video, clip=args.clip, reason=args.reason,
                         wait_s=args.wait)
    except (TakedownError, StoreBusy) as err:
        print(f"takedown: {err}", file=sys.stderr)
        return 2
    print(f"took down {args.clip or args.video} ({len(r.clip_ids)} clips): {r.reason}"
          + (" (finished earlier; checked again)" if r.already_finished else ""))
    print(f"  files deleted: {r.files_deleted}; shards rewritten: {', '.join(r.shards_rewritten) or 'none'}; "
          f"exports updated: {', '.join(r.exports_changed) or 'none'}")
    print("  the catalog keeps its rows (status taken_down, when and why); a later curate refuses the video")
    return 0
