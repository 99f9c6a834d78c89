"""`vidmusician evaluate`: the paper's Table 1 metrics on folders of generated music, real music and videos.

Pairs files by clip id, gates them, runs every metric whose inputs and checkpoint are present
(a missing checkpoint skips its metric with the reason and the flag to pass), and returns a
report that flows.evaluation.report writes as report.json, report.md and items.csv.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flows.evaluation.inputs import Decoded, gate_and_extract, imagebind_clips, list_clips
from model.metrics.audio import RESAMPLER
from model.metrics.beats import LORIS_ONSET, BeatConfig, detect_onsets_loris, track_beats
from model.metrics.checkpoints import EmbedderUnavailable, require_checkpoint
from model.metrics.field_metrics import (
    bcs_bhs_metric,
    beat_align_metric,
    fad_vggish_metric,
    imagebind_scales,
    isc_metric,
    kl_passt_metric,
)
from model.metrics.gate import Exclusion, GateConfig, pair_ids
from model.metrics.rhythm import RhythmConfig
from model.metrics.scores import (
    ClipFeatures,
    MetricResult,
    cosine_metric,
    fd_metric,
    kl_metric,
    rhythm_metric,
)
from pipeline.cuts import CutConfig, detect_video_cuts

log = logging.getLogger(__name__)

METRICS = ("fd", "kl", "clap", "imagebind", "rhythm", "bcs_bhs", "beat_align", "fad_vggish", "kl_passt", "isc")
VIDEO_METRICS = ("imagebind", "rhythm", "beat_align")
# metric -> (embedder, its flag, its environment variable)
CHECKPOINTS = {"panns": ("--panns", "VIDMUSICIAN_PANNS_CKPT"), "clap": ("--clap", "VIDMUSICIAN_CLAP_CKPT"),
               "imagebind": ("--imagebind", "VIDMUSICIAN_IMAGEBIND_CKPT"),
               "vggish": ("--vggish", "VIDMUSICIAN_VGGISH_CKPT"), "passt": ("--passt", "VIDMUSICIAN_PASST_CKPT")}
NEEDS = {"fd": "panns", "kl": "panns", "clap": "clap", "imagebind": "imagebind", "fad_vggish": "vggish",
         "kl_passt": "passt", "isc": "panns"}


@dataclass(frozen=True)
class EvaluateConfig:
    generated: Path
    reference: Path
    videos: Path | None = None
    panns: Path | None = None
    clap: Path | None = None
    imagebind: Path | None = None
    metrics: tuple[str, ...] = METRICS
    seed: int = 0
    device: str = "cpu"
    gate: GateConfig = field(default_factory=GateConfig)
    rhythm: RhythmConfig = field(default_factory=RhythmConfig)
    beats: BeatConfig = field(default_factory=BeatConfig)
    cuts: CutConfig = field(default_factory=CutConfig)
    vggish: Path | None = None
    passt: Path | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")

    @classmethod
    def with_env(cls, **kwargs) -> EvaluateConfig:
        """Checkpoints not given fall back to their environment variables."""
        for name, (_, env) in CHECKPOINTS.items():
            if kwargs.get(name) is None and os.environ.get(env):
                kwargs[name] = Path(os.environ[env])
        return cls(**kwargs)


@dataclass
class EvaluationReport:
    metrics: dict[str, MetricResult]
    excluded: list[Exclusion]
    n_paired: int
    n_scored: int
    settings: dict
    # clip id -> {"cuts", "beats", "duration_s"}: what the report's beat/cut pictures draw
    timelines: dict[str, dict] = field(default_factory=dict)


def _load_embedders(cfg: EvaluateConfig) -> tuple[dict, dict[str, str]]:
    """The embedders the requested metrics need; a reason per embedder that cannot load."""
    from model.metrics.clap import ClapAudioEmbedder
    from model.metrics.imagebind import ImageBindEmbedder
    from model.metrics.panns import PannsEmbedder
    from model.metrics.passt import PasstEmbedder
    from model.metrics.vggish import VggishEmbedder

    wanted = {NEEDS[m] for m in cfg.metrics if m in NEEDS}
    if cfg.videos is None:
        wanted.discard("imagebind")
    classes = {"panns": PannsEmbedder, "clap": ClapAudioEmbedder, "imagebind": ImageBindEmbedder,
               "vggish": VggishEmbedder, "passt": PasstEmbedder}
    loaded, missing = {}, {}
    for name in sorted(wanted):
        flag, env = CHECKPOINTS[name]
        try:
            path = require_checkpoint(getattr(cfg, name), what=name, flag=flag, env=env)
            loaded[name] = classes[name].load(path, device=cfg.device)  # architecture from the checkpoint
        except EmbedderUnavailable as err:
            missing[name] = str(err)
            log.warning("skipping the metrics on %s: %s", name, err)
    return loaded, missing


def _fingerprint(cfg: EvaluateConfig, embedders: dict) -> dict:
    import librosa
    import scenedetect
    import scipy
    import soxr
    import torch

    return {
        "seed": cfg.seed, "metrics": list(cfg.metrics), "device": cfg.device,
        "channel_policy": "mean of the channels (mono)", "resampler": RESAMPLER | {"version": soxr.__version__},
        "decoder": "ffmpeg (pipeline.media.read_audio) at the file's own rate, float32",
        "gate": asdict(cfg.gate), "rhythm": asdict(cfg.rhythm), "beats": cfg.beats.describe(),
        "cuts": cfg.cuts.describe(), "loris_onsets": dict(LORIS_ONSET),
        "embedders": {k: e.describe() for k, e in sorted(embedders.items())},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                     "torch": torch.__version__, "librosa": librosa.__version__,
                     "scenedetect": scenedetect.__version__},
    }


@contextmanager
def _quiet_scenedetect() -> Iterator[None]:
    """PySceneDetect logs "Detecting scenes..." at INFO once per video: warnings only while we evaluate."""
    import scenedetect  # noqa: F401 - its import (re)sets the logger to INFO, so import it first

    logger = logging.getLogger("pyscenedetect")
    before = logger.level
    logger.setLevel(max(before, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(before)


def evaluate(cfg: EvaluateConfig, on_item: Callable[[str], None] | None = None) -> EvaluationReport:
    """Run the requested metrics; nothing downloads, a metric that cannot run says why."""
    with _quiet_scenedetect():
        return _evaluate(cfg, on_item)


def _evaluate(cfg: EvaluateConfig, on_item: Callable[[str], None] | None) -> EvaluationReport:
    import torch

    torch.manual_seed(cfg.seed)
    files = {"generated": list_clips(cfg.generated, "generated"), "reference": list_clips(cfg.reference, "reference")}
    if cfg.videos is not None:
        files["video"] = list_clips(cfg.videos, "video")
    ids, excluded = pair_ids(files["generated"], files["reference"], files.get("video"))
    embedders, missing = _load_embedders(cfg)
    want_rhythm = cfg.videos is not None and ("rhythm" in cfg.metrics or "beat_align" in cfg.metrics)
    want_onsets = "bcs_bhs" in cfg.metrics

    def extract_audio(cid: str, role: str, dec: Decoded, feats: ClipFeatures) -> None:
        for name in ("panns", "clap", "passt", "vggish"):  # the audio embedders: ClipFeatures.{name}_gen|_ref
            if (emb := embedders.get(name)) is not None:
                setattr(feats, f"{name}_{role[:3]}", emb.embed(dec.at(emb.sample_rate)))
        if role == "generated" and "imagebind" in embedders:
            from model.metrics.imagebind import AUDIO_RATE

            feats.imagebind_audio = embedders["imagebind"].embed_audio(dec.at(AUDIO_RATE))
        if want_rhythm:
            setattr(feats, f"beats_{role[:3]}", track_beats(dec.at(cfg.beats.sample_rate), cfg.beats.sample_rate,
                                                            cfg.beats))
        if want_onsets:
            rate = LORIS_ONSET["sample_rate"]
            setattr(feats, f"onsets_{role[:3]}", detect_onsets_loris(dec.at(rate), rate))

    def extract_video(path: Path, info: tuple[float, float, int, int], feats: ClipFeatures) -> None:
        duration, fps, width, height = info
        if want_rhythm:
            cuts = detect_video_cuts(path, cfg.cuts)
            feats.cuts = np.asarray(cuts.cut_times_s, dtype=np.float64)
            feats.video_duration_s = cuts.duration_s
        if "imagebind" in embedders:
            emb = embedders["imagebind"]
            feats.imagebind_video = emb.embed_video(imagebind_clips(path, duration, fps, (width, height), emb.config))

    feats, gated = gate_and_extract(ids, files, cfg.gate, extract_audio,
                                    extract_video if cfg.videos is not None else None, on_item)
    results: dict[str, MetricResult] = {}
    for name in cfg.metrics:
        results[name] = _metric(name, feats, cfg, embedders, missing)
    timelines = {f.clip_id: {"cuts": [float(t) for t in f.cuts], "beats": [float(t) for t in f.beats_gen],
                             "duration_s": f.video_duration_s}
                 for f in feats if f.cuts is not None and f.beats_gen is not None}
    return EvaluationReport(metrics=results, excluded=sorted(excluded + gated, key=lambda e: (e.clip_id, e.role)),
                            n_paired=len(ids), n_scored=len(feats), settings=_fingerprint(cfg, embedders),
                            timelines=timelines)


def _metric(name: str, feats: list[ClipFeatures], cfg: EvaluateConfig, embedders: dict,
            missing: dict[str, str]) -> MetricResult:
    needs = NEEDS.get(name)
    if name in VIDEO_METRICS and cfg.videos is None:
        return MetricResult(name, skipped=f"{name} needs the videos: pass --videos DIR")
    if needs is not None and needs not in embedders:
        return MetricResult(name, skipped=missing.get(needs, f"{needs} not loaded"))
    if name == "fd":
        return fd_metric(feats, cfg.seed)
    if name == "kl":
        return kl_metric(feats, cfg.seed)
    if name == "clap":
        return cosine_metric("clap", feats, "clap_gen", "clap_ref", cfg.seed)
    if name == "imagebind":
        return imagebind_scales(cosine_metric("imagebind", feats, "imagebind_video", "imagebind_audio", cfg.seed))
    if name == "bcs_bhs":
        return bcs_bhs_metric(feats, cfg.seed)
    if name == "isc":
        return isc_metric(feats, cfg.seed)
    if name == "kl_passt":
        return kl_passt_metric(feats, cfg.seed)
    if name == "fad_vggish":
        return fad_vggish_metric(feats, cfg.seed)
    if name == "beat_align":
        return beat_align_metric(feats, cfg.rhythm, cfg.seed)
    return rhythm_metric(feats, cfg.rhythm, cfg.seed)
