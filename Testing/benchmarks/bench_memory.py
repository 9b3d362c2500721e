"""Peak memory of `mammosynth generate` at two sizes against the memory guard's estimate (MammoSynthLogic.memory).

Each size runs in a fresh process (the embedded bundles, fast preset, 3 steps: memory does not depend on the step
count) and reports its peak RSS; the estimate is what `generate` checks against the free RAM before any work.
Prints one JSON object. The machine is shared: peaks vary by a few percent between runs.

    nice -n 10 python Testing/benchmarks/bench_memory.py [--sizes 2048 4096] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def measure(size: int, steps: int, out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "generate", "--size", str(size), "--steps", str(steps),
                           "--seed", "0", "--device", "cpu", "--quiet", "--out", str(out / f"g{size}.dcm")],
                          capture_output=True, text=True, cwd=REPO, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin"})
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    if last["rc"] != 0:
        raise SystemExit(proc.stderr[-2000:])
    return {"size": size, "wall_s": round(time.perf_counter() - start, 1), "peak_gb": round(last["peak_rss_bytes"] / 1e9, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            row = measure(size, args.steps, Path(tmp))
            row["estimate_gb"] = round(estimate(size) / 1e9, 3)
            row["estimate_over_peak"] = round(row["estimate_gb"] / row["peak_gb"], 2)
            rows.append(row)
    print(json.dumps({"benchmark": "memory guard vs peak RSS (generate, embedded bundles, cpu)", "runs": rows}))


if __name__ == "__main__":
    main()
