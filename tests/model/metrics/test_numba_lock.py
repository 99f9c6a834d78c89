"""librosa's numba kernels run under one machine-wide lock: numba's on-disk cache is not safe across processes.

Truth the tests rely on: while this process holds the lock, another process calling the beat tracker, LORIS's
onset picker or the onset envelope cannot finish; once it lets go, that process does. (Without the lock, six
processes compiling float32 and float64 signatures on a fresh cache left it corrupt in 4 of 5 rounds here, and
every later process loading it died with SIGSEGV: the crash CI met in two ablate rows evaluated side by side.)
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model.metrics.beats import numba_cache_lock

REPO = Path(__file__).resolve().parents[3]

CALLS = {
    "track_beats": "beats.track_beats(y, 22050)",
    "detect_onsets_loris": "beats.detect_onsets_loris(y, 22050)",
    "onset_envelope": "beats.onset_envelope(y, 22050)",
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_each_librosa_call_waits_for_the_lock_another_process_holds(call):
    # The child calls once to load its kernels (then a call takes milliseconds), says so, and calls again on "go".
    script = ("import sys, numpy as np\nfrom model.metrics import beats\n"
              "y = np.sin(np.linspace(0, 2000, 22050 * 2)).astype(np.float32)\n"
              f"{CALLS[call]}\nprint('ready', flush=True)\nsys.stdin.readline()\n{CALLS[call]}\n"
              "print('done', flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with numba_cache_lock():
            child.stdin.write("go\n")
            child.stdin.flush()
            time.sleep(1.5)
            assert child.poll() is None, f"{call} finished while another process held the lock"
        out, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0 and out.strip() == "done", (child.returncode, out)


def test_the_lock_is_reentrant_in_a_thread_and_excludes_other_threads():
    order: list[str] = []

    def other() -> None:
        with numba_cache_lock():
            order.append("other")

    with numba_cache_lock():
        with numba_cache_lock():  # a nested call in the same thread does not wait on itself
            order.append("nested")
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # the other thread waits while this one holds the lock
        order.append("outer")
    thread.join(timeout=10)
    assert order == ["nested", "outer", "other"]
