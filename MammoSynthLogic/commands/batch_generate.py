"""`mammosynth batch-generate`: many MAMBO images, seeds sharded over the processes of torchrun / accelerate launch."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from MammoSynthLogic.commands._output import check_send, deliver, new_study, output_options

ORDER = 25


def register(sub, parents) -> None:
    from MammoSynthLogic.commands.generate import sampling_options

    p = sub.add_parser("batch-generate", parents=parents, help="many MAMBO images, sharded over processes and GPUs",
                       description="Generate N synthetic full-resolution mammograms with seeds S, S+1, ..., S+N-1 into "
                       "one folder (files named by seed, each with its provenance). Under `torchrun --nproc_per_node "
                       "G` or `accelerate launch` the seeds are split across processes, GPUs and machines. A run that "
                       "is stopped and started again skips the images already written. manifest.csv lists every "
                       "image with its seed and parameters. Each image is its own synthetic patient and study unless "
                       "--patient-id / --study-uid pin them. Sampling options: see `mammosynth generate --help`.")
    p.add_argument("--count", "--n", dest="n", type=int, metavar="N",
                   help="number of images (seeds seed-start .. seed-start+N-1); under torchrun write --count: "
                   "torchrun's own parser takes --n for one of its options")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--format", choices=["dcm", "png", "nrrd"], default="dcm",
                   help="dcm (default: provenance in the header), png (16-bit) or nrrd (provenance in a .json beside)")
    p.add_argument("--size", type=int, help="side of the square images (default: from the bundles, s·k²)")
    sampling_options(p)
    p.add_argument("--rebuild-manifest", action="store_true",
                   help="only rewrite manifest.csv from the images in --out (e.g. after a crashed run)")
    output_options(p)
    p.set_defaults(func=run)


def _run_config(args, pipe, settings, size: int) -> dict:
    """What must not change between a run and its restart (results do not depend on --batch)."""
    kept = {k: v for k, v in dataclasses.asdict(settings).items() if k != "chunk"}
    models = [{k: b.describe()[k] for k in ("role", "version", "step", "weights_sha256")}
              for b in (pipe.global_, pipe.local, pipe.patch)]
    return {"pipeline": "mambo", "format": args.format, "size": size, "laterality": "L", "settings": kept,
            "models": models}


def run(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic import batch
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.progress import emit_result

    rank = batch.current_rank()
    if args.rebuild_manifest:
        if rank.rank == 0:
            path, count = batch.write_manifest(args.out)
            reporter.log(f"wrote {path} ({count} images)")
        return 0
    if args.n is None or args.n < 1:
        raise MammoSynthError("--count", "give the number of images to generate (a positive number)")
    new_study(args)  # a bad --study-uid or --patient-id fails here, before any model is loaded
    check_send(args)
    if args.size:
        from MammoSynthLogic.memory import check_fits, mambo_bytes

        check_fits(f"--size {args.size}", mambo_bytes(args.size))
    with batch.process_group(rank):  # joined first: a launch problem shows before any model is loaded
        done, manifest = _generate(args, rank, reporter)
    deliver(args, [batch.image_path(args.out, seed, args.format) for seed in done["generated"]], reporter)
    summary = {"rank": rank.rank, "world_size": rank.world, **{k: len(v) for k, v in done.items()}}
    if manifest is not None:
        summary.update(manifest=str(manifest[0]), images_in_folder=manifest[1])
    if args.progress_json:
        emit_result(summary)
    else:
        print(json.dumps(summary))
    return 0


def dicom_options(args: argparse.Namespace, size: int, seed: int) -> dict:
    """How one image is written: its own synthetic patient and study unless --patient-id / --study-uid pin them."""
    return {"laterality": "L", "breast_side": "left", "series_description": f"SYNTHETIC MAMBO {size}px seed {seed}",
            "study": new_study(args)}


def _generate(args: argparse.Namespace, rank, reporter) -> tuple[dict, tuple[Path, int] | None]:
    """This rank's shard, the barrier, and on rank 0 the manifest of the whole folder."""
    import torch

    from MammoSynthLogic import batch
    from MammoSynthLogic.commands.generate import _pipeline, _provenance, _settings
    from MammoSynthLogic.memory import check_mambo

    out: Path = args.out
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        torch.cuda.set_device(rank.local % torch.cuda.device_count())  # "cuda" below is this rank's GPU
    settings = _settings(args)
    pipe = _pipeline(args)
    size = args.size or pipe.default_size()
    check_mambo(size, pipe, settings.chunk, pipe.device)
    out.mkdir(parents=True, exist_ok=True)
    batch.check_run(out, _run_config(args, pipe, settings, size))
    seeds = batch.shard(range(args.seed_start, args.seed_start + args.n), rank)

    def make(seed: int, inner):
        start = time.time()
        result = pipe(size, seed, settings, inner)
        provenance = _provenance("batch-generate", pipe, seed, result, time.time() - start, size=size,
                                 laterality="L", batch={"rank": rank.rank, "world_size": rank.world,
                                                        "seed_start": args.seed_start, "n": args.n})
        return result.image, provenance

    done = batch.generate_shard(seeds, out, args.format, make, reporter, lambda seed: dicom_options(args, size, seed))
    batch.barrier(rank)
    return done, (batch.write_manifest(out) if rank.rank == 0 else None)
