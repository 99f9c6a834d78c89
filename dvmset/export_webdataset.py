"""WebDataset shards of an export: ``exports/{name}/webdataset/{split}-{n:05d}.tar``.

Each sample is the files of one clip under its key (the clip id): ``{key}.mp4`` (the review clip),
``{key}.flac`` (its processed music), ``{key}.json`` (its manifest row) and, once features exist,
``{key}.global.npy`` / ``{key}.rhythm.npy`` / ``{key}.codes.npy`` (... one per stored tensor) — what
``webdataset.WebDataset(urls).decode()`` reads as published. Shards hold one split each, up to
``shard_size`` bytes of sample files (a sample larger than that gets a shard of its own).

Atomic (each tar written to a temp file, renamed when complete; ``shards.json`` last) and resumable (a
shard whose file and recorded members match the plan is kept). Takedown-aware: only the manifest's clips
are written, shards of clips no longer listed go, and :func:`scrub_webdataset` rewrites the shards that
hold a taken-down clip. The music is made by the caller's ``music_flac(clip, dest)`` (dvmset decodes no
media), cached under ``webdataset/.music/`` so a resumed export extracts it once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dvmset.io import atomic_path, atomic_write_text, remove_partials
from dvmset.layout import DataRoot
from dvmset.shards import FeatureStore, ShardReader

log = logging.getLogger(__name__)
FOLDER = "webdataset"
INDEX = "shards.json"
FORMAT = "vidmusician-webdataset/1"
MUSIC_CACHE = ".music"
_MTIME = 0  # members carry no wall-clock time: the same export gives the same bytes

MusicFlac = Callable[[Path, Path], None]  # (clip .mp4, destination .flac)


def parse_size(text: str | int) -> int:
    """``"512MB"``, ``"1GiB"``, ``"200000"`` -> bytes (decimal K/M/G, binary Ki/Mi/Gi)."""
    if isinstance(text, int):
        value, unit = text, ""
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", str(text), re.IGNORECASE)
        if m is None:
            raise ValueError(f"shard size {text!r}: give bytes or a size such as 500MB or 1GiB")
        value, unit = float(m[1]), (m[2] or "").upper().rstrip("B")
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}[unit]
    size = int(value * scale)
    if size < 1:
        raise ValueError(f"shard size must be at least one byte, got {text!r}")
    return size


def sample_key(clip_id: str) -> str:
    """The WebDataset key of a clip: its id (ids hold no '.', which WebDataset splits keys from extensions on)."""
    if "." in clip_id or "/" in clip_id:
        raise ValueError(f"clip id {clip_id!r} cannot be a WebDataset key (no '.' or '/')")
    return clip_id


@dataclass(frozen=True)
class Planned:
    """One shard to write: its file name, split, and each sample's (key, member sizes) in order."""

    file: str
    split: str
    samples: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.samples]


def plan_shards(samples: Sequence[tuple[str, str, int, tuple[int, ...]]], shard_size: int) -> list[Planned]:
    """Pure: pack ``(split, key, bytes, member sizes)`` samples, in the given order, into shards of one split
    each holding at most ``shard_size`` bytes (a sample bigger than that alone in its shard)."""
    out: list[Planned] = []
    by_split: dict[str, list[tuple[str, int, tuple[int, ...]]]] = {}
    for split, key, size, sizes in samples:
        by_split.setdefault(split, []).append((key, size, sizes))
    for split in sorted(by_split):
        current: list[tuple[str, tuple[int, ...]]] = []
        used = 0
        for key, size, sizes in by_split[split]:
            if current and used + size > shard_size:
                out.append(Planned(f"{split}-{sum(p.split == split for p in out):05d}.tar", split, tuple(current)))
                current, used = [], 0
            current.append((key, sizes))
            used += size
        if current:
            out.append(Planned(f"{split}-{sum(p.split == split for p in out):05d}.tar", split, tuple(current)))
    return out


@dataclass(frozen=True)
class WebDatasetSummary:
    folder: Path
    shards: int
    written: int  # shards written this run (the rest were complete already)
    samples: int
    bytes: int

    def urls(self, split: str) -> str:
        """The brace pattern of a split's shards, as ``webdataset.WebDataset`` takes it."""
        files = sorted(p.name for p in self.folder.glob(f"{split}-*.tar"))
        if not files:
            raise ValueError(f"no {split} shards in {self.folder}")
        return str(self.folder / f"{split}-{{00000..{len(files) - 1:05d}}}.tar")


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _members(row: dict, clip: Path, music: Path, tensors: dict[str, np.ndarray]) -> list[tuple[str, bytes | Path]]:
    key = sample_key(row["clip_id"])
    out: list[tuple[str, bytes | Path]] = [(f"{key}.mp4", clip), (f"{key}.flac", music),
                                           (f"{key}.json", json.dumps(row, sort_keys=True, default=str).encode())]
    out += [(f"{key}.{name}.npy", _npy(t)) for name, t in sorted(tensors.items())]
    return out


def _size(data: bytes | Path) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def _write_tar(dest: Path, samples: Iterable[list[tuple[str, bytes | Path]]]) -> str:
    """Write the samples' members in order to ``dest`` atomically; returns the tar's sha256."""
    with atomic_path(dest) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for members in samples:
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = _size(data), _MTIME, 0o644
                    if isinstance(data, Path):
                        with open(data, "rb") as fh:
                            tar.addfile(info, fh)
                    else:
                        tar.addfile(info, io.BytesIO(data))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return digest


def _read_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return {"shards": []}
    return index if index.get("format") == FORMAT else {"shards": []}


def _row_dict(row: pd.Series) -> dict:
    return {k: (None if isinstance(v, float) and np.isnan(v) else v.item() if isinstance(v, np.generic) else v)
            for k, v in row.items()}


def write_webdataset(root: DataRoot, out: Path, manifest: pd.DataFrame, music_flac: MusicFlac,
                     shard_size: int) -> WebDatasetSummary:
    """Write (or finish) the WebDataset shards of the export at ``out`` for its ``manifest``; the caller
    holds the export's lock (dvmset.export.export_lock)."""
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    remove_partials(folder)
    cache = folder / MUSIC_CACHE
    cache.mkdir(exist_ok=True)
    reader = ShardReader(root.features_dir) if FeatureStore(root.features_dir).count() else None
    rows: list[tuple[dict, Path, Path]] = []
    for _, r in manifest.sort_values(["split", "clip_id"]).iterrows():
        row = _row_dict(r)
        clip = root.path / row["path"]
        music = cache / f"{sample_key(row['clip_id'])}.flac"
        if not music.is_file():
            with atomic_path(music) as tmp:
                music_flac(clip, tmp)
        rows.append((row, clip, music))
    keep = {m.name for _, _, m in rows}
    for stale in cache.glob("*.flac"):  # a clip no longer listed (taken down, rejected): its music goes
        if stale.name not in keep:
            stale.unlink()

    def members(row: dict, clip: Path, music: Path) -> list[tuple[str, bytes | Path]]:
        tensors = reader.get(row["clip_id"]) if reader is not None and row["clip_id"] in reader else {}
        return _members(row, clip, music, tensors)

    sized = []
    for row, clip, music in rows:
        sizes = tuple(_size(d) for _, d in members(row, clip, music))
        sized.append((row["split"], row["clip_id"], sum(sizes), sizes))
    plan = plan_shards(sized, shard_size)
    by_key = {row["clip_id"]: (row, clip, music) for row, clip, music in rows}
    done = {s["file"]: s for s in _read_index(folder)["shards"]}
    index, written = [], 0
    for p in plan:
        recorded = done.get(p.file)
        path = folder / p.file
        samples = [[k, list(sizes)] for k, sizes in p.samples]
        if recorded and recorded.get("samples") == samples and path.is_file() \
                and path.stat().st_size == recorded.get("bytes"):
            index.append(recorded)
            continue
        sha = _write_tar(path, (members(*by_key[k]) for k in p.keys))
        index.append({"file": p.file, "split": p.split, "samples": samples, "bytes": path.stat().st_size,
                      "sha256": sha})
        written += 1
        log.info("wrote %s (%d samples)", path, len(p.samples))
    planned = {p.file for p in plan}
    for stale in folder.glob("*.tar"):
        if stale.name not in planned:
            stale.unlink()
    if reader is not None:
        reader.close()
    _save_index(folder, index, shard_size)
    return WebDatasetSummary(folder, len(plan), written, len(rows), sum(s["bytes"] for s in index))


def _save_index(folder: Path, shards: list[dict], shard_size: int | None) -> None:
    atomic_write_text(folder / INDEX, json.dumps({"format": FORMAT, "shard_size": shard_size, "shards": shards},
                                                 indent=1) + "\n")


def scrub_webdataset(out: Path, gone: Iterable[str]) -> bool:
    """Rewrite the export's shards that hold any of the ``gone`` clips without them (their cached music
    deleted too); returns whether anything changed. The caller holds the export's lock."""
    folder = out / FOLDER
    gone = set(gone)
    if not folder.is_dir() or not gone:
        return False
    changed = bool(remove_partials(folder))
    index = _read_index(folder)
    recorded = {s["file"] for s in index["shards"]}
    for path in folder.glob("*.tar"):  # written by a run killed before its index: unrecorded, so checked here
        if path.name not in recorded:
            with tarfile.open(path) as tar:
                if {m.name.split(".", 1)[0] for m in tar.getmembers()} & gone:
                    path.unlink()
                    changed = True
    for cid in gone:
        if "." not in cid and "/" not in cid and (m := folder / MUSIC_CACHE / f"{cid}.flac").is_file():
            m.unlink()
            changed = True
    kept = []
    for s in index["shards"]:
        path = folder / s["file"]
        keys = [k for k, _ in s["samples"]]
        if not set(keys) & gone or not path.is_file():
            kept.append(s)
            continue
        changed = True
        left = [[k, sizes] for k, sizes in s["samples"] if k not in gone]  # none left: an empty tar keeps
        with tarfile.open(path) as tar:                                    # the shard names a reader was given
            groups: dict[str, list[tuple[str, bytes | Path]]] = {}
            for m in tar.getmembers():
                key = m.name.split(".", 1)[0]
                if key not in gone:
                    groups.setdefault(key, []).append((m.name, tar.extractfile(m).read()))
        sha = _write_tar(path, (groups[k] for k, _ in left))
        kept.append({**s, "samples": left, "bytes": path.stat().st_size, "sha256": sha})
    if changed:
        _save_index(folder, kept, index.get("shard_size"))
    return changed
