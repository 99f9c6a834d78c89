"""Shared fixtures: synthetic media from ffmpeg, the real recordings in ../shared/media, a catalog,
tiny CLIP / codec models. Helpers that are not fixtures live beside this file (feature_helpers.py)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from model.metrics.checkpoints import isolate_laion_clap
from pipeline.media import run_ffmpeg
from pipeline.synth import make_sample_video

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = Path(os.environ.get("VIDMUSICIAN_SHARED_MEDIA", REPO.parent / "shared" / "media"))

# Keep every test offline and out of the user's Prefect profile.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
isolate_laion_clap()  # tests that import audiocraft directly, before model/ does it


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


# -------------------------------------------------------------------- features: 25 fps clips, tiny models


@pytest.fixture(scope="session")
def clip_factory(tmp_path_factory: pytest.TempPathFactory):
    """make(seconds, cut_every_s=..., size=...) -> a cached H.264 25 fps + AAC clip."""
    base = tmp_path_factory.mktemp("clips25")
    made: dict[tuple, Path] = {}

    def make(seconds: float = 4.0, cut_every_s: float | None = 2.0, size: str = "96x64") -> Path:
        key = (seconds, cut_every_s, size)
        if key not in made:
            dest = base / f"clip-{len(made)}.mp4"
            made[key] = make_sample_video(dest, seconds, size=size, fps=25, cut_every_s=cut_every_s)
        return made[key]

    return make


@pytest.fixture(scope="session")
def static_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of a still frame, lossless, with a hard cut (a box appears) at exactly 2.0 s = frame 50."""
    dest = tmp_path_factory.mktemp("static") / "static.mp4"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "color=c=0x3366cc:s=96x64:r=25:d=4", "-f", "lavfi", "-i", "sine=f=440:d=4:sample_rate=32000",
         "-vf", "drawbox=x=0:y=0:w=48:h=64:color=yellow:t=fill:enable='gte(t,2)'",
         "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", "-c:a", "aac", dest],
        stage="test",
    )
    return dest


@pytest.fixture(scope="session")
def tiny_encoder():
    from pipeline.clip_encoder import ClipEncoderSpec, load_clip_encoder

    return load_clip_encoder(ClipEncoderSpec.tiny())


@pytest.fixture(scope="session")
def tiny_codec():
    from pipeline.codec import load_codec

    return load_codec("tiny")


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


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a Unix socket (no TCP); skips where Postgres or psycopg is absent."""
    pytest.importorskip("psycopg")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not on PATH")
    base = Path(tempfile.mkdtemp(prefix="vidmusician-pg-"))  # outside pytest's root-only tmp tree
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server")
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        if shutil.which("runuser") is None:
            pytest.skip("running as root and no runuser to start the server as 'postgres'")
        prefix = ["runuser", "-u", "postgres", "--"]
    made = subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"initdb failed: {made.stderr[-300:]}")
    opts = f"-k {sock} -c listen_addresses='' -c fsync=off -c max_connections=60"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", opts, "-w", "-t", "60", "-l", str(base / "log"),
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/{{db}}?host={sock}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _new_postgres_catalog(server_template: str) -> Catalog:
    """A catalog on a fresh database of the throwaway cluster."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_template.replace("postgresql+psycopg", "postgresql").format(db="postgres"),
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return Catalog(server_template.format(db=name))


@pytest.fixture(params=["sqlite", "postgres"])
def any_catalog(request, data_root):
    """The test's catalog on SQLite (the data root's file) and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        cat = Catalog(data_root.catalog_url)
    else:
        cat = _new_postgres_catalog(request.getfixturevalue("postgres_server"))
    yield cat
    cat.dispose()


@pytest.fixture
def postgres_catalog(postgres_server):
    """A catalog on a fresh PostgreSQL database (skips where Postgres is absent)."""
    cat = _new_postgres_catalog(postgres_server)
    yield cat
    cat.dispose()
