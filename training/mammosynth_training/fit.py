"""The training loop on accelerate (one CPU, one or many GPUs, several machines).

Run it as `mammosynth-train fit --config cfg.yaml`, `accelerate launch -m mammosynth_training.fit --config cfg.yaml`
or `torchrun --nproc_per_node N -m mammosynth_training.fit --config cfg.yaml`.
Noise goes on channel 0 only, the context channels stay clean, and the loss covers channel 0 only (MAMBO Alg. 1).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import CHECKPOINTS, EMA_DIR, STATE_FILE, checkpoint_dirs
from .config import TrainConfig, load_config, save_config


def _resolve_resume(config: TrainConfig, resume: str | None) -> Path | None:
    if resume in (None, "", "none"):
        return None
    if resume == "latest":
        found = checkpoint_dirs(config.output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint (no {STATE_FILE})")
    return path


def noisy_input(x0: torch.Tensor, alphas_cumprod: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Forward process on channel 0 only; the context channels 1.. are copied clean (MAMBO Alg. 1)."""
    a = alphas_cumprod[t].view(-1, 1, 1, 1).to(x0.dtype)
    n = noise.shape[1]  # channels to noise: 1 for MAMBO, all for a dual-view image
    return torch.cat([a.sqrt() * x0[:, :n] + (1 - a).sqrt() * noise, x0[:, n:]], dim=1)


def diffusion_loss(model, x0: torch.Tensor, alphas_cumprod: torch.Tensor, noise: torch.Tensor,
                   t: torch.Tensor) -> torch.Tensor:
    """MSE between the noise and the U-Net's channel-0 prediction (the context channels carry no loss)."""
    pred = model(noisy_input(x0, alphas_cumprod, noise, t), t).sample[:, :noise.shape[1]]
    return F.mse_loss(pred.float(), noise.float())


LossFn = Callable[[torch.nn.Module, dict, torch.Tensor], torch.Tensor]  # (model, batch on device, alphas_cumprod)


def pixel_loss(config: TrainConfig) -> LossFn:
    """MAMBO / dual-view loss on a batch: noise the first config.noised_channels, MSE on their prediction."""
    def loss_fn(model, batch: dict, alphas_cumprod: torch.Tensor) -> torch.Tensor:
        x0 = batch["pixel_values"]
        noise = torch.randn_like(x0[:, :config.noised_channels])
        t = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), device=x0.device)
        return diffusion_loss(model, x0, alphas_cumprod, noise, t)
    return loss_fn


def pixel_preview(config: TrainConfig, dataset, noise_scheduler) -> Callable[[torch.nn.Module], np.ndarray]:
    """Preview of a pixel-space U-Net: denoise channel 0, next to the clean context channels of dataset samples."""
    from .previews import denoise_channel0, preview_grid, preview_scheduler

    def preview_fn(unet) -> np.ndarray:
        references = None
        if config.in_channels > 1:
            references = torch.stack([dataset[10 ** 9 + i]["pixel_values"] for i in range(config.preview_count)])
        generated = denoise_channel0(unet, preview_scheduler(noise_scheduler.config),
                                     None if references is None else references[:, 1:], config.preview_count,
                                     config.preview_steps, torch.Generator().manual_seed(config.seed))
        return preview_grid(generated, references)
    return preview_fn


def optimizer_step(accelerator, model, optimizer, loss_fn: LossFn, batch: dict, alphas_cumprod: torch.Tensor,
                   max_grad_norm: float | None) -> torch.Tensor:
    """One forward and backward pass under autocast and gradient accumulation, clipping, optimizer step; the
    detached loss."""
    with accelerator.accumulate(model):
        with accelerator.autocast():
            loss = loss_fn(model, batch, alphas_cumprod)
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def train(config: TrainConfig, resume: str | None = "latest", *, dataset=None, model=None,
          loss_fn: LossFn | None = None, preview_fn: Callable[[torch.nn.Module], np.ndarray] | None = None,
          export_fn: Callable[..., Path] | None = None) -> dict:
    """Train until max_steps (or max_minutes); return {'step', 'loss', 'output_dir', 'export_dir', 'minutes'}.

    Defaults train a pixel-space UNet2DModel; MAM-E passes its model, latent loss, previews and export."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from .datasets import MamboDataset, StepSampler
    from .export import export_bundle
    from .models import (build_noise_scheduler, build_optimizer, build_unet, copy_weights, enable_memory_options,
                         load_base_unet)
    from .previews import save_preview

    started = time.monotonic()
    out = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=config.cpu, mixed_precision=config.mixed_precision, dynamo_backend=config.compile,
        gradient_accumulation_steps=config.gradient_accumulation_steps, log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
    if config.num_threads and accelerator.device.type == "cpu":
        torch.set_num_threads(config.num_threads)
    set_seed(config.seed, device_specific=True)  # different noise per rank
    rank, world = accelerator.process_index, accelerator.num_processes
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        accelerator.init_trackers("train", config={k: str(v) for k, v in config.to_dict().items()})

    d = config.data
    if dataset is None:  # a caller may pass its own (dual-view training does)
        with accelerator.main_process_first():  # the main process derives the arrays the others then open
            dataset = MamboDataset(d.cache, config.role, config.image_size, config.k, views=d.views,
                                   healthy_only=d.healthy_only, full_size=d.full_size, seed=config.seed,
                                   intensity_jitter=d.intensity_jitter, vflip_cc=d.vflip_cc,
                                   aligned_context=config.aligned_context)
    if model is None:
        model = build_unet(config)
        if config.init_from:
            copy_weights(load_base_unet(config.init_from), model)
    noise_scheduler = build_noise_scheduler(config)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=config.ema_warmup,
                   power=config.ema_power, model_cls=type(model), model_config=getattr(model, "config", None))
    enable_memory_options(model, config)
    optimizer = build_optimizer(config, model)
    lr_scheduler = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps,
                                 num_training_steps=config.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(lr_scheduler, ema)

    step, last_loss = 0, float("nan")
    checkpoint = _resolve_resume(config, resume)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        step, last_loss = state["step"], state.get("loss", float("nan"))
        accelerator.print(f"resumed from {checkpoint} at step {step}")

    accum, batch = config.gradient_accumulation_steps, config.batch_size
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, num_workers=d.num_workers, generator=torch.Generator().manual_seed(config.seed),
        sampler=StepSampler(start=step * accum * batch, rank=rank, world_size=world))
    batches = iter(loader)
    seen: list[int] = []
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    alphas = noise_scheduler.alphas_cumprod.to(accelerator.device)
    loss_fn = loss_fn or pixel_loss(config)
    preview_fn = preview_fn or pixel_preview(config, dataset, noise_scheduler)

    def make_preview(at_step: int) -> None:
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
        unwrapped.eval()
        grid = preview_fn(unwrapped)
        unwrapped.train()
        ema.restore(unwrapped.parameters())
        save_preview(out / "previews" / f"step-{at_step:07d}.png", grid)
        accelerator.get_tracker("tensorboard").writer.add_image("preview", grid[None], at_step)

    def save_checkpoint(at_step: int, loss: float) -> None:
        path = out / CHECKPOINTS / f"step-{at_step:07d}"
        accelerator.save_state(str(path))
        if accelerator.is_main_process:
            ema_model = copy.deepcopy(unwrapped)  # (building a fresh model would draw from the global RNG)
            ema.copy_to(ema_model.parameters())
            ema_model.save_pretrained(path / EMA_DIR, safe_serialization=True)
            (path / STATE_FILE).write_text(json.dumps({"step": at_step, "loss": loss, "role": config.role}))
            for old in checkpoint_dirs(out)[:-config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    model.train()
    losses: list[float] = []
    stop = False
    while step < config.max_steps and not stop:
        for _ in range(accum):
            sample = next(batches)
            if config.log_sample_ids:
                seen.extend(int(i) for i in sample["index"])
            batch = {k: v.to(accelerator.device) for k, v in sample.items() if isinstance(v, torch.Tensor)}
            losses.append(optimizer_step(accelerator, model, optimizer, loss_fn, batch, alphas,
                                         config.max_grad_norm).item())
        lr_scheduler.step()
        ema.step(unwrapped.parameters())
        step += 1
        if step % config.log_every == 0 or step == config.max_steps:
            mean = torch.tensor(sum(losses) / len(losses), device=accelerator.device)
            last_loss = accelerator.reduce(mean, "mean").item()
            losses.clear()
            accelerator.log({"loss": last_loss, "lr": lr_scheduler.get_last_lr()[0],
                             "ema_decay": ema.cur_decay_value or 0.0}, step=step)
            accelerator.print(f"step {step} loss {last_loss:.5f} lr {lr_scheduler.get_last_lr()[0]:.2e} "
                              f"{(time.monotonic() - started) / 60:.1f} min")
            if config.max_minutes is not None:
                over = torch.tensor(float(time.monotonic() - started > 60 * config.max_minutes),
                                    device=accelerator.device)
                stop = accelerator.reduce(over, "max").item() > 0
        if step % config.checkpoint_every == 0 or step == config.max_steps or stop:
            save_checkpoint(step, last_loss)
        if accelerator.is_main_process and config.preview_every and (
                step % config.preview_every == 0 or step == config.max_steps or stop):
            make_preview(step)

    if config.log_sample_ids:
        (out / f"sample_ids_rank{rank}.json").write_text(json.dumps(seen))
    accelerator.wait_for_everyone()
    export_dir = None
    if accelerator.is_main_process and config.export_dir:
        export_dir = str((export_fn or export_bundle)(checkpoint_dirs(out)[-1], config.export_dir,
                                                      minutes=(time.monotonic() - started) / 60))
    accelerator.end_training()
    return {"step": step, "loss": last_loss, "output_dir": str(out), "export_dir": export_dir,
            "minutes": (time.monotonic() - started) / 60}


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `fit` (shared by `mammosynth-train fit` and `python -m mammosynth_training.fit`)."""
    parser = argparse.ArgumentParser(prog="mammosynth-train fit", description="Train one MAMBO model.")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--config, --set overrides, --resume."""
    parser.add_argument("--config", required=True, help="YAML config (see training/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set max_steps=100 --set data.cache=cache/")
    parser.add_argument("--resume", default="latest",
                        help="'latest' (default: newest checkpoint of output_dir, if any), a checkpoint dir, or 'none'")


def run(args: argparse.Namespace, train_fn: Callable[..., dict] = train) -> int:
    """Load the config and train with `train_fn` (this loop, or a role's wrapper around it); 1 if the loss diverged."""
    result = train_fn(load_config(args.config, args.set), resume=args.resume)
    if result["export_dir"]:
        print(f"exported {result['export_dir']}")
    return 0 if math.isfinite(result["loss"]) or result["step"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mammosynth_training.fit` (accelerate launch, torchrun)."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
