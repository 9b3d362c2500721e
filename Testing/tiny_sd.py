"""Tiny random Stable Diffusion bundles (text-to-image and inpainting) for tests; real ones come from training."""
from __future__ import annotations

from pathlib import Path

from MammoSynthLogic.sd_bundles import save_sd_bundle

CAPTIONS = ["a siemens mammogram in mlo view with small area and very high density",
            "a hologic mammogram in cc view with medium area and low density",
            "a mammogram with big area and very low density", "a mammogram with a lesion"]


def tiny_sd_pipeline(role: str = "mame-text", seed: int = 0, latent_size: int = 16):
    """A pipeline of ~100k random parameters: CLIP text encoder, 2× VAE, cross-attention U-Net."""
    import torch
    from diffusers import (AutoencoderKL, DDPMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from mammosynth_training.sd_tokenizer import build_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(CAPTIONS, max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
                                                num_hidden_layers=2, num_attention_heads=4,
                                                max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id)).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=4, sample_size=2 * latent_size).eval()
    unet = UNet2DConditionModel(sample_size=latent_size, in_channels=9 if role == "mame-inpaint" else 4,
                                out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=8).eval()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, steps_offset=1)
    cls = StableDiffusionInpaintPipeline if role == "mame-inpaint" else StableDiffusionPipeline
    return cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def make_tiny_sd_bundle(folder: Path, role: str = "mame-text", seed: int = 0) -> Path:
    """Save a tiny random text-to-image or inpainting bundle with a manifest into `folder`."""
    manifest = {"role": role, "version": "test", "step": 0, "conditioning": "text (CLIP)",
                "training_data": "none (random weights)", "config": {"tiny": True}}
    return save_sd_bundle(folder, tiny_sd_pipeline(role, seed), manifest)
