"""Prefect's temporary API server dies with the command that started it.

With no ``PREFECT_API_URL`` the first flow run of a process starts a temporary server, a uvicorn
child process (``prefect.server.api.server.SubprocessASGIServer``); Prefect stops it at exit, but a
SIGKILLed command runs no exit handler and the server stays (~220 MB and a loopback port each). Here
its child is started with the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``), so it gets
SIGTERM the moment the command dies, however it dies. Linux only; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _prctl():  # noqa: ANN202 - a ctypes function, or None off Linux
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


class _DyingWithParent:
    """What ``prefect.server.api.server`` sees as its ``subprocess`` module: the same, except that the
    children its Popen starts get SIGTERM when this process dies."""

    def __init__(self, prctl) -> None:  # noqa: ANN001 - a ctypes function
        self._prctl = prctl

    def __getattr__(self, name: str):  # noqa: ANN204 - whatever the subprocess module holds
        return getattr(subprocess, name)

    def Popen(self, *args, **kwargs) -> subprocess.Popen:  # noqa: N802 - stands in for subprocess.Popen
        if threading.current_thread() is not threading.main_thread():
            # the signal follows the thread that forked, not the process: only the main thread lives as long
            log.debug("temporary Prefect server started from thread %s: not tied to it",
                      threading.current_thread().name)
            return subprocess.Popen(*args, **kwargs)
        parent, prctl = os.getpid(), self._prctl

        def die_with_parent() -> None:  # runs in the child between fork and exec: no imports, no locks
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before the line above
                os.kill(os.getpid(), signal.SIGTERM)

        return subprocess.Popen(*args, preexec_fn=die_with_parent, **kwargs)


def tie_temporary_server() -> bool:
    """Make Prefect's temporary server (started later, if ever) die with this process. Idempotent; False
    where the platform cannot (then Prefect's own exit handler is all there is)."""
    prctl = _prctl()
    if prctl is None:
        return False
    from prefect.server.api import server

    if not isinstance(server.subprocess, _DyingWithParent):
        server.subprocess = _DyingWithParent(prctl)
    return True
