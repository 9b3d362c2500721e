"""Tiny random MAMBO bundles for tests (real ones are trained by `mammosynth-train` into Resources/models)."""
from __future__ import annotations

from pathlib import Path

from MammoSynthLogic.bundles import MAMBO_ROLES, save_bundle


def tiny_unet(in_channels: int, size: int = 32, seed: int = 0):
    """A ~20k-parameter UNet2DModel with MAMBO's channel layout (in_channels in, 1 out)."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=in_channels, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


def ddpm_scheduler():
    """MAMBO's schedule: T = 1000, linear betas 1e-4 .. 0.02."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def make_tiny_bundle(folder: Path, role: str, size: int = 32, k: int = 3, seed: int = 0,
                     aligned: bool = False) -> Path:
    """Save one tiny random bundle of `role` into `folder` (`aligned`: local/patch take the 4th context channel)."""
    aligned = aligned and role != "mambo-global"
    cin = 1 if role == "mambo-global" else 3 + aligned
    manifest = {"role": role, "k": k, "version": "test", "step": 0, "aligned_context": aligned,
                "conditioning": "random test weights", "training_data": "none (random weights)",
                "config": {"tiny": True}}
    return save_bundle(folder, tiny_unet(cin, size, seed), ddpm_scheduler(), manifest)


def make_tiny_mambo_set(root: Path, size: int = 32, k: int = 3, aligned: bool = False) -> Path:
    """A folder holding mambo-global, mambo-local and mambo-patch tiny bundles; returns the folder."""
    for i, role in enumerate(MAMBO_ROLES):
        make_tiny_bundle(Path(root) / role, role, size=size, k=k, seed=i, aligned=aligned)
    return Path(root)


def tiny_dualview_bundle(folder: Path, size: int = 64, seed: int = 0) -> Path:
    """A random 3-in/3-out UNet2DModel saved as a dualview bundle."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8)
    manifest = {"role": "dualview", "version": "test", "step": 0, "training_data": "none (random weights)",
                "config": {"data": {"blue_channel": "diff"}}}
    return save_bundle(folder, unet, ddpm_scheduler(), manifest)
