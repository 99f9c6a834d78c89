"""Shared fixtures: synthetic media from ffmpeg, the real recordings in ../shared/media, a catalog."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from pipeline.synth import make_sample_video

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = Path(os.environ.get("VIDMUSICIAN_SHARED_MEDIA", REPO.parent / "shared" / "media"))

# Keep every test offline and out of the user's Prefect profile.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def pytest_configure(config: pytest.Config) -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise pytest.UsageError(f"{tool} is not on PATH: install Debian's ffmpeg (make system-deps)")


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The real recordings; tests using them skip where ../shared/media is absent."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"real media not present at {SHARED_MEDIA}")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def media_factory(tmp_path_factory: pytest.TempPathFactory):
    """make(name, **kwargs) -> Path: a cached synthetic MP4 (see pipeline.synth.make_sample_video)."""
    base = tmp_path_factory.mktemp("media")
    made: dict[tuple, Path] = {}

    def make(name: str = "sample", **kwargs) -> Path:
        key = (name, tuple(sorted(kwargs.items())))
        if key not in made:
            made[key] = make_sample_video(base / f"{name}-{len(made)}.mp4", **kwargs)
        return made[key]

    return make


@pytest.fixture
def data_root(tmp_path: Path) -> DataRoot:
    return DataRoot(tmp_path / "root").ensure()


@pytest.fixture
def catalog(data_root: DataRoot):
    cat = Catalog(data_root.catalog_url)
    yield cat
    cat.dispose()


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (starting one costs ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
