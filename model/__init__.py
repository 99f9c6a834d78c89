"""VidMusician on a frozen audiocraft MusicGen: semantic (Eq. 2) and rhythm (Eq. 5-6) conditioning.

Public API: `VidMusicianConfig` (presets debug/small/medium/large + ablation switches), `VidMusician`
(`from_config`, `forward`/`loss` for teacher forcing, `generate`), `load_backbone`, `save_trainable` /
`load_trainable` / `load_model`. See model/README.md for loading real weights.
"""

from model.config import RhythmConfig, SemanticConfig, VidMusicianConfig
from model.metrics.checkpoints import isolate_laion_clap

isolate_laion_clap()  # before anything imports audiocraft (see there): cheap, no import of laion_clap itself

__all__ = ["RhythmConfig", "SemanticConfig", "VidMusicianConfig"]
