"""The U-Net and noise schedule a config describes (diffusers classes, so published weights load the same way)."""
from __future__ import annotations

from diffusers import DDPMScheduler, UNet2DModel

from .config import TrainConfig


def build_unet(config: TrainConfig) -> UNet2DModel:
    """UNet2DModel with in = out = config.in_channels (MAMBO: output as many channels as input)."""
    m = config.model
    return UNet2DModel(
        sample_size=config.image_size,
        in_channels=config.in_channels,
        out_channels=config.in_channels,
        layers_per_block=m.layers_per_block,
        block_out_channels=tuple(m.block_out_channels),
        down_block_types=tuple(m.down_block_types),
        up_block_types=tuple(m.up_block_types),
        norm_num_groups=m.norm_num_groups,
        attention_head_dim=m.attention_head_dim,
    )


def build_noise_scheduler(config: TrainConfig) -> DDPMScheduler:
    """DDPM schedule of the config; clip_sample off so DDIM/DPM-Solver built from its config denoise."""
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_start=config.beta_start,
                         beta_end=config.beta_end, beta_schedule=config.beta_schedule,
                         prediction_type="epsilon", clip_sample=False)
