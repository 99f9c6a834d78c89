"""Feature extraction vs its parts on one 720p clip (run by hand; not part of the test suite).

    python benchmarks/bench_features.py [--model tiny|ViT-B-32] [--seconds 60] [--device cpu]

Times, in one run: (a) decode of the frames alone (ffmpeg pipe, 25 fps, resized/cropped for CLIP),
(b) the CLIP forward of the same frames alone (frames already in memory), (c) the extraction
(``video_features``: decode overlapped with the forward, plus Eq. 4 / Algorithm 1), and the codes
(audio decode + EnCodec) on their own. Goal: (c) <= 1.3 x max(a, b).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.clip_encoder import ClipEncoderSpec, ClipImageEncoder, load_clip_encoder
from pipeline.codec import encode_waveform, load_codec
from pipeline.features import ExtractConfig, clip_audio, iter_frame_batches, video_features
from pipeline.synth import make_sample_video


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="'tiny' or an open_clip name (random weights)")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--codec", default="tiny", help="'tiny' or a MusicGen name/dir ('' to skip the codes)")
    ap.add_argument("--clip", type=Path, help="use this 25 fps clip instead of a synthetic one")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=1, help="repeat the three timings, report each")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or make_sample_video(Path(tmp) / "clip.mp4", args.seconds, size=args.size, fps=25,
                                              cut_every_s=3.0)
        spec = ClipEncoderSpec.tiny() if args.model == "tiny" else ClipEncoderSpec(args.model, pretrained=None)
        enc = load_clip_encoder(spec, args.device, args.precision)
        cfg = ExtractConfig(clip_s=args.seconds, batch_size=args.batch_size)
        enc(np.zeros((2, enc.image_size, enc.image_size, 3), np.uint8))  # warm-up

        codec = load_codec(args.codec, args.device) if args.codec else None
        for _ in range(args.repeats):
            print(json.dumps(run_once(args, clip, enc, cfg, codec)), flush=True)


def run_once(args: argparse.Namespace, clip: Path, enc: ClipImageEncoder, cfg: ExtractConfig, codec) -> dict:  # noqa: ANN001
    """(a) decode alone, (b) forward alone on the same frames, (c) the overlapped extraction."""
    t_decode, batches = timed(lambda: list(iter_frame_batches(clip, enc.image_size, cfg)))

    def forward_only() -> None:
        for b in batches:
            enc(b)
        if enc.device.type == "cuda":
            torch.cuda.synchronize()

    t_forward, _ = timed(forward_only)
    t_extract, _ = timed(lambda: video_features(clip, enc, cfg))
    row = {
        "model": args.model, "device": str(enc.device), "precision": enc.precision,
        "frames": sum(len(b) for b in batches), "image_size": enc.image_size, "source": args.size,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "a_decode_s": round(t_decode, 2), "b_forward_s": round(t_forward, 2), "c_extract_s": round(t_extract, 2),
        "ratio_c_over_max_ab": round(t_extract / max(t_decode, t_forward), 3),
    }
    if codec is not None:
        t_audio, wav = timed(lambda: clip_audio(clip, cfg))
        t_codes, _ = timed(lambda: encode_waveform(codec, wav))
        row.update(codec=args.codec, audio_decode_s=round(t_audio, 2), codes_s=round(t_codes, 2))
    return row

if __name__ == "__main__":
    main()
