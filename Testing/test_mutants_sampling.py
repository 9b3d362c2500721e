"""Sampling behaviour the mutation runs of `sampling` found unchecked: the recorded seeds' derivation, per-tile noise,
the canvas scheduler's kind, custom timesteps, progress, and what reaches the scheduler's step."""
from __future__ import annotations

import types

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

from MammoSynthLogic import sampling
from tiny_bundles import ddpm_scheduler

CONFIG = dict(ddpm_scheduler().config)


def test_derived_seeds_stay_what_recorded_images_were_made_with():
    """A recorded seed must reproduce its image in later versions: the derivation (sha256 of "seed/keys", 8 bytes
    little-endian, 63 bits) is pinned by two values computed when it was written."""
    assert sampling.derive_seed(0, "global") == 6815867348252238069
    assert sampling.derive_seed(7, "full", 3, 4) == 2822609769710910159
    assert all(0 <= sampling.derive_seed(s, "x") < 2 ** 63 for s in range(50))


def test_each_batch_element_draws_from_its_own_generator_on_the_asked_device():
    pair = sampling.randn((2, 1, 4, 4), sampling.generators(5, ["a", "b"]))
    alone = sampling.randn((1, 1, 4, 4), sampling.generators(5, ["b"]))
    assert torch.equal(pair[1], alone[0]) and not torch.equal(pair[0], pair[1])
    assert sampling.randn((1, 2), sampling.generators(0, ["a"]), device="meta").device.type == "meta"
    assert sampling.randn((2, 2), sampling.generators(0, ["a", "b"]), device="meta").device.type == "meta"


def test_the_canvas_scheduler_of_dpm_solver_is_the_in_place_one_not_bands():
    scheduler = sampling.canvas_scheduler("dpm++", CONFIG, 8, 8)
    assert type(scheduler).__name__ == "InPlaceDPMSolver" and not isinstance(scheduler, sampling.BandedScheduler)


def test_custom_timesteps_are_the_ones_the_model_is_asked_at_and_progress_counts_them():
    seen, progress = [], []

    def predict(x, t):
        seen.append(int(t))
        return torch.zeros_like(x)

    gens = sampling.generators(1, [0])
    sampling.sample(predict, sampling.make_scheduler("ddpm", CONFIG), torch.randn(1, 1, 4, 4), gens, 99,
                    timesteps=[500, 300, 100], on_step=lambda i, n: progress.append((i, n)))
    assert seen == [500, 300, 100] and progress == [(1, 3), (2, 3), (3, 3)]


def test_eta_and_the_generators_reach_the_schedulers_step():
    """DDIM with eta 1 draws noise from the given generators: the same result whatever the global RNG holds, and
    not the eta 0 result; strength 1 ignores a start image (pure noise, as without one)."""
    acp = sampling.make_scheduler("ddim", CONFIG).alphas_cumprod
    target = torch.linspace(-0.8, 0.8, 16).view(1, 1, 4, 4)

    def predict(x, t):
        a = acp[int(t)]
        return (x - a.sqrt() * target) / (1 - a).sqrt() * 0.9

    def run(eta, seed, **kwargs):
        torch.manual_seed(seed)
        gens = sampling.generators(3, [0])
        return sampling.sample(predict, sampling.make_scheduler("ddim", CONFIG),
                               sampling.randn((1, 1, 4, 4), gens), gens, 8, eta=eta, **kwargs)

    assert torch.equal(run(1.0, 0), run(1.0, 1))
    assert (run(1.0, 0) - run(0.0, 0)).abs().max() > 1e-3
    assert torch.equal(run(0.0, 0, start=torch.ones(1, 1, 4, 4), strength=1.0), run(0.0, 0))


def test_the_in_place_solver_runs_in_whole_row_bands_on_the_cpu_and_in_one_elsewhere():
    cpu = sampling.canvas_scheduler("dpm++", CONFIG, 4096, 4096)
    assert type(cpu.band_rows) is int and cpu.band_rows == 128  # 2 MB of rows; range() needs an int
    assert sampling.canvas_scheduler("dpm++", CONFIG, 4096, 4096, device="meta").band_rows == 4096


def test_banded_steps_refuse_a_thresholding_that_is_not_elementwise():
    base = {k: v for k, v in CONFIG.items() if not k.startswith("_")}

    def make(**overrides):
        return lambda: DPMSolverMultistepScheduler.from_config(base, **overrides)

    with pytest.raises(ValueError, match="^banded steps need an elementwise update: thresholding with "
                                         "sample_max_value > 1 is not$"):
        sampling.BandedScheduler(make(thresholding=True, sample_max_value=1.5), 8, 8)
    sampling.BandedScheduler(make(thresholding=True, sample_max_value=1.0), 8, 8)
    sampling.BandedScheduler(make(thresholding=False, sample_max_value=1.5), 8, 8)


def test_a_one_band_scheduler_reads_its_attributes_and_takes_keyword_timesteps():
    banded = sampling.BandedScheduler(lambda: sampling.make_scheduler("ddpm", CONFIG), 4, 4)
    assert len(banded.bands) == 1 and banded.config.num_train_timesteps == 1000
    banded.set_timesteps(timesteps=[900, 500, 100])
    assert banded.timesteps.tolist() == [900, 500, 100]


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_generators_and_eta_reach_every_band(kind):
    """Stochastic steps in bands draw from the given generators (the same result whatever the global RNG holds);
    DDIM's eta reaches each band's step (eta 1 differs from eta 0)."""
    target = torch.linspace(-0.8, 0.8, 64).view(1, 1, 8, 8)

    def run(eta, seed):
        torch.manual_seed(seed)
        banded = sampling.BandedScheduler(lambda: sampling.make_scheduler(kind, CONFIG), 8, 8, max_elements=16)
        gens = sampling.generators(3, [0])
        return sampling.sample(lambda x, t: x - target, banded, sampling.randn((1, 1, 8, 8), gens), gens, 6, eta=eta)

    assert torch.equal(run(1.0, 0), run(1.0, 1))
    if kind == "ddim":
        assert (run(1.0, 0) - run(0.0, 0)).abs().max() > 1e-3
        assert torch.equal(run(0.0, 0), sampling.sample(
            lambda x, t: x - target, sampling.BandedScheduler(lambda: sampling.make_scheduler(kind, CONFIG), 8, 8,
                                                              max_elements=16),
            sampling.randn((1, 1, 8, 8), sampling.generators(3, [0])), sampling.generators(3, [0]), 6)), \
            "eta 0 by default"


def test_the_unet_is_called_in_chunks_with_its_context_and_counted():
    """Five tiles in chunks of two: three calls, every tile once, its context channels beside it; without a context
    the tiles go in alone; only channel 0 of the output is the noise (a model may predict more)."""
    calls = []

    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            calls.append(x.clone())
            return types.SimpleNamespace(sample=torch.cat([x[:, -1:] * 2, x[:, :1] + 100], dim=1))

    x, context = torch.rand(5, 1, 4, 4), torch.rand(5, 2, 4, 4)
    counter = sampling.Counter()
    out = sampling.unet_predictor(Echo(), context, counter, chunk=2)(x, torch.tensor(10))
    assert [c.shape[0] for c in calls] == [2, 2, 1] and counter.forwards == 5 and counter.batches == 3
    assert torch.equal(torch.cat(calls), torch.cat([x, context], dim=1))
    assert out.shape == (5, 1, 4, 4) and torch.equal(out, context[:, -1:] * 2)
    calls.clear()
    alone = sampling.unet_predictor(Echo(), None, chunk=8)(x, torch.tensor(10))
    assert torch.equal(calls[0], x) and torch.equal(alone, x * 2)
