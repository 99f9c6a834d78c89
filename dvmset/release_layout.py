"""Where an export's release rows go: one ``release.parquet`` and one ``release.csv``, or parts of them.

Up to :data:`PER_PART` clips make one file each (``release.parquet``, ``release.csv``); more are spread over
``release.parquet/part-{i:04d}-of-{n:04d}.parquet`` and ``release.csv/part-{i:04d}-of-{n:04d}.csv`` by a hash of
the clip's video (its id before the last ``-``, as the info zips do: dvmset.info_zips), so every clip of a video
is in one part and a takedown rewrites that part, not a gigabyte of fingerprints. The folders are named as
Spark names its output, so ``pd.read_parquet("release.parquet")`` reads the file or the folder of parts alike;
each CSV part has its header. release.json keeps each part's counts (``parts``) beside the totals, so a
takedown recounts the part it rewrote and sums (pure functions here; the files are dvmset.release's).
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from dvmset.info_zips import video_bucket

PER_PART = 2_000  # clips per part: ~11 MB of parquet and CSV at 180 K clips, a takedown rewrites one in ~0.1 s
PARQUET, CSV, META = "release.parquet", "release.csv", "release.json"
_PART = re.compile(r"part-(\d{4,})-of-(\d{4,})\.(parquet|csv)")


def part_count(n_clips: int, per_part: int | None = None) -> int:
    """How many parts a release of ``n_clips`` is spread over (1: the two single files)."""
    return max(1, math.ceil(n_clips / (per_part or PER_PART)))


def part_stem(index: int, count: int) -> str:
    return f"part-{index:04d}-of-{count:04d}"


def part_of(clip_id: str, count: int) -> str:
    """The stem of the part (of ``count``) that holds the clip's row."""
    return part_stem(video_bucket(clip_id, count), count)


def parts_of(clip_ids: Iterable[str], count: int) -> dict[str, list[str]]:
    """part stem -> its clip ids in id order, every part of ``count`` listed (an empty one too)."""
    out: dict[str, list[str]] = {part_stem(i, count): [] for i in range(count)}
    for cid in sorted(clip_ids):
        out[part_of(cid, count)].append(cid)
    return out


def part_files(folder: Path) -> list[Path]:
    """The part files in a ``release.parquet`` or ``release.csv`` folder, in part order ([] for a file)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _PART.fullmatch(p.name) and p.suffix == folder.suffix)


def parts_holding(folder: Path, clip_ids: Iterable[str]) -> list[Path]:
    """The part files of ``folder`` that may hold one of the clips (by their names; none opened)."""
    files = part_files(folder)
    counts = {int(m.group(2)) for p in files if (m := _PART.fullmatch(p.name))}
    stems = {part_of(c, n) for c in clip_ids for n in counts}
    return [p for p in files if p.stem in stems]


def clear_for(path: Path, parts: bool) -> None:
    """Make room at ``path`` for the layout about to be written: a single file where parts go, or the
    folder of parts where a single file goes, is removed (an earlier export's other layout)."""
    if parts and (path.is_file() or path.is_symlink()):
        path.unlink()
    elif not parts and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)


def remove_stale(folder: Path, keep: Iterable[str]) -> None:
    """The parts of an earlier export in ``folder`` that this one did not write (another part count)."""
    keep = set(keep)
    for p in part_files(folder):
        if p.name not in keep:
            p.unlink()


def remove(out: Path) -> None:
    """The release of an export, in either layout, gone."""
    for name in (PARQUET, CSV):
        clear_for(out / name, parts=True)
        clear_for(out / name, parts=False)
    (out / META).unlink(missing_ok=True)


def totals(parts: Mapping[str, Mapping]) -> dict:
    """release.json's totals from its parts' counts: clips, videos and splits summed (a video is in one part),
    the processing parameters' union."""
    splits: dict[str, int] = {}
    processing: dict[str, list] = {}
    for c in parts.values():
        for k, n in c["splits"].items():
            splits[k] = splits.get(k, 0) + n
        for k, vs in c["processing"].items():
            have = processing.setdefault(k, [])
            have += [v for v in vs if v not in have]
    return {"clips": sum(c["clips"] for c in parts.values()), "videos": sum(c["videos"] for c in parts.values()),
            "splits": splits, "processing": {k: sorted(v, key=str) for k, v in processing.items()}}
