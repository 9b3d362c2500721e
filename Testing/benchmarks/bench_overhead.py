"""Host overhead of MAMBO tiled synthesis: the U-Net replaced by a zero-cost denoiser, what is left is ours.

A GPU speeds up the U-Net, not the work around it (contexts, thresholding, blending, scheduler steps, copies). Here
the U-Net returns zeros instantly, so the wall time of stages 2 and 3 (one given global image, every tile active,
fast preset, k = 3) is the host time per image. Prints one JSON object: wall seconds per image (best and median of
`--repeat` runs, without the profiler), the process CPU seconds (less sensitive to other load on a shared
machine) and, from one cProfile run, the share of each part. The stand-in's zeros are allocated once per batch
shape (`--fresh-output`: per call).

    nice -n 10 python Testing/benchmarks/bench_overhead.py [--cases 1024:64,3840:256] [--repeat 7]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import MammoSynthLogic  # noqa: E402,F401  before torch, as in the `mammosynth` command: huge-page canvases
import torch  # noqa: E402

# part name -> (predicate on a cProfile key (file, line, function)); a part's time is the cumulative time of its
# outermost matching calls, so nested matches are not counted twice
PARTS = {
    "thresholding": lambda f, fn: fn == "_threshold_sample",
    "scheduler_step": lambda f, fn: "scheduling_" in f and fn in ("step", "multistep_dpm_solver_second_order_update",
                                                                   "multistep_dpm_solver_first_order_update"),
    "contexts": lambda f, fn: "MammoSynthLogic" in f and "context" in fn,
    "noise": lambda f, fn: "MammoSynthLogic" in f and fn in ("randn", "generators"),
    "denoiser_stand_in": lambda f, fn: f.endswith("bench_overhead.py") and fn == "forward",
}


class ZeroUNet(torch.nn.Module):
    """Zero-cost denoiser with a U-Net's call signature: ε = 0 for every input, no arithmetic.

    The zeros are allocated once per batch shape and handed out on every call, as a GPU's caching allocator hands a
    U-Net its output memory: a fresh 16 MB CPU tensor per call costs about 2 ms of page faults (0.2 s per 3840²
    image), the allocator's time, not ours. `fresh=True` measures that way (`--fresh-output`)."""

    def __init__(self, fresh: bool = False):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the pipeline reads the device from the parameters
        self.fresh = fresh
        self.outputs: dict = {}

    def forward(self, x: torch.Tensor, t) -> types.SimpleNamespace:
        shape = (x.shape[0], 1, *x.shape[2:])
        if self.fresh:
            return types.SimpleNamespace(sample=torch.zeros(shape, device=x.device))
        if shape not in self.outputs:
            self.outputs[shape] = torch.zeros(shape, device=x.device)
        return types.SimpleNamespace(sample=self.outputs[shape])


def zero_pipeline(s: int, k: int, device: str, fresh: bool = False):
    """A MAMBO pipeline of three zero-cost bundles at model size s (aligned contexts, as the embedded bundles)."""
    from MammoSynthLogic.bundles import Bundle
    from MammoSynthLogic.pipelines.mambo import MamboPipeline
    from tiny_bundles import ddpm_scheduler

    config = dict(ddpm_scheduler().config)

    def bundle(role: str) -> Bundle:
        manifest = {"role": role, "image_size": s, "k": k, "aligned_context": role != "mambo-global"}
        return Bundle(manifest=manifest, path=Path(role), unet=ZeroUNet(fresh).to(device), scheduler_config=config)

    return MamboPipeline(bundle("mambo-global"), bundle("mambo-local"), bundle("mambo-patch"), device=device)


def global_disc(s: int):
    """A bright disc against the left edge: one fixed global image (stage 1 is not timed)."""
    import numpy as np

    yy, xx = np.mgrid[:s, :s]
    return np.where((yy - s / 2) ** 2 + xx ** 2 < (0.45 * s) ** 2, 0.6, 0.0).astype(np.float32)


def parts(profile: cProfile.Profile, total: float) -> dict:
    """Seconds and share of total per part; `other` is the remainder (canvas arithmetic, copies, Python)."""
    stats = pstats.Stats(profile).stats
    out = {}
    for name, match in PARTS.items():
        hit = {key for key in stats if match(key[0], key[2])}
        seconds = sum(stats[key][3] for key in hit if not any(c in hit for c in stats[key][4]))
        out[name] = seconds
    out["scheduler_step"] -= min(out["scheduler_step"], out["thresholding"])  # step() calls the thresholding
    out["other"] = max(0.0, total - sum(out.values()))
    return {k: {"s": round(v, 3), "share": round(v / total, 3)} for k, v in out.items()}


def top_functions(profile: cProfile.Profile, n: int = 8) -> list:
    """The n functions with the most own time: where the remainder goes."""
    stats = pstats.Stats(profile).stats
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{"function": f"{Path(k[0]).name}:{k[2]}", "own_s": round(v[2], 3), "calls": v[1]} for k, v in rows]


def run_case(size: int, s: int, k: int, repeat: int, device: str, fresh: bool) -> dict:
    from MammoSynthLogic.pipelines.mambo import MamboSettings

    from MammoSynthLogic.devices import default_chunk

    pipe = zero_pipeline(s, k, device, fresh)
    # U-Net calls per step as a CUDA run makes them (the denoiser stands in for a GPU)
    settings = MamboSettings.preset("fast", skip_background=False, chunk=default_chunk("cuda"))
    g = global_disc(s)

    def once():
        start, cpu = time.perf_counter(), time.process_time()
        result = pipe(size, 0, settings, global01=g)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu, result

    once()  # warm-up: imports, allocator
    walls, cpus = zip(*[once()[:2] for _ in range(repeat)])
    profile = cProfile.Profile()
    profile.enable()
    profiled, _, result = once()
    profile.disable()
    return {"size": size, "s": s, "k": k, "chunk": settings.chunk, "tiles": result.tiles,
            "unet_calls": {n: c.batches for n, c in result.counters.items()},
            "host_s_best": round(min(walls), 3), "host_s_median": round(statistics.median(walls), 3),
            "runs": [round(w, 3) for w in walls], "cpu_s_best": round(min(cpus), 3),
            "profiled_s": round(profiled, 3),
            "parts": parts(profile, profiled), "top_own_time": top_functions(profile)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="1024:64,3840:256", help="size:s pairs, comma separated")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: comparable on a shared machine)")
    ap.add_argument("--fresh-output", action="store_true",
                    help="the stand-in allocates its zeros on every call (adds the CPU allocator's page faults)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    cases = [tuple(int(v) for v in c.split(":")) for c in args.cases.split(",")]
    report = {"what": "host seconds per image, zero-cost denoiser, stages 2-3, fast preset, every tile active",
              "device": args.device, "threads": args.threads, "fresh_output": args.fresh_output,
              "torch": torch.__version__,
              "cases": [run_case(size, s, args.k, args.repeat, args.device, args.fresh_output) for size, s in cases]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
