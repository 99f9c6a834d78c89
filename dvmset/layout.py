"""Where things live under a data root (see DESIGN.md, "On disk")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
ID_RULE = "letters, digits, '-', '_' and '.', at most 128 characters, not starting with '.' and without '..'"


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be an id (a video, clip or export name that becomes a file name), or None.

    The one rule for ids wherever they enter (a release, a URL's download, yt-dlp's info, the command
    line): nothing that could name another directory (``..``, separators, an absolute path) or a hidden file.
    """
    if not isinstance(value, str):
        return f"is {type(value).__name__}, not text"
    if not value:
        return "is empty"
    if value.startswith(("/", "\\")):
        return "is an absolute path"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if ".." in value:
        return "contains '..'"
    if value.startswith("."):
        return "starts with '.'"
    if len(value) > 128:
        return f"is {len(value)} characters long, at most 128"
    if bad := sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "-_."))}):
        return "contains " + ", ".join(repr(c) for c in bad[:5])
    return None


def check_id(value: str, what: str = "id") -> str:
    """``value`` if it is a valid id (:func:`id_problem`); else ValueError saying why."""
    if (why := id_problem(value)) is not None or not _SAFE_ID.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: it {why or 'breaks the rule'} (ids: {ID_RULE})")
    return value


@dataclass(frozen=True)
class DataRoot:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser().resolve())

    @property
    def catalog_path(self) -> Path:
        """The SQLite catalog (unused when $VIDMUSICIAN_DB names another database)."""
        return self.path / "catalog.sqlite"

    @property
    def catalog_url(self) -> str:
        return f"sqlite:///{self.catalog_path}"

    @property
    def sources_dir(self) -> Path:
        return self.path / "sources"

    def source_dir(self, video_id: str) -> Path:
        return self.sources_dir / check_id(video_id, "video id")

    @property
    def clips_dir(self) -> Path:
        return self.path / "clips"

    def clip_path(self, clip_id: str) -> Path:
        return self.clips_dir / f"{check_id(clip_id, 'clip id')}.mp4"

    def peaks_path(self, clip_id: str) -> Path:
        """The clip's stored waveform peaks (dvmset.peaks), written by curation beside the clip."""
        return self.clips_dir / f"{check_id(clip_id, 'clip id')}.peaks.npy"

    @property
    def features_dir(self) -> Path:
        return self.path / "features"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    def export_dir(self, name: str) -> Path:
        return self.exports_dir / check_id(name, "export name")

    def ensure(self) -> DataRoot:
        for d in (self.path, self.sources_dir, self.clips_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self
