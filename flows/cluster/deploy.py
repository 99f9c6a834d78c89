"""`vidmusician deploy`: the Prefect objects a server with workers needs, created or found (idempotent).

Work pools (process workers): CPU for curation, export and the ablate run that starts its rows, GPU for
features, training and each ablate row, each with a concurrency limit; the global concurrency limits the
flows take (flows.cluster.limits: one Demucs per CPU worker, a download rate limit per site, GPU jobs per
device); the deployments of flows.cluster.entry from a local source directory (every worker host has the
same checkout or installed package there); and the automation that marks a flow run whose heartbeats
stopped (its process was killed: a "zombie") as crashed. Re-running converges on the same objects and
says what it found.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flows.cluster import limits

log = logging.getLogger(__name__)

CPU_POOL, GPU_POOL = "vidmusician-cpu", "vidmusician-gpu"
ZOMBIE_AUTOMATION = "vidmusician: crash zombie flow runs"
HEARTBEAT_S = 30  # each flow-run process reports this often (PREFECT_RUNNER_HEARTBEAT_FREQUENCY)


@dataclass(frozen=True)
class Entry:
    """One deployment: flows/cluster/entry.py's function, its deployment name and the pool that runs it."""

    function: str
    name: str
    pool: str

    @property
    def flow_name(self) -> str:
        return f"vidmusician-{self.function.replace('_', '-')}"

    @property
    def full_name(self) -> str:  # what run_deployment and `prefect deployment run` take
        return f"{self.flow_name}/{self.name}"


ENTRY_FILE = "flows/cluster/entry.py"  # relative to the source the workers pull
ENTRIES = (Entry("curate", "curate", CPU_POOL), Entry("export", "export", CPU_POOL),
           Entry("features", "features", GPU_POOL), Entry("train", "train", GPU_POOL),
           Entry("ablate", "ablate", CPU_POOL), Entry("ablate_row", "ablate-row", GPU_POOL))
DEPLOYMENTS = MappingProxyType({e.function: e for e in ENTRIES})

# YouTube throttles a session at a few hundred videos an hour: stay under it by default.
DOWNLOADS_PER_HOUR = MappingProxyType({"youtube": 300, "vimeo": 600, "other": 1200})


@dataclass(frozen=True)
class DeploySpec:
    """What `deploy` creates; defaults suit one CPU worker host and one GPU."""

    source: Path  # the directory holding flows/cluster/entry.py that workers load the flows from
    cpu_workers: int = 2  # CPU pool concurrency limit, and Demucs instances at once
    gpus: int = 1  # GPU pool concurrency limit, and GPU jobs at once
    downloads_per_hour: dict[str, int] = field(default_factory=lambda: dict(DOWNLOADS_PER_HOUR))
    download_burst: int = 5  # downloads that may start back to back before the rate applies
    zombie_after_s: int = 3 * HEARTBEAT_S

    def __post_init__(self) -> None:
        if not (Path(self.source) / ENTRY_FILE).is_file():
            raise ValueError(f"{self.source} holds no flows/cluster/entry.py: --source is the vidmusician checkout "
                             "(or installed package root) the workers load the flows from")
        for name in ("cpu_workers", "gpus", "download_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.zombie_after_s <= HEARTBEAT_S:
            raise ValueError(f"zombie_after_s must exceed the {HEARTBEAT_S} s heartbeat, got {self.zombie_after_s}")
        unknown = set(self.downloads_per_hour) - {*limits.SITES, "other"}
        if unknown:
            raise ValueError(f"no download limit for sites {sorted(unknown)}; known: {[*limits.SITES, 'other']}")

    def concurrency_limits(self) -> dict[str, tuple[int, float]]:
        """name -> (slots, slot decay per second; 0 for a plain concurrency limit)."""
        out = {limits.DEMUCS: (self.cpu_workers, 0.0), limits.GPU_JOBS: (self.gpus, 0.0)}
        for site in (*limits.SITES, "other"):
            per_hour = self.downloads_per_hour.get(site, DOWNLOADS_PER_HOUR[site])
            out[limits.DOWNLOAD_PREFIX + site] = (self.download_burst, per_hour / 3600.0)
        return out

    def pool_limits(self) -> dict[str, int]:
        return {CPU_POOL: self.cpu_workers, GPU_POOL: self.gpus}


@dataclass(frozen=True)
class Outcome:
    kind: str  # "work pool" | "concurrency limit" | "deployment" | "automation"
    name: str
    action: str  # "created" | "found" | "updated"
    detail: str = ""


def deploy(spec: DeploySpec) -> list[Outcome]:
    """Create or find every object of ``spec`` on the API in PREFECT_API_URL; returns what it did."""
    from prefect import get_client

    out: list[Outcome] = []
    with get_client(sync_client=True) as client:
        down = client.api_healthcheck()  # the exception, or None when the server answers
        if down is not None:
            raise ConnectionError(f"the Prefect API does not answer: {down}")
        for pool, limit in spec.pool_limits().items():
            out.append(_work_pool(client, pool, limit))
        for name, (slots, decay) in spec.concurrency_limits().items():
            out.append(_concurrency_limit(client, name, slots, decay))
    out += [_deployment(spec, e) for e in ENTRIES]
    out.append(_zombie_automation(spec))
    return out


def _work_pool(client: Any, name: str, limit: int) -> Outcome:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(
            name=name, type=ProcessWorker.type, concurrency_limit=limit,
            base_job_template=ProcessWorker.get_default_base_job_template(),
            description="vidmusician " + ("curation and export" if name == CPU_POOL else "features and training")))
        return Outcome("work pool", name, "created", f"process, {limit} runs at once")
    if pool.type != ProcessWorker.type:
        raise ValueError(f"work pool {name} exists with type {pool.type!r}, not 'process': remove it or rename ours")
    if pool.concurrency_limit != limit:
        client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))
        return Outcome("work pool", name, "updated", f"{pool.concurrency_limit} -> {limit} runs at once")
    return Outcome("work pool", name, "found", f"process, {limit} runs at once")


def _concurrency_limit(client: Any, name: str, slots: int, decay: float) -> Outcome:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    detail = f"{slots} slots" + (f", {decay * 3600:g}/h" if decay else "")
    try:
        have = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
            name=name, limit=slots, slot_decay_per_second=decay))
        return Outcome("concurrency limit", name, "created", detail)
    if have.limit != slots or abs((have.slot_decay_per_second or 0.0) - decay) > 1e-9 or not have.active:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(
            limit=slots, slot_decay_per_second=decay, active=True))
        return Outcome("concurrency limit", name, "updated", detail)
    return Outcome("concurrency limit", name, "found", detail)


def _deployment(spec: DeploySpec, entry: Entry) -> Outcome:
    from prefect import Flow, get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            before = client.read_deployment_by_name(entry.full_name)
        except ObjectNotFound:
            before = None
    entrypoint = f"{ENTRY_FILE}:{entry.function}"
    loaded = Flow.from_source(source=str(Path(spec.source).resolve()), entrypoint=entrypoint)
    dep_id = loaded.to_deployment(
        name=entry.name, work_pool_name=entry.pool,
        job_variables={"env": {"PREFECT_RUNNER_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}}).apply()
    if before is None:
        return Outcome("deployment", entry.full_name, "created", f"pool {entry.pool}, id {dep_id}")
    if before.entrypoint != entrypoint:  # e.g. made before flows/ was grouped by job: the same deployment, moved
        return Outcome("deployment", entry.full_name, "updated",
                       f"pool {entry.pool}, id {dep_id}, entrypoint {before.entrypoint} -> {entrypoint}")
    if before.work_pool_name != entry.pool:  # e.g. ablate, which became the CPU-side coordinator of its rows
        return Outcome("deployment", entry.full_name, "updated",
                       f"pool {before.work_pool_name} -> {entry.pool}, id {dep_id}")
    return Outcome("deployment", entry.full_name, "found", f"pool {entry.pool}, id {dep_id}")


def _zombie_automation(spec: DeploySpec) -> Outcome:
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.exceptions import ObjectNotFound

    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
        within=dt.timedelta(seconds=spec.zombie_after_s))
    actions = [ChangeFlowRunState(state=StateType.CRASHED,
                                  message=f"no heartbeat for {spec.zombie_after_s} s: its process died "
                                          "(the sources it held are taken over when their leases expire)")]
    try:
        have = Automation.read(name=ZOMBIE_AUTOMATION)
    except (ObjectNotFound, ValueError):
        have = None
    if have is None:
        made = Automation(name=ZOMBIE_AUTOMATION, trigger=trigger, actions=actions).create()
        return Outcome("automation", ZOMBIE_AUTOMATION, "created", f"after {spec.zombie_after_s} s, id {made.id}")
    if have.trigger != trigger or list(have.actions) != actions or not have.enabled:
        have.trigger, have.actions, have.enabled = trigger, actions, True
        have.update()
        return Outcome("automation", ZOMBIE_AUTOMATION, "updated", f"after {spec.zombie_after_s} s, id {have.id}")
    return Outcome("automation", ZOMBIE_AUTOMATION, "found", f"after {spec.zombie_after_s} s, id {have.id}")
