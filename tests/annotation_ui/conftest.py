"""Fixtures for the review tool: real clip files and a TestClient over a fresh app."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import ARGS, CHROMIUM
from fastapi.testclient import TestClient

from annotation_ui.app import create_app
from dvmset.review import QueuePolicy, set_policy
from flows.commands.review import peaks_decoder

CLIP_PEAKS = peaks_decoder()  # what `vidmusician review` passes as compute_peaks


@pytest.fixture(scope="session")
def clip_media(media_factory) -> Path:
    return media_factory("review", duration_s=8.0, size="160x120", fps=25, cut_every_s=2.0)


@pytest.fixture
def make_client(data_root, catalog):
    """make_client(overlap=1, compute_peaks=CLIP_PEAKS, **policy) -> TestClient over a fresh app on the
    test's catalog (its policy set in the catalog first); by default missing peaks files are computed by the review command's own decoder."""

    def make(overlap: int = 1, compute_peaks=CLIP_PEAKS, **kw) -> TestClient:  # noqa: ANN001
        with catalog.session() as s:  # the policy lives in the catalog (`vidmusician review-policy set`)
            set_policy(s, overlap, kw.get("lease_s"), kw.get("skip_s"))
        return TestClient(create_app(data_root, catalog, QueuePolicy(overlap=overlap, **kw),
                                     compute_peaks=compute_peaks))

    return make


@pytest.fixture(scope="module")
def sync_api():
    api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return api


@pytest.fixture(scope="module")
def browser(sync_api) -> Iterator:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()
