"""Dual-view pipeline: the behaviour that mutation testing (scripts/mutation.sh pipelines/dualview) found unchecked —
the presets and their error messages, the bundle checks, the blue-channel lookup, DDPM's x0 clipping, the re-noising
ratio, the exact noise chain of generation, completion and RePaint (which generator, which key, eta, how many passes,
re-noised from which timestep), progress, and the seeds handed to the MAMBO stages — each with a known answer."""
from __future__ import annotations

import contextlib
import hashlib
import math
import re

import numpy as np
import pytest
import torch

from MammoSynthLogic import dualview
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines import dualview as pipeline
from MammoSynthLogic.pipelines.dualview import (DualViewPipeline, DualViewSettings, blue_mode, make_dualview_scheduler,
                                                renoise_back, upscale_views)
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sampling import generators
from oracles import asymmetric_breast, image, oracle_bundle, recording_reporter
from tiny_bundles import ddpm_scheduler

torch.set_num_threads(1)
S = 16  # small: every chain below is 4 DDIM steps of a 3 × 16 × 16 sample
ACP = ddpm_scheduler().alphas_cumprod.double()
CONFIG = dict(ddpm_scheduler().config)
CC = asymmetric_breast(S, S)
MLO = np.ascontiguousarray(asymmetric_breast(S, S)[::-1] * 0.8)
X0 = torch.from_numpy(dualview.to_model(dualview.encode(CC, MLO))).double()  # the pair the oracle knows, model space


def pair_bundle(**manifest):
    """A dual-view oracle that knows the clean pair (CC, MLO, |CC − MLO|) in model space."""
    return oracle_bundle("dualview", S, image(X0.float()), in_channels=3, out_channels=3, **manifest)


# ------------------------------------------------------------------ settings


def test_the_paper_preset_is_ddpm_with_all_thousand_steps_and_eta_one():
    assert DualViewSettings.preset("paper") == DualViewSettings(name="paper", sampler="ddpm", steps=1000, eta=1.0,
                                                                resample=1)
    assert DualViewSettings.preset("paper", steps=None, resample=2) == DualViewSettings(
        name="paper", sampler="ddpm", steps=1000, eta=1.0, resample=2)  # None: keep the preset's value


@pytest.mark.parametrize("name,overrides,what,why", [
    ("slow", {}, "--preset slow", "choose fast or paper"),
    ("fast", {"sampler": "euler"}, "--sampler euler", "choose one of ddpm, ddim, dpm++, sde-dpm++"),
    ("fast", {"resample": 0}, "--resample 0", "must be 1 (no resampling) or more"),
    ("fast", {"resample": 2}, "--resample 2", "resampling jumps redo a step, which multistep solvers cannot; use "
                                              "--sampler ddpm or ddim"),
    ("paper", {"sampler": "dpm++", "resample": 3}, "--resample 3", "resampling jumps redo a step, which multistep "
                                                                   "solvers cannot; use --sampler ddpm or ddim"),
])
def test_preset_errors_name_the_option_and_the_remedy(name, overrides, what, why):
    """Each refusal says which option and value is wrong and what to choose instead (resample 2 with the default
    multistep solver is already refused)."""
    with pytest.raises(MammoSynthError) as caught:
        DualViewSettings.preset(name, **overrides)
    assert (caught.value.what, caught.value.why) == (what, why)


# ------------------------------------------------------------------ bundle checks


def test_a_bundle_of_another_role_is_refused_by_its_path():
    bundle = oracle_bundle("mambo-global", S, image(X0[:1].float()))
    with pytest.raises(MammoSynthError) as caught:
        DualViewPipeline(bundle)
    assert caught.value.what == "<oracle mambo-global>"
    assert caught.value.why == "expected a dualview bundle, found role 'mambo-global'"


@pytest.mark.parametrize("cin,cout", [(3, 1), (1, 3), (4, 3)])
def test_a_dualview_bundle_needs_three_channels_in_and_out(cin, cout):
    """One wrong channel count is enough to refuse the bundle."""
    bundle = oracle_bundle("dualview", S, image(X0.float()), in_channels=cin, out_channels=cout)
    with pytest.raises(MammoSynthError) as caught:
        DualViewPipeline(bundle)
    assert caught.value.what == "<oracle dualview>"
    assert caught.value.why == "a dual-view model takes 3 channels in and gives 3 out"


def test_the_blue_mode_is_read_from_the_training_config_when_not_at_the_top():
    """manifest config.data.blue_channel is the training run's setting; a top-level key wins; unknown → diff."""
    assert blue_mode(pair_bundle(config={"data": {"blue_channel": "sum"}})) == "sum"
    assert blue_mode(pair_bundle(config={"data": {"blue_channel": "zero"}})) == "zero"
    assert blue_mode(pair_bundle(blue_channel="zero", config={"data": {"blue_channel": "sum"}})) == "zero"
    assert blue_mode(pair_bundle(config={"data": {"blue_channel": "product"}})) == "diff"
    assert blue_mode(pair_bundle()) == "diff"


def test_generation_uses_the_blue_mode_of_the_training_config():
    settings = DualViewSettings.preset("fast", sampler="ddim", steps=4)
    result = DualViewPipeline(pair_bundle(config={"data": {"blue_channel": "sum"}}))(seed=0, settings=settings)
    np.testing.assert_allclose(result.rgb[2], (result.rgb[0] + result.rgb[1]) / 2, atol=1e-6)  # float32 rounding


# ------------------------------------------------------------------ schedulers


def step_to_clean(kind: str, x0: torch.Tensor) -> torch.Tensor:
    """The last step of a 4-step schedule of `kind` given the exact noise of x_t = √ᾱ·x0 + √(1 − ᾱ)·ε: x0, as far
    as the scheduler lets it through."""
    config = {**CONFIG, "clip_sample": False, "clip_sample_range": 4.0}  # a bundle that asks for no clipping
    scheduler = make_dualview_scheduler(kind, config)
    scheduler.set_timesteps(4)
    t = int(scheduler.timesteps[-1])
    eps = torch.linspace(-1, 1, x0.numel()).reshape(x0.shape)
    a = scheduler.alphas_cumprod[t]
    return scheduler.step(eps, t, a.sqrt() * x0 + (1 - a).sqrt() * eps).prev_sample


def test_ddpm_clips_its_clean_estimate_to_the_model_range_whatever_the_bundle_says():
    x0 = torch.tensor([[[[1.5, -2.5, 0.25, -0.5]]]])
    # 1e-5: float32 rounding of x0 recovered from x_t (√ᾱ ≈ 1 at DDPM's last timestep, 0)
    torch.testing.assert_close(step_to_clean("ddpm", x0), torch.tensor([[[[1.0, -1.0, 0.25, -0.5]]]]), atol=1e-5,
                               rtol=0)
    # DDIM (the other stateless sampler) is left as sampling.make_scheduler builds it: unclipped; √ᾱ = 0.52 at t 249
    torch.testing.assert_close(step_to_clean("ddim", x0), x0, atol=1e-5, rtol=0)


@pytest.mark.parametrize("t,t_prev,ratio", [(600, 400, ACP[600] / ACP[400]), (1, 0, ACP[1] / ACP[0]),
                                             (300, -1, ACP[300])])
def test_renoising_diffuses_from_t_prev_to_t(t, t_prev, ratio):
    """q(x_t | x_t_prev) = N(√(ᾱ_t / ᾱ_t_prev)·x, 1 − ᾱ_t / ᾱ_t_prev); t_prev = −1 is the clean image (ᾱ = 1)."""
    scheduler = make_dualview_scheduler("ddpm", CONFIG)
    x = torch.tensor([0.5, -0.25, 1.0])
    noise = torch.tensor([1.0, 0.5, -2.0])
    expected = ratio.sqrt() * x.double() + (1 - ratio).sqrt() * noise.double()
    # 5e-5: float32 cancellation in 1 − ratio near t = 0 (ratio 0.99988, √ of an error of ~1e-7 / 0.011)
    torch.testing.assert_close(renoise_back(scheduler, x, t, t_prev, noise).double(), expected, atol=5e-5, rtol=0)


# ------------------------------------------------------------------ the noise chain, step by step

TIMESTEPS = [999, 749, 499, 249]  # DDIM, 4 steps, trailing spacing (sampling.make_scheduler)
ATOL = 1e-4  # float32 chain vs the float64 formulas below (measured 1.3e-6); a mutant moves values by > 1e-2


def ddim_step(inp: torch.Tensor, t: int, eta: float, g: torch.Generator) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) from `inp` at t, with the oracle's exact ε = (x_t − √ᾱ·x0) / √(1 − ᾱ):
    x_prev = √ᾱ'·x0 + √(1 − ᾱ' − σ²)·ε + σ·z, σ = η·√((1 − ᾱ')/(1 − ᾱ)·(1 − ᾱ/ᾱ')), z drawn from `g` if η > 0."""
    a = ACP[t]
    a_prev = ACP[t - 250] if t >= 250 else torch.tensor(1.0, dtype=torch.float64)
    eps = (inp - a.sqrt() * X0) / (1 - a).sqrt()
    sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
    x = a_prev.sqrt() * X0 + (1 - a_prev - sigma ** 2).sqrt() * eps
    if eta > 0:
        x = x + sigma * torch.randn((1, 3, S, S), generator=g).double()[0]
    return x


def check_chain(calls, g: torch.Generator, eta: float, resample: int = 1, known=None, which=None):
    """The U-Net's inputs are the DDIM chain from x_T (the first draw of `g`), with `resample` passes per timestep
    and, between passes, re-noising from the next timestep back to this one (RePaint, jump length 1); the known
    channel is the real view noised to t with the next draw, before every pass. Each transition is checked from
    the recorded input before it, and in the end `g` must have given exactly the draws the chain needs."""
    assert [t for _, t in calls] == [t for t in TIMESTEPS for _ in range(resample)]
    free = [c for c in range(3) if which is None or c != dualview.CHANNEL[which]]
    x = torch.randn((1, 3, S, S), generator=g).double()[0]
    for k, (inp, t) in enumerate(calls):
        inp = inp[0].double()
        if known is not None:
            a = ACP[t]
            noised = a.sqrt() * known + (1 - a).sqrt() * torch.randn((1, 3, S, S), generator=g).double()[0]
            torch.testing.assert_close(inp[dualview.CHANNEL[which]], noised[dualview.CHANNEL[which]], atol=ATOL,
                                       rtol=0)
        torch.testing.assert_close(inp[free], x[free], atol=ATOL, rtol=0)
        x = ddim_step(inp, t, eta, g)
        if (k + 1) % resample:  # another pass at t: back from t_prev to t
            i = TIMESTEPS.index(t)
            ratio = ACP[t] / (ACP[TIMESTEPS[i + 1]] if i + 1 < len(TIMESTEPS) else 1.0)
            x = ratio.sqrt() * x + (1 - ratio).sqrt() * torch.randn((1, 3, S, S), generator=g).double()[0]
    # nothing else was drawn from the pipeline's generator (a draw more or less shifts every later one)
    probe = torch.randn(8, generator=g)
    return x, probe


def test_generation_follows_the_ddim_chain_from_its_own_seeded_noise():
    """x_T is drawn from the generator keyed ("dualview",) of the seed, and eta = 1 reaches the scheduler: each
    step draws fresh noise from that generator; the U-Net sees one (1, 3, s, s) sample per step."""
    bundle = pair_bundle()
    log, reporter = recording_reporter()
    settings = DualViewSettings.preset("fast", sampler="ddim", steps=4, eta=1.0)
    result = DualViewPipeline(bundle)(seed=11, settings=settings, reporter=reporter)
    check_chain(bundle.unet.calls, generators(11, [("dualview",)])[0], eta=1.0)
    assert log == [("dual-view pair", i, 4) for i in range(1, 5)]
    assert result.seed == 11 and result.known is None and result.settings is settings
    np.testing.assert_allclose(result.rgb[0], CC, atol=1e-4)  # the chain ends on x0 (ᾱ' = 1 at its last step)


@pytest.mark.parametrize("which,resample,eta", [("CC", 1, 1.0), ("MLO", 1, 1.0), ("CC", 2, 0.0), ("MLO", 2, 1.0),
                                                ("CC", 3, 1.0)])
def test_completion_follows_the_repaint_chain_from_its_own_seeded_noise(which, resample, eta):
    """Completion draws from the generator keyed ("dualview-complete", which): x_T, then per pass the known view's
    noise, DDIM's own noise (eta reaches the scheduler, with and without resampling) and the re-noising noise;
    the real view's channel is the real view at the end, exactly."""
    bundle = pair_bundle()
    view = CC if which == "CC" else MLO
    known = torch.zeros(3, S, S, dtype=torch.float64)
    known[dualview.CHANNEL[which]] = torch.from_numpy(dualview.to_model(view)).double()
    settings = DualViewSettings.preset("fast", sampler="ddim", steps=4, eta=eta, resample=resample)
    result = DualViewPipeline(bundle).complete(view, which, seed=5, settings=settings)
    g = generators(5, [("dualview-complete", which)])[0]
    check_chain(bundle.unet.calls, g, eta=eta, resample=resample, known=known, which=which)
    np.testing.assert_array_equal(result.rgb[dualview.CHANNEL[which]], view)
    other = MLO if which == "CC" else CC
    np.testing.assert_allclose(result.rgb[1 - dualview.CHANNEL[which]], other, atol=1e-4)  # ends on the oracle's x0
    assert result.seed == 5 and result.known == which and result.settings is settings


def test_the_generator_draws_are_counted_exactly():
    """The check above would not notice a missing or extra draw at the very end: the pipeline's generator must be,
    after completion, where the chain's draws leave a replay of it (probed by its next numbers)."""
    for resample, eta in ((1, 1.0), (2, 0.0), (2, 1.0)):
        bundle = pair_bundle()
        settings = DualViewSettings.preset("fast", sampler="ddim", steps=4, eta=eta, resample=resample)
        used = []
        real_generators = generators

        def spy(seed, keys):
            gens = real_generators(seed, keys)
            used.extend(gens)
            return gens

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(pipeline, "generators", spy)
            DualViewPipeline(bundle).complete(CC, "CC", seed=5, settings=settings)
        known = torch.zeros(3, S, S, dtype=torch.float64)
        known[0] = torch.from_numpy(dualview.to_model(CC)).double()
        _, probe = check_chain(bundle.unet.calls, generators(5, [("dualview-complete", "CC")])[0], eta=eta,
                               resample=resample, known=known, which="CC")
        assert torch.equal(torch.randn(8, generator=used[0]), probe), (resample, eta)  # same generator, same draws


# ------------------------------------------------------------------ completion: checks, progress, blue


def test_completion_refuses_a_view_that_is_neither_cc_nor_mlo_and_a_view_of_the_wrong_size():
    pipe = DualViewPipeline(pair_bundle())
    with pytest.raises(MammoSynthError) as caught:
        pipe.complete(CC, "LMLO", seed=0, settings=DualViewSettings.preset("fast"))
    assert (caught.value.what, caught.value.why) == ("view 'LMLO'", "the known view must be CC or MLO")
    with pytest.raises(ValueError, match=re.escape("the known view must be 16×16 (the model size), got (8, 8)")):
        pipe.complete(CC[:8, :8], "CC", seed=0, settings=DualViewSettings.preset("fast"))


@pytest.mark.parametrize("which,resample,stage", [("CC", 1, "completing the MLO"), ("MLO", 1, "completing the CC"),
                                                  ("CC", 2, "completing the MLO"), ("MLO", 3, "completing the CC")])
def test_completion_reports_the_view_it_completes_once_per_timestep(which, resample, stage):
    """Progress names the missing view and counts timesteps (not passes), with and without resampling."""
    log, reporter = recording_reporter()
    settings = DualViewSettings.preset("fast", sampler="ddpm", steps=4, resample=resample)
    DualViewPipeline(pair_bundle()).complete(CC, which, seed=0, settings=settings, reporter=reporter)
    assert log == [(stage, i, 4) for i in range(1, 5)]


def test_completion_keeps_the_bundles_blue_encoding():
    settings = DualViewSettings.preset("fast", sampler="ddim", steps=4)
    result = DualViewPipeline(pair_bundle(blue_channel="sum")).complete(CC, "CC", seed=0, settings=settings)
    np.testing.assert_allclose(result.rgb[2], (result.rgb[0] + result.rgb[1]) / 2, atol=1e-6)  # float32 rounding
    np.testing.assert_allclose(result.rgb[2], (CC + MLO) / 2, atol=1e-4)


def test_predict_runs_under_the_pipelines_device_autocast(monkeypatch):
    """Mixed precision is chosen for the pipeline's device (a no-op on the CPU, bf16/fp16 on GPUs)."""
    devices = []

    def spy(device):
        devices.append(device)
        return contextlib.nullcontext()

    monkeypatch.setattr(pipeline, "autocast", spy)
    bundle = pair_bundle()
    x = torch.zeros(1, 3, S, S)
    eps = DualViewPipeline(bundle, device="cpu").predict(x, 500)
    a = ACP[500]
    torch.testing.assert_close(eps.double(), (-a.sqrt() * X0 / (1 - a).sqrt())[None], atol=1e-6, rtol=0)
    assert devices == ["cpu"]


# ------------------------------------------------------------------ MAMBO upscaling


def test_each_view_is_upscaled_with_its_own_derived_seed_and_the_callers_reporter():
    """The seed of view v is sha256("<seed>/upscale/<v>")'s first 8 bytes, little-endian, 63 bits
    (sampling.derive_seed): CC and MLO get different, reproducible noise."""
    calls = []

    class Recorder:
        def upscale(self, context, seed, settings, reporter):
            calls.append((seed, settings, reporter))
            return type("Result", (), {"image": context})()

    reporter, settings = Reporter(), object()
    views = {"CC": CC, "MLO": MLO}
    out = upscale_views(views, S, Recorder(), 7, settings, reporter)
    assert list(out) == ["CC", "MLO"]

    def seed_of(view):
        return int.from_bytes(hashlib.sha256(f"7/upscale/{view}".encode()).digest()[:8], "little") & (2 ** 63 - 1)

    assert [c[0] for c in calls] == [seed_of("CC"), seed_of("MLO")]
    assert all(c[1] is settings and c[2] is reporter for c in calls)
    assert math.prod(out["CC"].shape) == S * S
