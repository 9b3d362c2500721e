"""Sampling behaviour the mutation runs of `sampling` found unchecked: the recorded seeds' derivation, per-tile noise,
the canvas scheduler's kind, custom timesteps, progress, and what reaches the scheduler's step."""
from __future__ import annotations

import torch

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
