"""A deterministic "envelope codec" behind audiocraft's `CompressionModel` interface, for the miniature world.

MusicGen's rates (32 kHz mono, 50 Hz frames of 640 samples, 4 codebooks), no learned weights, 128 tokens
per codebook (of which each uses at most 73):
each 20 ms frame is quantised into four tokens a person can read:

    0 level    the frame's RMS in 2 dB steps from -72 dBFS (0 = silence) .......... 0..36
    1 pitch    the strongest partial in semitones above 55 Hz, + 1 (0 = no pitch) .. 0..72
    2 noise    the frame's spectral flatness in 16 steps (0 = a pure tone) ........ 0..15
    3 attack   which 5 ms quarter of the frame the level jumps up in, + 1 (0 = none)  0..4

`decode` synthesises a phase-continuous tone at the pitch with that level, mixed with noise by the flatness;
a rise in level is an abrupt step at the attack quarter, a fall a ramp over the frame, so decoded audio has
onsets exactly where the input had them (`docs/world.md` gives the beat tracker's recall on the world's
decoded music) and the small LM has 4 short vocabularies to learn instead of EnCodec's.

Why not a small EnCodec trained on the world's audio: on two shared CPU cores a SEANet + RVQ would take tens
of minutes to train and its decoded onsets would depend on how long it trained; this codec is exact, seeded by
nothing, and its tokens can be checked by hand. Why in dvmset: the codec's tokens are the dataset's `codes`,
and `dvmset.checkpoints` (the one loader of `compression_state_dict.bin`) builds it from its `xp.cfg`
(`compression_model: envelope`), for the features stage and the model alike.
"""

from __future__ import annotations

import math

import torch
from audiocraft.models.encodec import CompressionModel
from audiocraft.quantization import QuantizedResult

from dvmset.constants import SAMPLE_RATE_HZ, TOKEN_RATE_HZ

NAME = "envelope"
HOP = SAMPLE_RATE_HZ // TOKEN_RATE_HZ  # 640 samples per frame
LEVEL_FLOOR_DB = -72.0
LEVEL_STEP_DB = 2.0
LEVELS = 37  # 0 .. 36: -72 dBFS (silence) .. 0 dBFS
PITCH_BASE_HZ = 55.0
PITCHES = 72  # semitones above 55 Hz (A1 .. G#7)
NOISE_STEPS = 16
QUARTERS = 4
FFT_SIZE = 2048  # 15.6 Hz bins for the pitch estimate, centred on the frame
DECODE_GAIN_DB = -6.0  # level 36 (0 dBFS RMS) decodes to a tone peaking at -3 dBFS
CARD = 128  # every codebook uses under 128 tokens (MusicGen: 2048); the miniature LM predicts 128-way
NUM_CODEBOOKS = 4


def codec_config(device: str = "cpu") -> dict:
    """The codec's `xp.cfg` (as `dvmset.checkpoints.write_checkpoint` stores it)."""
    return {"compression_model": NAME, "device": device, "sample_rate": SAMPLE_RATE_HZ, "channels": 1,
            "frame_rate": TOKEN_RATE_HZ, NAME: {"n_q": NUM_CODEBOOKS, "card": CARD, "levels": LEVELS,
                                                 "level_floor_db": LEVEL_FLOOR_DB, "level_step_db": LEVEL_STEP_DB,
                                                 "pitches": PITCHES, "pitch_base_hz": PITCH_BASE_HZ,
                                                 "noise_steps": NOISE_STEPS}}


class EnvelopeCodec(CompressionModel):
    """Frames -> (level, pitch, noise, attack) tokens -> a tone with those parameters. See the module doc."""

    def __init__(self) -> None:
        super().__init__()
        # kept as buffers so `compression_state_dict.bin` holds the tables the tokens index
        self.register_buffer("level_rms", _level_table(), persistent=True)  # [LEVELS]
        self.register_buffer("pitch_hz", _pitch_table(), persistent=True)  # [PITCHES + 1]
        self.register_buffer("window", torch.hann_window(FFT_SIZE, periodic=True), persistent=True)  # [FFT_SIZE]

    @classmethod
    def from_config(cls, cfg) -> EnvelopeCodec:  # noqa: ANN001 - a DictConfig or a dict
        got = dict(cfg.get(NAME, {}))
        want = codec_config()[NAME]
        if cfg.get("compression_model") != NAME or got != want or int(cfg.get("sample_rate")) != SAMPLE_RATE_HZ:
            raise ValueError(f"not this envelope codec's config: {dict(cfg)} (expected {codec_config()})")
        return cls()

    # --- audiocraft's CompressionModel interface ---
    @property
    def channels(self) -> int:
        return 1

    @property
    def frame_rate(self) -> float:
        return float(TOKEN_RATE_HZ)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE_HZ

    @property
    def cardinality(self) -> int:
        return CARD

    @property
    def num_codebooks(self) -> int:
        return NUM_CODEBOOKS

    @property
    def total_codebooks(self) -> int:
        return NUM_CODEBOOKS

    def set_num_codebooks(self, n: int) -> None:
        if n != NUM_CODEBOOKS:
            raise ValueError(f"the envelope codec always uses {NUM_CODEBOOKS} codebooks, got {n}")

    def forward(self, x: torch.Tensor) -> QuantizedResult:
        codes, _ = self.encode(x)
        out = self.decode(codes)[..., : x.shape[-1]]
        return QuantizedResult(out, codes, torch.tensor(0.0), penalty=torch.tensor(0.0))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """x [B, 1, T] at 32 kHz -> codes [B, 4, ceil(T / 640)] (long), no scale."""
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"expected mono audio [B, 1, T], got {tuple(x.shape)}")
        wav = x[:, 0].float()
        frames = math.ceil(wav.shape[-1] / HOP)
        wav = torch.nn.functional.pad(wav, (0, frames * HOP - wav.shape[-1]))  # [B, F*HOP]
        chunks = wav.view(wav.shape[0], frames, HOP)  # [B, F, HOP]
        rms = chunks.pow(2).mean(-1).sqrt()  # [B, F]
        level = _quantise_level(rms)
        pitch, noise = self._spectral(wav, frames)
        pitch = torch.where(level > 0, pitch, torch.zeros_like(pitch))  # silence: no pitch, no noise
        noise = torch.where(level > 0, noise, torch.zeros_like(noise))
        attack = _attack(chunks, level)
        return torch.stack([level, pitch, noise, attack], dim=1), None  # [B, 4, F]

    def _spectral(self, wav: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(pitch token, noise token) per frame [B, F], from a 2048-point window centred on each frame."""
        pad = (FFT_SIZE - HOP) // 2
        padded = torch.nn.functional.pad(wav, (pad, pad + FFT_SIZE))
        win = padded.unfold(-1, FFT_SIZE, HOP)[:, :frames]  # [B, F, FFT]
        spec = torch.fft.rfft(win * self.window, dim=-1).abs()  # [B, F, FFT/2+1]
        power = spec.pow(2) + 1e-12
        flat = torch.exp(torch.log(power).mean(-1)) / power.mean(-1)  # [B, F] in (0, 1]
        noise = (flat.clamp(0, 1) * (NOISE_STEPS - 1)).round().long()
        k = spec[..., 1:].argmax(-1) + 1  # [B, F], skip DC
        left = spec.gather(-1, (k - 1).unsqueeze(-1)).squeeze(-1)
        mid = spec.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        right = spec.gather(-1, (k + 1).clamp(max=spec.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
        denom = left - 2 * mid + right
        shift = torch.where(denom.abs() > 1e-12, 0.5 * (left - right) / denom, torch.zeros_like(denom))
        freq = (k.float() + shift.clamp(-0.5, 0.5)) * SAMPLE_RATE_HZ / FFT_SIZE
        semis = (12 * torch.log2(freq.clamp(min=1.0) / PITCH_BASE_HZ)).round().long()
        return semis.clamp(0, PITCHES - 1) + 1, noise

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """codes [B, 4, F] -> audio [B, 1, F * 640], DECODE_GAIN_DB below the encoded level (a full-scale tone
        keeps its peaks under full scale). A token outside its codebook's range (an LM may sample one) is 0:
        silence, no pitch, no noise, no attack."""
        if codes.dim() != 3 or codes.shape[1] != NUM_CODEBOOKS:
            raise ValueError(f"expected codes [B, {NUM_CODEBOOKS}, F], got {tuple(codes.shape)}")
        level = _in_range(codes[:, 0], LEVELS - 1)
        pitch = _in_range(codes[:, 1], PITCHES)
        noise = _in_range(codes[:, 2], NOISE_STEPS - 1).float() / (NOISE_STEPS - 1)
        attack = _in_range(codes[:, 3], QUARTERS)
        amp = self.level_rms[level] * 10 ** (DECODE_GAIN_DB / 20)  # [B, F]
        envelope = _envelope(amp, attack)  # [B, F*HOP]
        freq = self.pitch_hz[pitch].repeat_interleave(HOP, dim=-1)  # [B, F*HOP]
        phase = torch.cumsum(2 * math.pi * freq.double() / SAMPLE_RATE_HZ, dim=-1).remainder(2 * math.pi)
        tone = torch.sin(phase).float() * math.sqrt(2.0)  # unit RMS
        gen = torch.Generator().manual_seed(0)
        hiss = torch.randn(envelope.shape, generator=gen)  # unit RMS, the same noise for every call
        mix = noise.repeat_interleave(HOP, dim=-1)
        out = envelope * (torch.sqrt(1 - mix) * tone + torch.sqrt(mix) * hiss.to(envelope.device))
        return out.unsqueeze(1)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """The codes' continuous parameters [B, 4, F]: RMS, Hz, noise share, attack quarter."""
        level = self.level_rms[codes[:, 0].long().clamp(0, LEVELS - 1)]
        pitch = self.pitch_hz[codes[:, 1].long().clamp(0, PITCHES)]
        noise = codes[:, 2].float() / (NOISE_STEPS - 1)
        return torch.stack([level, pitch, noise, codes[:, 3].float()], dim=1)


def _in_range(tokens: torch.Tensor, top: int) -> torch.Tensor:
    tokens = tokens.long()
    return torch.where((tokens >= 0) & (tokens <= top), tokens, torch.zeros_like(tokens))


def _level_table() -> torch.Tensor:
    db = LEVEL_FLOOR_DB + LEVEL_STEP_DB * torch.arange(LEVELS, dtype=torch.float32)
    table = 10 ** (db / 20)
    table[0] = 0.0
    return table


def _pitch_table() -> torch.Tensor:
    hz = PITCH_BASE_HZ * 2 ** (torch.arange(PITCHES, dtype=torch.float32) / 12)
    return torch.cat([torch.zeros(1), hz])  # token 0: no pitch


def _quantise_level(rms: torch.Tensor) -> torch.Tensor:
    db = 20 * torch.log10(rms.clamp(min=1e-9))
    return ((db - LEVEL_FLOOR_DB) / LEVEL_STEP_DB).round().clamp(0, LEVELS - 1).long()


def _attack(chunks: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """The quarter (1..4) of each frame in which the level jumps up by >= 6 dB over the previous frame, else 0."""
    quarter = chunks.reshape(*chunks.shape[:2], QUARTERS, HOP // QUARTERS).pow(2).mean(-1).sqrt()  # [B, F, 4]
    prev_last = torch.cat([torch.zeros_like(quarter[:, :1, -1]), quarter[:, :-1, -1]], dim=1)  # [B, F]
    before = torch.cat([prev_last.unsqueeze(-1), quarter[..., :-1]], dim=-1)  # [B, F, 4]
    rise = quarter / before.clamp(min=1e-9)
    where = rise.argmax(-1)  # [B, F]
    prev_level = torch.cat([torch.zeros_like(level[:, :1]), level[:, :-1]], dim=1)
    jumped = (level - prev_level) * LEVEL_STEP_DB >= 6.0
    return torch.where(jumped, where + 1, torch.zeros_like(where))


def _envelope(amp: torch.Tensor, attack: torch.Tensor) -> torch.Tensor:
    """Per-sample amplitude [B, F*HOP]: a rise steps up at the attack quarter (1 ms edge), a fall ramps."""
    prev = torch.cat([torch.zeros_like(amp[:, :1]), amp[:, :-1]], dim=1)  # [B, F]
    t = torch.arange(HOP, dtype=amp.dtype, device=amp.device) / HOP  # [HOP]
    start = (attack.clamp(min=1) - 1).to(amp.dtype) / QUARTERS  # [B, F] in {0, .25, .5, .75}
    edge = 32 / HOP  # a 1 ms rise
    step = ((t - start.unsqueeze(-1)) / edge).clamp(0, 1)  # [B, F, HOP]
    ramp = t.expand_as(step)
    w = torch.where((amp > prev).unsqueeze(-1), step, ramp)
    env = prev.unsqueeze(-1) + (amp - prev).unsqueeze(-1) * w
    return env.reshape(amp.shape[0], -1)
