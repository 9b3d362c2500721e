"""Channel-conditioned diffusion sampling (MAMBO Algorithm 2) with swappable diffusers schedulers.

Only channel 0 is noised and denoised; context channels go into the U-Net as they are at every step.
Scheduler pitfalls handled here (DESIGN.md): DDIM gets `clip_sample=False`, DPM-Solver++ gets thresholding in pixel
space, a fresh scheduler per sampled batch (multistep state), re-noising of known pixels from `alphas_cumprod`.
Noise comes from one generator per batch element, seeded from the image seed, so a tile's result does not depend
on which other tiles share its batch.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import math
from typing import Callable, Optional, Sequence

import torch

from MammoSynthLogic.devices import autocast
from MammoSynthLogic.errors import MammoSynthError

SAMPLERS = ("ddpm", "ddim", "dpm++", "sde-dpm++")
Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed for one tile / stage, derived from the image seed and its keys."""
    digest = hashlib.sha256(("/".join(map(str, (seed,) + keys))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def generators(seed: int, keys: Sequence) -> list[torch.Generator]:
    """One CPU generator per batch element (tile), keyed by the tile's identity."""
    return [torch.Generator("cpu").manual_seed(derive_seed(seed, *(k if isinstance(k, tuple) else (k,))))
            for k in keys]


def randn(shape: Sequence[int], gens: list[torch.Generator], device="cpu") -> torch.Tensor:
    """Standard normal noise of `shape` (batch first), element b drawn from `gens[b]` on the CPU."""
    if len(gens) == 1:
        return torch.randn(tuple(shape), generator=gens[0]).to(device)
    return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in gens]).to(device)


def make_scheduler(kind: str, config: dict, in_place: bool = False):
    """A diffusers scheduler of `kind` built from a bundle's training schedule, pitfalls handled. With `in_place`,
    `step` writes its result into the sample it is given (for canvases: `canvas_scheduler`). Each call returns a
    fresh copy of one built per kind and schedule (diffusers' `from_config` inspects signatures: 4× the copy's time)."""
    if kind not in SAMPLERS:
        raise MammoSynthError(f"sampler {kind}", f"unknown sampler; choose one of {', '.join(SAMPLERS)}")
    base = {k: v for k, v in config.items() if not k.startswith("_")}
    return copy.deepcopy(_built_scheduler(kind, in_place, json.dumps(base, sort_keys=True)))


@functools.lru_cache(maxsize=32)
def _built_scheduler(kind: str, in_place: bool, base: str):
    from diffusers import DDIMScheduler, DDPMScheduler

    base = json.loads(base)
    if kind == "ddpm":
        return DDPMScheduler.from_config(base)
    if kind == "ddim":
        return DDIMScheduler.from_config(base, clip_sample=False, timestep_spacing="trailing")
    # The SDE variant adds fresh noise each step: small models' errors at high t are washed out instead of
    # carried to the end (the ODE variant leaves grey noise backgrounds on some seeds of the embedded models).
    cls = in_place_dpm_solver() if in_place and kind == "dpm++" else thresholded_dpm_solver()
    return cls.from_config(
        base, algorithm_type="dpmsolver++" if kind == "dpm++" else "sde-dpmsolver++", solver_order=2,
        thresholding=True, sample_max_value=1.0, timestep_spacing="trailing", lower_order_final=True,
        final_sigmas_type="zero")


def canvas_scheduler(kind: str, config: dict, height: int, width: int, device: str = "cpu"):
    """A scheduler of `kind` that steps a (1, 1, height, width) canvas in place without canvas-sized temporaries:
    DPM-Solver++ by its in-place update, the others band by band (`BandedScheduler`). Both take `output_weight`, a
    per-pixel factor on the model output applied as it is read (the blend's inverse window sum: a canvas pass
    fewer). On the CPU the in-place update runs in row bands of 2 MB, so its passes over a band stay in cache."""
    if kind == "dpm++":
        scheduler = make_scheduler(kind, config, in_place=True)
        scheduler.band_rows = min(height, max(1, (1 << 19) // width)) if torch.device(device).type == "cpu" else height
        return scheduler
    return BandedScheduler(lambda: make_scheduler(kind, config), height, width)


@functools.cache
def thresholded_dpm_solver():
    """diffusers' DPM-Solver++ with `threshold` for its dynamic thresholding: diffusers sorts all of |x0| per sample
    for the quantile (torch.quantile), and a 3840² canvas is 15M values."""
    from diffusers import DPMSolverMultistepScheduler

    class ThresholdedDPMSolver(DPMSolverMultistepScheduler):
        def _threshold_sample(self, x0: torch.Tensor) -> torch.Tensor:
            return threshold(x0, self.config.dynamic_thresholding_ratio, self.config.sample_max_value)

    return ThresholdedDPMSolver


_COEFFICIENTS: dict[tuple, list[float]] = {}


@functools.cache
def in_place_dpm_solver():
    """DPM-Solver++ (multistep, ODE, ε-prediction) that updates the sample in place: x0 goes into one of two buffers
    kept from step to step, and the conversion to x0 (clip to ±1, the `output_weight`) and the update run together,
    band of `band_rows` rows after band, so each pixel is read from memory about once per step instead of once per
    elementwise operation.

    The update is elementwise and linear in the sample and the data predictions; its coefficients are read from
    diffusers' own update functions applied to the unit vectors (sample = e1, predictions = e2, e3: the result is
    the coefficients), so the orders, the final step and the solver type stay diffusers'.
    Anything else (SDE noise, other prediction types, thresholding other than the clip) takes diffusers' path."""
    class InPlaceDPMSolver(thresholded_dpm_solver()):
        buffers: tuple[torch.Tensor, ...] = ()  # two x0 predictions: this step's and the one before
        band_rows: Optional[int] = None  # None: the whole sample at once
        output_weight: Optional[torch.Tensor] = None
        pending: Optional[tuple] = None  # (x0 buffer, model output, 1/α, -σ/α): converted in the update's bands

        def convert_model_output(self, model_output, *args, sample=None, **kwargs):
            if args or kwargs or self.config.prediction_type != "epsilon" or \
                    self.config.variance_type in ("learned", "learned_range"):
                weighted = model_output if self.output_weight is None else model_output * self.output_weight
                return super().convert_model_output(weighted, *args, sample=sample, **kwargs)
            alpha_t, sigma_t = self._sigma_to_alpha_sigma_t(self.sigmas[self.step_index])
            if not self.buffers or self.buffers[0].shape != sample.shape:
                self.buffers = (torch.empty_like(sample), torch.empty_like(sample))
            out = self.buffers[self.buffers[0] is self.model_outputs[-1]]  # not the prediction kept as m1
            self.pending = (out, model_output, 1 / float(alpha_t), -float(sigma_t / alpha_t))
            if self._whole_thresholding():  # not elementwise: convert the whole sample now
                self._finish(sample)
                out.copy_(self._threshold_sample(out))
            return out

        def _whole_thresholding(self) -> bool:
            """Dynamic thresholding proper (a quantile of the whole x0); at sample_max_value 1 it is a clip to ±1."""
            return self.config.thresholding and self.config.sample_max_value != 1

        def _convert(self, rows: slice, sample: torch.Tensor) -> None:
            """x0 of the pending conversion on `rows`: (sample - σ·ε·weight) / α, clipped if that is thresholding."""
            if self.pending is None:
                return
            out, eps, scale, eps_scale = self.pending
            o, e = out[..., rows, :], eps[..., rows, :]
            torch.mul(sample[..., rows, :], scale, out=o)
            if self.output_weight is None:
                o.add_(e, alpha=eps_scale)
            else:
                o.addcmul_(e, self.output_weight[..., rows, :], value=eps_scale)
            if self.config.thresholding and not self._whole_thresholding():
                o.clamp_(-1.0, 1.0)

        def _update(self, sample: torch.Tensor, a: float, terms: list) -> torch.Tensor:
            """sample ← a·sample + Σ c·m over (c, m) `terms`, band by band, each band's x0 converted first."""
            height = sample.shape[-2]
            step = self.band_rows or height
            for r in range(0, height, step):
                rows = slice(r, r + step)
                self._convert(rows, sample)
                band = sample[..., rows, :].mul_(a)
                for c, m in terms:
                    band.add_(m[..., rows, :], alpha=c)
            self.pending = None
            return sample

        def _coefficients(self, order: int) -> list[float]:
            """(a, b[, c]) of this step's update a·sample + b·m0 [+ c·m1]: diffusers' update of `order` applied to unit
            vectors, memoised by the sigmas it reads and the config (the same schedule recurs image after image)."""
            i = self.step_index
            key = (order, json.dumps(dict(self.config), sort_keys=True, default=str),
                   tuple(self.sigmas[i + 1 - order:i + 2].tolist()))
            if key not in _COEFFICIENTS:
                if order == 1:
                    x, m = torch.eye(2, dtype=torch.float64)
                    found = super().dpm_solver_first_order_update(m, sample=x)
                else:
                    x, m0, m1 = torch.eye(3, dtype=torch.float64)
                    found = super().multistep_dpm_solver_second_order_update([m1, m0], sample=x)
                if len(_COEFFICIENTS) > 4096:
                    _COEFFICIENTS.clear()
                _COEFFICIENTS[key] = found.tolist()
            return _COEFFICIENTS[key]

        def _finish(self, sample: torch.Tensor) -> None:
            """Complete a pending conversion at once (for thresholding, or diffusers' own update)."""
            self._convert(slice(None), sample)
            self.pending = None

        def dpm_solver_first_order_update(self, model_output, *args, sample=None, noise=None, **kwargs):
            if args or kwargs or noise is not None:
                self._finish(sample)
                return super().dpm_solver_first_order_update(model_output, *args, sample=sample, noise=noise,
                                                             **kwargs)
            a, b = self._coefficients(1)
            return self._update(sample, a, [(b, model_output)])

        def multistep_dpm_solver_second_order_update(self, model_output_list, *args, sample=None, noise=None,
                                                     **kwargs):
            if args or kwargs or noise is not None:
                self._finish(sample)
                return super().multistep_dpm_solver_second_order_update(model_output_list, *args, sample=sample,
                                                                        noise=noise, **kwargs)
            a, b, c = self._coefficients(2)
            m1, m0 = model_output_list[-2:]
            return self._update(sample, a, [(b, m0), (c, m1)])

    return InPlaceDPMSolver


def threshold(x0: torch.Tensor, ratio: float, max_value: float, subsample: int = 1 << 16) -> torch.Tensor:
    """Imagen's dynamic thresholding per batch element (one image, or one tile): s = the `ratio` quantile of |x0|,
    held in [1, max_value]; x0 is clipped to ±s and divided by s. The quantile is a k-th value of at most
    `subsample` evenly strided pixels; with max_value 1 (pixel-space MAMBO), s is 1 whatever it is: a clip to ±1."""
    if max_value <= 1:
        return x0.clamp(-1.0, 1.0)
    flat = x0.reshape(x0.shape[0], -1).abs()
    flat = flat[:, ::max(1, flat.shape[1] // subsample)]
    s = flat.kthvalue(max(1, math.ceil(ratio * flat.shape[1])), dim=1).values.clamp(1.0, max_value)
    s = s.view(-1, *([1] * (x0.dim() - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) / s


class BandedScheduler:
    """One scheduler per band of canvas rows, each stepping its band of a (1, 1, H, W) canvas once per timestep.

    The updates are elementwise (thresholding here is a clip to ±1, see `threshold`), so the result is one step of
    the whole canvas, while every temporary a scheduler allocates stays about `max_elements` floats: whole-canvas
    temporaries at 3840² cost more in page faults than in arithmetic. A step's noise is drawn band after band from
    the one generator. `set_*` calls go to every band; anything else is read from the first band's scheduler.
    `output_weight` (per pixel, or None) multiplies each band of the model output before its step."""

    output_weight: Optional[torch.Tensor] = None

    def __init__(self, make: Callable[[], object], height: int, width: int, max_elements: int = 1 << 20):
        rows = max(1, max_elements // width)
        self.bands = [(r, min(r + rows, height)) for r in range(0, height, rows)]
        self.schedulers = [make() for _ in self.bands]
        config = self.schedulers[0].config
        if config.get("thresholding") and config.get("sample_max_value", 1.0) > 1:
            raise ValueError("banded steps need an elementwise update: thresholding with sample_max_value > 1 is not")

    def __getattr__(self, name: str):
        first = getattr(self.schedulers[0], name)
        if name.startswith("set_"):
            return lambda *args, **kwargs: [getattr(s, name)(*args, **kwargs) for s in self.schedulers][0]
        return first

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, **kwargs):
        """Step every band; the result is written into `sample` (each band is read before it is overwritten)."""
        for (r0, r1), scheduler in zip(self.bands, self.schedulers):
            out = model_output[..., r0:r1, :]
            if self.output_weight is not None:
                out = out * self.output_weight[..., r0:r1, :]
            sample[..., r0:r1, :] = scheduler.step(out, timestep, sample[..., r0:r1, :], **kwargs).prev_sample
        return StepOutput(sample)


@dataclasses.dataclass
class StepOutput:
    prev_sample: torch.Tensor


def add_noise(scheduler, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """Forward-noise clean pixels to timestep t: sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε (valid for every scheduler)."""
    acp = scheduler.alphas_cumprod[int(t)].float()  # a host tensor: reading it never waits for the device
    return torch.mul(noise, float((1 - acp).sqrt())).add_(x0, alpha=float(acp.sqrt()))


@dataclasses.dataclass
class Counter:
    """U-Net usage: forwards = tiles pushed through it, batches = sequential U-Net calls."""

    forwards: int = 0
    batches: int = 0


def unet_predictor(unet, context: Optional[torch.Tensor], counter: Optional[Counter] = None,
                   chunk: int = 8) -> Predict:
    """Noise prediction for channel 0 given fixed context channels (B, C-1, s, s), in chunks of `chunk`."""
    device = next(unet.parameters()).device.type

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(0, x.shape[0], chunk):
            xi = x[i:i + chunk]
            inp = xi if context is None else torch.cat([xi, context[i:i + chunk].to(xi)], dim=1)
            outs.append(forward(unet, inp, t, device))
            if counter is not None:
                counter.forwards += xi.shape[0]
                counter.batches += 1
        return torch.cat(outs)

    return predict


def forward(unet, inp: torch.Tensor, t, device: str) -> torch.Tensor:
    """One U-Net call under no_grad/autocast; channel 0 of the output, float32."""
    with torch.no_grad(), autocast(device):
        out = unet(inp, t).sample
    return out[:, :1].float()


def entry_index(scheduler, strength: float) -> int:
    """Index of the first timestep of the scheduler's schedule (after set_timesteps) below strength·T."""
    limit = strength * scheduler.config.num_train_timesteps
    begin = next((i for i, t in enumerate(scheduler.timesteps) if t < limit), len(scheduler.timesteps))
    if begin == len(scheduler.timesteps):
        raise MammoSynthError(f"strength {strength}", "too low: no denoising step is left; raise it")
    return begin


def sample(predict: Predict, scheduler, x_T: torch.Tensor, gens: list[torch.Generator], steps: int, *,
           eta: float = 0.0, known: Optional[torch.Tensor] = None, known_mask: Optional[torch.Tensor] = None,
           on_step: Optional[Callable[[int, int], None]] = None,
           timesteps: Optional[list[int]] = None, start: Optional[torch.Tensor] = None,
           strength: float = 1.0) -> torch.Tensor:
    """Denoise channel 0 from x_T; pixels under `known_mask` are replaced by `known` re-noised to each t (RePaint).

    With `timesteps` (descending, for schedulers that take custom ones, e.g. DDPM), x_T is a sample already noised
    to `timesteps[0]` (partial denoising, as in MAMBO's anomaly maps) and `steps` is ignored.
    With `start` (a clean image) and `strength` < 1, the `steps`-step schedule is entered at its first timestep
    below strength·T, from `start` noised there with x_T as the noise (SDEdit / img2img): fewer U-Net calls, and
    the coarse content of `start` is kept while the model adds the detail.
    """
    if timesteps is not None:
        scheduler.set_timesteps(timesteps=list(timesteps), device=x_T.device)
        x, timesteps = x_T, scheduler.timesteps
    else:
        scheduler.set_timesteps(steps, device=x_T.device)
        timesteps = scheduler.timesteps
        if start is not None and strength < 1:
            begin = entry_index(scheduler, strength)
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(begin)
            x, timesteps = add_noise(scheduler, start, x_T, timesteps[begin]), timesteps[begin:]
        else:
            x = x_T * scheduler.init_noise_sigma
    kwargs = {"generator": gens if len(gens) > 1 else gens[0]}
    if "eta" in inspect.signature(getattr(scheduler, "schedulers", [scheduler])[0].step).parameters:
        kwargs["eta"] = eta
    replace = known is not None and known_mask is not None  # draw the same noise whatever the mask holds
    for i, t in enumerate(timesteps):
        if replace:
            x = torch.where(known_mask, add_noise(scheduler, known, randn(x.shape, gens, x.device), t), x)
        eps = predict(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(eps, t, x, **kwargs).prev_sample
        if on_step is not None:
            on_step(i + 1, len(timesteps))
    if replace:
        x = torch.where(known_mask, known, x)
    return x
