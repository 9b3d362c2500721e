"""`mammosynth batch-generate`: seeds sharded over 2 torchrun CPU processes, written once, resumed, manifest."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from MammoSynthLogic import batch
from MammoSynthLogic.dicom_io import read_provenance
from MammoSynthLogic.errors import MammoSynthError
from tiny_bundles import make_tiny_mambo_set

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)
TINY = ["--size", "64", "--steps", "2", "--overlap", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return make_tiny_mambo_set(tmp_path_factory.mktemp("bundles"), size=32, k=3)


def torchrun(out: Path, bundles: Path, count: int, procs: int = 2) -> list[dict]:
    """Run batch-generate under torchrun with `procs` CPU processes; the per-rank result lines."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           "-m", "MammoSynthLogic", "batch-generate", "--count", str(count), "--out", str(out),
           "--model", str(bundles), "--progress-json", *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"type": "result"')]
    assert sorted(r["rank"] for r in results) == list(range(procs)), proc.stdout[-2000:]
    return results


def manifest(out: Path) -> list[dict]:
    with open(out / batch.MANIFEST, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def first_run(bundles, tmp_path_factory):
    """4 seeds by 2 torchrun processes; (folder, per-rank results)."""
    out = tmp_path_factory.mktemp("batch") / "run"
    return out, torchrun(out, bundles, 4)


def test_two_torchrun_processes_write_each_seed_once_and_a_restart_resumes(bundles, first_run):
    out, first = first_run
    assert all(r["world_size"] == 2 for r in first)
    assert sum(r["generated"] for r in first) == 4 and sum(r["skipped"] for r in first) == 0
    files = sorted(out.glob("seed-*.dcm"))
    assert [f.name for f in files] == [f"seed-{s:010d}.dcm" for s in range(4)]
    for f in files:  # each seed was written by the one rank it belongs to, with its provenance
        record = read_provenance(f)
        seed = int(f.stem.split("-")[1])
        assert record["seed"] == seed and record["batch"]["rank"] == seed % 2 and record["batch"]["world_size"] == 2
        assert record["command"] == "batch-generate" and record["size"] == 64
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}

    again = torchrun(out, bundles, 6)  # the restart asks for 2 more: only those are generated
    assert sum(r["generated"] for r in again) == 2 and sum(r["skipped"] for r in again) == 4
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in out.glob("seed-*.dcm") if f.name in before} == before
    rows = manifest(out)
    assert [int(r["seed"]) for r in rows] == list(range(6))
    assert len({r["file"] for r in rows}) == 6 and {r["size"] for r in rows} == {"64"}
    assert all(r["steps"] == "2" and r["world_size"] == "2" and r["models"].count("mambo-") == 3 for r in rows)
    assert not list(out.glob(".*.part"))


def test_one_process_gives_the_same_image_for_a_seed_as_the_sharded_run(bundles, first_run, tmp_path, monkeypatch):
    from MammoSynthLogic.cli import main

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    sharded = first_run[0]  # seed 1 came from rank 1 of 2
    assert main(["batch-generate", "--count", "1", "--seed-start", "1", "--out", str(tmp_path / "single"),
                 "--model", str(bundles), "--quiet", *TINY]) == 0
    a = pydicom.dcmread(sharded / "seed-0000000001.dcm").pixel_array
    b = pydicom.dcmread(tmp_path / "single" / "seed-0000000001.dcm").pixel_array
    # Two processes may take other BLAS kernels (thread count, alignment): last-bit differences that a few sampling
    # steps carry to a few 16-bit levels. Another seed or a rank mix-up changes the image by thousands of levels.
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    assert diff.mean() < 2 and diff.max() < 256
    assert read_provenance(tmp_path / "single" / "seed-0000000001.dcm")["batch"]["rank"] == 0


def test_a_restart_with_other_parameters_is_refused(tmp_path):
    config = {"size": 64, "settings": {"steps": 2}}
    batch.check_run(tmp_path, config)
    batch.check_run(tmp_path, dict(config))  # same parameters: resume
    with pytest.raises(MammoSynthError, match=r"other parameters \(size differ\)"):
        batch.check_run(tmp_path, {**config, "size": 128})


def test_png_is_done_only_with_its_provenance_and_the_manifest_comes_from_the_files(tmp_path):
    pixels = np.full((8, 8), 0.5, dtype=np.float32)
    done = batch.write_one(batch.image_path(tmp_path, 7, "png"), pixels, {"seed": 7, "size": 8, "settings": {"steps": 3}})
    half = batch.image_path(tmp_path, 3, "png")
    batch.write_one(half, pixels, {"seed": 3, "size": 8})
    batch.sidecar(half).unlink()  # as if stopped between the image and its sidecar
    assert batch.is_done(done) and not batch.is_done(half)
    path, count = batch.write_manifest(tmp_path)
    rows = manifest(tmp_path)
    assert count == 1 and [r["seed"] for r in rows] == ["7"] and rows[0]["steps"] == "3"
    assert json.loads(rows[0]["settings"]) == {"steps": 3}


def test_seeds_split_by_rank_cover_the_range_once(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert batch.current_rank() == batch.Rank(2, 3, 0)
    seeds = range(10, 21)
    parts = [batch.shard(seeds, batch.Rank(r, 3)) for r in range(3)]
    assert sorted(s for p in parts for s in p) == list(seeds) and parts[2] == [12, 15, 18]
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(MammoSynthError, match="inconsistent"):
        batch.current_rank()


def test_a_hundred_batch_images_are_a_hundred_patients_and_a_rerun_keeps_the_pixels(bundles, tmp_path, monkeypatch):
    """Issue 18: 100 batch images give 100 synthetic patients (and studies); the same seed in another run gives the
    same pixels under a new patient. Tiny bundles at their own size (32 px, 2 steps) keep it to seconds."""
    from MammoSynthLogic.cli import main

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    smallest = ["--size", "32", "--steps", "2", "--device", "cpu", "--model", str(bundles), "--quiet"]
    assert main(["batch-generate", "--count", "100", "--out", str(tmp_path / "a"), *smallest]) == 0
    first = {f.name: pydicom.dcmread(f) for f in sorted((tmp_path / "a").glob("seed-*.dcm"))}
    assert len(first) == 100
    assert len({ds.PatientID for ds in first.values()}) == 100
    assert len({str(ds.PatientName) for ds in first.values()}) == 100
    assert len({ds.StudyInstanceUID for ds in first.values()}) == 100
    assert len({ds.pixel_array.tobytes() for ds in first.values()}) == 100  # 100 different images, too
    assert main(["batch-generate", "--count", "3", "--seed-start", "41", "--out", str(tmp_path / "b"), *smallest]) == 0
    for f in sorted((tmp_path / "b").glob("seed-*.dcm")):
        again, before = pydicom.dcmread(f), first[f.name]
        assert np.array_equal(again.pixel_array, before.pixel_array)  # the same code path, process and seed
        assert again.PatientID != before.PatientID and again.StudyInstanceUID != before.StudyInstanceUID
