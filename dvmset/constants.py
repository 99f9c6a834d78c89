"""The rates and sizes every layer agrees on, written once (**[paper §3–4]**, MusicGen's geometry).

The rhythm feature, the conditioning tensors and MusicGen's codes all run at ``TOKEN_RATE_HZ``;
frames are read at ``VIDEO_FPS`` (two tokens per frame, Algorithm 1).
"""

from __future__ import annotations

TOKEN_RATE_HZ = 50  # MusicGen EnCodec frames per second = rhythm feature rate
VIDEO_FPS = 25  # frames per second the clips are cut at and the features read at
SAMPLE_RATE_HZ = 32_000  # MusicGen's EnCodec input, mono
CODEBOOK_SIZE = 2048  # entries per codebook of MusicGen's EnCodec 32 kHz (and of the tiny test codec)
TOKENS_PER_FRAME = TOKEN_RATE_HZ // VIDEO_FPS  # 2: Algorithm 1 upsamples 25 fps -> 50 Hz
CLIP_SECONDS = 60  # length of a curated clip
TRAIN_WINDOW_S = 30  # the window a training item covers (MusicGen's 30 s segments)
TEST_FRACTION = 268 / 3839  # the paper's test split: 268 of 3,839 clips
# the validation split best.pt is chosen on (the paper names none): as large as the test split, taken from
# what the paper trained on, so 3,571 / 268 becomes about 3,303 train / 268 valid / 268 test
VALID_FRACTION = 268 / 3839
NO_LOUDNESS_CHANGE = "none"  # a release's / lineage's target_lufs when the audio was kept at its level

if TOKEN_RATE_HZ % VIDEO_FPS:
    raise ImportError("TOKEN_RATE_HZ must be a whole multiple of VIDEO_FPS")  # Algorithm 1's upsampling
