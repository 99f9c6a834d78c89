"""The one gateway to the ffmpeg and ffprobe command-line tools: run, probe, and stream raw audio/frames.

Every failure becomes a :class:`StageError` whose text is ffmpeg's own last words, so a failed
row in the catalog says what went wrong without a traceback; a missing tool says which Debian
package to install; every call has a timeout.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pipeline.errors import StageError, disk_full

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120.0  # ffprobe reads headers only; longer means a hung mount or a broken file
DECODE_TIMEOUT_S = 1800.0  # a whole long source decoded on a loaded machine stays well below this
_QUIET = ["-nostdin", "-hide_banner", "-loglevel", "error"]
_STDERR_LINES = 5
_CTX = re.compile(r"\[[^\]]* @ 0x[0-9a-fA-F]+\]\s*")
_NO_STREAM = re.compile(r"matches no streams|does not contain any stream")
_PIX_CHANNELS = {"rgb24": 3, "bgr24": 3, "gray": 1}
# ffmpeg reports a full disk as text, and may still exit 0 when only the trailer failed to write
_NO_ROOM = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system")
_WRITE_FAILED = re.compile(r"Error (?:writing trailer|closing file)")


def _tool(name: str, stage: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StageError(
            stage, f"{name} is not on PATH: install Debian's ffmpeg package (apt-get install ffmpeg)"
        )
    return path


def _tail(stderr: str, n: int = _STDERR_LINES) -> str:
    """The last ``n`` non-empty lines of ffmpeg's stderr, without its ``[demuxer @ 0x…]`` prefixes."""
    lines = [_CTX.sub("", ln).strip() for ln in stderr.strip().splitlines()]
    lines = [ln for ln in lines if ln]
    return " | ".join(lines[-n:]) if lines else "no error output"


def _timed_out(tool: str, stage: str, timeout_s: float | None, err: BaseException | None = None) -> StageError:
    out = StageError(stage, f"{tool} ran longer than {timeout_s} s", permanent=False)
    out.__cause__ = err
    return out  # not permanent: a loaded machine may finish next time


def _ffmpeg_cmd(args: list, stage: str) -> list[str]:
    return [_tool("ffmpeg", stage), *_QUIET, *map(str, args)]


def run_ffmpeg(args: list, *, stage: str, timeout_s: float | None = DECODE_TIMEOUT_S) -> None:
    """Run ``ffmpeg`` quietly (``-nostdin -hide_banner -loglevel error -y`` are added in front).

    Raises ``StageError(stage, <last stderr lines>)`` on a non-zero exit; a timeout is a
    non-permanent error (a loaded machine may finish next time).
    """
    cmd = [*_ffmpeg_cmd(["-y", *args], stage)]
    log.debug("ffmpeg %s", " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise _timed_out("ffmpeg", stage, timeout_s, err) from err
    if full := _disk_full(proc.stderr, stage, args):
        raise full
    if proc.returncode != 0:
        raise StageError(stage, f"ffmpeg failed (exit {proc.returncode}): {_tail(proc.stderr)}")
    if _WRITE_FAILED.search(proc.stderr):  # exit 0, yet the output was not written whole
        raise StageError(stage, f"ffmpeg could not finish its output: {_tail(proc.stderr)}")


def _disk_full(stderr: str, stage: str, args: list) -> StageError | None:
    """A whole-run :class:`~pipeline.errors.DiskFull` when ffmpeg's stderr says the disk is full."""
    m = _NO_ROOM.search(stderr)
    return None if m is None else disk_full(stage, str(args[-1]), f"ffmpeg: {m.group(0)}")  # the output is last


def ffprobe_json(
    path: Path, *, stage: str = "probe", extra: list[str] | None = None, timeout_s: float | None = PROBE_TIMEOUT_S
) -> dict:
    """``ffprobe -show_format -show_streams`` of ``path`` as a dict.

    ``extra`` adds ffprobe options (e.g. ``["-count_frames"]``). A missing, empty or unreadable
    file raises ``StageError(stage, "<name>: <reason>")``.
    """
    path = Path(path)
    if not path.is_file():
        raise StageError(stage, f"{path.name}: file not found at {path}")
    if path.stat().st_size == 0:
        raise StageError(stage, f"{path.name}: file is empty (0 bytes)")
    cmd = [_tool("ffprobe", stage), "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
           *(extra or []), str(path)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise _timed_out("ffprobe", stage, timeout_s, err) from err
    if proc.returncode != 0:
        raise StageError(stage, f"{path.name}: not a readable media file ({_tail(proc.stderr, 2)})")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError as err:
        raise StageError(stage, f"{path.name}: ffprobe printed no JSON ({err})") from err
    if not isinstance(data, dict):
        raise StageError(stage, f"{path.name}: ffprobe printed unexpected output")
    return data


@functools.cache
def ffmpeg_version() -> str:
    """The installed ffmpeg's version word (``ffmpeg version 7.1.2-0+deb13u1 ...`` → ``7.1.2-0+deb13u1``)."""
    try:
        out = subprocess.run(["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = out.stdout.split()
    return words[2] if len(words) > 2 and words[:2] == ["ffmpeg", "version"] else "unknown"


def _input_args(path: Path, start_s: float | None, duration_s: float | None, threads: int | None = None) -> list:
    if not path.is_file():
        raise FileNotFoundError(path)
    args: list = [] if threads is None else ["-threads", threads]
    if start_s is not None:
        if start_s < 0:
            raise ValueError(f"start_s must be >= 0, got {start_s}")
        args += ["-ss", f"{start_s:.6f}"]
    args += ["-i", path]
    if duration_s is not None:
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        args += ["-t", f"{duration_s:.6f}"]
    return args


def _decode_error(path: Path, what: str, stage: str, stderr: str) -> StageError:
    if _NO_STREAM.search(stderr):
        return StageError(stage, f"{path.name}: no {what} stream")
    return StageError(stage, f"{path.name}: ffmpeg cannot decode its {what} ({_tail(stderr)})")


def read_audio(
    path: Path,
    *,
    rate: int,
    channels: int,
    stage: str,
    start_s: float | None = None,
    duration_s: float | None = None,
    timeout_s: float | None = DECODE_TIMEOUT_S,
) -> np.ndarray:
    """Decode the first audio stream of any container, resampled and remixed by ffmpeg: [C, T] float32.

    ``start_s``/``duration_s`` read a span only. A missing file, a file with no audio stream
    ("<name>: no audio stream") or one ffmpeg cannot decode raises ``StageError(stage, ...)``.
    The array may be empty ([C, 0]) only when the span starts past the end of the stream.
    """
    path = Path(path)
    if rate <= 0 or channels <= 0:
        raise ValueError(f"rate and channels must be positive, got rate={rate}, channels={channels}")
    try:
        src = _input_args(path, start_s, duration_s)
    except FileNotFoundError:
        raise StageError(stage, f"{path.name}: file not found at {path}") from None
    cmd = _ffmpeg_cmd([*src, "-map", "0:a:0", "-vn", "-f", "f32le", "-acodec", "pcm_f32le",
                       "-ac", channels, "-ar", rate, "pipe:1"], stage)  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise _timed_out("ffmpeg", stage, timeout_s, err) from err
    if proc.returncode != 0:
        raise _decode_error(path, "audio", stage, proc.stderr.decode("utf-8", "replace"))
    flat = np.frombuffer(proc.stdout, dtype="<f4")
    usable = flat.size - flat.size % channels
    return flat[:usable].reshape(-1, channels).T.astype(np.float32)  # [C, T], a fresh writable copy


def iter_frames(
    path: Path,
    *,
    size: tuple[int, int],
    stage: str,
    pix_fmt: str = "rgb24",
    fps: float | None = None,
    cover: bool = False,
    scale_flags: str = "bicubic",
    max_frames: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    timeout_s: float | None = DECODE_TIMEOUT_S,
) -> Iterator[np.ndarray]:
    """Stream the first video stream's frames through an ffmpeg pipe, decoded once.

    ``size`` is (width, height); ``cover=True`` scales to cover it and centre-crops, otherwise the
    picture is scaled to it. ``fps`` resamples the frame rate (None keeps the stream's). Yields one
    frame [H, W, 3] (or [H, W] for ``gray``) at a time, or, with ``batch_size``, freshly allocated
    writable batches [B, H, W(, 3)] (the last one shorter). Stopping early ends the decoder.
    """
    path = Path(path)
    if pix_fmt not in _PIX_CHANNELS:
        raise ValueError(f"pix_fmt must be one of {sorted(_PIX_CHANNELS)}, got {pix_fmt!r}")
    w, h = size
    if w <= 0 or h <= 0 or (batch_size is not None and batch_size < 1):
        raise ValueError(f"size must be positive and batch_size >= 1, got {size}, {batch_size}")
    scale = f"scale={w}:{h}:flags={scale_flags}"
    if cover:
        scale = f"scale={w}:{h}:force_original_aspect_ratio=increase:flags={scale_flags},crop={w}:{h}"
    vf = f"fps={fps},{scale}" if fps is not None else scale
    try:
        src = _input_args(path, None, None, threads)
    except FileNotFoundError:
        raise StageError(stage, f"{path.name}: file not found at {path}") from None
    limit = ["-frames:v", max_frames] if max_frames is not None else []
    cmd = _ffmpeg_cmd([*src, "-map", "0:v:0", "-an", "-vf", vf, *limit, "-pix_fmt", pix_fmt,
                       "-f", "rawvideo", "pipe:1"], stage)  # fmt: skip
    shape = (h, w, 3) if _PIX_CHANNELS[pix_fmt] == 3 else (h, w)
    yield from _stream(cmd, path, stage, shape, batch_size, timeout_s)


def run_ffmpeg_frames(args: list, *, size: tuple[int, int], stage: str, written: Path, pix_fmt: str = "bgr24",
                      timeout_s: float | None = DECODE_TIMEOUT_S) -> Iterator[np.ndarray]:
    """Run ``ffmpeg`` whose last output is raw ``pix_fmt`` frames of ``size`` on ``pipe:1``; yield them [H, W(, 3)].

    For one decode with several outputs (``args`` write a file and then the pipe): the frames come as
    ffmpeg makes them, so the consumer works while ffmpeg encodes; ``written`` is the file output (named in a
    full disk's error). A failure, a full disk or a timeout
    raises as :func:`run_ffmpeg` does, once the frames are read.
    """
    if pix_fmt not in _PIX_CHANNELS:
        raise ValueError(f"pix_fmt must be one of {sorted(_PIX_CHANNELS)}, got {pix_fmt!r}")
    w, h = size
    if w <= 0 or h <= 0 or not args or str(args[-1]) != "pipe:1":
        raise ValueError(f"need a positive size and args ending in pipe:1, got {size}, {args[-1:]}")
    cmd = _ffmpeg_cmd(["-y", *args], stage)
    log.debug("ffmpeg %s", " ".join(cmd[1:]))
    def failed(rc: int, stderr: str) -> StageError:
        if full := _disk_full(stderr, stage, [written]):
            return full
        if rc == 0:
            return StageError(stage, f"ffmpeg could not finish its output: {_tail(stderr)}")
        return StageError(stage, f"ffmpeg failed (exit {rc}): {_tail(stderr)}")

    shape = (h, w, 3) if _PIX_CHANNELS[pix_fmt] == 3 else (h, w)
    yield from _stream(cmd, Path(str(args[-1])), stage, shape, None, timeout_s, failed=failed)


def read_frames(path: Path, **kwargs) -> np.ndarray:
    """All frames of :func:`iter_frames` (same keywords) in one array [N, H, W(, 3)] uint8."""
    kwargs.pop("batch_size", None)
    batches = list(iter_frames(path, batch_size=256, **kwargs))
    return np.concatenate(batches) if batches else np.zeros((0,), np.uint8)


def _stream(cmd: list[str], path: Path, stage: str, shape: tuple[int, ...], batch_size: int | None,
            timeout_s: float | None, *, failed: Callable[[int, str], StageError] | None = None) -> Iterator[np.ndarray]:
    """``failed(rc, stderr)`` names the error of a non-zero exit (or of stderr that says the output was not
    written: a disk that filled up); by default a decode error of ``path``'s video."""
    frame_bytes = int(np.prod(shape))
    per = batch_size or 1
    with tempfile.TemporaryFile() as err_file:  # a file, not a pipe: a chatty decoder never blocks
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err_file)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout_s, kill) if timeout_s is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        finished = False
        try:
            assert proc.stdout is not None
            while True:
                batch = np.empty((per, *shape), np.uint8)
                view, got = memoryview(batch).cast("B"), 0
                while got < len(view) and (n := proc.stdout.readinto(view[got:])):
                    got += n
                whole = got // frame_bytes
                if whole:
                    yield batch[:whole] if batch_size else batch[0]
                if got < len(view):
                    break
            finished = True
        finally:
            if timer is not None:
                timer.cancel()
            if not finished and proc.poll() is None:
                proc.kill()  # the consumer stopped early
            proc.stdout.close()
            rc = proc.wait()
        if killed.is_set():
            raise _timed_out("ffmpeg", stage, timeout_s)
        if failed is not None:
            err_file.seek(0)
            stderr = err_file.read().decode("utf-8", "replace")
            if rc != 0 or _NO_ROOM.search(stderr) or _WRITE_FAILED.search(stderr):
                raise failed(rc, stderr)
        elif rc != 0:
            err_file.seek(0)
            raise _decode_error(path, "video", stage, err_file.read().decode("utf-8", "replace"))
