"""MAM-E training on the shared loop (`fit.train`): VAE stage, text-conditioned and inpainting fine-tunes.

    mammosynth-train mame-fit --config training/configs/paper-mame-text.yaml --set data.cache=cache/mydata

Roles: `mame-text` trains the U-Net and the CLIP text encoder on latents of the frozen VAE with captions
(MAM-E §3.4.1, epsilon loss, caption dropout for classifier-free guidance); `mame-inpaint` trains the 9-channel
inpainting U-Net on [noisy latents, mask, masked-image latents] (§3.5); `mame-vae` trains the small AutoencoderKL
that from-scratch text / inpainting runs load frozen (`sd.vae_from`). With `init_from` (a Stable Diffusion folder or
hub id) the tokenizer, text encoder, U-Net and VAE are Stable Diffusion's; a 4-channel U-Net given to the
inpainting role gets zero weights for its 5 extra input channels.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from MammoSynthLogic.prompts import INPAINT_PROMPT

from .checkpoints import EMA_DIR, STATE_FILE
from .config import TrainConfig, load_config
from .fit import add_arguments, noisy_input, train
from .sd_data import SDDataset, load_items
from .sd_models import (KLAutoencoder, TextUNet, build_cond_unet, build_text_encoder, build_vae,
                        inpaint_unet_from, load_vae, pretrained_parts, sd_noise_scheduler)


def encode_latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Scaled latents of [-1, 1] images (a posterior sample, as Stable Diffusion trains)."""
    vae.to(pixels.device)
    with torch.no_grad():
        return vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor


def latent_loss(vae, inpaint: bool):
    """Epsilon loss on latents; inpainting adds the mask (latent grid) and the masked-image latents as input."""
    def loss_fn(model, batch: dict, alphas_cumprod: torch.Tensor) -> torch.Tensor:
        x0 = encode_latents(vae, batch["pixel_values"])
        if inpaint:
            mask = F.interpolate(batch["mask"], size=x0.shape[-2:])  # nearest, as the diffusers inpaint pipeline
            x0 = torch.cat([x0, mask, encode_latents(vae, batch["masked_pixel_values"])], dim=1)
        noise = torch.randn_like(x0[:, :vae.config.latent_channels])
        t = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), device=x0.device)
        pred = model(noisy_input(x0, alphas_cumprod, noise, t), t, batch["input_ids"])
        return F.mse_loss(pred.float(), noise.float())
    return loss_fn


def vae_loss(kl_weight: float):
    """L1 + L2 reconstruction and a small KL term."""
    def loss_fn(model, batch: dict, alphas_cumprod: torch.Tensor) -> torch.Tensor:
        x = batch["pixel_values"]
        reconstruction, kl = model(x)
        reconstruction = reconstruction.float()
        return F.l1_loss(reconstruction, x) + F.mse_loss(reconstruction, x) + kl_weight * kl.mean()
    return loss_fn


def _gray(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W] in [0, 1] (channel mean)."""
    return ((images.float().mean(1).cpu().numpy() + 1) / 2).clip(0, 1)


def _grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """uint8 grid of [0, 1] tiles."""
    return np.round(np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0) * 255).astype(np.uint8)


def build_pipeline(role: str, model: TextUNet, vae, tokenizer, scheduler):
    """A diffusers (inpainting) pipeline around the trained parts."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    cls = StableDiffusionInpaintPipeline if role == "mame-inpaint" else StableDiffusionPipeline
    pipe = cls(vae=vae, text_encoder=model.text_encoder, tokenizer=tokenizer, unet=model.unet, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd_preview(config: TrainConfig, dataset: SDDataset, vae, tokenizer):
    """Previews: text role, one sample per prompt; inpainting, rows of masked input | result | original."""
    from diffusers import DPMSolverMultistepScheduler

    prompts = list(config.sd.preview_prompts) or sorted({item.caption for item in dataset.items})
    prompts = prompts[:config.preview_count]

    def preview_fn(model: TextUNet) -> np.ndarray:
        vae.to(next(model.parameters()).device)
        pipe = build_pipeline(config.role, model, vae, tokenizer,
                              DPMSolverMultistepScheduler.from_config(sd_noise_scheduler(config).config))
        common = dict(num_inference_steps=config.preview_steps, guidance_scale=config.sd.guidance_scale,
                      height=config.image_size, width=config.image_size, output_type="np",
                      generator=torch.Generator().manual_seed(config.seed))
        if config.role == "mame-text":
            images = pipe(prompts, **common).images  # [N, H, W, 3] in [0, 1]
            return _grid([list(images.mean(-1))])
        refs = [dataset[10 ** 9 + i] for i in range(config.preview_count)]
        images = pipe([INPAINT_PROMPT] * len(refs), image=(torch.stack([r["pixel_values"] for r in refs]) + 1) / 2,
                      mask_image=torch.stack([r["mask"] for r in refs]), **common).images
        masked = _gray(torch.stack([r["masked_pixel_values"] for r in refs]))
        originals = _gray(torch.stack([r["pixel_values"] for r in refs]))
        return _grid([[masked[i], images[i].mean(-1), originals[i]] for i in range(len(refs))])
    return preview_fn


def vae_preview(config: TrainConfig, dataset: SDDataset):
    """Previews of the VAE stage: originals over reconstructions (posterior mean)."""
    def preview_fn(model: KLAutoencoder) -> np.ndarray:
        x = torch.stack([dataset[10 ** 9 + i]["pixel_values"] for i in range(config.preview_count)])
        x = x.to(next(model.parameters()).device)
        with torch.no_grad():
            reconstruction = model.vae.decode(model.vae.encode(x).latent_dist.mode()).sample
        return _grid([list(_gray(x)), list(_gray(reconstruction))])
    return preview_fn


def export_run(checkpoint: str | Path, out_dir: str | Path, *, minutes: float | None = None) -> Path:
    """EMA weights of a checkpoint -> the VAE folder (mame-vae, latent scaling factor set) or an SD bundle."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from MammoSynthLogic.sd_bundles import save_sd_bundle
    from transformers import CLIPTextModel, CLIPTokenizer

    from . import __version__
    from .cache import read_metadata

    checkpoint = Path(checkpoint)
    config = load_config(checkpoint.parent.parent / "config.yaml")
    state = json.loads((checkpoint / STATE_FILE).read_text())
    ema = checkpoint / EMA_DIR
    if config.role == "mame-vae":
        vae = AutoencoderKL.from_pretrained(ema, use_safetensors=True).eval()
        dataset = SDDataset(load_items(config), config)
        x = torch.stack([dataset[10 ** 9 + i]["pixel_values"] for i in range(32)])
        with torch.no_grad():
            vae.register_to_config(scaling_factor=float(1 / vae.encode(x).latent_dist.mode().std()))
        vae.save_pretrained(out_dir, safe_serialization=True)
        return Path(out_dir)
    model = TextUNet(CLIPTextModel.from_pretrained(ema / "text_encoder", use_safetensors=True),
                     UNet2DConditionModel.from_pretrained(ema / "unet", use_safetensors=True))
    pipe = build_pipeline(config.role, model, load_vae(config), CLIPTokenizer.from_pretrained(ema / "tokenizer"),
                          sd_noise_scheduler(config))
    description = config.data_description or read_metadata(config.data.cache)["description"]
    manifest = {"role": config.role, "version": __version__, "step": state["step"], "final_loss": state.get("loss"),
                "training_minutes": None if minutes is None else round(minutes, 1), "training_data": description,
                "conditioning": INPAINT_PROMPT if config.role == "mame-inpaint" else "text (CLIP), MAM-E prompts",
                "base_model": config.init_from or "trained from scratch", "config": config.to_dict(),
                "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "trainer": f"mammosynth-training {__version__}"}
    return save_sd_bundle(out_dir, pipe, manifest)


def run_tokenizer(config: TrainConfig, captions: list[str], fresh: bool = False):
    """Stable Diffusion's tokenizer with init_from; else one learned from the captions by the main process and
    kept in output_dir/tokenizer (rebuilt when fresh), so that every rank and every resumed run share its ids."""
    from accelerate import PartialState
    from transformers import CLIPTokenizer

    from .sd_tokenizer import build_clip_tokenizer

    if config.init_from:
        return CLIPTokenizer.from_pretrained(config.init_from, subfolder="tokenizer")
    path = Path(config.output_dir) / "tokenizer"
    state = PartialState(cpu=config.cpu)
    with state.main_process_first():
        if state.is_main_process and (fresh or not path.is_dir()):
            build_clip_tokenizer(sorted(set(captions)) + [INPAINT_PROMPT], config.sd.max_length).save_pretrained(path)
    return CLIPTokenizer.from_pretrained(path)


def build_model(config: TrainConfig, tokenizer=None) -> tuple[torch.nn.Module, object]:
    """(trained module, frozen VAE or None) for the role; random parts seeded with config.seed."""
    torch.manual_seed(config.seed)
    if config.role == "mame-vae":
        return KLAutoencoder(build_vae(config)), None
    vae = load_vae(config)
    if config.init_from:
        text_encoder, unet = pretrained_parts(config.init_from)
    else:
        text_encoder = build_text_encoder(config, tokenizer)
        unet = build_cond_unet(config, config.image_size // 2 ** (len(vae.config.block_out_channels) - 1))
    if config.role == "mame-inpaint":
        unet = inpaint_unet_from(unet)
    text_encoder.requires_grad_(config.sd.train_text_encoder)
    return TextUNet(text_encoder, unet, tokenizer), vae


def train_sd(config: TrainConfig, resume: str | None = "latest") -> dict:
    """fit.train with the MAM-E dataset, model, loss, previews and export of the config's role."""
    if not config.role.startswith("mame-"):
        raise ValueError(f"role must be mame-vae, mame-text or mame-inpaint, not {config.role!r}")
    items = load_items(config)
    tokenizer = None if config.role == "mame-vae" else run_tokenizer(
        config, [item.caption for item in items], fresh=resume in (None, "", "none"))
    model, vae = build_model(config, tokenizer)
    dataset = SDDataset(items, config, tokenizer)
    if config.role == "mame-vae":
        hooks = dict(loss_fn=vae_loss(config.sd.kl_weight), preview_fn=vae_preview(config, dataset))
    else:
        hooks = dict(loss_fn=latent_loss(vae, config.role == "mame-inpaint"),
                     preview_fn=sd_preview(config, dataset, vae, tokenizer))
    return train(config, resume=resume, dataset=dataset, model=model, export_fn=export_run, **hooks)


def run(args: argparse.Namespace) -> int:
    """`mammosynth-train mame-fit` and `python -m mammosynth_training.sd_fit`."""
    from .fit import run as run_training

    return run_training(args, train_sd)


def main(argv: list[str] | None = None) -> int:
    """Entry point under accelerate launch / torchrun."""
    parser = argparse.ArgumentParser(prog="python -m mammosynth_training.sd_fit",
                                     description="Train a MAM-E model (mame-vae, mame-text, mame-inpaint).")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
