"""Long-form generation: the window plan, exact output length, prompts kept, conditions of each window's own span."""

from __future__ import annotations

import itertools

import pytest
import torch

from model.generation import SamplingParams
from model.longform import (
    LongformConfig,
    decode_to_duration,
    generate_long,
    plan_windows,
    total_frames,
    window_seed,
)
from model.rhythm import frame_index_per_position

FPS = 50
SR = 32000
PARAMS = SamplingParams(top_k=50, cfg_coef=3.0)
CFG_7S = LongformConfig(window_s=3, stride_s=2)


@pytest.fixture
def trained_like(make_model, perturb):
    model = make_model()
    perturb(model.rhythm, scale=2.0)  # far from the zero/identity init, so the rhythm changes the logits
    perturb(model.semantic.embedding_manager, seed=5)
    return model.eval()


def _inputs(seconds: int, clip_d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    glob = torch.randn(1, seconds, clip_d, generator=g)  # [1, seconds, D]
    rhythm = (torch.arange(seconds * FPS, dtype=torch.float32) + 1.0)[None] / 1000.0  # [1, T]: unique per frame
    return glob, rhythm


@pytest.mark.parametrize("duration,window,stride", [(7.0, 3, 2), (7.3, 3, 2), (61.0, 30, 18), (30.0, 30, 18),
                                                    (30.02, 30, 18), (100.0, 30, 1), (0.5, 30, 18), (4.0, 3, 1)])
def test_plan_covers_the_duration_with_whole_second_strides_and_prompts(duration, window, stride):
    cfg = LongformConfig(window_s=window, stride_s=stride)
    wins = plan_windows(duration, cfg)
    n_total = total_frames(duration)
    assert n_total * (SR // FPS) >= round(duration * SR) > (n_total - 1) * (SR // FPS)
    assert wins[0].start_frame == 0 and wins[0].n_prompt == 0 and wins[-1].end_frame == n_total
    for prev, win in itertools.pairwise(wins):
        assert win.start_frame == prev.start_frame + stride * FPS  # whole-second stride
        assert win.n_prompt == prev.end_frame - win.start_frame > 0  # the previous window's tail after the stride
        assert prev.n_frames == window * FPS  # every window but the last is a full W
        assert win.end_frame > prev.end_frame  # each window adds new frames
    assert all(w.n_frames <= window * FPS for w in wins)
    if n_total <= window * FPS:
        assert len(wins) == 1


def test_config_refuses_fractional_or_non_overlapping_strides():
    with pytest.raises(ValueError, match="whole number"):
        LongformConfig(window_s=30, stride_s=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride_s"):
        LongformConfig(window_s=3, stride_s=3)
    with pytest.raises(ValueError, match="positive"):
        plan_windows(0.0)
    assert LongformConfig.for_window(30).stride_s == 18 and LongformConfig.for_window(3).stride_s == 1


@pytest.mark.slow
def test_7s_with_3s_windows_gives_exactly_7x32000_samples_and_keeps_every_prompt(trained_like):
    glob, rhythm = _inputs(7)
    res = generate_long(trained_like, glob, rhythm, 7.0, CFG_7S, PARAMS, seed=3)
    assert [(w.start_frame, w.n_frames, w.n_prompt) for w in res.windows] == [(0, 150, 0), (100, 150, 50),
                                                                             (200, 150, 50)]
    assert res.codes.shape == (1, 4, 350)
    audio = decode_to_duration(trained_like, res.codes, 7.0)
    assert audio.shape == (1, 1, 7 * 32000) and torch.isfinite(audio).all()
    for prev, cur, win in zip(res.window_codes, res.window_codes[1:], res.windows[1:], strict=False):
        assert torch.equal(cur[..., :win.n_prompt], prev[..., CFG_7S.stride_s * FPS:])  # the prompt survives
    for win, codes in zip(res.windows, res.window_codes, strict=True):
        assert torch.equal(res.codes[..., win.start_frame:win.end_frame], codes)
    again = generate_long(trained_like, glob, rhythm, 7.0, CFG_7S, PARAMS, seed=3)
    assert torch.equal(again.codes, res.codes)  # same seed, same codes
    other = generate_long(trained_like, glob, rhythm, 7.0, CFG_7S, PARAMS, seed=4)
    assert not torch.equal(other.codes, res.codes)


def test_odd_duration_is_cut_to_the_sample(trained_like):
    glob, rhythm = _inputs(8)
    res = generate_long(trained_like, glob, rhythm, 7.3, CFG_7S, PARAMS, seed=0)
    assert res.codes.shape[-1] == 365
    assert decode_to_duration(trained_like, res.codes, 7.3).shape[-1] == 233600


def test_a_duration_within_one_window_is_single_window_generation(trained_like):
    glob, rhythm = _inputs(3)
    long = generate_long(trained_like, glob, rhythm, 2.5, CFG_7S, PARAMS, seed=7)
    assert len(long.windows) == 1
    single = trained_like.generate_codes(glob, rhythm, 2.5, PARAMS, seed=7)
    assert torch.equal(long.codes, single)


def test_each_window_gets_the_rhythm_and_global_features_of_its_own_span(trained_like):
    """Through the real hook: the rhythm module's input at each streaming offset, and the semantic input."""
    model = trained_like
    glob, rhythm = _inputs(7)
    fed: list[tuple[int, torch.Tensor]] = []  # (streaming offset, signal slice [rows, T])
    seen_global: list[torch.Tensor] = []

    def on_rhythm(_mod, args):
        offsets = model.lm.transformer._streaming_state.get("offsets")
        fed.append((0 if offsets is None else int(offsets[0]), args[0].detach().clone()))

    def on_semantic(_mod, args):
        seen_global.append(args[0].detach().clone())

    hooks = [model.rhythm.register_forward_pre_hook(on_rhythm),
             model.semantic.embedding_manager.register_forward_pre_hook(on_semantic)]
    try:
        res = generate_long(model, glob, rhythm, 7.0, CFG_7S, PARAMS, seed=1)
    finally:
        for h in hooks:
            h.remove()
    starts = [i for i, (off, _) in enumerate(fed) if off == 0]
    assert len(starts) == len(res.windows) == 3
    assert len(seen_global) == 3
    for w, (win, begin, end) in enumerate(zip(res.windows, starts, starts[1:] + [len(fed)], strict=True)):
        # the semantic condition: this window's own seconds, for both CFG halves (the null half is masked later)
        own = glob[:, win.start_s:win.start_s + win.n_seconds]
        assert torch.equal(seen_global[w], torch.cat([own, own]))
        received: dict[int, float] = {}
        for off, sig in fed[begin:end]:
            for j in range(sig.shape[1]):
                received[off + j] = float(sig[0, j])  # conditional row 0
        idx = frame_index_per_position(model.lm.pattern_provider.get_pattern(win.n_frames))
        for t in range(win.start_s, win.start_s + win.n_seconds):
            local = FPS * t - win.start_frame
            positions = [s for s in received if int(idx[s]) == local]
            assert positions, f"window {w}: no LM input position for second {t}"
            for s in positions:
                assert received[s] == pytest.approx(float(rhythm[0, FPS * t])), f"window {w}, second {t}"
        for s, value in received.items():  # every fed position: the frame it predicts, in absolute time
            want = float(rhythm[0, win.start_frame + int(idx[s])]) if idx[s] >= 0 else 0.0
            assert value == pytest.approx(want), f"window {w}, position {s}"


def test_inputs_too_short_for_the_duration_are_refused(trained_like):
    glob, rhythm = _inputs(7)
    with pytest.raises(ValueError, match="global features"):
        generate_long(trained_like, glob[:, :6], rhythm, 7.0, CFG_7S, PARAMS)
    with pytest.raises(ValueError, match="rhythm"):
        generate_long(trained_like, glob, rhythm[:, :300], 7.0, CFG_7S, PARAMS)
    with pytest.raises(ValueError, match="window_s"):
        generate_long(trained_like, glob, rhythm, 7.0, LongformConfig(window_s=31, stride_s=18), PARAMS)


def test_window_seeds_are_not_the_next_seed_shifted_by_a_window():
    seeds = {(s, i): window_seed(s, i) for s in range(40) for i in range(12)}
    assert all(seeds[(s, 0)] == s for s in range(40))  # one window: generate_codes(..., seed) exactly
    assert all(seeds[(s, i + 1)] != seeds[(s + 1, i)] for s in range(39) for i in range(11))
    later = [v for (s, i), v in seeds.items() if i > 0]
    assert len(set(later)) == len(later) and all(0 <= v < 2**63 for v in later)
    assert window_seed(5, 3) == window_seed(5, 3)  # a pure function of (seed, index)


def test_each_window_samples_with_its_derived_seed_not_seed_plus_index(trained_like):
    """Window 1 regenerated from its own inputs and prompt: equal with window_seed(3, 1), not with 3 + 1."""
    glob, rhythm = _inputs(7)
    res = generate_long(trained_like, glob, rhythm, 7.0, CFG_7S, PARAMS, seed=3)
    win = res.windows[1]
    feats = glob[:, win.start_s: win.start_s + win.n_seconds]
    sig = rhythm[:, win.start_frame: win.end_frame]
    prompt = res.window_codes[0][..., win.start_frame:]

    def window_1(seed: int) -> torch.Tensor:
        return trained_like.generate_codes(feats, sig, win.duration_s, PARAMS, seed, prompt=prompt)

    assert torch.equal(window_1(window_seed(3, 1)), res.window_codes[1])
    assert not torch.equal(window_1(3 + 1), res.window_codes[1])
