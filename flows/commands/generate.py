"""`vidmusician generate VIDEO... --checkpoint CKPT --out DIR` (or `--export DIR --split test`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from flows.training.generate_config import GenerateConfig


def _defaults() -> dict:
    return {f.name: f.default for f in dataclasses.fields(GenerateConfig) if f.init}


# command-line option -> GenerateConfig field; unset options keep the config's defaults
_FIELDS = {"duration": "duration_s", "seed": "seed", "cfg_coef": "cfg_coef", "top_k": "top_k",
           "temperature": "temperature", "window": "window_s", "stride": "stride_s", "clip_model": "clip_model",
           "pretrained": "clip_pretrained", "backbone": "backbone", "device": "device", "cache": "cache_dir"}


def register(sub: argparse._SubParsersAction) -> None:
    d = _defaults()
    p = sub.add_parser("generate", help="put generated music under videos: DIR/{name}.wav and DIR/{name}.mp4")
    p.add_argument("videos", nargs="*", type=Path, metavar="VIDEO", help="video files (any length, >= 1 s)")
    p.add_argument("--export", type=Path, metavar="DIR", help="an export folder (exports/NAME): its --split clips")
    p.add_argument("--split", default="test", help="the export's split with --export (test)")
    p.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint written by `vidmusician train`")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="where the .wav and .mp4 files go")
    p.add_argument("--duration", type=float, metavar="S", help="music for the first S seconds only (the rest "
                                                                 "of the video is silent); default the whole video")
    p.add_argument("--seed", type=int, help=f"sampling seed: the same seed gives the same music ({d['seed']})")
    p.add_argument("--cfg-coef", type=float, help=f"classifier-free guidance ({d['cfg_coef']:g}; 1 = off)")
    p.add_argument("--top-k", type=int, help=f"top-k sampling ({d['top_k']})")
    p.add_argument("--temperature", type=float, help=f"sampling temperature ({d['temperature']:g})")
    p.add_argument("--window", type=int, metavar="W", help=f"seconds per model window ({d['window_s']})")
    p.add_argument("--stride", type=int, metavar="S", help="whole seconds between windows (default 3/5 of W: 18 s "
                                                           "of 30); each window is prompted with the W - S before it")
    p.add_argument("--clip-model", help="the CLIP the training features used (default: the one the checkpoint "
                                        "records, else ViT-L-14), a local-dir:/hf-hub: id, or 'tiny'")
    p.add_argument("--allow-other-clip", action="store_true",
                   help="use --clip-model even when it is not the CLIP (name, or weights' hash) the checkpoint's "
                        "features were made with; by default that is refused")
    p.add_argument("--pretrained", help=f"its pretrained tag or local checkpoint file ({d['clip_pretrained']})")
    p.add_argument("--backbone", help="a local directory holding the checkpoint's MusicGen (offline)")
    p.add_argument("--device", help=f"cpu or cuda ({d['device']})")
    p.add_argument("--cache", type=Path, metavar="DIR", help="feature cache (default DIR/.features)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; tiny models run best on 1)")
    p.add_argument("--no-mux", action="store_true", help="write only the .wav files")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from flows.training.generate import GenerateError, generate_batch, jobs_for_export, jobs_for_videos

    if bool(args.videos) == bool(args.export):
        print("error: give VIDEO files or --export DIR, not both and not neither", file=sys.stderr)
        return 2
    try:
        given = {field: getattr(args, opt) for opt, field in _FIELDS.items() if getattr(args, opt) is not None}
        if args.allow_other_clip:
            given["allow_other_clip"] = True
        cfg = GenerateConfig(checkpoint=args.checkpoint, out_dir=args.out, mux=not args.no_mux, **given)
        jobs = jobs_for_export(args.export, args.split) if args.export else jobs_for_videos(args.videos)
    except (ValueError, GenerateError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def report(r) -> None:  # noqa: ANN001 - flows.training.generate.VideoResult
        if r.ok:
            made = ", ".join(str(p) for p in (r.wav, r.mp4) if p is not None)
            print(f"ok      {r.name}: {r.duration_s:.2f} s in {r.windows} window(s), {r.seconds:.1f} s -> {made}")
        else:
            print(f"FAILED  {r.name} ({r.video}): {r.error}")

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        results = generate_batch(jobs, cfg, on_result=report)
    except GenerateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} video(s) done in {cfg.out_dir}"
          + (f"; {len(failed)} failed: {', '.join(r.name for r in failed)}" if failed else ""))
    return 1 if failed else 0
