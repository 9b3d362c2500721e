"""One-shot check of a CUDA machine (`scripts/gpu_check.sh`): prints one JSON object with

- `generate`: MAMBO full-resolution synthesis at 3840² with paper-size random-weight bundles (78M U-Nets, s = 256,
  k = 3) under the fast and paper presets: wall time, U-Net calls (and the count the grids predict), peak memory.
  Every tile is denoised (`skip_background` off: random weights draw no background), so times are upper bounds.
  The paper preset (DDIM 150, tiles one after another: 48,900 U-Net calls) runs 15 steps by default and its time
  for 150 is estimated from them (`preset_wall_s_estimate`, U-Net-bound).
- `train`: training throughput per role at the paper batch sizes and precisions (`training/configs/paper-*.yaml`,
  `dualview-paper.yaml`; MAM-E with Stable Diffusion 2-base's layouts at 512 px): images/s, peak memory.
- `text2mammo`: seconds per 512² image of a Stable Diffusion 2-base-size pipeline (DPM-Solver++ 24 steps, CFG 5).
- `parameters`: every paper model's parameter count (meta device).
- `host_overhead`: host seconds per MAMBO image with a zero-cost U-Net at 1024² (s = 64) and 3840² (s = 256).

`--cpu-smoke` runs the same code on the CPU with the tiny configs (`tiny-cpu-*.yaml`, `dualview-tiny.yaml`) and 2
sampling steps, in seconds; the test suite runs it. Random weights: speed and memory only, not image quality.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .paper_scale import meta_parameter_counts, paper_config, peak_memory_mb, sd_parts, training_probe

MAMBO_ROLES = ("global", "local", "patch")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _configs(smoke: bool, compile_backend: str | None = None) -> dict[str, Any]:
    """Per role: the config (paper or tiny) and its batch size (paper: MAMBO 8, dual view 16, MAM-E 16); the paper
    configs' compile backend unless `compile_backend` is given."""
    cpu = {"cpu": True, "mixed_precision": "no", "init_from": ""} if smoke else {"init_from": ""}
    if compile_backend:
        cpu["compile"] = compile_backend
    names = {f"mambo-{r}": f"tiny-cpu-{r}" if smoke else f"paper-{r}" for r in MAMBO_ROLES}
    names.update({"dualview": "dualview-tiny" if smoke else "dualview-paper",
                  "mame-text": "tiny-cpu-mame-text" if smoke else "paper-mame-text",
                  "mame-inpaint": "tiny-cpu-mame-inpaint" if smoke else "paper-mame-inpaint"})
    batches = {"dualview": 16, "mame-text": 16, "mame-inpaint": 16}
    return {role: (paper_config(name, **cpu), 2 if smoke else batches.get(role, 8)) for role, name in names.items()}


def generate_check(device: torch.device, smoke: bool, folder: Path, paper_steps: int) -> dict[str, Any]:
    """MAMBO synthesis with random-weight bundles of the paper (or tiny) layout, both presets; the paper preset
    with `paper_steps` steps (0: its own 150) and its wall time scaled to the preset's steps."""
    from MammoSynthLogic.bundles import load_mambo_set, save_bundle
    from MammoSynthLogic.pipelines.mambo import MamboPipeline, MamboSettings, expected_counts, forwards

    from .export import manifest_for
    from .models import build_noise_scheduler, build_unet

    configs = _configs(smoke)
    for i, role in enumerate(MAMBO_ROLES):
        config = configs[f"mambo-{role}"][0]
        torch.manual_seed(i)
        save_bundle(folder / f"mambo-{role}", build_unet(config), build_noise_scheduler(config),
                    manifest_for(config, 0, None, None, "random weights (gpu_check)"))
    pipe = MamboPipeline(*load_mambo_set([str(folder)], device=device.type), device=device.type)
    s, k = pipe.s, int(pipe.patch.k)
    size = s * k * k if smoke else 3840
    out: dict[str, Any] = {"size": size, "s": s, "k": k}
    for preset in ("fast", "paper"):
        full = MamboSettings.preset(preset, skip_background=False)
        steps = 2 if smoke else paper_steps if preset == "paper" and paper_steps else None
        settings = MamboSettings.preset(preset, skip_background=False, steps=steps, global_steps=steps)
        _reset_peak(device)
        start = time.perf_counter()
        result = pipe(size, 0, settings)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
        counts, preset_counts = expected_counts(size, s, k, settings), expected_counts(size, s, k, full)
        out[preset] = {"wall_s": round(wall, 2), "unet_forwards": forwards(result.counters),
                       "expected_unet_forwards": counts["unet_forwards"], "steps": settings.steps,
                       "global_steps": settings.global_steps, "peak_memory_mb": round(peak_memory_mb(device), 1),
                       # U-Net-bound: wall time scales with the sequential U-Net batches of the preset's own steps
                       "preset_wall_s_estimate": round(wall * preset_counts["sequential_unet_batches"]
                                                       / counts["sequential_unet_batches"], 1)}
    return out


def train_check(device: torch.device, smoke: bool, steps: int, compile_backend: str | None) -> dict[str, Any]:
    """Training throughput of every role with the loop's own step, at the paper batch sizes (compile time is in
    the untimed warm-up step)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    out = {}
    for role, (config, batch) in _configs(smoke, compile_backend).items():
        if not smoke and role == "dualview":
            config.mixed_precision = "bf16"  # the paper config trains in fp32; measured as the others run
        _reset_peak(device)
        result = training_probe(config, batch, steps, sd2_base=not smoke)
        out[role] = {k: v for k, v in result.items() if k not in ("model", "scheduler")}
        del result
        for state in (AcceleratorState, GradientState, PartialState):  # the next role sets its own precision
            state._reset_state(True) if state is AcceleratorState else state._reset_state()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def text2mammo_check(device: torch.device, smoke: bool) -> dict[str, Any]:
    """Seconds per image of a text-to-image pipeline of Stable Diffusion 2-base size (or tiny) at 512² (or 32²)."""
    from diffusers import DPMSolverMultistepScheduler
    from MammoSynthLogic.prompts import build_prompt

    from .sd_fit import build_pipeline
    from .sd_models import TextUNet, sd_noise_scheduler
    from .sd_tokenizer import build_clip_tokenizer

    config = _configs(smoke)["mame-text"][0]
    with device:
        text_encoder, unet, vae = sd_parts(config, sd2_base=not smoke)
    prompt = build_prompt(vendor="SIEMENS", view="CC", area="medium", density="C")
    tokenizer = build_clip_tokenizer([prompt], text_encoder.config.max_position_embeddings)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = build_pipeline("mame-text", TextUNet(text_encoder, unet), vae, tokenizer,
                          DPMSolverMultistepScheduler.from_config(sd_noise_scheduler(config).config))
    pipe.to(device, dtype)
    steps, size = (2, config.image_size) if smoke else (24, 512)
    kwargs = dict(num_inference_steps=steps, guidance_scale=5.0, height=size, width=size, output_type="np")
    pipe(prompt, **kwargs)  # warm-up
    _reset_peak(device)
    start = time.perf_counter()
    image = pipe(prompt, **kwargs, generator=torch.Generator(device).manual_seed(0)).images[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"size": size, "steps": steps, "guidance_scale": 5.0, "dtype": str(dtype).removeprefix("torch."),
            "s_per_image": round(time.perf_counter() - start, 2), "image_shape": list(image.shape),
            "peak_memory_mb": round(peak_memory_mb(device), 1)}


def overhead_check(device: torch.device, smoke: bool) -> dict[str, Any]:
    """Host seconds per MAMBO image around a zero-cost U-Net (`Testing/benchmarks/bench_overhead.py`)."""
    import subprocess

    script = Path(__file__).resolve().parents[2] / "Testing" / "benchmarks" / "bench_overhead.py"
    cases = "256:64" if smoke else "1024:64,3840:256"
    out = subprocess.run([sys.executable, str(script), "--device", device.type, "--cases", cases, "--repeat", "3"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (seconds)")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per role (after a warm-up)")
    parser.add_argument("--paper-steps", type=int, default=15,
                        help="generate: steps of the paper preset's run (its 150 DDIM steps give 48,900 sequential "
                             "U-Net calls at 3840²); the time for 150 is estimated from them; 0 = run all 150")
    parser.add_argument("--compile", dest="compile_backend",
                        help="training: torch.compile backend instead of the configs' (e.g. no, inductor)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: generate,train,text2mammo,overhead")
    args = parser.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("error: no CUDA device: torch sees none (torch.cuda.is_available() is False); run on a CUDA machine "
              "or use --cpu-smoke", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    report: dict[str, Any] = {
        "device": "cpu" if args.cpu_smoke else torch.cuda.get_device_name(device), "smoke": args.cpu_smoke,
        "torch": torch.__version__, "parameters": meta_parameter_counts()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as tmp:
        if "generate" not in skip:
            report["generate"] = generate_check(device, args.cpu_smoke, Path(tmp), args.paper_steps)
    if "train" not in skip:
        report["train"] = train_check(device, args.cpu_smoke, args.train_steps, args.compile_backend)
    if "text2mammo" not in skip:
        report["text2mammo"] = text2mammo_check(device, args.cpu_smoke)
    if "overhead" not in skip:
        report["host_overhead"] = overhead_check(device, args.cpu_smoke)
    report["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
