"""Benchmark: images per minute of `mammosynth batch-generate` on this CPU with 1 and 2 processes (torchrun).

Uses the bundles in --model (default: the embedded ones in Resources/models) when all three are there, else tiny
random ones (s = 32, k = 3); the JSON says which. Both runs use one thread per process (OMP_NUM_THREADS=1; the CPU is shared). Prints one JSON
object: wall-clock rate (process start, model loading and writing included) and the generation rate from the
per-image times the files record. Run: nice -n 10 python Testing/benchmarks/bench_batch_generate.py [--n 4]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing"))

from MammoSynthLogic.bundles import MAMBO_ROLES, MANIFEST, default_bundle_dir  # noqa: E402


def bundles(tmp: Path, folder: Path) -> tuple[Path, str]:
    """The bundles in `folder` (default: the embedded ones) if all three are there, else tiny random ones."""
    if all((folder / role / MANIFEST).is_file() for role in MAMBO_ROLES):
        return folder, f"{folder} (steps " + ", ".join(
            str(json.loads((folder / role / MANIFEST).read_text()).get("step")) for role in MAMBO_ROLES) + ")"
    from tiny_bundles import make_tiny_mambo_set

    return make_tiny_mambo_set(tmp / "tiny", size=32, k=3), "tiny random (s=32, k=3; embedded bundles not installed)"


def run(procs: int, n: int, out: Path, model: Path, extra: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           "-m", "MammoSynthLogic", "batch-generate", "--count", str(n), "--out", str(out), "--model", str(model),
           "--device", "cpu", "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    per_rank: dict[str, float] = defaultdict(float)
    for r in rows:
        per_rank[r["rank"]] += float(r["seconds"])
    busiest = max(per_rank.values())
    return {"processes": procs, "images": len(rows), "wall_s": round(wall, 1),
            "images_per_min_wall": round(len(rows) / wall * 60, 2),
            "generation_s_per_image": round(sum(per_rank.values()) / len(rows), 2),
            "images_per_min_generation": round(len(rows) / busiest * 60, 2) if busiest else None,
            "size": int(rows[0]["size"]), "steps": int(rows[0]["steps"])}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4, help="images per run (default 4)")
    parser.add_argument("--size", type=int, help="image side (default: the bundles' full size)")
    parser.add_argument("--steps", type=int, help="denoising steps per stage (default: the fast preset's 25)")
    parser.add_argument("--model", type=Path, default=default_bundle_dir(),
                        help="folder holding the three MAMBO bundles (default: the embedded ones, Resources/models)")
    args = parser.parse_args()
    extra = [*(["--size", str(args.size)] if args.size else []), *(["--steps", str(args.steps)] if args.steps else [])]
    with tempfile.TemporaryDirectory() as tmp:
        model, which = bundles(Path(tmp), args.model)
        runs = [run(p, args.n, Path(tmp) / f"out{p}", model, extra) for p in (1, 2)]
    return {"bundles": which, "cpu_cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "threads_per_process": 1, "runs": runs,
            "speedup_2_vs_1_generation": round(runs[1]["images_per_min_generation"] / runs[0]["images_per_min_generation"], 2)}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
