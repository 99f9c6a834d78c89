"""The Prefect global concurrency limits the flows take, by name (`vidmusician deploy` creates them).

The limits are taken only in a run of a deployment (an embedded or in-process Dask run has none, and
asks the API nothing); a limit missing there is no slot to wait for (Prefect's non-strict mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

from pipeline.urls import SITES

DEMUCS = "vidmusician-demucs"  # one Demucs at a time per CPU worker (limit = CPU workers)
GPU_JOBS = "vidmusician-gpu-jobs"  # features / training jobs at once (limit = GPUs)
DOWNLOAD_PREFIX = "vidmusician-download-"  # + site: a rate limit (slots decay over time)

def site_of(url: str) -> str:
    """The URL's rate-limit bucket: a site of pipeline.urls.SITES; any other host shares "other"."""
    host = (urlsplit(url).hostname or "").lower()
    for site, domains in SITES.items():
        if any(host == d or host.endswith("." + d) for d in domains):
            return site
    return "other"


def download_limit(url: str) -> str:
    return DOWNLOAD_PREFIX + site_of(url)


def _in_a_run() -> bool:
    """Inside a flow run started from a deployment (what `vidmusician deploy` set the limits up for)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and ctx.flow_run is not None and ctx.flow_run.deployment_id is not None


def throttle_download(url: str) -> None:
    """Take one slot of the URL's site download rate limit (wait while the site's budget is spent)."""
    if _in_a_run():
        from prefect.concurrency.sync import rate_limit

        rate_limit(download_limit(url), strict=False)


@contextlib.contextmanager
def holding(name: str) -> Iterator[None]:
    """Hold one slot of the global concurrency limit ``name`` for the block (inside a flow run)."""
    if not _in_a_run():
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(name, occupy=1, strict=False):
        yield
