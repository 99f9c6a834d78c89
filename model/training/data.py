"""The data -> model seam checked before the first step: the features must be what the model reads."""

from __future__ import annotations

from dvmset.dataset import FeatureSpec
from model.vidmusician import VidMusician

TINY_CODEC = "tiny"  # the features stage's random test codec: pairs with the debug backbone only


class FeatureMismatchError(ValueError):
    """Features made with a CLIP / codec / rate other than the model expects."""


def _musicgen_codec(name: str) -> bool:
    low = name.lower()
    return "musicgen" in low or low in ("small", "medium", "large") or "encodec_32khz" in low


def check_features(spec: FeatureSpec, model: VidMusician) -> None:
    """Raise with the flag to change when the shards cannot train this model."""
    cfg = model.config
    if spec.clip_dim != cfg.semantic.clip_dim:
        raise FeatureMismatchError(
            f"the features hold CLIP width {spec.clip_dim} ({spec.clip_model}), the model expects "
            f"{cfg.semantic.clip_dim}: train with --clip-dim {spec.clip_dim} (a new run), or extract features "
            f"with a CLIP of width {cfg.semantic.clip_dim} (`vidmusician features --clip-model`)")
    rate = model.frame_rate
    if float(spec.token_rate) != float(rate):
        raise FeatureMismatchError(
            f"the features run at {spec.token_rate} tokens/s, the backbone {model.backbone_name} at {rate:g}: "
            "pick a 50 Hz MusicGen with --backbone, or re-extract with `vidmusician features --codec`")
    k = int(model.lm.num_codebooks)
    if spec.n_codebooks != k:
        raise FeatureMismatchError(
            f"the features hold {spec.n_codebooks} codebooks, the backbone {model.backbone_name} predicts {k}: "
            "re-extract with the backbone's codec (`vidmusician features --codec`) or change --backbone")
    if spec.codec is None:
        return
    debug = model.backbone_name == "debug"
    tiny = spec.codec == TINY_CODEC
    if tiny and not debug:
        raise FeatureMismatchError(
            f"the features' codes come from the random test codec 'tiny'; backbone {model.backbone_name} "
            "needs its own codec's codes: re-extract with `vidmusician features --codec <the MusicGen>`, "
            "or train the debug model with --backbone debug")
    if debug and not tiny:
        raise FeatureMismatchError(
            f"the debug backbone is trained on the 'tiny' codec's codes, the features use {spec.codec}: "
            "pass --backbone with the MusicGen whose codec made them")
    if not debug and _musicgen_codec(spec.codec) != _musicgen_codec(model.backbone_name) \
            and _musicgen_codec(model.backbone_name):
        raise FeatureMismatchError(
            f"the features' codes come from {spec.codec}, not MusicGen's EnCodec 32 kHz that "
            f"{model.backbone_name} predicts: re-extract with `vidmusician features --codec {model.backbone_name}`")
