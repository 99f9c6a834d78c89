"""Helpers of the sharing tests (release, rebuild, takedown, shared music): short curations on loopback."""

from __future__ import annotations

import sys

from dvmset.catalog import Catalog
from dvmset.records import ClipStatus
from dvmset.tables import Clip

CLIP_S = 20.0  # short clips keep these tests quick; what they prove does not depend on the length


def curate_cfg(**kw):
    from flows.config import CurateConfig

    return CurateConfig(**{"separator": "none", "workers": 2, "download_retries": 0, "clip_seconds": CLIP_S, **kw})


def accept_all(cat: Catalog) -> list[str]:
    """Every pending clip accepted (what the review would do), in id order."""
    with cat.session() as s:
        clips = list(s.query(Clip).filter(Clip.status == ClipStatus.PENDING_REVIEW).order_by(Clip.id))
        for c in clips:
            c.status = ClipStatus.ACCEPTED
        return [c.id for c in clips]


def cli_main(argv: list[str]) -> int:
    """flows.cli.main with the sharing commands registered (until flows/cli.py lists flows.commands.share)."""
    from flows import cli

    if "flows.commands.share" not in cli.COMMAND_MODULES:
        cli.COMMAND_MODULES = (*cli.COMMAND_MODULES, "flows.commands.share")
    return cli.main(argv)


CLI_SCRIPT = "import sys; sys.path.insert(0, {tests!r}); from sharing_helpers import cli_main; sys.exit(cli_main(sys.argv[1:]))"


def cli_command(tests_dir: str, *args: str) -> list[str]:
    return [sys.executable, "-c", CLI_SCRIPT.format(tests=tests_dir), *args]
