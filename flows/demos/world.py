"""`vidmusician demo --world`: the miniature world where the paper's claims can be checked on CPU.

Builds the world's videos (pipeline.world), pre-trains the miniature MusicGen on the world's music alone
(model.training.miniature, saved in audiocraft's layout) and gates on it (its own music, sampled with each
class word, must hold that class's tempo: else BackboneNotReady, before anything is curated), then runs what a
user runs: curate (served on loopback, `--separator none`), DEMO SHORTCUT accept, features (tiny random CLIP, the miniature backbone's codec),
export, and `ablate` with Table 2's rows and both references. Then the world's own scores
(flows.demos.world_report): semantics (tempo of the generated music vs the video's class) and rhythm
against shuffled pairs with bootstrap intervals, the IT check at stage 2's step 0, a figure, and the full
row on real footage. Every part prints its wall time. A re-run reuses what is done.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from dvmset.catalog import Catalog
from dvmset.export import export_dataset
from dvmset.layout import DataRoot
from flows.config import CurateConfig, FeaturesConfig
from flows.curation.curate import run_curate
from flows.dataset.features import run_features
from flows.demos.full import SHORTCUT_ANNOTATOR, accept_all
from flows.demos.small import serve_directory
from flows.evaluation.evaluate import EvaluateConfig
from flows.settings import catalog_url
from flows.training.ablate import AblateRun, run_ablate
from flows.training.generate_config import GenerateConfig
from flows.training.run import TrainRun
from model.training.config import TrainConfig
from pipeline.probe import audio_rate

Say = Callable[[str], None]
EXPORT = "world"
ALL_ROWS = ("full", "no-t5", "no-rcm", "no-it", "one-stage", "at", "musicongen", "musicongen-no-it",
            "backbone", "untrained")


@dataclass(frozen=True)
class WorldScale:
    """How big the world and its runs are. `small` is the slow test's; `full` the documented experiment."""

    name: str
    videos_per_class: int
    clips_per_video: int
    clip_s: int
    pretrain_pieces_per_class: int
    pretrain_steps: int
    steps_per_stage: int
    rows: tuple[str, ...]
    batch_size: int = 8
    window_s: int = 4
    lr1: float = 3e-3  # stage 1 (the paper: 1e-4 over 120 epochs; a few hundred steps here)
    lr2: float = 1e-3  # stage 2 (the paper: a tenth of stage 1's)
    warmup: int = 20
    pretrain_batch: int = 8
    pretrain_window_s: float = 4.0
    pretrain_piece_s: float = 8.0  # each pre-training piece's length (windows are drawn from it)
    pretrain_lr: float = 1e-2  # the first run's 3e-3 x 200 steps left the backbone unable to keep a tempo
    pretrain_warmup: int = 40
    test_fraction: float = 0.3
    # a handful of videos per class: a valid split would take one of the few left to train on, so the world
    # trains without one (best.pt is the latest checkpoint; training never reads the test split)
    valid_fraction: float = 0.0
    cfg_coef: float = 3.0
    top_k: int = 250
    temperature: float = 1.0
    tempo_check_per_class: int = 4  # pieces sampled per class word by the backbone's tempo gate
    min_tempo_accuracy: float = 0.75  # the gate: share of those pieces whose tracked tempo is their class's
    seed: int = 0

    @property
    def source_s(self) -> int:
        return self.clips_per_video * self.clip_s


SCALES = {
    "small": WorldScale("small", videos_per_class=4, clips_per_video=1, clip_s=8, pretrain_pieces_per_class=6,
                        pretrain_steps=800, steps_per_stage=60, rows=("full", "no-rcm", "no-it")),
    "full": WorldScale("full", videos_per_class=6, clips_per_video=1, clip_s=8, pretrain_pieces_per_class=8,
                       pretrain_steps=800, steps_per_stage=80, rows=ALL_ROWS, test_fraction=0.34),
    # what run B of `full` left to try, decided before this scale ran (docs/world.md, "What would make the world
    # answer"): three times the steps per stage, training windows as long as the generated clips, and about 15 test
    # clips so intervals can separate rows. The backbone's settings are full's, so its backbone is the same.
    "large": WorldScale("large", videos_per_class=15, clips_per_video=1, clip_s=8, pretrain_pieces_per_class=8,
                        pretrain_steps=800, steps_per_stage=240, rows=ALL_ROWS, test_fraction=0.34, window_s=8),
}


def default_real_video() -> Path | None:
    """Real footage with cuts, where the shared media are checked out next to the repository."""
    here = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "bikes_cuts_10s.mp4"
    return here if here.is_file() else None


class Clock:
    """Wall time of each part, printed as it ends and kept for the report."""

    def __init__(self, say: Say) -> None:
        self.say, self.parts, self.t0 = say, {}, time.perf_counter()

    def part(self, name: str, started: float, note: str = "") -> None:
        self.parts[name] = round(time.perf_counter() - started, 1)
        self.say(f"      {name}: {self.parts[name]:.0f} s{(' - ' + note) if note else ''} "
                 f"(total {time.perf_counter() - self.t0:.0f} s)")


def build_media(root: Path, scale: WorldScale) -> tuple[Path, list]:
    """The world's source MP4s (made once) and their plans, written to ROOT/world-media/plans.json."""
    from pipeline.world import plan_world

    plans = plan_world(scale.videos_per_class, scale.source_s, seed=scale.seed)
    return write_media(root / "world-media", plans), plans


def write_media(media: Path, plans: list) -> Path:
    """Each plan's MP4 in ``media`` (those already there kept) and the plans in ``media/plans.json``."""
    from pipeline.world import write_world_video

    media.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        path = media / f"{plan.name}.mp4"
        if not path.exists():
            write_world_video(plan, path)
    (media / "plans.json").write_text(json.dumps([asdict(p) for p in plans], indent=1))
    return media


def heldout_plans(scale: WorldScale, n_per_class: int, seed: int, prefix: str = "heldout") -> list:
    """New sources for a second test set, named ``{prefix}-...``: refused (ValueError) if any shares a source seed
    with the scale's own videos or the backbone's pre-training corpus, so none was seen in any training."""
    from pipeline.world import plan_world

    plans = plan_world(n_per_class, scale.source_s, seed=seed, prefix=prefix)
    seen = {p.seed for p in plan_world(scale.videos_per_class, scale.source_s, seed=scale.seed)}
    seen |= {p.seed for p in plan_world(scale.pretrain_pieces_per_class, scale.pretrain_piece_s, seed=scale.seed + 1)}
    if clash := sorted(p.name for p in plans if p.seed in seen):
        raise ValueError(f"seed {seed} re-makes sources the run has seen ({', '.join(clash[:3])}, ...): pass another")
    return plans


# the pre-training music's path: "curated" = through curation's own audio functions (pipeline.world.curated_music);
# the first backbones ("direct", no record) normalised the synthesis directly and saw other codes than the features'
PRETRAIN_CORPUS = "curated"


class BackboneNotReady(RuntimeError):
    """The pre-trained backbone does not hold its classes' tempos: the ablation would measure nothing."""


def pretrain_backbone(root: Path, scale: WorldScale, say: Say) -> tuple[Path, dict]:
    """The miniature MusicGen in audiocraft's layout at ROOT/backbone (trained once), frozen from then on, and
    its tempo gate: sampled with its own class words, its music must hold each class's tempo (else it raises
    BackboneNotReady). A backbone trained with other settings is kept aside, not overwritten."""
    from dvmset.checkpoints import LM_FILE
    from dvmset.envelope_codec import EnvelopeCodec
    from model.training.miniature import PretrainConfig, class_word_bins, pretrain_lm, save_miniature
    from pipeline.world import CLASSES, curated_music, plan_world

    out = root / "backbone"
    cfg = PretrainConfig(scale="mini", steps=scale.pretrain_steps, batch_size=scale.pretrain_batch,
                         window_s=scale.pretrain_window_s, lr=scale.pretrain_lr, warmup=scale.pretrain_warmup,
                         seed=scale.seed)
    record = out / "pretrain.json"
    kept = json.loads(record.read_text()) if record.is_file() else None
    if (out / LM_FILE).is_file() and kept is not None and (kept["config"] != asdict(cfg)
                                                           or kept.get("corpus") != PRETRAIN_CORPUS):
        old = kept["config"]
        aside = root / f"backbone-{old['steps']}steps-{int(time.time())}"
        out.rename(aside)
        say(f"      {out} was trained with other settings ({old}, corpus {kept.get('corpus', 'direct')}); kept as "
            f"{aside}, training anew")
    if (out / LM_FILE).is_file():
        say(f"      {out} already holds the pre-trained backbone")
    else:
        class_word_bins([c.word for c in CLASSES])
        codec = EnvelopeCodec()
        pieces = plan_world(scale.pretrain_pieces_per_class, scale.pretrain_piece_s, seed=scale.seed + 1,
                            prefix="pretrain")
        corpus, words = [], []
        with tempfile.TemporaryDirectory(prefix="world-pretrain-") as work:
            for piece in pieces:  # through curation's own audio path, so the codes are those the features hold
                music = curated_music(piece, Path(work) / piece.name, target_lufs=CurateConfig().target_lufs)
                codes, _ = codec.encode(torch.from_numpy(music)[None, None])  # [1, 4, T]
                corpus.append(codes[0])
                words.append(piece.world_class.word)
        res = pretrain_lm(corpus, words, cfg)
        first, last = sum(res.losses[:10]) / 10, sum(res.losses[-10:]) / 10
        say(f"      {len(corpus)} pieces, {cfg.steps} steps: loss {first:.3f} -> {last:.3f} ({res.seconds:.0f} s)")
        save_miniature(res.lm, codec, out, scale="mini")
        record.write_text(json.dumps({"config": asdict(cfg), "corpus": PRETRAIN_CORPUS, "losses": res.losses, "seconds": res.seconds,
                                      "pieces": len(corpus)}))
    tempo = backbone_tempo(out, scale)
    say(f"      backbone tempo with its own class words: {tempo['accuracy']:.0%} of {tempo['n']} pieces at their "
        f"class's tempo (±{tempo['tolerance']:.0%}; per word {_pct(tempo['per_word'])}), "
        f"{tempo['on_grid']:.0%} of onsets on the beat grid")
    if tempo["accuracy"] < scale.min_tempo_accuracy:
        raise BackboneNotReady(
            f"the pre-trained backbone at {out} holds its class's tempo in {tempo['accuracy']:.0%} of {tempo['n']} "
            f"pieces sampled with its own class word (the gate asks >= {scale.min_tempo_accuracy:.0%}; "
            f"{tempo['on_grid']:.0%} of its onsets on the beat grid): it is not a competent frozen MusicGen yet, "
            f"so the ablation would measure nothing. Pre-train it longer: re-run with --pretrain-steps N above "
            f"{scale.pretrain_steps} (the backbone trained now is kept aside), see docs/world.md")
    return out, tempo


def backbone_tempo(backbone: Path, scale: WorldScale) -> dict:
    """The gate's measurement, once per backbone and sampling setting (ROOT/backbone/tempo.json): pieces of a
    clip's length sampled with each class word as `generate` samples, their tracked tempo against the class's."""
    from model.metrics.world import tempo_accuracy
    from model.training.miniature import SampleConfig, load_miniature, sample_words
    from pipeline.world import CLASSES

    sample = SampleConfig(duration_s=float(scale.clip_s), per_word=scale.tempo_check_per_class, cfg_coef=scale.cfg_coef,
                          top_k=scale.top_k, temperature=scale.temperature, seed=scale.seed)
    cache = backbone / "tempo.json"
    if cache.is_file():
        done = json.loads(cache.read_text())
        if done.get("sampling") == asdict(sample):
            return done
    lm, codec = load_miniature(backbone)
    words, audio = sample_words(lm, codec, [c.word for c in CLASSES], sample)  # audio [N, 1, S]
    acc = tempo_accuracy([a[0].numpy() for a in audio], codec.sample_rate, words, {c.word: c.bpm for c in CLASSES})
    result = {**acc.to_json(), "sampling": asdict(sample)}
    cache.write_text(json.dumps(result, indent=1))
    return result


def _pct(per_word: dict[str, float]) -> str:
    return ", ".join(f"{w} {v:.0%}" for w, v in per_word.items())


def curated_already(db_url: str, plans: list) -> bool:
    """Whether every world source already has clips in the catalog (a re-run serves on another port, and
    yt-dlp would see new URLs: the sources are not curated twice)."""
    from sqlalchemy import select

    from dvmset.tables import Clip

    catalog = Catalog(db_url)
    try:
        with catalog.session() as s:
            ids = list(s.scalars(select(Clip.id)))
    finally:
        catalog.dispose()
    return all(any(i.startswith(p.name) for i in ids) for p in plans)


def curate_world(root_dir: DataRoot, db_url: str, media: Path, plans: list, scale: WorldScale) -> dict:
    if curated_already(db_url, plans):
        return {"done": 0, "failed": 0, "skipped": len(plans)}
    cfg = CurateConfig(separator="none", clip_seconds=float(scale.clip_s), workers=2)
    with serve_directory(media) as base:
        return run_curate(root_dir, db_url, queries=[], urls=[f"{base}/{p.name}.mp4" for p in plans], per_query=0,
                          cfg=cfg)


def ablate_run(export: Path, out: Path, backbone: Path, scale: WorldScale, rows: tuple[str, ...]) -> AblateRun:
    recipe = TrainConfig(stage=1, lr=scale.lr1, warmup_steps=scale.warmup, batch_size=scale.batch_size,
                         steps=scale.steps_per_stage, window_s=scale.window_s, seed=scale.seed)
    train = TrainRun(data=export, out=out, recipe=recipe, lr2=scale.lr2, backbone=str(backbone.resolve()), t5="debug",
                     device="cpu", val_every=max(1, scale.steps_per_stage // 4), ckpt_every=scale.steps_per_stage,
                     keep=1, workers=0)
    generate = GenerateConfig(checkpoint=out, out_dir=out, seed=scale.seed, window_s=scale.clip_s, clip_model="tiny",
                              cfg_coef=scale.cfg_coef, top_k=scale.top_k, temperature=scale.temperature, mux=False)
    evaluate = EvaluateConfig(generated=out, reference=out, metrics=("rhythm",), seed=scale.seed)
    return AblateRun(data=export, out=out, rows=rows, train=train, generate=generate, evaluate=evaluate)


def run_world_demo(root: Path, scale: WorldScale = SCALES["full"], say: Say = print, rows: tuple[str, ...] | None = None,
                   real_video: Path | None = None, threads: int | None = 1) -> dict:
    """The whole experiment; returns the report (also ROOT/world/report.json, with table2 and the figure)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(Path(root), scale, say, rows or scale.rows, real_video)
    finally:
        torch.set_num_threads(before)


def _run(root: Path, scale: WorldScale, say: Say, rows: tuple[str, ...], real_video: Path | None) -> dict:
    from flows.demos.world_report import world_report

    clock = Clock(say)
    root_dir = DataRoot(root).ensure()
    db_url = catalog_url(root_dir)
    say(f"[1/7] world ({scale.name}): {scale.videos_per_class} videos per class x 3 classes, {scale.source_s} s each")
    t = time.perf_counter()
    media, plans = build_media(root_dir.path, scale)
    clock.part("world", t, f"{len(plans)} sources in {media}")
    say("[2/7] pre-training the miniature MusicGen ('mini' LM + envelope codec) on the world's music alone")
    t = time.perf_counter()
    backbone, tempo = pretrain_backbone(root_dir.path, scale, say)
    clock.part("pretrain", t, str(backbone))
    say("[3/7] curate: the sources served on loopback, through yt-dlp (--separator none)")
    t = time.perf_counter()
    cur = curate_world(root_dir, db_url, media, plans, scale)
    clock.part("curate", t, f"{cur['done']} done, {cur['failed']} failed")
    catalog = Catalog(db_url)
    try:
        t = time.perf_counter()
        accepted = accept_all(catalog)
        say(f"[4/7] DEMO SHORTCUT: {len(accepted)} clips accepted by '{SHORTCUT_ANNOTATOR}' (no one reviewed them)")
        feats = run_features(root_dir, db_url, FeaturesConfig(clip_model="tiny", codec=str(backbone.resolve()),
                                                              clip_s=scale.clip_s, clips_per_shard=16, batch_size=25,
                                                              retry_failed=True))
        clock.part("features", t, f"{feats['done']} extracted, {feats['already']} already, "
                                  f"{len(feats['failed'])} failed")
        summary = export_dataset(root_dir, catalog, EXPORT, test_fraction=scale.test_fraction, seed=scale.seed,
                                 valid_fraction=scale.valid_fraction, audio_rate=audio_rate)
    finally:
        catalog.dispose()
    say(f"[5/7] export '{EXPORT}': {summary.train} train / {summary.test} test clips (split by video)")
    out = root_dir.path / "world" / "ablate"
    run = ablate_run(summary.path, out, backbone, scale, rows)
    say(f"[6/7] ablate: {', '.join(rows)} -> {out}")
    t = time.perf_counter()
    row_t: dict[str, float] = {}

    def on_row(name: str, what: str) -> None:
        row_t.setdefault(name, time.perf_counter())
        if what in ("done", "cached"):
            say(f"      row {name}: {what} ({time.perf_counter() - row_t[name]:.0f} s)")

    result = run_ablate(run, on_row)
    clock.part("ablate", t, str(result.table_md))
    say("[7/7] the world's scores, the IT check, the figure and real footage")
    t = time.perf_counter()
    report = world_report(root_dir.path, run, plans, result.rows, real_video, say)
    clock.part("report", t)
    report["backbone_tempo"] = tempo
    report["timings_s"] = clock.parts
    report["scale"] = asdict(replace(scale, rows=tuple(rows)))
    report["threads"] = torch.get_num_threads()
    (root_dir.path / "world" / "report.json").write_text(json.dumps(report, indent=2, default=str))
    say(f"world demo finished in {time.perf_counter() - clock.t0:.0f} s: {root_dir.path / 'world' / 'report.json'}")
    return report
