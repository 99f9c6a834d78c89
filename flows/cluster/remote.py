"""`--via-server`: start a deployment (flows/cluster/deploy.py) on the Prefect server and follow it until it ends.

The run executes on whichever worker of the deployment's pool picks it up; the caller follows its
state and, through ``on_poll``, whatever it reads meanwhile (the catalog's counts, say).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class RemoteRunError(RuntimeError):
    """The deployment is missing, or its run ended other than completed; the message says which and why."""


@dataclass(frozen=True)
class RemoteRun:
    flow_run_id: str
    name: str
    state: str  # the final state's name: Completed, Failed, Crashed, Cancelled
    message: str | None


def run_remote(deployment: str, parameters: dict[str, Any], *, on_poll: Callable[[str], None] | None = None,
               poll_s: float = 2.0, timeout_s: float | None = None,
               on_start: Callable[[str], None] | None = None) -> RemoteRun:
    """Start ``deployment`` (``flow-name/deployment-name``) with JSON ``parameters``; wait until it ends.
    ``on_start`` gets the new flow run's id (to follow what it starts), ``on_poll`` its state at each poll."""
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        flow_run = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False)
    except ObjectNotFound as err:
        raise RemoteRunError(f"no deployment {deployment} on the Prefect server: run `vidmusician deploy` "
                             "against it first") from err
    log.info("started flow run %s (%s) of %s", flow_run.name, flow_run.id, deployment)
    if on_start is not None:
        on_start(str(flow_run.id))
    started = time.monotonic()
    last = None
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run.id)
            state = run.state
            name = state.name if state else "Pending"
            if name != last:
                log.info("flow run %s: %s", run.name, name)
                last = name
            if on_poll is not None:
                on_poll(name)
            if state is not None and state.is_final():
                return RemoteRun(str(run.id), run.name, name, state.message)
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise RemoteRunError(f"flow run {run.name} still {name} after {timeout_s:g} s: is a worker "
                                     f"polling the deployment's pool?")
            time.sleep(poll_s)
