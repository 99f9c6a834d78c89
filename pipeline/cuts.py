"""Scene-cut times of a video by PySceneDetect's ContentDetector, on its own OpenCV backend.

The Rhythm metric's cut detector (the paper's "SceneDetect"). Settings are stated and go into
the evaluation's fingerprint: ContentDetector with PySceneDetect's default threshold 27 (HSV
content score) and minimum scene length 15 frames, frames downscaled automatically by the
scene manager (its default), every frame read (no frame skip).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import StageError

log = logging.getLogger(__name__)

STAGE = "cuts"


@dataclass(frozen=True)
class CutConfig:
    threshold: float = 27.0
    min_scene_len: int = 15  # frames
    backend: str = "opencv"
    auto_downscale: bool = True

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.min_scene_len < 1:
            raise ValueError(f"threshold must be positive and min_scene_len >= 1: {self}")
        if self.backend not in ("opencv", "pyav"):
            raise ValueError(f"backend must be opencv or pyav, got {self.backend!r}")

    def describe(self) -> dict:
        import scenedetect

        return {"detector": "scenedetect.ContentDetector", "scenedetect": scenedetect.__version__, **asdict(self)}


@dataclass(frozen=True)
class VideoCuts:
    cut_times_s: tuple[float, ...]  # start times of the 2nd, 3rd, … scenes
    duration_s: float
    fps: float


def detect_video_cuts(path: Path, config: CutConfig = CutConfig()) -> VideoCuts:
    """Cut times (s) of the video at ``path``; an unreadable file is a ``StageError("cuts", ...)``."""
    from scenedetect import ContentDetector, SceneManager, open_video

    path = Path(path)
    if not path.is_file():
        raise StageError(STAGE, f"{path.name}: file not found at {path}")
    try:
        video = open_video(str(path), backend=config.backend)
    except Exception as err:  # scenedetect raises several unrelated types for a bad file
        raise StageError(STAGE, f"{path.name}: cannot open the video ({type(err).__name__}: {err})") from err
    manager = SceneManager()
    manager.auto_downscale = config.auto_downscale
    manager.add_detector(ContentDetector(threshold=config.threshold, min_scene_len=config.min_scene_len))
    manager.detect_scenes(video, show_progress=False)
    scenes = manager.get_scene_list()
    fps = float(video.frame_rate)
    duration = float(video.duration.seconds) if video.duration is not None else 0.0
    if fps <= 0 or duration <= 0:
        raise StageError(STAGE, f"{path.name}: no frames could be read (fps={fps}, duration={duration})")
    cuts = tuple(round(float(start.seconds), 4) for start, _ in scenes[1:])
    log.debug("%s: %d cuts in %.2f s", path.name, len(cuts), duration)
    return VideoCuts(cut_times_s=cuts, duration_s=duration, fps=fps)
