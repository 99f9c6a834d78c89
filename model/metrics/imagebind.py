"""ImageBind (Girdhar et al. 2023) for the ImageBind score: cosine of video vs generated music.

The model class is ``imagebind.models.imagebind_model.ImageBindModel`` from the PyPI package
``imagebind-unofficial`` (Meta's code; the code and weights are licensed CC-BY-NC-SA 4.0:
non-commercial use only). Its package ``__init__`` imports its data loaders, which need
pytorchvideo (broken on torchvision ≥ 0.17) and decord, so the model module is imported alone
and ImageBind's own clip sampling and preprocessing are re-stated here on decoded arrays:

- video: 5 clips of 2 s at pytorchvideo ``ConstantClipsPerVideoSampler`` starts
  (i × (duration − 2) / 5), frames ``ceil(fps·start) … ceil(fps·end) − 1``, 2 of them picked by
  ``UniformTemporalSubsample`` (linspace), scaled to 0–1, short side to 224 (bilinear), CLIP
  mean/std, 3 spatial crops of 224 (left/centre/right) → 15 clips [3, 2, 224, 224];
- audio: mono 16 kHz, 3 clips of 2 s at the same sampler's starts, each minus its mean, Kaldi
  fbank (128 mel, 25 ms Hanning, 10 ms shift, htk_compat, no dither), padded/cut to 204 frames,
  normalised with mean −4.268 and std 9.138 → [3, 1, 128, 204];
- the model averages the clip embeddings of each input; the score is their cosine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from model.metrics.checkpoints import (
    LoadedEmbedder,
    import_skipping_package_init,
    load_into,
    load_state_dict,
    strip_prefix,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUDIO_RATE = 16000
_HUGE = {"vision_embed_dim": 1280, "vision_num_blocks": 32, "vision_num_heads": 16, "text_embed_dim": 1024,
         "text_num_blocks": 24, "text_num_heads": 16, "out_embed_dim": 1024, "audio_drop_path": 0.1,
         "imu_drop_path": 0.7}
_MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")


@dataclass(frozen=True)
class ImageBindConfig:
    model_kwargs: dict = field(default_factory=lambda: dict(_HUGE))  # ImageBindModel(**kwargs); imagebind_huge
    video_clips: int = 5
    audio_clips: int = 3
    clip_s: float = 2.0
    frames_per_clip: int = 2
    crop: int = 224
    mel_bins: int = 128
    audio_frames: int = 204
    audio_mean: float = -4.268
    audio_std: float = 9.138

    def __post_init__(self) -> None:
        if min(self.video_clips, self.audio_clips, self.frames_per_clip, self.crop) < 1 or self.clip_s <= 0:
            raise ValueError(f"clip counts, frames, crop and clip_s must be positive: {self}")

    @classmethod
    def from_state_dict(cls, state: dict) -> ImageBindConfig:
        """imagebind_huge when the shapes are its own; else widths, depths and out width read from the shapes.

        A state dict has no head counts: a width imagebind_huge has keeps its count, another width
        gets width / 64 heads (ImageBind's head width), at least 1. Keys of no ImageBind: the default,
        and the strict load then names what is wrong.
        """
        import inspect

        mod = import_skipping_package_init("imagebind", "models.imagebind_model")
        defaults = {k: p.default for k, p in inspect.signature(mod.ImageBindModel.__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        huge = defaults | _HUGE
        head = state.get("modality_heads.vision.2.weight")  # [out, D]
        if head is None:
            return cls()
        kwargs: dict = {"out_embed_dim": int(head.shape[0])}
        for name in _MODALITIES:
            proj = state.get(f"modality_trunks.{name}.blocks.0.attn.in_proj_weight")  # [3D, D]
            if proj is None:
                return cls()
            width = int(proj.shape[1])
            prefix = f"modality_trunks.{name}.blocks."
            blocks = len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})
            heads = huge[f"{name}_num_heads"] if width == huge[f"{name}_embed_dim"] else max(1, width // 64)
            kwargs |= {f"{name}_embed_dim": width, f"{name}_num_blocks": blocks, f"{name}_num_heads": heads}
        if all(huge[k] == v for k, v in kwargs.items()):
            return cls()
        return cls(model_kwargs=kwargs)

    @classmethod
    def tiny(cls) -> ImageBindConfig:
        small = {"out_embed_dim": 8}
        for mod in _MODALITIES:
            small |= {f"{mod}_embed_dim": 16, f"{mod}_num_blocks": 1, f"{mod}_num_heads": 1}
        return cls(model_kwargs=small)


def clip_starts(duration_s: float, clip_s: float, clips: int) -> list[Fraction]:
    """pytorchvideo ConstantClipsPerVideoSampler's clip start times (s) for one media of ``duration_s``."""
    latest = Fraction(max(duration_s - clip_s, 0))
    step = latest / clips
    starts = []
    for i in range(clips):
        starts.append(step * i)
        if step * (i + 1) > latest:  # the sampler stops early when the clips no longer fit
            break
    return starts


def video_frame_indices(duration_s: float, fps: float, n_frames: int, config: ImageBindConfig) -> list[list[int]]:
    """For each clip, the frame indices ImageBind takes (``frames_per_clip`` of them)."""
    out = []
    for start in clip_starts(duration_s, config.clip_s, config.video_clips):
        first = math.ceil(fps * start)
        last = min(math.ceil(fps * (start + Fraction(config.clip_s))), n_frames)
        span = list(range(first, last))
        if not span:
            raise ValueError(f"no frames in the clip at {float(start):.2f} s ({n_frames} frames at {fps} fps)")
        picks = np.linspace(0, len(span) - 1, config.frames_per_clip).astype(np.int64)  # torch.linspace(...).long()
        out.append([span[int(p)] for p in np.clip(picks, 0, len(span) - 1)])
    return out


def preprocess_video(clips: list[np.ndarray], config: ImageBindConfig):
    """Clips of frames [T, H, W, 3] uint8 RGB → ImageBind's vision input [clips × 3 crops, 3, T, crop, crop]."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(CLIP_MEAN)[:, None, None, None]
    std = torch.tensor(CLIP_STD)[:, None, None, None]
    out = []
    for frames in clips:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255.0  # [3, T, H, W]
        _, _, h, w = x.shape
        size = config.crop
        new_h, new_w = (int(math.floor(h / w * size)), size) if w < h else (size, int(math.floor(w / h * size)))
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)  # ShortSideScale
        x = (x - mean) / std
        for idx in range(3):  # SpatialCrop(224, num_crops=3): uniform_crop at spatial_idx 0, 1, 2
            y0, x0 = int(math.ceil((new_h - size) / 2)), int(math.ceil((new_w - size) / 2))
            if new_h > new_w:
                y0 = 0 if idx == 0 else (new_h - size if idx == 2 else y0)
            else:
                x0 = 0 if idx == 0 else (new_w - size if idx == 2 else x0)
            out.append(x[:, :, y0:y0 + size, x0:x0 + size])
    return torch.stack(out)  # [S, 3, T, crop, crop]


def preprocess_audio(mono16k: np.ndarray, config: ImageBindConfig):
    """Mono audio [N] at 16 kHz → ImageBind's audio input [clips, 1, mel_bins, audio_frames]."""
    import torch
    import torchaudio.compliance.kaldi as kaldi

    wav = torch.from_numpy(np.ascontiguousarray(mono16k, dtype=np.float32))[None]  # [1, N]
    clips = []
    for start in clip_starts(wav.shape[1] / AUDIO_RATE, config.clip_s, config.audio_clips):
        lo, hi = int(start * AUDIO_RATE), int((start + Fraction(config.clip_s)) * AUDIO_RATE)
        clip = wav[:, lo:hi]
        clip = clip - clip.mean()
        fbank = kaldi.fbank(clip, htk_compat=True, sample_frequency=AUDIO_RATE, use_energy=False,
                            window_type="hanning", num_mel_bins=config.mel_bins, dither=0.0,
                            frame_length=25, frame_shift=10).T  # [mel, frames]
        pad = config.audio_frames - fbank.shape[1]
        fbank = _pad_right(fbank, pad) if pad > 0 else fbank[:, : config.audio_frames]
        clips.append(((fbank - config.audio_mean) / config.audio_std)[None])
    return torch.stack(clips)  # [clips, 1, mel, frames]


def _pad_right(x, pad: int):
    import torch.nn.functional as F

    return F.pad(x, (0, pad), mode="constant", value=0.0)


class ImageBindEmbedder(LoadedEmbedder):

    @classmethod
    def load(cls, checkpoint: Path, config: ImageBindConfig | None = None, device: str = "cpu") -> ImageBindEmbedder:
        """Load a state dict strictly into ``ImageBindModel``, its architecture read from the shapes."""
        state = strip_prefix(load_state_dict(checkpoint), "module.")
        config = config or ImageBindConfig.from_state_dict(state)
        mod = import_skipping_package_init("imagebind", "models.imagebind_model")
        module = mod.ImageBindModel(**config.model_kwargs)
        load_into(module, state, checkpoint, "ImageBindModel")
        return cls(module, config, checkpoint, device)

    def _forward(self, key: str, x) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.module({key: x[None].to(self.device)})[key]  # [1, out_dim], mean over clips
        return out[0].double().cpu().numpy()

    def embed_video(self, clips: list[np.ndarray]) -> np.ndarray:
        return self._forward("vision", preprocess_video(clips, self.config))

    def embed_audio(self, mono16k: np.ndarray) -> np.ndarray:
        return self._forward("audio", preprocess_audio(mono16k, self.config))

    def describe(self) -> dict:
        return {"class": "imagebind.models.imagebind_model.ImageBindModel (package imagebind-unofficial, "
                         "licence CC-BY-NC-SA 4.0)",
                "checkpoint": str(self.checkpoint), "sha256": self.sha256, "audio_rate": AUDIO_RATE,
                **asdict(self.config)}
