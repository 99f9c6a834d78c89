"""A source's audio, processed once: decode, remove vocals (optional), normalise loudness, write music.wav.

The result is a frozen :class:`ProcessedAudio`, whether just made or read back from an earlier run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvmset.io import atomic_path
from pipeline import loudness
from pipeline.audio import load_audio, save_audio
from pipeline.probe import MediaInfo
from pipeline.qc import vocal_share

log = logging.getLogger(__name__)

MUSIC_FILE = "music.wav"
VOCAL_ENERGY_FILE = "vocal_energy.npz"  # per source: per-second vocal and mix energy from the separator


@dataclass(frozen=True)
class Separator:
    """A loaded separator with its config, and a lock so CPU separations do not contend."""

    model: object
    config: object  # pipeline.separate.SeparatorConfig
    lock: threading.Lock


@dataclass(frozen=True)
class ProcessedAudio:
    """The music of one source and what curation records about it.

    ``vocal_energy`` is E(vocals) / E(mix) over the source (None without a separator);
    ``energy_per_s`` [2, seconds] the separator's per-second vocal and mix energies (None without
    one, or for audio made before they were kept); ``gain`` None when read back from an earlier run.
    """

    music_path: Path
    vocal_energy: float | None = None
    energy_per_s: np.ndarray | None = None  # [2, seconds]
    gain: loudness.GainPlan | None = None

    def __post_init__(self) -> None:
        if self.energy_per_s is not None and (self.energy_per_s.ndim != 2 or self.energy_per_s.shape[0] != 2):
            raise ValueError(f"energy_per_s must be [2, seconds], got {self.energy_per_s.shape}")

    def source_values(self) -> dict:
        """The ``sources`` columns this result fills (besides where music.wav is)."""
        values: dict = {"vocal_energy": self.vocal_energy}
        if self.gain is not None:
            values.update(loudness_in_lufs=self.gain.input_lufs, loudness_out_lufs=self.gain.output_lufs,
                          gain_db=self.gain.gain_db, gain_limited=self.gain.limited)
        return values

    def vocal_share(self, start_s: float, end_s: float) -> float | None:
        """The residual-vocal hint of the window [start_s, end_s): its own share when per-second
        energies are known, else the whole source's."""
        if self.energy_per_s is None:
            return self.vocal_energy
        return vocal_share(self.energy_per_s, start_s, end_s)


def load_processed(source_dir: Path, vocal_energy: float | None) -> ProcessedAudio:
    """What an earlier run made in ``source_dir`` (``vocal_energy`` as it recorded it)."""
    energy_path = source_dir / VOCAL_ENERGY_FILE
    per_s = None
    if vocal_energy is not None and energy_path.exists():  # separated: its per-second energies
        with np.load(energy_path) as z:
            per_s = z["energy_per_s"]
    return ProcessedAudio(source_dir / MUSIC_FILE, vocal_energy, per_s)


def process_audio(media: Path, source_dir: Path, *, target_lufs: float | None,
                  separator: Separator | None = None, info: MediaInfo | None = None) -> ProcessedAudio:
    """Decode ``media`` (5.1 etc. downmixed to stereo), separate, normalise (``target_lufs`` None: kept at
    its level), and write ``source_dir/music.wav`` (and the separator's per-second energies beside it).
    ``info``: ``media``'s probe when the caller has one (None: probed here)."""
    music_path, energy_path = source_dir / MUSIC_FILE, source_dir / VOCAL_ENERGY_FILE
    wav, sr = load_audio(media, max_channels=2, info=info)  # [C, N]: music is stereo at most
    vocal_energy = per_s = None
    if separator is not None:
        from pipeline import separate

        with separator.lock:
            sep = separate.separate(separator.model, wav, sr, separator.config)
        wav, vocal_energy, per_s = sep.music, sep.vocal_energy, sep.energy_per_s
        with atomic_path(energy_path) as tmp:
            np.savez(tmp, energy_per_s=per_s)  # per-second vocal / mix energy, for each clip's share
    else:
        energy_path.unlink(missing_ok=True)  # an earlier run's separation no longer describes music.wav
    plan = None if target_lufs is None else loudness.plan_gain(wav, sr, target_lufs=target_lufs)
    save_audio(music_path, wav if plan is None else loudness.apply_gain(wav, plan), sr)
    return ProcessedAudio(music_path, vocal_energy, per_s, plan)
