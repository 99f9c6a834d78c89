"""The zip files of an export's MusicInfo JSONs, which each AudioMeta line's ``info_path`` points into
(``<zip>:<clip_id>.json``, audiocraft's PathInZip).

Up to :data:`PER_ZIP` clips go in one ``audio/info.zip``; more are spread over
``audio/info-{i:04d}-of-{n:04d}.zip`` by a hash of the clip's video (its id before the last ``-``), so a
takedown rewrites the zip holding that video's clips, not every clip's JSON. Members carry a fixed date,
so the same clips make the same bytes (a takedown's zip equals the export's made without the clip).
"""

from __future__ import annotations

import logging
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from dvmset.io import atomic_path, matching

log = logging.getLogger(__name__)

SINGLE = "info.zip"
INFO_ZIPS = "info_zips"  # export.json's key for the number of zips the export wrote (a takedown names its zip)
PER_ZIP = 1000  # clips per zip: a takedown rewrites one in about 0.1 s
_PART = re.compile(r"info-(\d{4,})-of-(\d{4,})\.zip")
_DATE = (1980, 1, 1, 0, 0, 0)  # zip's epoch: no write time in the bytes


def zip_count(n_clips: int, per_zip: int | None = None) -> int:
    """How many zips an export of ``n_clips`` spreads its MusicInfo over."""
    return max(1, math.ceil(n_clips / (per_zip or PER_ZIP)))


def video_bucket(clip_id: str, count: int) -> int:
    """Which of ``count`` parts holds a clip, by a hash of its video (the id before the last ``-``, as
    ``{video}-{start:05d}``), so every clip of one video is in the same part: the info zips' and the release's."""
    key = clip_id.rpartition("-")[0] or clip_id
    return zlib.crc32(key.encode("utf-8")) % count


def zip_file(bucket: int, count: int) -> str:
    """The name of zip ``bucket`` of ``count``."""
    return SINGLE if count == 1 else f"info-{bucket:04d}-of-{count:04d}.zip"


def zip_name(clip_id: str, count: int) -> str:
    """The zip (of ``count``) that holds the clip's JSON: every clip of one video in the same one."""
    return zip_file(video_bucket(clip_id, count) if count > 1 else 0, count)


def _write(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, _DATE), data, compress_type=zipfile.ZIP_DEFLATED)


def write_info_zips(audio_dir: Path, zips: Iterable[tuple[str, list[str]]],
                    info_jsons: Callable[[list[str]], Iterable[str]]) -> None:
    """Each clip's MusicInfo in its zip under ``audio_dir``: ``zips`` gives each zip's name (:func:`zip_name`)
    and its clip ids in id order, the members' order, and ``info_jsons(ids)`` their JSON texts, so one zip's
    clips are held at a time. An empty zip is not written, unless no zip is (an empty export still has the
    zip its layout names); the zips of an earlier export there that this one does not write are deleted."""
    written = set()
    for name, ids in zips:
        if ids:
            _write(audio_dir / name, ((f"{c}.json", text.encode("utf-8"))
                                      for c, text in zip(ids, info_jsons(ids), strict=True)))
            written.add(name)
    if not written:
        _write(audio_dir / SINGLE, ())
        written.add(SINGLE)
    for stale in present(audio_dir):
        if stale.name not in written:
            stale.unlink()


def present(audio_dir: Path) -> list[Path]:
    """The info zips in ``audio_dir`` (one ``info.zip``, or the parts of a larger export)."""
    return [p for p in matching(audio_dir, "info*.zip") if p.name == SINGLE or _PART.fullmatch(p.name)]


def drop_from_info_zips(audio_dir: Path, gone: set[str], count: int | None = None) -> bool:
    """Each info zip that may hold one of the ``gone`` clips rewritten without them (the other zips are not
    opened); returns whether one changed. ``count``: the number of zips the export wrote (its export.json),
    so their names are known without listing the audio folder; else the folder is listed. An ``info.zip``
    beside parts (none an export writes) is checked too."""
    changed = False
    named = {audio_dir / SINGLE, *(audio_dir / zip_name(c, count) for c in gone)} if count else None
    for path in present(audio_dir) if named is None else sorted(p for p in named if p.is_file()):
        if (m := _PART.fullmatch(path.name)) is not None:
            count = int(m.group(2))
            if not any(zip_name(c, count) == path.name for c in gone):
                continue
        changed = _zip_without(path, gone) or changed
    return changed


def _zip_without(path: Path, gone: set[str]) -> bool:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if not any(Path(n).stem in gone for n in names):
            return False
        if len(names) > PER_ZIP:
            log.info("%s holds %d clips' MusicInfo: rewriting it all (a re-export spreads them over zips of %d, "
                     "which a takedown rewrites one at a time)", path, len(names), PER_ZIP)
        members = [(n, z.read(n)) for n in names if Path(n).stem not in gone]
    _write(path, members)
    return True
