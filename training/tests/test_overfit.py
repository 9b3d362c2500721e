"""The loss on one fixed batch falls by a large factor: the model, the loss and the optimiser are wired right."""
from __future__ import annotations

import torch
from training_helpers import tiny_config

from mammosynth_training.datasets import MamboDataset
from mammosynth_training.fit import diffusion_loss, noisy_input
from mammosynth_training.models import build_noise_scheduler, build_unet


def test_noise_goes_on_channel_0_only(tmp_path, disc_cache):
    config = tiny_config(tmp_path, disc_cache, role="mambo-patch")
    ds = MamboDataset(disc_cache, config.role, 16, 2)
    x0 = torch.stack([ds[i]["pixel_values"] for i in range(4)])
    alphas = build_noise_scheduler(config).alphas_cumprod
    noise = torch.randn_like(x0[:, :1])
    t = torch.tensor([0, 300, 700, 999])
    noisy = noisy_input(x0, alphas, noise, t)
    assert torch.equal(noisy[:, 1:], x0[:, 1:])  # context channels clean at every t
    expected = alphas[t].sqrt().view(-1, 1, 1, 1) * x0[:, :1] + (1 - alphas[t]).sqrt().view(-1, 1, 1, 1) * noise
    torch.testing.assert_close(noisy[:, :1], expected)
    assert alphas[-1] < 1e-4 and alphas[0] > 0.999  # linear 1e-4..0.02, T=1000


def test_overfit_fixed_batch(tmp_path, disc_cache):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = tiny_config(tmp_path, disc_cache, role="mambo-patch")
    ds = MamboDataset(disc_cache, config.role, config.image_size, config.k)
    x0 = torch.stack([ds[i]["pixel_values"] for i in range(4)])
    model = build_unet(config)
    alphas = build_noise_scheduler(config).alphas_cumprod
    noise = torch.randn_like(x0[:, :1])
    t = torch.tensor([50, 250, 500, 900])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = diffusion_loss(model, x0, alphas, noise, t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.3
    assert min(losses[-10:]) < losses[0] / 20, (losses[0], losses[-10:])
