"""`--via-server` and `--dask` of curate / features / export: run the entry flow (flows/cluster/entry.py) on a
Prefect server's workers and follow it, or here with its tasks on a Dask cluster; print the outcome."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from dvmset.catalog import Catalog


def add_cluster_options(p: argparse.ArgumentParser, *, dask: bool = True) -> None:
    g = p.add_argument_group("past one machine")
    g.add_argument("--via-server", action="store_true",
                   help="start the deployment on the Prefect server ($PREFECT_API_URL, set up by `vidmusician "
                        "deploy`) and follow it; a worker runs it with its own VIDMUSICIAN_ROOT / VIDMUSICIAN_DB")
    if dask:
        g.add_argument("--dask", metavar="ADDRESS|local",
                       help="run the tasks on a Dask cluster: a scheduler address (tcp://host:8786), or 'local' "
                            "for a cluster of --workers processes started for this run")


def changed_settings(cfg: Any) -> dict[str, Any]:
    """The fields of a config dataclass that differ from its defaults (the rest: the worker's defaults)."""
    default = type(cfg)()
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}


def where_params(args: argparse.Namespace) -> dict[str, str]:
    """``--root`` for a worker, made absolute; without it the worker uses its own environment's."""
    return {"root": str(Path(args.root).resolve())} if args.root else {}


def _by_status(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def follow_remote(kind: str, parameters: dict[str, Any], cat: Catalog) -> int:
    """Start the ``kind`` deployment, show its state and the catalog's counts until it ends."""
    from flows.cluster.deploy import DEPLOYMENTS
    from flows.cluster.remote import RemoteRunError, run_remote
    from flows.progress import progress_bar

    deployment = DEPLOYMENTS[kind].full_name
    with progress_bar(f"{deployment}: starting") as bar:

        def on_poll(state: str) -> None:
            counts = cat.counts()
            bar.note(f"{state}; sources: {_by_status(counts['sources'])}; clips: {_by_status(counts['clips'])}")

        try:
            run = run_remote(deployment, parameters, on_poll=on_poll)
        except RemoteRunError as err:
            print(f"{kind}: {err}", file=sys.stderr)
            return 2
    print(f"flow run {run.name} ({run.flow_run_id}): {run.state}" + (f": {run.message}" if run.message else ""))
    print("clips by status: " + _by_status(cat.counts()["clips"]))
    return 0 if run.state == "Completed" else 1


def curate_params(args: argparse.Namespace, queries: list[str], cfg) -> dict[str, Any]:  # noqa: ANN001
    """The curate entry flow's parameters for `curate --via-server` / `curate --dask`."""
    return {"queries": queries, "urls": list(args.url), "per_query": args.per_query,
            "settings": changed_settings(cfg), "retry_failed": args.retry_failed, "dask": args.dask}


def features_elsewhere(args: argparse.Namespace, cat: Catalog, cfg) -> int:  # noqa: ANN001
    """`features --via-server`."""
    return follow_remote("features", {"settings": changed_settings(cfg), **where_params(args)}, cat)


def export_elsewhere(args: argparse.Namespace, cat: Catalog) -> int:
    """`export --via-server`."""
    given = {"test_fraction": args.test_fraction, "valid_fraction": args.valid_fraction, "seed": args.seed}
    params = {"name": args.name, "reshuffle": args.reshuffle, "release": args.release,
              **{k: v for k, v in given.items() if v is not None}}
    return follow_remote("export", {**params, **where_params(args)}, cat)
