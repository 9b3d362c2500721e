"""MAM-E text-to-mammogram: a fine-tuned Stable Diffusion pipeline (diffusers), and the sampling call it shares
with the inpainting pipeline.

MAM-E's inference: the scheduler swapped to `DPMSolverMultistepScheduler.from_config` (DPM-Solver++), 24 steps,
classifier-free guidance 4–6 with an optional negative prompt, 512 × 512, fp16 on the GPU. MAM-E flips right
breasts before training, so every generated image is a left breast (chest wall on the left); a right one is
its mirror. Everything returned is float32 grayscale in [0, 1] (the mean of the decoded RGB channels).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from MammoSynthLogic.devices import autocast
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sd_bundles import SDBundle

SD_SAMPLERS = ("dpm++", "ddim", "ddpm", "euler", "unipc")


@dataclasses.dataclass(frozen=True)
class SDSettings:
    """Text and sampling parameters of one Stable Diffusion call (MAM-E defaults)."""

    prompt: str
    negative_prompt: str = ""
    guidance: float = 5.0
    steps: int = 24
    sampler: str = "dpm++"

    def __post_init__(self):
        if self.sampler not in SD_SAMPLERS:
            raise MammoSynthError(f"--sampler {self.sampler}", f"choose one of {', '.join(SD_SAMPLERS)}")
        if self.steps < 1:
            raise MammoSynthError(f"--steps {self.steps}", "must be at least 1")
        if self.guidance < 0:
            raise MammoSynthError(f"--guidance {self.guidance}", "must be 0 or more (1 = no guidance)")


def sd_scheduler(name: str, config: dict):
    """A latent-space scheduler by name from the pipeline's training schedule (no clipping or thresholding)."""
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                           UniPCMultistepScheduler)

    base = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    makers = {"dpm++": lambda: DPMSolverMultistepScheduler.from_config(base, algorithm_type="dpmsolver++"),
              "ddim": lambda: DDIMScheduler.from_config(base, clip_sample=False),
              "ddpm": lambda: DDPMScheduler.from_config(base, clip_sample=False),
              "euler": lambda: EulerDiscreteScheduler.from_config(base),
              "unipc": lambda: UniPCMultistepScheduler.from_config(base)}
    if name not in makers:
        raise MammoSynthError(f"sampler {name}", f"unknown sampler; choose one of {', '.join(SD_SAMPLERS)}")
    return makers[name]()


def check_size(pipeline, size: int) -> int:
    """An output side the VAE and diffusers accept: a positive multiple of 8 and of the VAE factor."""
    step = max(8, int(pipeline.vae_scale_factor))
    if size < step or size % step:
        raise MammoSynthError(f"--size {size}", f"must be a positive multiple of {step} (the VAE works on "
                                                f"{pipeline.vae_scale_factor}× smaller latents)")
    return size


def run_sd(pipeline, settings: SDSettings, seed: int, stage: str, reporter: Optional[Reporter] = None,
           **inputs) -> np.ndarray:
    """One seeded call of a diffusers SD pipeline with the named scheduler; progress and cancel every step."""
    import torch

    scheduler = sd_scheduler(settings.sampler, pipeline.scheduler.config)
    pipe = type(pipeline)(**{**pipeline.components, "scheduler": scheduler}, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def on_step(_pipe, i: int, _t, tensors: dict) -> dict:
        if reporter is not None:
            reporter.update(stage, i + 1, settings.steps)
        return tensors

    with torch.no_grad(), autocast(pipe.device.type):
        out = pipe(prompt=settings.prompt, negative_prompt=settings.negative_prompt or None,
                   guidance_scale=settings.guidance, num_inference_steps=settings.steps,
                   generator=torch.Generator("cpu").manual_seed(seed), output_type="np",
                   callback_on_step_end=on_step, **inputs)
    return np.asarray(out.images[0], dtype=np.float32).mean(axis=-1)


def text2mammo(bundle: SDBundle, settings: SDSettings, seed: int, *, size: Optional[int] = None,
               laterality: str = "L", reporter: Optional[Reporter] = None) -> np.ndarray:
    """A synthetic mammogram (size × size, float32 [0, 1]) for the prompt; laterality R mirrors MAM-E's left."""
    if bundle.role != "mame-text":
        raise MammoSynthError(bundle.path, f"a {bundle.role} model cannot generate from text; pass a mame-text model")
    side = check_size(bundle.pipeline, size or bundle.image_size)
    image = run_sd(bundle.pipeline, settings, seed, "text2mammo", reporter, height=side, width=side)
    return np.ascontiguousarray(image[:, ::-1]) if laterality == "R" else image
