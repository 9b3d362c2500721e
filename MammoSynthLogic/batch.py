"""Many synthetic images, sharded over processes, GPUs and machines: a synthetic training set at cluster scale.

- Ranks come from the launcher's environment (`torchrun`, `accelerate launch`: RANK, WORLD_SIZE, LOCAL_RANK); the
  seed at position i of the run goes to rank i mod WORLD_SIZE, so no rank needs to talk to another to split work.
- One file per seed, named by the seed and written atomically with its provenance (DICOM: in the header;
  PNG/NRRD: a `.json` sidecar written after the image), so a file that exists is complete.
- A restarted run skips every seed whose file is complete; `batch.json` holds the run's parameters, and a restart
  with other parameters into the same folder is refused instead of mixing two runs.
- The manifest (CSV, one row per image: seed, file, parameters) is rebuilt from the files' own provenance by rank
  0 after all ranks finish (gloo barrier), so it is right whatever was interrupted or restarted, and with any
  number of processes.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import io
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.fileio import write_text_atomic
from MammoSynthLogic.progress import Reporter

FORMATS = ("dcm", "png", "nrrd")
RUN_FILE = "batch.json"
MANIFEST = "manifest.csv"
NAME = re.compile(r"^seed-(\d{10})\.(dcm|png|nrrd)$")
BARRIER_TIMEOUT = datetime.timedelta(days=7)  # ranks finish their shards at different times
COLUMNS = ["seed", "file", "size", "laterality", "preset", "sampler", "steps", "global_sampler", "global_steps",
           "tiling", "overlap", "models", "mammosynth_version", "rank", "world_size", "device", "seconds", "settings"]


@dataclasses.dataclass(frozen=True)
class Rank:
    """This process's place in the launch: global rank, number of processes, rank on this machine."""

    rank: int = 0
    world: int = 1
    local: int = 0


def current_rank() -> Rank:
    """From torchrun's / accelerate's environment variables; a plain run is rank 0 of 1."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    rank = Rank(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", env.get("RANK", "0"))))
    if not 0 <= rank.rank < world:
        raise MammoSynthError(f"RANK={rank.rank} WORLD_SIZE={world}", "inconsistent launcher environment")
    return rank


def shard(seeds: Sequence[int], rank: Rank) -> list[int]:
    """The seeds this rank generates: every WORLD_SIZE-th, starting at its rank."""
    return list(seeds[rank.rank::rank.world])


@contextlib.contextmanager
def process_group(rank: Rank) -> Iterator[None]:
    """A gloo process group for the final barrier when there are several ranks (CPU-only coordination)."""
    if rank.world == 1:
        yield
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world, timeout=BARRIER_TIMEOUT)
        except (ValueError, RuntimeError) as e:
            raise MammoSynthError(f"RANK={rank.rank} WORLD_SIZE={rank.world}",
                                  f"cannot join the other processes ({' '.join(str(e).split())[:200]}); launch with "
                                  "torchrun or accelerate launch, which also set MASTER_ADDR and MASTER_PORT") from None
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        import torch.distributed as dist

        dist.barrier()


def image_path(out: Path, seed: int, fmt: str) -> Path:
    return out / f"seed-{seed:010d}.{fmt}"


def sidecar(path: Path) -> Path:
    """Provenance of a PNG or NRRD image (DICOM files carry theirs in the header)."""
    return path.with_name(path.name + ".json")


def is_done(path: Path) -> bool:
    """Written completely: the image exists (atomic) and, for PNG/NRRD, so does its provenance sidecar."""
    return path.is_file() and (path.suffix == ".dcm" or sidecar(path).is_file())


def check_run(out: Path, config: dict) -> None:
    """Record the run's parameters in `batch.json`, or refuse a folder that holds a run with other ones."""
    path = out / RUN_FILE
    config = json.loads(json.dumps(config, sort_keys=True, default=str))  # compare as JSON: tuples are lists there
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise MammoSynthError(path, f"unreadable ({e}); delete it only if the folder holds no images of another run")
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise MammoSynthError(path, f"this folder holds a run with other parameters ({', '.join(diff)} differ); "
                                        "use another --out, or the same parameters to resume it")
        return
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_one(path: Path, pixels: np.ndarray, provenance: dict, **dicom_options) -> Path:
    """The image (atomic), then for PNG/NRRD its provenance sidecar (atomic): a seed is done once both exist."""
    from MammoSynthLogic import __version__
    from MammoSynthLogic.dicom_io import write_image

    write_image(path, pixels, provenance=provenance, **dicom_options)
    if path.suffix != ".dcm":
        record = {"generator": "mammosynth", "mammosynth_version": __version__, **provenance}
        write_text_atomic(sidecar(path), json.dumps(record, sort_keys=True, default=str) + "\n")
    return path


def read_record(path: Path) -> dict:
    """The provenance a file was written with."""
    if path.suffix == ".dcm":
        from MammoSynthLogic.dicom_io import read_provenance

        return read_provenance(path)
    try:
        return json.loads(sidecar(path).read_text())
    except (OSError, ValueError) as e:
        raise MammoSynthError(sidecar(path), f"provenance sidecar unreadable ({e}); delete the image to regenerate it")


def generate_shard(seeds: Sequence[int], out: Path, fmt: str, make: Callable[[int, Reporter], tuple[np.ndarray, dict]],
                   reporter: Reporter, dicom_options: Optional[Callable[[int], dict]] = None) -> dict[str, list[int]]:
    """Generate and write every seed whose file is not complete yet; returns the seeds generated and skipped."""
    inner = Reporter(None, reporter.cancel)  # the pipeline only checks for cancellation; progress is per image
    done: dict[str, list[int]] = {"generated": [], "skipped": []}
    for i, seed in enumerate(seeds):
        path = image_path(out, seed, fmt)
        if is_done(path):
            done["skipped"].append(seed)
        else:
            pixels, provenance = make(seed, inner)
            write_one(path, pixels, provenance, **(dicom_options(seed) if dicom_options else {}))
            done["generated"].append(seed)
        reporter.update("batch-generate", i + 1, len(seeds))
    return done


def manifest_row(path: Path, record: dict) -> dict:
    """One manifest line from a file's provenance."""
    settings = record.get("settings", {})
    models = ";".join(f"{m.get('role')}@{m.get('version')}:"
                      + ",".join(sha[:12] for sha in (m.get("weights_sha256") or {}).values())
                      for m in record.get("models", []))
    batch = record.get("batch", {})
    return {"seed": record.get("seed"), "file": path.name, "size": record.get("size"),
            "laterality": record.get("laterality"), "preset": settings.get("name"), "sampler": settings.get("sampler"),
            "steps": settings.get("steps"), "global_sampler": settings.get("global_sampler"),
            "global_steps": settings.get("global_steps"), "tiling": settings.get("tiling"),
            "overlap": settings.get("overlap"), "models": models, "mammosynth_version": record.get("mammosynth_version"),
            "rank": batch.get("rank"), "world_size": batch.get("world_size"), "device": record.get("device"),
            "seconds": record.get("seconds"), "settings": json.dumps(settings, sort_keys=True)}


def write_manifest(out: Path) -> tuple[Path, int]:
    """`manifest.csv`: every complete image in `out`, sorted by seed, from each file's own provenance."""
    if not out.is_dir():
        raise MammoSynthError(out, "no such folder of batch-generate images")
    files = sorted((int(m.group(1)), p) for p in out.iterdir() if (m := NAME.match(p.name)) and is_done(p))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for _, path in files:
        writer.writerow(manifest_row(path, read_record(path)))
    target = out / MANIFEST
    write_text_atomic(target, buffer.getvalue())
    return target, len(files)
