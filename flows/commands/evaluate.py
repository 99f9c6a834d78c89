"""`vidmusician evaluate --generated DIR --reference DIR [--videos DIR] --out REPORT_DIR`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from flows.evaluation.evaluate import CHECKPOINTS, METRICS, EvaluateConfig

    p = sub.add_parser("evaluate", help="the paper's Table 1 metrics (FD, KL, ImageBind, CLAP, Rhythm) and the other "
                                        "papers' (FAD-VGGish, KL-PaSST, IS, BCS/BHS, beat alignment) with "
                                        "intervals and chance levels; see docs/evaluation.md")
    p.add_argument("--generated", required=True, type=Path, metavar="DIR", help="generated music, one file per clip id")
    p.add_argument("--reference", required=True, type=Path, metavar="DIR", help="the real music, same clip ids")
    p.add_argument("--videos", type=Path, metavar="DIR", help="the videos, same clip ids (for ImageBind and Rhythm)")
    p.add_argument("--out", required=True, type=Path, metavar="REPORT_DIR",
                   help="where report.json, report.md and items.csv go")
    published = {"panns": "PANNs Cnn14_16k_mAP=0.438.pth (FD, KL)",
                 "clap": "laion_clap music_audioset_epoch_15_esc_90.14.pt (CLAP)",
                 "imagebind": "imagebind_huge.pth (ImageBind; CC-BY-NC-SA)",
                 "vggish": "torchvggish vggish-10086976.pth (FAD on VGGish)",
                 "passt": "hear21passt passt-s-f128-p16-s10-ap.476-swa.pt (KL on PaSST)"}
    for name, (flag, env) in CHECKPOINTS.items():
        p.add_argument(flag, type=Path, metavar="CKPT", help=f"local {published[name]} or ${env}; without it the "
                                                             "metric is skipped")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma-separated subset of {','.join(METRICS)}")
    e = EvaluateConfig.__dataclass_fields__
    p.add_argument("--seed", type=int, default=e["seed"].default,
                   help=f"bootstrap/split seed: the same seed gives the same numbers ({e['seed'].default})")
    p.add_argument("--device", default=e["device"].default, help="cpu or cuda, for the embedders")
    from model.metrics.gate import GateConfig

    g = GateConfig()
    p.add_argument("--max-silence", type=_seconds_or_none, default=g.max_silence_s, metavar="S",
                   help=f"refuse generated music silent (below {g.silence_dbfs:g} dBFS) for more than S seconds in one "
                        f"stretch, listed with the other exclusions ({g.max_silence_s:g}; 'none': no limit)")
    p.set_defaults(func=cmd_evaluate)


def _seconds_or_none(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'none', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive seconds (or 'none' for no limit), got {text!r}")
    return value


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flows.evaluation.evaluate import EvaluateConfig, evaluate
    from flows.evaluation.report import report_markdown, write_report
    from model.metrics.gate import GateConfig

    try:
        cfg = EvaluateConfig.with_env(
            generated=args.generated, reference=args.reference, videos=args.videos, panns=args.panns,
            clap=args.clap, imagebind=args.imagebind, vggish=args.vggish, passt=args.passt, seed=args.seed, device=args.device,
            gate=GateConfig(max_silence_s=args.max_silence),
            metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()))
        report = evaluate(cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    written = write_report(report, args.out)
    print(report_markdown(report))
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0
