"""The miniature world: videos whose palette sets the music's tempo, and whose cuts fall on the music's beats.

Pure planning and synthesis (numpy) plus one thin ffmpeg writer. A video of class c shows shots of random
blob textures in c's two-hue palette, drifting slowly; its music is one decaying note on every beat of a grid
at c's tempo (random phase, random pitches from one pentatonic scale shared by all classes, so tempo is the only
musical trait the picture decides; each note fades over its beat). The video cuts on a subset of the beats, as editors cut: every 2-4 beats,
with stretches of 8-12 beats left uncut. Beat periods are whole video frames (25 fps) and whole codec frames
(50 Hz), so a cut is exactly on its beat after the 25 fps re-encode.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dvmset.constants import SAMPLE_RATE_HZ, TOKEN_RATE_HZ, VIDEO_FPS
from dvmset.io import atomic_path
from pipeline.audio import save_audio
from pipeline.media import run_ffmpeg

SR = SAMPLE_RATE_HZ
PENTATONIC = (0, 2, 4, 7, 9)
NOTE_FALL_DB = 60.0  # a note fades by this much over one beat: its level's slope in every frame tells the tempo


@dataclass(frozen=True)
class WorldClass:
    """One visual class: its word (the backbone's text), its palette (two hues) and its beat period."""

    word: str
    dark: tuple[int, int, int]
    light: tuple[int, int, int]
    frames_per_beat: int  # 50 Hz codec frames; even, so the beat is on a 25 fps video frame

    def __post_init__(self) -> None:
        if self.frames_per_beat % 2 or self.frames_per_beat < 10:
            raise ValueError(f"{self.word}: frames_per_beat must be even and >= 10, got {self.frames_per_beat}")

    @property
    def bpm(self) -> float:
        return 60.0 * TOKEN_RATE_HZ / self.frames_per_beat

    @property
    def beat_s(self) -> float:
        return self.frames_per_beat / TOKEN_RATE_HZ


CLASSES = (
    WorldClass("ember", (90, 10, 0), (255, 200, 40), 30),  # 100 BPM, reds to yellows
    WorldClass("moss", (0, 60, 20), (120, 255, 200), 24),  # 125 BPM, greens to teals
    WorldClass("dusk", (20, 0, 90), (200, 120, 255), 20),  # 150 BPM, blues to violets
)


@dataclass(frozen=True)
class WorldVideo:
    """One source: its class, seed, length, beat grid and cut times (seconds from its start)."""

    name: str
    cls: int
    seed: int
    duration_s: float
    beat_times: tuple[float, ...] = field(repr=False)
    cut_times: tuple[float, ...] = field(repr=False)

    @property
    def world_class(self) -> WorldClass:
        return CLASSES[self.cls]


def plan_video(name: str, cls: int, seed: int, duration_s: float) -> WorldVideo:
    """The beat grid (random phase) and the cuts on a subset of it. Pure; the same seed gives the same plan."""
    if not 0 <= cls < len(CLASSES):
        raise ValueError(f"class {cls} out of range 0..{len(CLASSES) - 1}")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    rng = np.random.default_rng(seed)
    c = CLASSES[cls]
    phase = 2 * int(rng.integers(0, c.frames_per_beat // 2))  # codec frames, on a video frame
    n_frames = int(round(duration_s * TOKEN_RATE_HZ))
    beats = list(range(phase, n_frames, c.frames_per_beat))
    cuts, k = [], int(rng.integers(1, 4))
    while k < len(beats) - 1:
        cuts.append(beats[k])
        k += int(rng.integers(8, 13)) if rng.random() < 0.15 else int(rng.integers(2, 5))
    to_s = 1.0 / TOKEN_RATE_HZ
    return WorldVideo(name, cls, seed, float(duration_s), tuple(b * to_s for b in beats), tuple(t * to_s for t in cuts))


def plan_world(n_per_class: int, duration_s: float, seed: int = 0, prefix: str = "world") -> list[WorldVideo]:
    """`n_per_class` videos of each class, named `{prefix}-{word}-{i:03d}`, seeded from `seed`."""
    return [plan_video(f"{prefix}-{c.word}-{i:03d}", k, seed * 100_003 + k * 1_009 + i, duration_s)
            for i in range(n_per_class) for k, c in enumerate(CLASSES)]


def synth_music(video: WorldVideo) -> np.ndarray:
    """[N] float32 at 32 kHz: one note (fundamental + a soft octave) on every beat, fading 60 dB by the next one.

    The fade spans exactly one beat, so the tempo is audible in every frame (the level falls 2 dB per 20 ms at
    100 BPM, 3 dB at 150) and the next onset follows the fade's end: a small LM learns to keep the tempo from
    a few hundred steps (with a fixed 90 ms decay instead, ours did not hold a tempo after 150 steps)."""
    rng = np.random.default_rng(video.seed + 7)
    n = int(round(video.duration_s * SR))
    out = np.zeros(n, dtype=np.float64)
    for t in video.beat_times:
        start = int(round(t * SR))
        length = min(n - start, int(round(video.world_class.beat_s * SR)))
        if length <= 0:
            continue
        semis = 12 * int(rng.integers(0, 2)) + PENTATONIC[int(rng.integers(0, len(PENTATONIC)))]
        hz = 220.0 * 2 ** (semis / 12)
        tt = np.arange(length) / SR
        velocity = rng.uniform(0.8, 1.0)
        note = np.sin(2 * np.pi * hz * tt) + 0.25 * np.sin(4 * np.pi * hz * tt)
        fade = 10 ** (-NOTE_FALL_DB / 20 * tt / video.world_class.beat_s)
        out[start:start + length] += 0.3 * velocity * fade * note
    return out.astype(np.float32)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A bimodal blob field in [0, 1] of shape [h, w], smooth enough to drift without looking like a cut."""
    coarse = rng.random((5, 5))
    ys, xs = np.linspace(0, 4, h), np.linspace(0, 4, w)
    y0, x0 = np.floor(ys).astype(int).clip(0, 3), np.floor(xs).astype(int).clip(0, 3)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = coarse[y0][:, x0], coarse[y0][:, x0 + 1]
    c, d = coarse[y0 + 1][:, x0], coarse[y0 + 1][:, x0 + 1]
    field_ = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    return 1.0 / (1.0 + np.exp(-12.0 * (field_ - np.median(field_))))


def iter_frames(video: WorldVideo, size: tuple[int, int] = (128, 96), fps: int = VIDEO_FPS) -> Iterator[np.ndarray]:
    """RGB frames [H, W, 3] uint8: a new texture at every cut, drifting one pixel every other frame."""
    w, h = size
    rng = np.random.default_rng(video.seed + 11)
    c = video.world_class
    dark, light = np.array(c.dark, dtype=np.float64), np.array(c.light, dtype=np.float64)
    cut_frames = {int(round(t * fps)) for t in video.cut_times}
    pad = 64
    canvas = _texture(rng, h + pad, w + pad)
    shot_start = 0
    for i in range(int(round(video.duration_s * fps))):
        if i in cut_frames:
            canvas, shot_start = _texture(rng, h + pad, w + pad), i
        shift = min((i - shot_start) // 2, pad - 1)
        v = canvas[shift:shift + h, shift:shift + w, None]  # [h, w, 1]
        yield (dark + (light - dark) * v).astype(np.uint8)


def curated_music(video: WorldVideo, workdir: str | Path, *, target_lufs: float | None = -14.0,
                  fps: int = VIDEO_FPS) -> np.ndarray:
    """[N] float32 mono at 32 kHz: the video's music as the features stage reads it after curation.

    The same functions on the same path as `curate` + `features`: the world MP4 (its AAC), the source's audio
    processing (no separator, the source-level gain), the cut of the whole video as one clip (its stereo window's
    loudness normalisation and true-peak limiting, then AAC), and the features' decode. Pre-training the backbone
    on this keeps its codes those the ablation trains on: the first corpus normalised the mono synthesis directly,
    which the limiter treats differently from curation's stereo window (+3 dB of loudness less gain), and 92 % of
    its level tokens differed from the curated clip's (docs/world.md)."""
    from pipeline.clip import ClipSpan, cut_clip
    from pipeline.features import ExtractConfig, clip_audio
    from pipeline.process import process_audio

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    media = write_world_video(video, work / f"{video.name}.mp4", fps=fps)
    audio = process_audio(media, work, target_lufs=target_lufs, separator=None)
    clip = work / f"{video.name}-clip.mp4"
    cut_clip(media, audio.music_path, ClipSpan(0.0, video.duration_s), clip, fps=fps, target_lufs=target_lufs)
    return clip_audio(clip, ExtractConfig(clip_s=max(1, int(video.duration_s))))


def write_world_video(video: WorldVideo, dest: str | Path, size: tuple[int, int] = (128, 96),
                      fps: int = VIDEO_FPS) -> Path:
    """The video's MP4 (H.264 + AAC) at `dest`: its frames and music through one ffmpeg call."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="world-") as tmp:
        raw, wav = Path(tmp) / "frames.rgb", Path(tmp) / "music.wav"
        with open(raw, "wb") as fh:
            for frame in iter_frames(video, size, fps):
                fh.write(frame.tobytes())
        save_audio(wav, synth_music(video)[None], SR)
        with atomic_path(dest) as out:
            run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(fps),
                        "-i", raw, "-i", wav, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                        "-g", str(fps), "-c:a", "aac", "-b:a", "128k", "-shortest", "-f", "mp4", out], stage="synth")
    return dest
