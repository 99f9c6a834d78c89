"""`vidmusician deploy`: parse argv, create or find the work pools, limits, deployments and automation."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from flows.settings import DEPLOY_SOURCE_ENV, deploy_source


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="set up a Prefect server for workers: pools, limits, deployments (idempotent)")
    p.add_argument("--api", metavar="URL", help="the Prefect API, e.g. http://prefect:4200/api "
                                                "(default $PREFECT_API_URL)")
    p.add_argument("--source", type=Path, default=deploy_source(), metavar="DIR",
                   help=f"the directory the workers load the flows from; the same path on every worker host "
                        f"(${DEPLOY_SOURCE_ENV}, else {deploy_source()})")
    p.add_argument("--cpu-workers", type=int, help="CPU curation runs at once, and Demucs instances (2)")
    p.add_argument("--gpus", type=int, help="GPU features/training jobs at once (1)")
    p.set_defaults(func=cmd_deploy)


def api_settings(url: str | None) -> contextlib.AbstractContextManager[object]:
    """Talk to ``url`` for the block (None: Prefect's own setting, $PREFECT_API_URL)."""
    if not url:
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: url})


def cmd_deploy(args: argparse.Namespace) -> int:
    from flows.cluster.deploy import DeploySpec, deploy

    given = {"cpu_workers": args.cpu_workers, "gpus": args.gpus}
    try:
        spec = DeploySpec(source=args.source.resolve(), **{k: v for k, v in given.items() if v is not None})
    except ValueError as err:
        print(f"deploy: {err}", file=sys.stderr)
        return 2
    with api_settings(args.api):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            print("deploy: no Prefect server named: give --api URL or set PREFECT_API_URL "
                  "(a server: `prefect server start`)", file=sys.stderr)
            return 2
        try:
            outcomes = deploy(spec)
        except (ValueError, ConnectionError, OSError) as err:
            print(f"deploy: {err} (is the Prefect server at {PREFECT_API_URL.value()} up?)", file=sys.stderr)
            return 2
        api = PREFECT_API_URL.value()
    for o in outcomes:
        print(f"{o.action:8} {o.kind:18} {o.name}" + (f"  ({o.detail})" if o.detail else ""))
    print(f"\nworkers: PREFECT_API_URL={api} prefect worker start --pool vidmusician-cpu  (and --pool vidmusician-gpu)")
    return 0
