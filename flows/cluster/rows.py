"""Table 2's rows side by side on a pool: the ablate entry flow starts each row as its own run of the
ablate-row deployment (a child of its run, named after the row, so the Prefect UI and `ablate --via-server`
show each row's state), waits for every one, and reads the finished rows' records back from
OUT/rows/{row}/done.json, which the rows' workers wrote (OUT is storage every worker shares, as --data is).

A row already done under the same settings returns at once on its worker (flows.training.ablate.ablate_row);
a failed row leaves the others done: re-submitting finishes what is missing and redoes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROW_PARAM = "row"  # the ablate-row entry flow's parameter naming its row


class RowsFailedError(RuntimeError):
    """Some rows' runs ended other than completed; the message names them, their state and why."""


def started_name(parent: str | None, row: str) -> str:
    return f"{parent}-{row}" if parent else row


def dispatch_rows(deployment: str, params: dict[str, Any], rows: Iterable[str], *, poll_s: float = 2.0,
                  on_state: Callable[[str, str], None] | None = None) -> list[dict]:
    """Start one run of ``deployment`` per row (``params`` plus the row), wait until all end; the rows' records
    in the order given. Raises RowsFailedError naming every row that did not complete."""
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.runtime import flow_run

    rows = list(rows)
    parent = flow_run.get_name()
    try:
        runs = {row: run_deployment(deployment, parameters={**params, ROW_PARAM: row}, timeout=0, as_subflow=True,
                                    flow_run_name=started_name(parent, row)).id for row in rows}
    except ObjectNotFound as err:
        raise RowsFailedError(f"no deployment {deployment} on the Prefect server: run `vidmusician deploy` "
                              "against it first") from err
    final: dict[str, Any] = {}
    seen: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        while len(final) < len(rows):
            for row, run_id in runs.items():
                if row in final:
                    continue
                state = client.read_flow_run(run_id).state
                name = state.name if state else "Pending"
                if seen.get(row) != name:
                    seen[row] = name
                    if on_state is not None:
                        on_state(row, name)
                if state is not None and state.is_final():
                    final[row] = state
            if len(final) < len(rows):
                time.sleep(poll_s)
    failed = [f"{row}: {s.name}" + (f" ({s.message})" if s.message else "") for row, s in final.items()
              if s.name != "Completed"]
    if failed:
        raise RowsFailedError(f"{len(failed)} of {len(rows)} rows did not complete: " + "; ".join(failed)
                              + ". The finished rows are kept: submit the same ablate again to finish the rest")
    return [read_done(Path(params["out"]), row) for row in rows]


def read_done(out: Path, row: str) -> dict:
    """A finished row's record (OUT/rows/{row}/done.json), checked against the settings its directory holds."""
    from flows.training.ablate import DONE, SETTINGS, row_dir

    directory = row_dir(out, row)
    done, settings = directory / DONE, directory / SETTINGS
    if not done.is_file():
        raise RowsFailedError(f"row {row} completed but {done} is missing here: is {out} the same storage on "
                              "every worker?")
    record = json.loads(done.read_text())
    if record.get("fingerprint") != json.loads(settings.read_text())["fingerprint"]:
        raise RowsFailedError(f"{done} is from other settings than {settings}: delete {directory} and submit again")
    return record


def child_states(client: Any, parent_id: str) -> dict[str, str]:
    """row -> state name of the ablate-row runs started by the flow run ``parent_id`` (for a follower)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))
    return {str(r.parameters.get(ROW_PARAM, r.name)): (r.state.name if r.state else "Pending") for r in children
            if ROW_PARAM in r.parameters}
