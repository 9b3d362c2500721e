"""MAM-E components: Stable Diffusion parts from a pretrained folder / hub id or built small from the config.

Trained modules are wrapped so that one `forward` runs everything that gets gradients (accelerate / DDP sync):
`TextUNet` (CLIP text encoder + conditional U-Net) for the text and inpainting roles, `KLAutoencoder` for the
VAE stage. Both save like diffusers models (`save_pretrained`), which the training loop uses for EMA weights.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from MammoSynthLogic.sd_bundles import UNET_IN_CHANNELS  # inpainting: noisy latents, mask, masked-image latents
from transformers import CLIPTextConfig, CLIPTextModel

from .config import TrainConfig


class TextUNet(torch.nn.Module):
    """Text encoder + U-Net trained together (+ their tokenizer); forward predicts the noise of `sample`."""

    def __init__(self, text_encoder: CLIPTextModel, unet: UNet2DConditionModel, tokenizer=None):
        super().__init__()
        self.text_encoder, self.unet, self.tokenizer = text_encoder, unet, tokenizer

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder(input_ids)[0]
        return self.unet(sample, timestep, encoder_hidden_states=hidden.to(sample.dtype)).sample

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True) -> None:
        """unet/, text_encoder/ and tokenizer/ under path, as in a diffusers pipeline folder."""
        self.unet.save_pretrained(Path(path) / "unet", safe_serialization=safe_serialization)
        self.text_encoder.save_pretrained(Path(path) / "text_encoder", safe_serialization=safe_serialization)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(Path(path) / "tokenizer")


class KLAutoencoder(torch.nn.Module):
    """AutoencoderKL whose forward returns (reconstruction, KL per sample) for the VAE stage."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.sample()).sample, posterior.kl()

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True) -> None:
        """The AutoencoderKL itself (config.json + safetensors) at path."""
        self.vae.save_pretrained(path, safe_serialization=safe_serialization)


def build_vae(config: TrainConfig) -> AutoencoderKL:
    """A small AutoencoderKL (3-channel images, scale factor 2**(levels - 1)) from config.sd."""
    sd = config.sd
    levels = len(sd.vae_block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=sd.latent_channels,
                         block_out_channels=tuple(sd.vae_block_out_channels),
                         down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                         layers_per_block=sd.vae_layers_per_block, norm_num_groups=config.model.norm_num_groups,
                         sample_size=config.image_size)


def load_vae(config: TrainConfig) -> AutoencoderKL:
    """The frozen VAE: sd.vae_from (the mame-vae export) or the `vae` of init_from."""
    ref = config.sd.vae_from or config.init_from
    if not ref:
        raise ValueError("a mame-text / mame-inpaint run needs init_from (Stable Diffusion) or sd.vae_from "
                         "(the folder a mame-vae run exported)")
    vae = (AutoencoderKL.from_pretrained(ref, use_safetensors=True) if (Path(ref) / "config.json").is_file()
           else AutoencoderKL.from_pretrained(ref, subfolder="vae", use_safetensors=True))
    return vae.requires_grad_(False).eval()


def build_text_encoder(config: TrainConfig, tokenizer) -> CLIPTextModel:
    """A small CLIP text encoder for a tokenizer learned from the captions."""
    sd = config.sd
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=sd.text_hidden_size, intermediate_size=4 * sd.text_hidden_size,
        num_hidden_layers=sd.text_layers, num_attention_heads=sd.text_heads, max_position_embeddings=sd.max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def build_cond_unet(config: TrainConfig, latent_size: int) -> UNet2DConditionModel:
    """A conditional U-Net with config.model's layout at the latent size (4 or 9 input channels by role)."""
    m, sd = config.model, config.sd
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=UNET_IN_CHANNELS[config.role], out_channels=sd.latent_channels,
        block_out_channels=tuple(m.block_out_channels), layers_per_block=m.layers_per_block,
        down_block_types=tuple(m.down_block_types), up_block_types=tuple(m.up_block_types),
        cross_attention_dim=sd.text_hidden_size, attention_head_dim=m.attention_head_dim,
        norm_num_groups=m.norm_num_groups)


def inpaint_unet_from(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """9-channel inpainting U-Net from a 4-channel one: same weights, zero weights for mask and masked latents."""
    if unet.config.in_channels == 9:
        return unet
    new = UNet2DConditionModel.from_config({**unet.config, "in_channels": 9})
    state = unet.state_dict()
    weight = torch.zeros_like(new.conv_in.weight)
    weight[:, :unet.config.in_channels] = state.pop("conv_in.weight")
    new.load_state_dict({**state, "conv_in.weight": weight})
    return new


def sd_noise_scheduler(config: TrainConfig) -> DDPMScheduler:
    """Training schedule of the config in Stable Diffusion's layout (steps_offset 1), shipped with the bundle."""
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_start=config.beta_start,
                         beta_end=config.beta_end, beta_schedule=config.beta_schedule, prediction_type="epsilon",
                         clip_sample=False, steps_offset=1)


def pretrained_parts(ref: str) -> tuple[CLIPTextModel, UNet2DConditionModel]:
    """(text encoder, U-Net) of a diffusers Stable Diffusion folder, bundle or hub id."""
    return (CLIPTextModel.from_pretrained(ref, subfolder="text_encoder", use_safetensors=True),
            UNet2DConditionModel.from_pretrained(ref, subfolder="unet", use_safetensors=True))
