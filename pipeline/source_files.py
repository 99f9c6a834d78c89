"""A download on disk: ``sources_dir/{id}/source.{ext}`` + ``info.json``, the by-URL index, the
per-source lock and the private work folders of downloads in progress (and their sweeping)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvmset.io import atomic_write_text, file_lock
from dvmset.layout import check_id

log = logging.getLogger(__name__)

INFO_JSON = "info.json"
MEDIA_STEM = "source"
_BY_URL = ".by-url"
_OUR_KEY = "vidmusician"
_WORK_PREFIX = ".dl-"
_LOCK = ".lock"
#: sources/.locks/{id}: held by whoever downloads or processes that source (one at a time); kept
#: outside the source folder so a refused download leaves no folder behind
_LOCKS = ".locks"


@dataclass(frozen=True)
class Downloaded:
    id: str
    media_path: Path
    info_json_path: Path
    title: str | None
    uploader: str | None
    license: str | None
    duration_s: float | None
    webpage_url: str


def url_key(url: str) -> str:
    """A stable, filesystem-safe key for a URL before yt-dlp has told us its id."""
    return "url-" + hashlib.sha1(url.strip().encode("utf-8")).hexdigest()[:16]


def finite_number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def load_downloaded(folder: Path) -> Downloaded | None:
    """A finished download in ``folder`` (info.json and its media present), else None."""
    info_path = folder / INFO_JSON
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        media = folder / info[_OUR_KEY]["media"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not media.is_file() or media.stat().st_size == 0:
        return None
    return downloaded_from_info(folder.name, media, info_path, info)


def downloaded_from_info(vid: str, media: Path, info_path: Path, info: dict[str, Any]) -> Downloaded:
    duration = (info.get(_OUR_KEY) or {}).get("probed_duration_s", info.get("duration"))
    return Downloaded(
        id=vid,
        media_path=media,
        info_json_path=info_path,
        title=info.get("title"),
        uploader=info.get("uploader"),
        license=info.get("license"),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        webpage_url=info.get("webpage_url") or info.get(_OUR_KEY, {}).get("url") or "",
    )


def find_downloaded(url: str, sources_dir: Path) -> Downloaded | None:
    """The finished download of ``url`` under ``sources_dir``, found without any network access."""
    index = Path(sources_dir) / _BY_URL / url_key(url)
    try:
        vid = check_id(index.read_text(encoding="utf-8").strip(), "video id")
    except (OSError, ValueError):
        return None
    return load_downloaded(Path(sources_dir) / vid)


def source_lock(sources_dir: Path, vid: str) -> contextlib.AbstractContextManager[None]:
    """The lock of one source folder: one downloader or processor of that video at a time, across
    threads and processes (flock; released by the kernel if the holder dies)."""
    return file_lock(Path(sources_dir) / _LOCKS / check_id(vid, "video id"))


@contextlib.contextmanager
def work_folder(sources_dir: Path, url: str) -> Iterator[Path]:
    """A private temporary folder in ``sources_dir``, flock-ed while in use and removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{url_key(url)}-", dir=sources_dir))
    try:
        with file_lock(workdir / _LOCK):
            yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # a sweeper racing us here removes the same thing


def sweep_stale_workdirs(sources_dir: Path, *, grace_s: float = 60.0) -> list[Path]:
    """Remove work folders left by killed downloads (nobody holds their lock); returns what went.

    A folder without a lock file is left alone for ``grace_s`` (its owner may be creating it).
    """
    removed: list[Path] = []
    for folder in Path(sources_dir).glob(f"{_WORK_PREFIX}*"):
        try:
            fd = os.open(folder / _LOCK, os.O_RDWR)
        except FileNotFoundError:
            if folder.is_dir() and time.time() - folder.stat().st_mtime > grace_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live download owns it
        finally:
            os.close(fd)  # closing drops the lock we may have taken
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d work folder(s) of interrupted downloads in %s", len(removed), sources_dir)
    return removed


def commit(
    sources_dir: Path, vid: str, media_tmp: Path, info: dict[str, Any], url: str, duration: float
) -> Downloaded:
    """Move the media into place, then write info.json (last, so its presence means complete)."""
    folder = sources_dir / vid
    folder.mkdir(parents=True, exist_ok=True)
    media = folder / f"{MEDIA_STEM}{media_tmp.suffix}"
    os.replace(media_tmp, media)
    if finite_number(info.get("duration")) is None:
        info["duration"] = duration  # a direct file link reports none: keep the probed one
    for key in ("requested_downloads", "filepath", "_filename", "filename"):
        info.pop(key, None)  # paths into the deleted work folder
    info[_OUR_KEY] = {"media": media.name, "url": url, "probed_duration_s": duration}
    info_path = folder / INFO_JSON
    atomic_write_text(info_path, json.dumps(info, ensure_ascii=False, indent=1, default=str))
    remember(sources_dir, url, vid)
    log.info("downloaded %s -> %s (%.1f s)", url, media, duration)
    return downloaded_from_info(vid, media, info_path, info)


def remember(sources_dir: Path, url: str, vid: str) -> None:
    atomic_write_text(sources_dir / _BY_URL / url_key(url), vid)
