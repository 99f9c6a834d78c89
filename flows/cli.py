"""vidmusician: curate video-music datasets, review clips, extract features (see README.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from importlib import import_module

from dvmset.catalog import CatalogSchemaError

# Each module defines ``register(subparsers)`` adding its subcommands with ``func=handler``;
# a new command group is one module under flows/commands/ and one line here.
COMMAND_MODULES = (
    "flows.commands.curate",
    "flows.commands.features",
    "flows.commands.review",
    "flows.commands.review_policy",
    "flows.commands.db",
    "flows.commands.demo",
    "flows.commands.generate",
    "flows.commands.train",
    "flows.commands.ablate",
    "flows.commands.evaluate",
    "flows.commands.deploy",
    "flows.commands.share",
    "flows.commands.bench",
    "flows.commands.music_groups",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidmusician", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # audiocraft imports laion_clap when it is installed (the evaluation needs it), which imports a
    # module timm deprecates: a warning about someone else's import, on every command that loads the model.
    warnings.filterwarnings("ignore", message="Importing from timm.models.layers is deprecated", category=FutureWarning)
    # Prefect's INFO chatter would tear the progress bars; its warnings and errors still show.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls
    # The temporary API server Prefect starts per run needs longer than its 20 s default on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    args = build_parser().parse_args(argv)
    _sigterm_interrupts()
    if getattr(args, "runs_flows", False):  # set by the commands that run a flow here
        from flows.prefect_server import tie_temporary_server

        tie_temporary_server()  # Prefect's temporary server dies with this process, even a SIGKILLed one
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, inside the handler below
        return code
    except BrokenPipeError:
        return _reader_gone()
    except CatalogSchemaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to finish the remaining work", file=sys.stderr)
        return 130


def _sigterm_interrupts() -> None:
    """A SIGTERM (a pre-empted job, `kill`, a stopped container) ends a command as Ctrl-C does: runs let go
    of what they hold (leases, no attempt charged) and exit 130, instead of dying mid-write."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _reader_gone() -> int:
    """``vidmusician status --json | head``: the reader left; exit quietly, as a command-line tool does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush at exit must not raise again
    os.close(devnull)
    return 128 + 13  # killed by SIGPIPE, as the shell reports it for coreutils


if __name__ == "__main__":
    sys.exit(main())
