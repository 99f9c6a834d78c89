"""The one failure policy: which errors fail one item (a row with a readable reason) and which stop the run."""

from __future__ import annotations

import errno
import pickle

import pytest

from dvmset.catalog import CatalogSchemaError
from dvmset.shards import StoreBusy
from pipeline.errors import RunError, StageError, failure_reason, is_whole_run, item_failure
from pipeline.separate import WeightsUnavailable


@pytest.mark.parametrize(("err", "reason"), [
    (StageError("qc", "clip.mp4: no video stream"), "qc: clip.mp4: no video stream"),
    (ValueError("expected a 1-D waveform"), "ValueError: expected a 1-D waveform"),
    (RuntimeError(""), "RuntimeError"),
    (OSError(errno.EIO, "Input/output error"), "OSError: [Errno 5] Input/output error"),
])
def test_an_item_failure_becomes_its_reason(err, reason):
    assert not is_whole_run(err)
    assert failure_reason(err) == reason and item_failure(err) == reason


@pytest.mark.parametrize("err", [
    MemoryError(), KeyboardInterrupt(), RunError("no GPU left"), WeightsUnavailable("no htdemucs weights"),
    StoreBusy("another features run"), CatalogSchemaError("run db upgrade"),
    OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EROFS, "Read-only file system"),
    type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"),
])
def test_errors_of_the_whole_run_re_raise(err):
    assert is_whole_run(err)
    with pytest.raises(type(err)):
        item_failure(err)


def test_a_stage_error_keeps_its_stage_and_permanence_across_pickling():
    err = pickle.loads(pickle.dumps(StageError("download", "reset", permanent=False)))
    assert (err.stage, err.permanent, str(err)) == ("download", False, "download: reset")
