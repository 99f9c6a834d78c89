"""`vidmusician review | annotators add/list | decisions export`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flows.commands.review_gold import register_gold
from flows.settings import add_root_arg, existing_root, open_catalog, resolve_root

FALLBACK_URL = "http://127.0.0.1:8000"

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np


URL_HELP = ("the review tool's base URL for the link (default: where the last `vidmusician review` on this "
            f"catalog served, else {FALLBACK_URL})")


def overlap_arg(text: str) -> int:
    from dvmset.review import QueuePolicy

    try:
        return QueuePolicy(overlap=int(text)).overlap
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of verdicts per clip, 1 to 50") from None


def lease_arg(text: str) -> float:
    from dvmset.review_policy import MIN_LEASE_S

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not MIN_LEASE_S <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds from {MIN_LEASE_S:g} to 86400 (the page renews "
                                         "its lease at a third of it)")
    return value


DEFAULT_MIN_LISTEN_S = 10.0


def min_listen_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds from 0 (never ask) to 3600")
    return value


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
    p.add_argument("--overlap", type=overlap_arg, default=None, metavar="N",
                   help="expect this many verdicts per clip: the catalog's review policy decides; a value "
                        "that differs from it is refused (change it with `vidmusician review-policy set`)")
    p.add_argument("--lease-seconds", type=lease_arg, default=None, metavar="S",
                   help="expect leases of this length (the catalog's policy decides, as for --overlap)")
    p.add_argument("--order", choices=("queue", "uncertain", "likely-keep"), default="queue",
                   help="queue: by clip id; uncertain: the clips a model of the verdicts so far (on the QC "
                        "hints) is least sure of first, to learn fastest; likely-keep: the clips it expects "
                        "kept first, to reach a dataset size sooner (benchmarks/bench_review_order.py)")
    p.add_argument("--min-listen-seconds", type=min_listen_arg, default=DEFAULT_MIN_LISTEN_S, metavar="S",
                   help="a verdict given sooner than this after the clip was handed out asks the annotator to "
                        f"confirm it; the listening time is stored with each verdict (default "
                        f"{DEFAULT_MIN_LISTEN_S:g}; 0 turns the question off)")
    p.add_argument("--public-url", default=None, metavar="URL",
                   help="the URL annotators reach this server at (behind a proxy, or when binding 0.0.0.0); "
                        "recorded in the catalog for the links `annotators add/link` print "
                        "(default http://HOST:PORT)")
    p.set_defaults(func=cmd_review)
    register_gold(p)

    p = sub.add_parser("annotators", help="add, list, re-link or revoke annotators")
    asub = p.add_subparsers(dest="annotators_command", required=True, metavar="ACTION")
    a = asub.add_parser("add", help="create an annotator and print their personal login link")
    a.add_argument("name")
    a.add_argument("--role", choices=("annotator", "lead"), default="annotator",
                   help="annotator (sees their own figures) or lead (everyone's; gold clips, adjudication)")
    add_root_arg(a)
    a.add_argument("--url", default=None, help=URL_HELP)
    a.set_defaults(func=cmd_annotators_add)
    a = asub.add_parser("link", help="a new login link for an annotator (the old one stops working)")
    a.add_argument("name")
    add_root_arg(a)
    a.add_argument("--url", default=None, help=URL_HELP)
    a.set_defaults(func=cmd_annotators_link)
    a = asub.add_parser("role", help="make an annotator a lead, or a lead an annotator")
    a.add_argument("name")
    a.add_argument("role", choices=("annotator", "lead"))
    add_root_arg(a)
    a.set_defaults(func=cmd_annotators_role)
    a = asub.add_parser("revoke", help="sign an annotator out for good (their decisions stay)")
    a.add_argument("name")
    add_root_arg(a)
    a.set_defaults(func=cmd_annotators_revoke)
    a = asub.add_parser("list", help="annotators and their decision counts")
    add_root_arg(a)
    a.set_defaults(func=cmd_annotators_list)

    p = sub.add_parser("decisions", help="export review decisions")
    dsub = p.add_subparsers(dest="decisions_command", required=True, metavar="ACTION")
    e = dsub.add_parser("export", help="every verdict row: decisions (undo rows too), gold answers and "
                        "adjudications, with 'kind' and 'live' columns")
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
    from dvmset.review import PolicyMismatch, QueuePolicy, check_policy, current_policy
    from dvmset.review_policy import record_server_url
    from flows.commands.review_server import announce, bind, public_url

    root = existing_root(args.root)
    catalog = open_catalog(root)
    with catalog.session() as s:
        have = current_policy(s)
        wanted = QueuePolicy(overlap=have.overlap if args.overlap is None else args.overlap,
                             lease_s=have.lease_s if args.lease_seconds is None else args.lease_seconds,
                             skip_s=have.skip_s)
        try:
            policy = check_policy(s, wanted)
        except PolicyMismatch as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        sock = bind(args.host, args.port)  # before anything is written or announced
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc} (another review server? "
              "pick another --port); nothing was changed", file=sys.stderr)
        return 3
    url = args.public_url or public_url(args.host, sock.getsockname()[1])
    with catalog.session() as s:
        record_server_url(s, url)
    app = create_app(root, catalog, policy, compute_peaks=peaks_decoder(), order=args.order,
                     min_listen_s=getattr(args, "min_listen_seconds", DEFAULT_MIN_LISTEN_S))
    announce(args.host, url, policy)
    config = uvicorn.Config(app, log_level="warning", proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def cmd_annotators_add(args: argparse.Namespace) -> int:
    from dvmset.review import Conflict, add_annotator

    catalog = open_catalog(resolve_root(args.root))  # a team may sign up before the first curation
    try:
        with catalog.session() as s:
            ann, token = add_annotator(s, args.name, args.role)
            name = ann.name
    except (Conflict, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_link(name, token, _link_base(catalog, args.url))
    return 0


def _link_base(catalog, url: str | None) -> str:  # noqa: ANN001 - a Catalog
    """--url, else where the last review server on this catalog served, else the default; says which."""
    from dvmset.review_policy import server_url

    if url:
        return url
    with catalog.session() as s:
        recorded = server_url(s)
    if recorded:
        print(f"link points at {recorded}, where the last `vidmusician review` on this catalog served "
              "(--url to change)", file=sys.stderr)
        return recorded
    print(f"no review server has run on this catalog yet: the link assumes {FALLBACK_URL} (--url to change)",
          file=sys.stderr)
    return FALLBACK_URL


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
    _print_link(args.name.strip(), token, _link_base(open_catalog(existing_root(args.root)), args.url))
    return 0


def cmd_annotators_role(args: argparse.Namespace) -> int:
    from dvmset.annotators import set_role

    ann = _on_annotator(args, lambda s, name: set_role(s, name, args.role).name)
    if ann is None:
        return 2
    print(f"{ann} is now {'a lead' if args.role == 'lead' else 'an annotator'}")
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

    from dvmset.agreement_summary import agreement_report
    from dvmset.review import is_revoked
    from dvmset.tables import Annotator

    catalog = open_catalog(existing_root(args.root))
    with catalog.session() as s:
        rep = agreement_report(s)
        revoked = {a.name for a in s.scalars(select(Annotator)) if is_revoked(a)}
        leads = {a.name for a in s.scalars(select(Annotator)) if a.role == "lead"}
    for p in rep["annotators"]:
        print(f"{p['name']}\t{p['decisions']} decisions\t{p['undone']} undone"
              + ("\tlead" if p["name"] in leads else "") + ("\trevoked" if p["name"] in revoked else ""))
    return 0


def cmd_decisions_export(args: argparse.Namespace) -> int:
    import pandas as pd

    from dvmset.io import atomic_path
    from dvmset.review import decision_records

    catalog = open_catalog(existing_root(args.root))
    with catalog.session() as s:
        rows = decision_records(s)
    cols = ["kind", "id", "clip_id", "annotator", "verdict", "reasons", "note", "voids", "live", "seconds_spent",
            "created_at", "gold_verdict"]
    df = pd.DataFrame(rows, columns=cols).astype({"voids": "Int64"})
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    with atomic_path(args.out) as tmp:
        if args.format == "csv":
            spreadsheet_safe(df).to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    kinds = df["kind"].value_counts()
    print(f"{kinds.get('decision', 0)} decisions, {kinds.get('gold_answer', 0)} gold answers, "
          f"{kinds.get('adjudication', 0)} adjudications -> {args.out}")
    return 0


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection list


def spreadsheet_safe(df):  # noqa: ANN001, ANN201 - a pandas DataFrame in and out
    """Text cells a spreadsheet would run as a formula (``=HYPERLINK(...)``) get a leading ``'``."""
    import pandas as pd

    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out
