"""Each Table 2 switch changes exactly what it names — the trainable set, the initial values, the features
read — on the debug backbone; nonsense combinations are refused with what to pass instead; an unconditional
(backbone-alone) model ignores every condition."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flows.training.run import TrainRun
from flows.training.train import model_config
from model.ablation import ROWS, TABLE2, AblationError, Switches, parse_rows
from model.vidmusician import VidMusician

D = 16


def _model(**switches) -> VidMusician:
    run = TrainRun(data=Path("x"), out=Path("y"), backbone="debug", **switches)
    return VidMusician.from_config(model_config(run, D), seed=0)


@pytest.fixture(scope="module")
def full() -> VidMusician:
    return _model()


def _values(model: VidMusician) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _same(a: dict, b: dict, names) -> bool:
    return all(torch.equal(a[n], b[n]) for n in names)


def test_t5_from_scratch_trains_the_whole_t5_instead_of_lora(full):
    m = _model(t5_from_scratch=True)
    assert m.config.semantic.from_scratch and not full.config.semantic.from_scratch
    got, base = set(m.trainable_state()), set(full.trainable_state())
    t5 = {n for n, _ in m.named_parameters() if n.startswith("semantic.t5.")}
    assert got == (base - {n for n in base if "lora_" in n}) | t5
    assert not any("lora_" in n for n in got)
    rhythm = {n for n in base if n.startswith("rhythm.")}
    assert rhythm and _same(_values(m), _values(full), rhythm)  # the rhythm module is untouched


def test_no_rhythm_removes_the_rhythm_module_and_nothing_else(full):
    m = _model(rhythm=False, stages=(1,))
    assert m.rhythm is None and m._injector is None
    base = set(full.trainable_state())
    assert set(m.trainable_state()) == {n for n in base if not n.startswith("rhythm.")}
    assert _same(_values(m), _values(full), m.trainable_state())


def test_no_init_technique_changes_only_the_rhythm_layers_initial_values(full):
    m = _model(init_technique=False)
    assert set(m.trainable_state()) == set(full.trainable_state())
    a, b = _values(m), _values(full)
    rhythm = {n for n in a if n.startswith("rhythm.")}
    assert _same(a, b, set(a) - rhythm)  # the backbone, T5 and semantic module are the same tensors
    assert torch.count_nonzero(b["rhythm.proj.weight"]) == 0 and torch.count_nonzero(a["rhythm.proj.weight"]) > 0
    eye = torch.eye(a["rhythm.chain.0.weight"].shape[0])
    assert torch.equal(b["rhythm.chain.0.weight"], eye) and not torch.allclose(a["rhythm.chain.0.weight"], eye)
    bound = 1 / a["rhythm.chain.0.weight"].shape[1] ** 0.5  # PyTorch's default Linear init: U(-1/sqrt(in), ..)
    assert a["rhythm.chain.0.weight"].abs().max() <= bound


def test_musicongen_trains_the_first_self_attention_of_each_conditioned_block(full):
    m = _model(rhythm_style="musicongen")
    layers = m.config.rhythm.layers_per_block
    n_blocks = m.config.rhythm.conditioned_blocks(len(m.lm.transformer.layers))
    attn = {n for n, _ in m.named_parameters()
            if any(n.startswith(f"lm.transformer.layers.{j * layers}.self_attn.") for j in range(n_blocks))}
    assert attn
    base = set(full.trainable_state())
    chain = {n for n in base if n.startswith("rhythm.chain.")}
    assert chain and set(m.trainable_state()) == (base - chain) | attn
    m.set_stage(1)
    assert not any(p.requires_grad for n, p in m.named_parameters() if n in attn)  # stage 1: semantic only
    m.set_stage(2)
    assert all(p.requires_grad for n, p in m.named_parameters() if n in attn)
    mi = _model(rhythm_style="musicongen", init_technique=False)
    assert torch.count_nonzero(m.rhythm.proj.weight) == 0 and torch.count_nonzero(mi.rhythm.proj.weight) > 0


def test_global_rhythm_source_changes_only_which_signal_is_read(full):
    m = _model(rhythm_source="global")
    assert m.config.rhythm.source == "global" and full.config.rhythm.source == "all_tokens"
    assert set(m.trainable_state()) == set(full.trainable_state())
    assert _same(_values(m), _values(full), _values(m))


def test_one_stage_trains_both_modules_from_the_start_at_stage_one_lr():
    base = TrainRun(data=Path("x"), out=Path("y"), backbone="debug")
    one = replace(base, one_stage=True)
    assert one.stages == (2,)
    cfg = one.stage_config(2)
    assert cfg.stage == 2 and cfg.lr == base.stage_config(1).lr == 1e-4
    assert cfg.epochs == 2 * base.recipe.epochs  # as many updates as both stages together
    steps = replace(base, recipe=replace(base.recipe, steps=10), one_stage=True)
    assert steps.stage_config(2).steps == 20


@pytest.mark.parametrize(("switches", "says"), [
    ({"rhythm": False, "rhythm_source": "global", "stages": (1,)}, "drop --rhythm-source global"),
    ({"rhythm": False, "rhythm_style": "musicongen", "stages": (1,)}, "drop --rhythm-style musicongen"),
    ({"rhythm": False, "init_technique": False, "stages": (1,)}, "drop --no-init-technique"),
    ({"rhythm": False, "one_stage": True}, "drop --one-stage"),
    ({"rhythm": False}, "pass --stage 1"),
    ({"one_stage": True, "stages": (1,)}, "drop --stage"),
    ({"one_stage": True, "lr2": 1e-5}, "--stage1-lr"),
])
def test_nonsense_combinations_are_refused_with_what_to_pass(switches, says):
    with pytest.raises(AblationError, match=says):
        TrainRun(data=Path("x"), out=Path("y"), **switches)


def test_rows_are_the_papers_table_and_unknown_names_are_refused():
    assert TABLE2 == ("no-t5", "no-rcm", "no-it", "one-stage", "at", "musicongen-no-it", "musicongen", "full")
    assert ROWS["full"].switches == Switches() and ROWS["full"].stages == (1, 2)
    assert ROWS["no-rcm"].stages == (1,) and ROWS["one-stage"].stages == (2,) and ROWS["backbone"].stages == ()
    assert ROWS["no-it"].switches.columns() == {"From T5": True, "RCM": True, "IT": False, "TS": True, "AT": True,
                                                 "RM": True}
    assert parse_rows("full, no-rcm,full") == ("full", "no-rcm")
    with pytest.raises(AblationError, match="choose from no-t5"):
        parse_rows("full,no-such-row")


def test_an_unconditional_model_ignores_the_video(full):
    from model.config import VidMusicianConfig

    cfg = replace(VidMusicianConfig.debug(clip_dim=D, enabled=False), unconditional=True)
    m = VidMusician.from_config(cfg, seed=0).eval()
    with torch.no_grad():
        for p in m.semantic.parameters():  # weights away from init: a conditioned model would now differ
            p.add_(0.1 * torch.randn_like(p))
    codes = torch.randint(0, 2048, (2, 4, 20))
    g1, g2 = torch.randn(2, 1, D), torch.randn(2, 1, D)
    with torch.no_grad():
        out = m(g1, None, codes)
        a, b = out.logits[out.mask], m(g2, None, codes).logits[out.mask]  # valid positions (the rest are NaN)
        null_cond = {"description": m.semantic(m.semantic.tokenize(g1, torch.zeros(2, dtype=torch.bool)))}
        null = m.lm.compute_predictions(codes, [], condition_tensors=null_cond).logits[out.mask]  # CFG's null half
    assert torch.equal(a, b) and torch.equal(a, null)
    with pytest.raises(ValueError, match="no rhythm module"):
        replace(cfg, rhythm=replace(cfg.rhythm, enabled=True))
