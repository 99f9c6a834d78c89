"""Our FD and KL against the reference toolkits' own maths functions, on the same embeddings.

audioldm_eval==0.0.3, frechet-audio-distance==0.3.4 and fadtk==1.1.0 are installed with --no-deps
(Makefile): their pins would downgrade numpy. Only their maths is called, on arrays; audioldm_eval's
package __init__ imports its whole evaluator (skimage, model code), so its two metric files are
loaded by path, and frechet_audio_distance's model-loading import of laion_clap (which fetches a
tokenizer from the network when imported) is stubbed, since calculate_frechet_distance never uses it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from model.metrics.divergence import AUDIOLDM_EVAL_KL_EPS, kl_per_pair, kl_per_pair_audioldm_eval, log_softmax
from model.metrics.frechet import fd_from_embeddings
from model.metrics.scores import ClipFeatures, fd_metric, kl_metric

REL = 1e-5


def _audioldm_eval_file(name: str):
    spec = importlib.util.find_spec("audioldm_eval")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("audioldm_eval not installed (make install-test installs it with --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics" / f"{name}.py"
    mod_spec = importlib.util.spec_from_file_location(f"_audioldm_eval_{name}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def _embeddings(seed: int = 0, n: int = 240, d: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    ref = rng.normal(size=(n, d)) @ mix + 0.3
    gen = rng.normal(size=(n + 17, d)) @ (mix + 0.2 * rng.normal(size=(d, d)) / np.sqrt(d)) * 1.3
    return gen, ref


def _features(gen_emb, ref_emb, gen_logits=None, ref_logits=None) -> list[ClipFeatures]:
    n = min(len(gen_emb), len(ref_emb))
    gl = gen_logits if gen_logits is not None else np.zeros((n, 3))
    rl = ref_logits if ref_logits is not None else np.zeros((n, 3))
    return [ClipFeatures(f"c{i}", panns_gen=(gen_emb[i], gl[i]), panns_ref=(ref_emb[i], rl[i])) for i in range(n)]


def test_fd_equals_audioldm_eval_calculate_fid():
    fid = _audioldm_eval_file("fid")
    gen, ref = _embeddings()
    theirs = fid.calculate_fid({"x": torch.from_numpy(gen)}, {"x": torch.from_numpy(ref)}, "x")["frechet_distance"]
    assert fd_from_embeddings(gen, ref) == pytest.approx(theirs, rel=REL)
    # evaluate's path (the span projection, one embedding per clip pair) gives the same number
    gen, ref = gen[:200], ref[:200]
    theirs = fid.calculate_fid({"x": torch.from_numpy(gen)}, {"x": torch.from_numpy(ref)}, "x")["frechet_distance"]
    assert fd_metric(_features(gen, ref), seed=0).value == pytest.approx(theirs, rel=REL)


def test_fd_equals_fadtk_calc_frechet_distance():
    fadtk_fad = pytest.importorskip("fadtk.fad", reason="fadtk not installed (make install-test, --no-deps)")
    gen, ref = _embeddings(seed=1)
    mu_g, cov_g = fadtk_fad.calc_embd_statistics(gen)
    mu_r, cov_r = fadtk_fad.calc_embd_statistics(ref)
    theirs = float(fadtk_fad.calc_frechet_distance(mu_g, cov_g, mu_r, cov_r))
    assert fd_from_embeddings(gen, ref) == pytest.approx(theirs, rel=REL)


def test_fd_equals_frechet_audio_distance(monkeypatch):
    if importlib.util.find_spec("frechet_audio_distance") is None:
        pytest.skip("frechet-audio-distance not installed (make install-test, --no-deps)")
    monkeypatch.setitem(sys.modules, "laion_clap", types.ModuleType("laion_clap"))  # model code only
    for name in [m for m in sys.modules if m.startswith("frechet_audio_distance")]:
        monkeypatch.delitem(sys.modules, name)
    fad = importlib.import_module("frechet_audio_distance.fad").FrechetAudioDistance
    gen, ref = _embeddings(seed=2)
    mu_g, cov_g = fad.calculate_embd_statistics(None, gen)  # methods that never touch self
    mu_r, cov_r = fad.calculate_embd_statistics(None, ref)
    theirs = float(fad.calculate_frechet_distance(None, mu_g, cov_g, mu_r, cov_r))
    assert fd_from_embeddings(gen, ref) == pytest.approx(theirs, rel=REL)


def _logits(seed: int, n: int = 64, k: int = 527) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.normal(scale=2.0, size=(n, k))
    gen = ref + rng.normal(scale=1.5, size=(n, k))
    return gen, ref


def _audioldm_eval_kl(gen: np.ndarray, ref: np.ndarray) -> float:
    kl = _audioldm_eval_file("kl")
    names = [f"c{i}.wav" for i in range(len(gen))]
    out, _, _ = kl.calculate_kl({"logits": torch.from_numpy(gen), "file_path_": names},  # input1: generated
                                {"logits": torch.from_numpy(ref), "file_path_": names}, "logits")  # eval.py:240
    return out["kullback_leibler_divergence_softmax"]


def test_kl_audioldm_eval_convention_equals_theirs_and_ours_differs_by_their_eps():
    gen, ref = _logits(0)
    theirs = _audioldm_eval_kl(gen, ref)
    res = kl_metric(_features(np.zeros((64, 2)), np.zeros((64, 2)), gen, ref), seed=0)
    assert res.extra["kl_audioldm_eval"] == pytest.approx(theirs, rel=REL)
    # our exact KL(real‖generated) exceeds theirs by exactly Σ p_real log(1 + eps / p_generated), averaged
    p, q = np.exp(log_softmax(ref)), np.exp(log_softmax(gen))
    gap = (p * np.log1p(AUDIOLDM_EVAL_KL_EPS / q)).sum(axis=1).mean()
    assert res.value - theirs == pytest.approx(gap, rel=1e-4)
    assert gap > 1e-4 * res.value  # the eps matters at 527 classes: not a rounding difference
    assert np.allclose(kl_per_pair(ref, gen), kl_per_pair_audioldm_eval(ref, gen, eps=0.0), rtol=1e-12, atol=1e-12)


def test_kl_direction_is_real_given_generated():
    gen, ref = _logits(1, n=8, k=5)
    theirs = _audioldm_eval_kl(gen, ref)
    assert kl_per_pair_audioldm_eval(ref, gen).mean() == pytest.approx(theirs, rel=REL)
    assert kl_per_pair_audioldm_eval(gen, ref).mean() != pytest.approx(theirs, rel=1e-2)  # the other direction


def av_benchmark_kl_softmax(paired_logits: torch.Tensor, gt_logits: torch.Tensor) -> float:
    """av-benchmark av_bench/metrics/kl.py:22-29 (github.com/hkchengrex/av-benchmark, commit 050a5cd), transcribed:
    not on the package index, so its formula is copied here."""
    kl_softmax = torch.nn.functional.kl_div(
        torch.nn.functional.log_softmax(paired_logits, dim=1),
        torch.nn.functional.log_softmax(gt_logits, dim=1),
        reduction="sum",
        log_target=True,
    ) / len(paired_logits)
    return float(kl_softmax)


def test_our_exact_kl_is_av_benchmarks_kl_softmax():
    gen, ref = _logits(2)
    theirs = av_benchmark_kl_softmax(torch.from_numpy(gen), torch.from_numpy(ref))
    res = kl_metric(_features(np.zeros((64, 2)), np.zeros((64, 2)), gen, ref), seed=0)
    assert res.value == pytest.approx(theirs, rel=REL)  # KL(real‖generated), no eps: av-benchmark's


def test_fad_inf_equals_fadtk_score_inf(tmp_path):
    fadtk_fad = pytest.importorskip("fadtk.fad", reason="fadtk not installed (make install-test, --no-deps)")
    from model.metrics.frechet import fad_inf, gaussian_stats

    rng = np.random.default_rng(6)
    ref = rng.normal(size=(900, 12))
    frames = [rng.normal(loc=0.2, size=(n, 12)) * 1.1 for n in (300, 250, 350)]  # three songs' frames
    files = []
    for i, f in enumerate(frames):
        np.save(tmp_path / f"song{i}.npy", f)
        files.append(tmp_path / f"song{i}.npy")
    fad = object.__new__(fadtk_fad.FrechetAudioDistance)  # only its maths: no model loaded
    fad.ml = types.SimpleNamespace(name="test")
    fad.load_stats = lambda _: fadtk_fad.calc_embd_statistics(ref)
    np.random.seed(3)  # fadtk draws from numpy's global RandomState
    theirs = fad.score_inf("baseline", files, steps=10, min_n=500)
    ours = fad_inf(np.concatenate(frames), gaussian_stats(ref), steps=10, min_n=500, seed=3)
    assert ours.score == pytest.approx(float(theirs.score), rel=REL)
    assert ours.slope == pytest.approx(float(theirs.slope), rel=REL) and ours.r2 == pytest.approx(float(theirs.r2), rel=REL)
    assert [n for n, _ in ours.points] == [n for n, _ in theirs.points]


def test_per_song_fad_equals_fadtks_individual_score():
    fadtk_fad = pytest.importorskip("fadtk.fad", reason="fadtk not installed (make install-test, --no-deps)")
    from model.metrics.field_metrics import fad_vggish_metric

    rng = np.random.default_rng(7)
    feats = [ClipFeatures(f"c{i}", vggish_gen=rng.normal(loc=0.1 * i, size=(60, 6)), vggish_ref=rng.normal(size=(60, 6)))
             for i in range(3)]
    m = fad_vggish_metric(feats, seed=0, n_boot=5)
    mu, cov = fadtk_fad.calc_embd_statistics(np.concatenate([f.vggish_ref for f in feats]))
    for f, item in zip(feats, m.items, strict=True):  # fadtk fad.py:373-378, _find_z_helper
        theirs = float(fadtk_fad.calc_frechet_distance(mu, cov, *fadtk_fad.calc_embd_statistics(f.vggish_gen)))
        assert item["value"] == pytest.approx(theirs, rel=REL)
    assert m.extra["fad_inf"] is None and "500" in m.extra["fad_inf_skipped"]  # 180 generated frames


def test_inception_score_equals_audioldm_eval_calculate_isc():
    isc = _audioldm_eval_file("isc")
    from model.metrics.divergence import inception_score
    from model.metrics.field_metrics import isc_metric

    gen, ref = _logits(8, n=57)  # 57 rows: splits of 5 and 6
    theirs = isc.calculate_isc({"logits": torch.from_numpy(gen)}, "logits", rng_seed=2020, samples_shuffle=True,
                               splits=10)  # as av-benchmark calls it (evaluate.py)
    mean, std = inception_score(gen)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=REL)
    assert std == pytest.approx(theirs["inception_score_std"], rel=REL)
    m = isc_metric(_features(np.zeros((57, 2)), np.zeros((57, 2)), gen, ref), seed=0)
    assert m.value == pytest.approx(mean, rel=1e-12) and m.extra["std_over_splits"] == pytest.approx(std)
    assert "reference_music" in m.extra and m.ci is not None


def test_inception_score_by_hand():
    from model.metrics.divergence import inception_score
    from model.metrics.field_metrics import isc_metric

    assert inception_score(np.zeros((20, 7)), splits=2) == pytest.approx((1.0, 0.0))  # one flat guess: IS 1
    sharp = np.where(np.eye(4, dtype=bool), 50.0, 0.0)  # 4 confident, distinct classes per split: IS → 4
    assert inception_score(np.tile(sharp, (2, 1)), splits=2, shuffle=False)[0] == pytest.approx(4.0, rel=1e-6)
    assert "at least 10" in isc_metric(_features(np.zeros((5, 2)), np.zeros((5, 2))), seed=0).skipped
