"""The configs of the runs, light to import: the command line builds its options and defaults from them
without loading the flows (Prefect, the stages) until a command runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dvmset.constants import CLIP_SECONDS, SAMPLE_RATE_HZ, TOKEN_RATE_HZ, VIDEO_FPS
from dvmset.runs import params_hash
from dvmset.shards import SHARD_FORMAT
from dvmset.site_blocks import PausePolicy
from pipeline.download import DownloadOptions
from pipeline.site_access import parse_ytdlp_option


@dataclass(frozen=True)
class CurateConfig:
    """What a curate run does to each source; its hash keys the steps recorded in `runs`."""

    separator: str = "demucs"  # "demucs" | "none" (skipped on purpose, recorded per source)
    demucs_name: str = "htdemucs"
    demucs_repo: str | None = None  # a local Demucs repo dir (name.yaml + .th), else the torch-hub cache
    demucs_shifts: int = 1
    demucs_segment_s: float | None = None
    device: str = "cpu"
    target_lufs: float | None = -14.0  # None: no loudness change (the audio kept at its level, `bench import`)
    clip_seconds: float = float(CLIP_SECONDS)
    fps: int = VIDEO_FPS
    max_clips_per_source: int | None = None
    min_duration_s: float | None = None  # default: one clip
    max_duration_s: float | None = 1800.0
    download_retries: int = 3  # Prefect retries of a download that failed for a transient reason
    download_backoff_s: float = 1.0  # first retry delay; each next one is 4× longer (1, 4, 16 s)
    site_pause_s: float = 900.0  # a site's first pause after a bot check / HTTP 429; doubles each block in a row
    site_pause_max_s: float = 6 * 3600.0  # the longest pause
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))

    def __post_init__(self) -> None:
        if self.separator not in ("demucs", "none"):
            raise ValueError(f"unknown separator {self.separator!r}: use 'demucs' or 'none'")
        if self.target_lufs is not None and not -70.0 <= self.target_lufs < 0.0:
            raise ValueError(f"target_lufs must be a LUFS value in [-70, 0), got {self.target_lufs}")
        if self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        self.pause_policy()  # a bad pause is refused here, not at the first block

    @property
    def separator_label(self) -> str:
        return self.demucs_name if self.separator == "demucs" else "none"

    def audio_params_hash(self) -> str:
        keys = ("separator", "demucs_name", "demucs_shifts", "demucs_segment_s", "target_lufs")
        return params_hash({k: getattr(self, k) for k in keys})

    def clip_params_hash(self) -> str:
        return params_hash({"audio": self.audio_params_hash(), "clip_seconds": self.clip_seconds, "fps": self.fps})

    def download_options(self) -> DownloadOptions:
        """The download settings; how to reach a site that pushes back (cookies, proxy...) comes from this
        process's environment (:func:`site_access_from_env`): a worker's own, never a flow parameter."""
        return DownloadOptions(
            min_duration_s=self.min_duration_s if self.min_duration_s is not None else self.clip_seconds,
            max_duration_s=self.max_duration_s, **site_access_from_env(),
        )

    def pause_policy(self) -> PausePolicy:
        return PausePolicy(first_s=self.site_pause_s, max_s=max(self.site_pause_max_s, self.site_pause_s))

    def retry_delays(self) -> list[float]:
        return [self.download_backoff_s * 4**i for i in range(self.download_retries)]


#: The environment variables a curate process (a CLI run, a deployment's worker) reads site access from;
#: `curate --cookies ...` sets them for its own run. Secrets stay in the worker's environment: they are
#: never flow parameters (Prefect stores those) and never in lineage (DownloadOptions.access_record).
SITE_ACCESS_ENV = {
    "cookies_file": "VIDMUSICIAN_YTDLP_COOKIES",
    "cookies_from_browser": "VIDMUSICIAN_YTDLP_COOKIES_FROM_BROWSER",
    "proxy": "VIDMUSICIAN_YTDLP_PROXY",
    "sleep_requests_s": "VIDMUSICIAN_YTDLP_SLEEP_REQUESTS",
    "ytdlp_options": "VIDMUSICIAN_YTDLP_OPTIONS",  # KEY=VALUE lines (newline-separated)
}


def site_access_from_env(env: dict[str, str] | None = None) -> dict:
    """DownloadOptions fields from ``SITE_ACCESS_ENV`` (``os.environ`` by default); unset ones are left out."""
    env = os.environ if env is None else env
    out: dict = {}
    for field_name, var in SITE_ACCESS_ENV.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        if field_name == "sleep_requests_s":
            try:
                out[field_name] = float(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r}: expected seconds, e.g. 1.5") from None
        elif field_name == "ytdlp_options":
            out[field_name] = tuple(parse_ytdlp_option(line) for line in raw.splitlines() if line.strip())
        else:
            out[field_name] = raw
    return out


@dataclass(frozen=True)
class FeaturesConfig:
    """A features run; ``identity()`` is what must match across the shards of one features dir."""

    clip_model: str = "ViT-L-14"  # D = 768, the width the model presets assume (model/README.md)
    pretrained: str | None = "openai"
    codec: str = "facebook/musicgen-small"
    device: str = "cpu"
    precision: str = "auto"
    clip_s: int = CLIP_SECONDS
    clips_per_shard: int = 64
    batch_size: int = 32
    limit: int | None = None
    retry_failed: bool = False  # try again the clips this extractor failed on in earlier runs

    def __post_init__(self) -> None:
        if self.clip_model == "tiny":
            object.__setattr__(self, "pretrained", None)  # random weights only
        if self.clips_per_shard < 1:
            raise ValueError(f"clips_per_shard must be >= 1, got {self.clips_per_shard}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")

    def identity(self) -> dict:
        return {"format": SHARD_FORMAT, "clip_model": self.clip_model, "pretrained": self.pretrained,
                "codec": self.codec, "clip_s": self.clip_s, "fps": VIDEO_FPS,
                "token_rate": TOKEN_RATE_HZ, "sample_rate": SAMPLE_RATE_HZ}

    def params_hash(self) -> str:
        return params_hash(self.identity())
