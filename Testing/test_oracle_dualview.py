"""Dual-view pipeline against stand-in denoisers with known answers: generation returns the clean pair the oracle
knows, completion samples the other view from an exact joint posterior, and the command writes each view the
right way round for its laterality."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dicom_factory import mammogram_dataset, save
from MammoSynthLogic import dualview
from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import read_mammogram
from MammoSynthLogic.pipelines.dualview import DualViewPipeline, DualViewSettings
from oracles import asymmetric_breast, image, oracle_bundle
from tiny_bundles import ddpm_scheduler

torch.set_num_threads(1)
S = 64  # the smallest side the reader accepts, so written views can be read back
ACP = ddpm_scheduler().alphas_cumprod
CC = asymmetric_breast(S, S)
MLO = np.ascontiguousarray(asymmetric_breast(S, S)[::-1] * 0.8)  # the other view: blob low, dimmer


def pair_oracle(blue: str = "diff"):
    """A dual-view model that knows one clean pair (model space, blue channel consistent with `blue`)."""
    rgb = dualview.encode(CC, MLO, blue)
    return oracle_bundle("dualview", S, image(torch.from_numpy(dualview.to_model(rgb))), in_channels=3,
                         out_channels=3, blue_channel=blue)


def joint_gaussian(rho: float = 1.0, mu: float = 0.0, sd: float = 0.6):
    """x̂0 = E[x0 | x_t], exact, for pairs whose pixels (CC, MLO) are i.i.d. 2-D Gaussian (mean mu, variance sd²,
    correlation `rho`; rho = 1: MLO = CC). The blue estimate is a constant: the pipeline recomputes that channel."""
    def clean(inp: torch.Tensor, t: int) -> torch.Tensor:
        a = ACP[t].double()
        x = inp[:, :2].double() - a.sqrt() * mu
        # Σ = sd²[[1, ρ], [ρ, 1]]; E[x0 | x_t] = mu + √ᾱ Σ (ᾱΣ + (1 − ᾱ) I)⁻¹ (x_t − √ᾱ mu)
        p, q = a * sd ** 2 + 1 - a, a * sd ** 2 * rho
        y0, y1 = (p * x[:, 0] - q * x[:, 1]) / (p * p - q * q), (p * x[:, 1] - q * x[:, 0]) / (p * p - q * q)
        c, m = (mu + a.sqrt() * sd ** 2 * (y0 + rho * y1)), (mu + a.sqrt() * sd ** 2 * (rho * y0 + y1))
        return torch.stack([c, m, torch.full_like(c, -1.0)], 1).float()

    return oracle_bundle("dualview", S, clean, in_channels=3, out_channels=3)


@pytest.mark.parametrize("sampler,steps", [("sde-dpm++", 25), ("dpm++", 25), ("ddim", 20), ("ddpm", 30)])
def test_generation_returns_the_pair_the_model_knows(sampler, steps):
    """R = CC, G = MLO, B = |CC − MLO|, mapped from [-1, 1] to [0, 1], unmirrored, whatever the sampler."""
    result = DualViewPipeline(pair_oracle())(seed=3, settings=DualViewSettings.preset("fast", sampler=sampler,
                                                                                      steps=steps))
    # 2e-3: float32 rounding of √ᾱ products over the chain (the clean pair comes back exactly in exact arithmetic)
    np.testing.assert_allclose(result.rgb[0], CC, atol=2e-3)
    np.testing.assert_allclose(result.rgb[1], MLO, atol=2e-3)
    np.testing.assert_allclose(result.rgb[2], np.abs(CC - MLO), atol=4e-3)


def test_generation_keeps_the_bundles_blue_encoding():
    result = DualViewPipeline(pair_oracle("sum"))(seed=1, settings=DualViewSettings.preset("fast", steps=10))
    np.testing.assert_allclose(result.rgb[2], (result.rgb[0] + result.rgb[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(result.rgb[2], (CC + MLO) / 2, atol=2e-3)


@pytest.mark.parametrize("known_view", ["CC", "MLO"])
def test_completion_samples_the_other_view_from_the_joint_posterior(known_view):
    """With MLO = CC in the data, the completed view must be the known one; RePaint's resampling (3 passes per
    step) harmonises better than plain replacement, as Lugmayr et al. report."""
    pipe = DualViewPipeline(joint_gaussian())
    other = dualview.CHANNEL["MLO" if known_view == "CC" else "CC"]
    errors = {}
    for resample in (1, 3):
        settings = DualViewSettings.preset("fast", sampler="ddpm", steps=50, resample=resample)
        result = pipe.complete(CC, known_view, seed=0, settings=settings)
        np.testing.assert_array_equal(result.rgb[dualview.CHANNEL[known_view]], CC)  # the real view, untouched
        errors[resample] = float(np.abs(result.rgb[other] - CC).mean())
    # measured 0.029 and 0.004; a view sampled without the known one would be ~0.3 off (the prior's spread)
    assert errors[1] < 0.06 and errors[3] < 0.015 and errors[3] < errors[1] / 2, errors


def test_resampled_completion_has_the_conditional_spread():
    """ρ = 0.8: given the real CC, each MLO pixel is N(ρ·cc, (1 − ρ²)·sd²) (model space, mu = 0). Re-noising
    between resampling passes keeps that spread; stepping twice from the same level without it shrinks it."""
    rho, sd = 0.8, 0.5
    known = dualview.from_model(np.random.default_rng(0).normal(0, sd, (S, S)).astype(np.float32))
    settings = DualViewSettings.preset("fast", sampler="ddpm", steps=50, resample=3)
    result = DualViewPipeline(joint_gaussian(rho, sd=sd)).complete(known, "CC", seed=0, settings=settings)
    residual = dualview.to_model(result.rgb[1]) - rho * dualview.to_model(known)
    # measured mean 0.003, std 0.268 (RePaint's replacement is not an exact conditional sampler; want 0.300);
    # without the re-noising the std falls to 0.18
    assert abs(float(residual.mean())) < 0.03 and 0.24 < float(residual.std()) < 0.34


def test_completion_with_the_default_solver_follows_the_known_view():
    result = DualViewPipeline(joint_gaussian()).complete(CC, "CC", seed=0, settings=DualViewSettings.preset("fast"))
    assert np.corrcoef(result.rgb[1].ravel(), CC.ravel())[0, 1] > 0.9  # measured 0.956


@pytest.fixture
def oracle_models(monkeypatch):
    """`load_bundle` hands the command the pair oracle, whatever --model says."""
    import MammoSynthLogic.bundles

    monkeypatch.setattr(MammoSynthLogic.bundles, "load_bundle", lambda ref, device="cpu", verify=True: pair_oracle())


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_command_writes_each_view_the_right_way_round(oracle_models, tmp_path, laterality):
    out = tmp_path / laterality
    assert main(["dualview", "--model", "oracle", "--out", str(out), "--seed", "2", "--preset", "fast", "--steps",
                 "10", "--laterality", laterality, "--quiet", "--device", "cpu", "--size", str(S)]) == 0
    for view, truth in (("CC", CC), ("MLO", MLO)):
        written = read_mammogram(out / f"{view}.dcm")
        expected = dualview.clip_percentiles(truth)  # the papers' post-processing of each view
        expected = expected[:, ::-1] if laterality == "R" else expected
        assert (written.laterality, written.view) == (laterality, view)
        assert np.abs(written.pixels - expected).mean() < 0.01  # the mirror image is ~0.3 away


def test_completing_a_right_breast_gives_a_right_breast(monkeypatch, tmp_path):
    """A real right CC (chest wall on the right) → the MLO written for it has its chest wall on the right too."""
    import MammoSynthLogic.bundles

    monkeypatch.setattr(MammoSynthLogic.bundles, "load_bundle", lambda ref, device="cpu", verify=True:
                        joint_gaussian())
    right = asymmetric_breast(4 * S, 4 * S, side="right")
    real = save(mammogram_dataset((right * 65535).astype(np.uint16), ImageLaterality="R", ViewPosition="CC"),
                tmp_path / "rcc.dcm")
    out = tmp_path / "out"
    assert main(["dualview", "--complete", str(real), "--model", "oracle", "--out", str(out), "--seed", "1",
                 "--sampler", "ddpm", "--steps", "50", "--resample", "3", "--quiet", "--device", "cpu"]) == 0
    mlo = read_mammogram(out / "MLO.dcm")
    expected = dualview.clip_percentiles(dualview.encode_view(right, S).pixels)[:, ::-1]
    assert (mlo.laterality, mlo.view) == ("R", "MLO")
    assert np.abs(mlo.pixels - expected).mean() < 0.03 and np.abs(mlo.pixels - expected[:, ::-1]).mean() > 0.1
