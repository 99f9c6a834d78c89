"""`vidmusician music-groups [--rebuild]`: the sources that share music, from the index kept in the catalog
(dvmset.music_index); ``--rebuild`` recomputes the index from every fingerprint."""

from __future__ import annotations

import argparse
import json

from flows.settings import add_root_arg, catalog_url, resolve_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("music-groups", help="sources sharing music (the shared-music index); --rebuild it")
    p.add_argument("--rebuild", action="store_true",
                   help="recompute the index from every clip's fingerprint (after a bulk import, or to check it)")
    p.add_argument("--json", action="store_true", help="the groups as JSON")
    add_root_arg(p)
    p.set_defaults(func=cmd_music_groups)


def cmd_music_groups(args: argparse.Namespace) -> int:
    from dvmset.catalog import Catalog
    from dvmset.music_index import rebuild_index, stored_groups
    from dvmset.status import LIVE_MUSIC

    cat = Catalog(catalog_url(resolve_root(args.root)))
    if args.rebuild:
        done = rebuild_index(cat)
        print(f"rebuilt the shared-music index: {done['clips']} fingerprints, {done['candidates']} candidate "
              f"pairs checked, {done['links']} same-music pairs")
    groups = stored_groups(cat, [s.value for s in LIVE_MUSIC])
    if args.json:
        print(json.dumps([{"sources": g.sources, "clips": g.clips} for g in groups], indent=2))
    else:
        print(f"{len(groups)} groups of sources share music ({sum(len(g.clips) for g in groups)} clips)")
        for g in groups[:50]:
            print(f"  {', '.join(g.sources)}: {', '.join(g.clips)}")
        if len(groups) > 50:
            print(f"  ... and {len(groups) - 50} more (--json lists all)")
    return 0
