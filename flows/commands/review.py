"""`vidmusician review | annotators add/list | decisions export`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flows.settings import add_root_arg, existing_root, open_catalog, resolve_root

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="serve the review tool (FastAPI) for annotators")
    add_root_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (8000)")
    p.add_argument("--forwarded-allow-ips", default=os.environ.get("VIDMUSICIAN_FORWARDED_ALLOW_IPS"),
                   help="addresses of the TLS reverse proxy whose X-Forwarded-Proto/-For are trusted, comma "
                        "separated, '*' for any (default $VIDMUSICIAN_FORWARDED_ALLOW_IPS, else uvicorn's: "
                        "$FORWARDED_ALLOW_IPS or 127.0.0.1,::1); behind a trusted https proxy the sign-in "
                        "cookie is marked Secure")
    from dvmset.review import QueuePolicy

    q = QueuePolicy()
    p.add_argument("--overlap", type=int, default=q.overlap, metavar="N",
                   help=f"independent verdicts each clip needs ({q.overlap}; >1 for agreement studies)")
    p.add_argument("--lease-seconds", type=float, default=q.lease_s,
                   help=f"how long a handed-out clip is reserved ({q.lease_s:g})")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("annotators", help="add, list, re-link or revoke annotators")
    asub = p.add_subparsers(dest="annotators_command", required=True, metavar="ACTION")
    a = asub.add_parser("add", help="create an annotator and print their personal login link")
    a.add_argument("name")
    add_root_arg(a)
    a.add_argument("--url", default="http://127.0.0.1:8000", help="the review tool's base URL for the link")
    a.set_defaults(func=cmd_annotators_add)
    a = asub.add_parser("link", help="a new login link for an annotator (the old one stops working)")
    a.add_argument("name")
    add_root_arg(a)
    a.add_argument("--url", default="http://127.0.0.1:8000", help="the review tool's base URL for the link")
    a.set_defaults(func=cmd_annotators_link)
    a = asub.add_parser("revoke", help="sign an annotator out for good (their decisions stay)")
    a.add_argument("name")
    add_root_arg(a)
    a.set_defaults(func=cmd_annotators_revoke)
    a = asub.add_parser("list", help="annotators and their decision counts")
    add_root_arg(a)
    a.set_defaults(func=cmd_annotators_list)

    p = sub.add_parser("decisions", help="export review decisions")
    dsub = p.add_subparsers(dest="decisions_command", required=True, metavar="ACTION")
    e = dsub.add_parser("export", help="every decision row (undo rows too, with a 'live' column)")
    add_root_arg(e)
    e.add_argument("--format", choices=("csv", "parquet"), default="csv")
    e.add_argument("--out", type=Path, required=True, help="output file")
    e.set_defaults(func=cmd_decisions_export)


def peaks_decoder() -> Callable[[Path], np.ndarray]:
    """``clip file -> [STORED_PEAKS]`` for clips curated before QC stored their waveform peaks: QC's
    own function, so the file written is the one curation would have written. Imported when the
    server starts, not on the first waveform request (pipeline.qc brings scipy)."""
    from pipeline.qc import clip_waveform_peaks

    return clip_waveform_peaks


def cmd_review(args: argparse.Namespace) -> int:
    import uvicorn

    from annotation_ui.app import create_app
    from dvmset.review import QueuePolicy

    root = existing_root(args.root)
    policy = QueuePolicy(overlap=args.overlap, lease_s=args.lease_seconds)
    app = create_app(root, open_catalog(root), policy, compute_peaks=peaks_decoder())
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}; anyone who can reach it still needs a token", file=sys.stderr)
    print(f"review tool on http://{args.host}:{args.port}/ (overlap {policy.overlap}); "
          "annotators sign in with their login link", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", proxy_headers=True,
                forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def cmd_annotators_add(args: argparse.Namespace) -> int:
    from dvmset.review import Conflict, add_annotator

    catalog = open_catalog(resolve_root(args.root))  # a team may sign up before the first curation
    try:
        with catalog.session() as s:
            ann, token = add_annotator(s, args.name)
            name = ann.name
    except (Conflict, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_link(name, token, args.url)
    return 0


def _print_link(name: str, token: str, base_url: str) -> None:
    from urllib.parse import urlencode

    print(f"annotator {name}: token {token}")
    print(f"login link: {base_url.rstrip('/')}/login?{urlencode({'token': token})}")
    print("keep it private: the token is shown only once (the catalog stores its hash)", file=sys.stderr)


def _on_annotator(args: argparse.Namespace, action):  # noqa: ANN001, ANN202 - action(session, name) -> T
    """Run ``action`` on the named annotator in one transaction; None, after saying why, if unknown."""
    from dvmset.review import NotFound

    catalog = open_catalog(existing_root(args.root))
    try:
        with catalog.session() as s:
            return action(s, args.name)
    except NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_annotators_link(args: argparse.Namespace) -> int:
    from dvmset.review import new_token

    token = _on_annotator(args, new_token)
    if token is None:
        return 2
    _print_link(args.name.strip(), token, args.url)
    return 0


def cmd_annotators_revoke(args: argparse.Namespace) -> int:
    from dvmset.review import revoke_annotator

    released = _on_annotator(args, revoke_annotator)
    if released is None:
        return 2
    print(f"annotator {args.name.strip()} revoked: no link of theirs works now; their decisions stay; "
          f"{released} reserved clip(s) back in the queue (`annotators link` signs them in again)")
    return 0


def cmd_annotators_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from dvmset.agreement import agreement_report
    from dvmset.review import is_revoked
    from dvmset.tables import Annotator

    catalog = open_catalog(existing_root(args.root))
    with catalog.session() as s:
        rep = agreement_report(s)
        revoked = {a.name for a in s.scalars(select(Annotator)) if is_revoked(a)}
    for p in rep["annotators"]:
        print(f"{p['name']}\t{p['decisions']} decisions\t{p['undone']} undone"
              + ("\trevoked" if p["name"] in revoked else ""))
    return 0


def cmd_decisions_export(args: argparse.Namespace) -> int:
    import pandas as pd

    from dvmset.io import atomic_path
    from dvmset.review import decision_records

    catalog = open_catalog(existing_root(args.root))
    with catalog.session() as s:
        rows = decision_records(s)
    cols = ["id", "clip_id", "annotator", "verdict", "reasons", "note", "voids", "live", "seconds_spent",
            "created_at"]
    df = pd.DataFrame(rows, columns=cols).astype({"voids": "Int64"})
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    with atomic_path(args.out) as tmp:
        if args.format == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    print(f"{len(df)} decisions -> {args.out}")
    return 0
