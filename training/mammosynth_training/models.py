"""The U-Net and noise schedule a config describes (diffusers classes, so published weights load the same way)."""
from __future__ import annotations

from pathlib import Path

import torch
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


def load_base_unet(ref: str) -> UNet2DModel:
    """UNet2DModel from a bundle folder (its unet/), a diffusers UNet or pipeline folder, or a hub id; safetensors."""
    path = Path(ref).expanduser()
    if (path / "unet" / "config.json").is_file():
        path = path / "unet"
    if path.exists():
        return UNet2DModel.from_pretrained(path, use_safetensors=True)
    try:  # hub id: google/ddpm-celebahq-256 keeps the U-Net at the repository root
        return UNet2DModel.from_pretrained(ref, use_safetensors=True)
    except OSError:
        return UNet2DModel.from_pretrained(ref, subfolder="unet", use_safetensors=True)


@torch.no_grad()
def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Start `target` from `source`: equal-shaped tensors are copied; where `target` has more input or output
    channels (e.g. an added context channel) the source fills the first ones and the new ones start at zero,
    so the widened model computes exactly what the source did. Any other shape difference is an error."""
    src = source.state_dict()
    for name, param in target.state_dict().items():
        if name not in src:
            raise ValueError(f"init_from: the source model has no {name}; use a model of the same layout")
        value = src[name]
        if value.shape == param.shape:
            param.copy_(value)
        elif value.dim() == param.dim() and all(a <= b for a, b in zip(value.shape, param.shape)) \
                and sum(a != b for a, b in zip(value.shape, param.shape)) == 1:
            param.zero_()
            param[tuple(slice(0, n) for n in value.shape)] = value
        else:
            raise ValueError(f"init_from: {name} has shape {tuple(value.shape)} in the source, "
                             f"{tuple(param.shape)} here; use a model of the same layout")


@torch.no_grad()
def grey_to_rgb(unet: UNet2DModel) -> UNet2DModel:
    """A 1-channel U-Net as a 3-channel one, the usual inflation of pretrained weights: every input channel gets a
    third of the grey input filter (a grey image repeated in R, G and B gives exactly the grey model's features) and
    every output channel the grey output, so what it learnt about mammograms is the starting point."""
    rgb = UNet2DModel.from_config({**unet.config, "in_channels": 3, "out_channels": 3})
    state = unet.state_dict()
    state["conv_in.weight"] = state["conv_in.weight"].repeat(1, 3, 1, 1) / 3
    state["conv_out.weight"] = state["conv_out.weight"].repeat(3, 1, 1, 1)
    state["conv_out.bias"] = state["conv_out.bias"].repeat(3)
    rgb.load_state_dict(state)
    return rgb


def enable_memory_options(model: torch.nn.Module, config: TrainConfig) -> None:
    """Gradient checkpointing on every diffusers / transformers part of `model` that supports it (config switch)."""
    if not config.gradient_checkpointing:
        return
    for module in model.modules():
        if getattr(module, "_supports_gradient_checkpointing", False) \
                and hasattr(module, "enable_gradient_checkpointing"):  # diffusers models
            module.enable_gradient_checkpointing()
        elif getattr(module, "supports_gradient_checkpointing", False):  # transformers (the CLIP text encoder)
            module.gradient_checkpointing_enable()


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam / AdamW of the config on the trainable parameters; the 8-bit ones from bitsandbytes."""
    name = config.optimizer
    if name.endswith("8bit"):
        try:
            import bitsandbytes
        except ImportError:
            raise ValueError(f"optimizer {name} needs bitsandbytes>=0.50, which runs it on CPU and CUDA "
                             f"(pip install -e './training[adam8bit]'); or set optimizer: {name[:-4]}") from None
        cls = bitsandbytes.optim.AdamW8bit if name == "adamw8bit" else bitsandbytes.optim.Adam8bit
    else:
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
               betas=(config.adam_beta1, config.adam_beta2), weight_decay=config.adam_weight_decay)
