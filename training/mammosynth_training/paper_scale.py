"""Paper-size models: their layouts, parameter counts (built on the meta device: no memory), and a training probe
that runs the training loop's own step (`fit.optimizer_step`) on random batches at any size, for the suite (reduced
sizes, CPU) and for `gpu_check` (paper sizes and batches, CUDA).

Published layouts: MAMBO's "78M" U-Net (UNet2DModel, `configs/paper-*.yaml`), google/ddpm-celebahq-256
(`configs/dualview-paper.yaml`), Stable Diffusion 2-base (`stabilityai/stable-diffusion-2-base`: `unet/`,
`text_encoder/` (OpenCLIP ViT-H/14 text tower) and `vae/` config.json, copied below; the paper configs of MAM-E
load the weights themselves with `init_from`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SD2_BASE_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024, use_linear_projection=True, norm_num_groups=32)
SD2_TEXT_ENCODER: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512)
SD_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
# Parameter counts the papers give (MAMBO: "78M"; SD-2-base U-Net: 866M; ddpm-celebahq-256: 114M)
PAPER_PARAMETERS = {"mambo": 78e6, "sd2-base-unet": 866e6, "celebahq": 114e6}


def paper_config(name: str, **overrides) -> TrainConfig:
    """A config of training/configs (e.g. 'paper-global') with field overrides (e.g. image_size=32)."""
    config = load_config(CONFIGS / f"{name}.yaml")
    for key, value in overrides.items():
        setattr(config, key, value)
    return config.validate()


def sd2_base_parts(in_channels: int = 4):
    """(text encoder, U-Net, VAE) with Stable Diffusion 2-base's layouts and random weights (no hub needed)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return (CLIPTextModel(CLIPTextConfig(**SD2_TEXT_ENCODER)),
            UNet2DConditionModel(**{**SD2_BASE_UNET, "in_channels": in_channels}), AutoencoderKL(**SD_VAE))


def parameters(module: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())


def meta_parameter_counts() -> dict[str, int]:
    """Parameter counts of every paper-size model, built on the meta device (no weights allocated)."""
    from .models import build_unet

    with torch.device("meta"):
        counts = {name: parameters(build_unet(paper_config(f"paper-{name}")))
                  for name in ("global", "local", "patch")}
        counts["dualview"] = parameters(build_unet(paper_config("dualview-paper")))
        text, unet, vae = sd2_base_parts()
        counts.update({"sd2-base-unet": parameters(unet), "sd2-base-text-encoder": parameters(text),
                       "sd-vae": parameters(vae), "sd2-base-inpaint-unet": parameters(sd2_base_parts(9)[1])})
    return {f"mambo-{k}" if k in ("global", "local", "patch") else k: v for k, v in counts.items()}


def sd_parts(config: TrainConfig, sd2_base: bool = False):
    """(text encoder, U-Net (9 input channels for mame-inpaint), frozen VAE) with random weights: Stable Diffusion
    2-base's layouts with `sd2_base`, else the config's small from-scratch ones (a 1,000-token vocabulary)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from .sd_models import build_cond_unet, build_vae, inpaint_unet_from

    if sd2_base:
        text_encoder, unet, vae = sd2_base_parts(9 if config.role == "mame-inpaint" else 4)
    else:
        sd = config.sd
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=1000, hidden_size=sd.text_hidden_size, intermediate_size=4 * sd.text_hidden_size,
            num_hidden_layers=sd.text_layers, num_attention_heads=sd.text_heads, max_position_embeddings=sd.max_length))
        vae = build_vae(config)
        unet = build_cond_unet(config, config.image_size // 2 ** (len(vae.config.block_out_channels) - 1))
        unet = inpaint_unet_from(unet) if config.role == "mame-inpaint" else unet
    text_encoder.requires_grad_(config.sd.train_text_encoder)
    return text_encoder, unet, vae.requires_grad_(False).eval()


def role_parts(config: TrainConfig, batch_size: int, sd2_base: bool = False):
    """(model, loss function, random batch, noise scheduler) of the config's role, as the training entry points
    build them (MAM-E roles: `sd_parts`)."""
    from .fit import pixel_loss
    from .models import build_noise_scheduler, build_unet

    s = config.image_size
    if not config.role.startswith("mame-"):
        pixels = torch.rand(batch_size, config.in_channels, s, s) * 2 - 1
        return build_unet(config), pixel_loss(config), {"pixel_values": pixels}, build_noise_scheduler(config)
    from .sd_fit import latent_loss
    from .sd_models import TextUNet, sd_noise_scheduler

    text_encoder, unet, vae = sd_parts(config, sd2_base)
    inpaint = config.role == "mame-inpaint"
    batch = {"pixel_values": torch.rand(batch_size, 3, s, s) * 2 - 1,
             "input_ids": torch.randint(0, text_encoder.config.vocab_size,
                                        (batch_size, text_encoder.config.max_position_embeddings))}
    if inpaint:
        batch["mask"] = (torch.rand(batch_size, 1, s, s) > 0.9).float()
        batch["masked_pixel_values"] = batch["pixel_values"] * (1 - batch["mask"])
    return TextUNet(text_encoder, unet), latent_loss(vae, inpaint), batch, sd_noise_scheduler(config)


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated since the last reset, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_probe(config: TrainConfig, batch_size: int, steps: int = 1, sd2_base: bool = False) -> dict[str, Any]:
    """One warm-up step, then `steps` timed steps, on a random batch with the loop's own step, mixed precision,
    gradient checkpointing, compile and optimizer of the config; images/s, peak memory, the model."""
    from accelerate import Accelerator

    from .fit import optimizer_step
    from .models import build_optimizer, enable_memory_options

    accelerator = Accelerator(cpu=config.cpu, mixed_precision=config.mixed_precision, dynamo_backend=config.compile)
    torch.manual_seed(config.seed)
    with accelerator.device:  # weights drawn where they train: a 1.3B-parameter CPU init takes a minute
        model, loss_fn, batch, scheduler = role_parts(config, batch_size, sd2_base)
    enable_memory_options(model, config)
    optimizer = build_optimizer(config, model)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
    alphas = scheduler.alphas_cumprod.to(accelerator.device)
    device = accelerator.device
    first = next(p for p in model.parameters() if p.requires_grad)
    initial = first.detach().clone()
    loss = optimizer_step(accelerator, model, optimizer, loss_fn, batch, alphas, config.max_grad_norm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = optimizer_step(accelerator, model, optimizer, loss_fn, batch, alphas, config.max_grad_norm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return {"role": config.role, "image_size": config.image_size, "batch": batch_size, "steps": steps,
            "images_per_s": round(batch_size * steps / elapsed, 2) if steps else None, "loss": float(loss),
            "weights_moved": not torch.equal(first.detach(), initial),
            "peak_memory_mb": round(peak_memory_mb(device), 1), "mixed_precision": config.mixed_precision,
            "gradient_checkpointing": config.gradient_checkpointing, "compile": config.compile,
            "parameters": parameters(model), "model": accelerator.unwrap_model(model, keep_torch_compile=False),
            "scheduler": scheduler}


def sampling_step(unet, scheduler, x: torch.Tensor, context: torch.Tensor | None = None,
                  steps: int = 20, input_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The first step of a `steps`-step DPM-Solver++ schedule (the engine's settings, `MammoSynthLogic.sampling`)
    on the noised channels x, with the clean context channels (if any) as extra U-Net input; a MAM-E `TextUNet`
    is conditioned on the prompt's `input_ids` (context: the inpainting mask and masked-image latents)."""
    from MammoSynthLogic.sampling import make_scheduler

    solver = make_scheduler("dpm++", dict(scheduler.config))
    solver.set_timesteps(steps)
    t = solver.timesteps[0]
    with torch.no_grad():
        sample = x if context is None else torch.cat([x, context], dim=1)
        out = unet(sample, t) if input_ids is None else unet(sample, t.expand(len(x)), input_ids)
        eps = getattr(out, "sample", out)[:, :x.shape[1]]
    return solver.step(eps.float(), t, x).prev_sample
