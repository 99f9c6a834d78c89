"""Thin wrappers around the ffmpeg and ffprobe command-line tools.

Every failure becomes a :class:`StageError` whose text is ffmpeg's own last words, so a failed
row in the catalog says what went wrong without a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

from pipeline.errors import StageError

log = logging.getLogger(__name__)

_QUIET = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
_STDERR_LINES = 5
_CTX = re.compile(r"\[[^\]]* @ 0x[0-9a-fA-F]+\]\s*")


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


def run_ffmpeg(args: list[str], *, stage: str, timeout_s: float | None = None) -> None:
    """Run ``ffmpeg`` quietly (``-nostdin -hide_banner -loglevel error -y`` are added in front).

    Raises ``StageError(stage, <last stderr lines>)`` on a non-zero exit; a timeout is a
    non-permanent error (a loaded machine may finish next time).
    """
    cmd = [_tool("ffmpeg", stage), *_QUIET, *map(str, args)]
    log.debug("ffmpeg %s", " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise StageError(stage, f"ffmpeg ran longer than {timeout_s} s", permanent=False) from err
    if proc.returncode != 0:
        raise StageError(stage, f"ffmpeg failed (exit {proc.returncode}): {_tail(proc.stderr)}")


def ffprobe_json(path: Path, *, stage: str = "probe", extra: list[str] | None = None) -> dict:
    """``ffprobe -show_format -show_streams`` of ``path`` as a dict.

    ``extra`` adds ffprobe options (e.g. ``["-count_frames"]``). A missing, empty or unreadable
    file raises ``StageError(stage, "<name>: <reason>")``.
    """
    path = Path(path)
    if not path.is_file():
        raise StageError(stage, f"{path.name}: file not found at {path}")
    if path.stat().st_size == 0:
        raise StageError(stage, f"{path.name}: file is empty (0 bytes)")
    cmd = [
        _tool("ffprobe", stage),
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        *(extra or []),
        str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise StageError(stage, f"{path.name}: not a readable media file ({_tail(proc.stderr, 2)})")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError as err:
        raise StageError(stage, f"{path.name}: ffprobe printed no JSON ({err})") from err
    if not isinstance(data, dict):
        raise StageError(stage, f"{path.name}: ffprobe printed unexpected output")
    return data
