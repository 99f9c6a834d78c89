"""Helpers for the review tool's tests: seed the catalog, make annotators, run a live server."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import uvicorn

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.review import add_annotator
from dvmset.tables import Clip, Source


def seed(catalog: Catalog, root: DataRoot, n: int, media: Path | None = None, *, source_id: str = "vid1",
         title: str = "A food commercial", query: str = "food commercial", url: str | None = None) -> list[str]:
    """Insert one source and ``n`` pending clips; place ``media`` as each clip's file when given."""
    ids = [f"{source_id}-{i * 60:05d}" for i in range(n)]
    with catalog.session() as s:
        s.add(Source(id=source_id, url=url or f"https://www.youtube.com/watch?v={source_id}", status="done",
                     query=query, title=title, webpage_url=url or f"https://www.youtube.com/watch?v={source_id}"))
        s.flush()
        s.add_all(Clip(id=c, source_id=source_id, start_s=i * 60.0, duration_s=60.0, status="pending_review",
                       silence_ratio=0.02, static_ratio=0.5, scene_cuts=3, loudness_lufs=-14.2, vocal_energy=0.01)
                  for i, c in enumerate(ids))
    if media is not None:
        for c in ids:
            dest = root.clip_path(c)
            try:
                os.link(media, dest)
            except OSError:
                shutil.copyfile(media, dest)
    return ids


def make_annotator(catalog: Catalog, name: str, role: str = "annotator") -> tuple[int, str]:
    with catalog.session() as s:
        ann, token = add_annotator(s, name, role)
        return ann.id, token


class LiveServer:
    def __init__(self, app) -> None:  # noqa: ANN001 - ASGI app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.server.should_exit = True
        self.thread.join(timeout=10)


class outage:  # noqa: N801 - a context manager read as a phrase
    """The catalog's Postgres database stops taking connections and its open ones are cut (the server
    itself, shared by other tests, stays up); connections come back on exit."""

    def __init__(self, catalog) -> None:  # noqa: ANN001
        import psycopg

        self.db = catalog.engine.url.database
        self.admin = psycopg.connect(catalog.url.replace("postgresql+psycopg", "postgresql")
                                     .replace(f"/{self.db}?", "/postgres?"), autocommit=True)

    def __enter__(self) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.db}" ALLOW_CONNECTIONS false')
        self.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.db,))

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.admin.execute(f'ALTER DATABASE "{self.db}" ALLOW_CONNECTIONS true')
        self.admin.close()
