"""Dual-view CC/MLO synthesis (MammoRGB): one 3-channel DDPM samples R = CC, G = MLO, B = their difference at once.

`__call__` samples a pair from noise; `complete` keeps a real view: its channel is re-noised to the current timestep
and put back before every step (RePaint on channels), optionally with `resample` > 1 resampling passes per step
(RePaint's jump length 1: step, re-noise one step back, step again). The third channel is recomputed from the
finished views. `upscale_views` brings each view to full resolution with the MAMBO stages, the view itself being
the global context. The U-Net is a diffusers UNet2DModel (ddpm-celebahq-256 layout family), the scheduler any of
`sampling.SAMPLERS`. Values inside the model are in [-1, 1]; everything returned is in [0, 1], encoding frame
(chest wall on the left, square), not yet clipped or mirrored (`MammoSynthLogic.dualview.decode` does that).
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Optional

import numpy as np
import torch

from MammoSynthLogic.bundles import Bundle
from MammoSynthLogic.devices import autocast
from MammoSynthLogic.dualview import BLUE_MODES, CHANNEL, from_model, to_model, with_consistent_blue
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sampling import SAMPLERS, add_noise, derive_seed, generators, make_scheduler, randn, sample

RESAMPLING_SAMPLERS = ("ddpm", "ddim")  # stateless single-step schedulers: a step can be redone


@dataclasses.dataclass
class DualViewSettings:
    """Sampling parameters; `preset('paper')` is DDPM with all 1000 training steps."""

    name: str = "fast"
    sampler: str = "sde-dpm++"  # the ODE solver leaves small models' noise floor in (docs/dualview.md)
    steps: int = 25
    eta: float = 0.0
    resample: int = 1  # completion only: passes per step (1 = plain replacement)

    @classmethod
    def preset(cls, name: str, **overrides) -> "DualViewSettings":
        presets = {"fast": cls(), "paper": cls(name="paper", sampler="ddpm", steps=1000, eta=1.0)}
        if name not in presets:
            raise MammoSynthError(f"--preset {name}", "choose fast or paper")
        settings = dataclasses.replace(presets[name], **{k: v for k, v in overrides.items() if v is not None})
        if settings.sampler not in SAMPLERS:
            raise MammoSynthError(f"--sampler {settings.sampler}", f"choose one of {', '.join(SAMPLERS)}")
        if settings.resample < 1:
            raise MammoSynthError(f"--resample {settings.resample}", "must be 1 (no resampling) or more")
        if settings.resample > 1 and settings.sampler not in RESAMPLING_SAMPLERS:
            raise MammoSynthError(f"--resample {settings.resample}", "resampling jumps redo a step, which multistep "
                                  "solvers cannot; use --sampler ddpm or ddim")
        return settings


@dataclasses.dataclass
class DualViewResult:
    rgb: np.ndarray  # (3, s, s) float32 [0, 1], third channel consistent with R and G
    settings: DualViewSettings
    seed: int
    known: Optional[str] = None  # the view kept from a real image, if completing


def make_dualview_scheduler(kind: str, config: dict):
    """`sampling.make_scheduler`, with DDPM clipping its x0 estimate to [-1, 1] as the papers' DDPM does (without it
    the small embedded model drifts to saturated images)."""
    scheduler = make_scheduler(kind, config)
    if kind == "ddpm":
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(scheduler.config, clip_sample=True, clip_sample_range=1.0)
    return scheduler


def check_bundle(bundle: Bundle) -> None:
    """A dual-view bundle: role dualview, 3 channels in and out."""
    if bundle.role != "dualview":
        raise MammoSynthError(bundle.path, f"expected a dualview bundle, found role {bundle.role!r}")
    if bundle.manifest["in_channels"] != 3 or bundle.manifest["out_channels"] != 3:
        raise MammoSynthError(bundle.path, "a dual-view model takes 3 channels in and gives 3 out")


def blue_mode(bundle: Bundle) -> str:
    """The third-channel encoding the bundle was trained with (manifest config.data.blue_channel; default diff)."""
    mode = bundle.manifest.get("blue_channel") or bundle.manifest.get("config", {}).get("data", {}).get("blue_channel")
    return mode if mode in BLUE_MODES else "diff"


class DualViewPipeline:
    """The dual-view model; `__call__` generates a pair, `complete` generates the view a real one is missing."""

    def __init__(self, bundle: Bundle, device: str = "cpu"):
        check_bundle(bundle)
        self.bundle, self.device = bundle, device
        self.s = bundle.image_size
        self.blue = blue_mode(bundle)

    def predict(self, x: torch.Tensor, t) -> torch.Tensor:
        """Noise prediction for all three channels."""
        with torch.no_grad(), autocast(self.device):
            return self.bundle.unet(x, t).sample.float()

    def __call__(self, seed: int, settings: DualViewSettings, reporter: Optional[Reporter] = None) -> DualViewResult:
        """A CC/MLO pair from noise."""
        reporter = reporter or Reporter()
        gens = generators(seed, [("dualview",)])
        scheduler = make_dualview_scheduler(settings.sampler, self.bundle.scheduler_config)
        x = sample(self.predict, scheduler, randn((1, 3, self.s, self.s), gens, self.device), gens, settings.steps,
                   eta=settings.eta, on_step=lambda i, n: reporter.update("dual-view pair", i, n))
        rgb = with_consistent_blue(from_model(x[0].cpu().numpy()), self.blue)
        return DualViewResult(rgb=rgb, settings=settings, seed=seed)

    def complete(self, known_view: np.ndarray, which: str, seed: int, settings: DualViewSettings,
                 reporter: Optional[Reporter] = None) -> DualViewResult:
        """The other view of a real one: `known_view` is s×s [0, 1] in the encoding frame, `which` "CC" or "MLO"."""
        reporter = reporter or Reporter()
        if which not in CHANNEL:
            raise MammoSynthError(f"view {which!r}", "the known view must be CC or MLO")
        known_view = np.asarray(known_view, dtype=np.float32)
        if known_view.shape != (self.s, self.s):
            raise ValueError(f"the known view must be {self.s}×{self.s} (the model size), got {known_view.shape}")
        s, dev = self.s, self.device
        known = torch.zeros((1, 3, s, s), device=dev)
        known[0, CHANNEL[which]] = torch.from_numpy(to_model(known_view)).to(dev)
        mask = torch.zeros((1, 3, s, s), dtype=torch.bool, device=dev)
        mask[0, CHANNEL[which]] = True
        gens = generators(seed, [("dualview-complete", which)])
        scheduler = make_dualview_scheduler(settings.sampler, self.bundle.scheduler_config)
        x_T = randn((1, 3, s, s), gens, dev)
        stage = f"completing the {'MLO' if which == 'CC' else 'CC'}"

        def progress(i: int, n: int) -> None:
            reporter.update(stage, i, n)

        if settings.resample == 1:
            x = sample(self.predict, scheduler, x_T, gens, settings.steps, eta=settings.eta, known=known,
                       known_mask=mask, on_step=progress)
        else:
            x = repaint(self.predict, scheduler, x_T, gens, settings.steps, known, mask, settings.resample,
                        settings.eta, progress)
        rgb = from_model(x[0].cpu().numpy())
        rgb[CHANNEL[which]] = known_view  # exactly the real view, not its round trip through [-1, 1]
        return DualViewResult(rgb=with_consistent_blue(rgb, self.blue), settings=settings, seed=seed, known=which)


def renoise_back(scheduler, x_prev: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_t_prev): diffuse a sample from t_prev (< t, -1 = clean) forward to t."""
    acp = scheduler.alphas_cumprod.to(x_prev.device, torch.float32)
    ratio = acp[t] / (acp[t_prev] if t_prev >= 0 else torch.tensor(1.0, device=x_prev.device))
    return ratio.sqrt() * x_prev + (1 - ratio).sqrt() * noise


def repaint(predict, scheduler, x_T: torch.Tensor, gens, steps: int, known: torch.Tensor, mask: torch.Tensor,
            resample: int, eta: float, on_step) -> torch.Tensor:
    """RePaint (Lugmayr et al. 2022, jump length 1): at every timestep `resample` passes of replace-and-step, each
    but the last followed by re-noising the result back to the current timestep."""
    scheduler.set_timesteps(steps, device=x_T.device)
    timesteps = [int(t) for t in scheduler.timesteps]
    kwargs = {"generator": gens[0]}
    if "eta" in inspect.signature(scheduler.step).parameters:
        kwargs["eta"] = eta
    x = x_T * scheduler.init_noise_sigma
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        for u in range(resample):
            x = torch.where(mask, add_noise(scheduler, known, randn(x.shape, gens, x.device), t), x)
            x_prev = scheduler.step(predict(scheduler.scale_model_input(x, t), t), t, x, **kwargs).prev_sample
            if u + 1 < resample:
                x = renoise_back(scheduler, x_prev, t, t_prev, randn(x.shape, gens, x.device))
        x = x_prev
        on_step(i + 1, len(timesteps))
    return torch.where(mask, known, x)


def upscale_views(views: dict[str, np.ndarray], size: int, mambo, seed: int, settings,
                  reporter: Reporter) -> dict[str, np.ndarray]:
    """Each view (encoding frame, [0, 1]) to size × size with the MAMBO stages; the view, its background zeroed as
    `preparation.prepare` does for real images, is its global context (a grey floor would be drawn as tissue)."""
    from MammoSynthLogic.breast_mask import breast_region
    from MammoSynthLogic.preparation import resize

    out = {}
    for view, pixels in views.items():
        context = np.where(breast_region(pixels), pixels, np.float32(0))
        result = mambo.upscale(resize(context, (size, size)), derive_seed(seed, "upscale", view), settings, reporter)
        out[view] = result.image
    return out
