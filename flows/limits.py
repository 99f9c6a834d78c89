"""The Prefect global concurrency limits the flows take, by name (`vidmusician deploy` creates them).

A limit that does not exist on the API the run talks to is no slot to wait for (Prefect's non-strict
mode): an embedded run without `deploy` runs unthrottled, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

DEMUCS = "vidmusician-demucs"  # one Demucs at a time per CPU worker (limit = CPU workers)
GPU_JOBS = "vidmusician-gpu-jobs"  # features / training jobs at once (limit = GPUs)
DOWNLOAD_PREFIX = "vidmusician-download-"  # + site: a rate limit (slots decay over time)

#: Sites with their own download rate limit; any other host shares "other".
SITES = {"youtube": ("youtube.com", "youtu.be", "youtube-nocookie.com"), "vimeo": ("vimeo.com",)}


def site_of(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    for site, domains in SITES.items():
        if any(host == d or host.endswith("." + d) for d in domains):
            return site
    return "other"


def download_limit(url: str) -> str:
    return DOWNLOAD_PREFIX + site_of(url)


def _in_a_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


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
