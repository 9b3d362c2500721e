"""MAM-E text-to-mammogram pipeline and `mammosynth text2mammo`, with a tiny random Stable Diffusion bundle."""
from __future__ import annotations

import json
import threading

import numpy as np
import pydicom
import pytest
import torch

from dicom_factory import dciodvfy_errors, mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import read_mammogram, read_provenance
from MammoSynthLogic.errors import Cancelled, MammoSynthError
from MammoSynthLogic.pipelines.text2mammo import SDSettings, sd_scheduler, text2mammo
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sd_bundles import load_sd_bundle
from tiny_sd import make_tiny_sd_bundle

torch.set_num_threads(1)
PROMPT = "a siemens mammogram in mlo view with small area and very high density"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_sd_bundle(tmp_path_factory.mktemp("sd") / "mame-text", "mame-text")


@pytest.fixture(scope="module")
def bundle(model_dir):
    return load_sd_bundle(model_dir, "mame-text")


def _record_unet(unet, calls):
    return unet.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((args[0].shape[0], kwargs["encoder_hidden_states"].clone())),
        with_kwargs=True)


def _embed(pipe, text):
    ids = pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0][0]


@pytest.mark.parametrize("guidance, batch", [(5.0, 2), (1.0, 1)])
def test_guidance_doubles_the_unet_batch(bundle, guidance, batch):
    calls = []
    handle = _record_unet(bundle.pipeline.unet, calls)
    try:
        text2mammo(bundle, SDSettings(PROMPT, guidance=guidance, steps=3), seed=0)
    finally:
        handle.remove()
    assert [b for b, _ in calls] == [batch] * 3


def test_negative_prompt_is_the_unconditional_half(bundle):
    negative = "a hologic mammogram in cc view with medium area and low density"
    calls = []
    handle = _record_unet(bundle.pipeline.unet, calls)
    try:
        text2mammo(bundle, SDSettings(PROMPT, negative_prompt=negative, guidance=4.0, steps=2), seed=0)
    finally:
        handle.remove()
    uncond, cond = calls[0][1]
    neg, pos, empty = (_embed(bundle.pipeline, t) for t in (negative, PROMPT, ""))
    assert torch.allclose(uncond, neg, atol=1e-5) and torch.allclose(cond, pos, atol=1e-5)
    assert not torch.allclose(neg, empty, atol=1e-3)  # the check could fail: the negative prompt changes the half


def test_defaults_are_mame_dpm_solver_24_steps_guidance_5(bundle, monkeypatch):
    from diffusers import DPMSolverMultistepScheduler

    settings = SDSettings(PROMPT)
    assert (settings.steps, settings.guidance, settings.sampler) == (24, 5.0, "dpm++")
    scheduler = sd_scheduler("dpm++", bundle.pipeline.scheduler.config)
    assert isinstance(scheduler, DPMSolverMultistepScheduler) and scheduler.config.algorithm_type == "dpmsolver++"
    calls = []
    handle = _record_unet(bundle.pipeline.unet, calls)
    try:
        text2mammo(bundle, settings, seed=1)
    finally:
        handle.remove()
    assert len(calls) == 24
    with pytest.raises(MammoSynthError, match="choose one of dpm"):
        SDSettings(PROMPT, sampler="heun")


def test_samplers_seeded_and_sized(bundle):
    a = text2mammo(bundle, SDSettings(PROMPT, steps=3, sampler="euler"), seed=5)
    b = text2mammo(bundle, SDSettings(PROMPT, steps=3, sampler="euler"), seed=5)
    c = text2mammo(bundle, SDSettings(PROMPT, steps=3, sampler="ddim"), seed=5)
    assert a.shape == (32, 32) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert text2mammo(bundle, SDSettings(PROMPT, steps=2), seed=5, size=48).shape == (48, 48)
    with pytest.raises(MammoSynthError, match="multiple of 8"):
        text2mammo(bundle, SDSettings(PROMPT, steps=2), seed=5, size=30)


def test_cancel_stops_between_steps(bundle):
    cancel = threading.Event()
    seen = []

    def callback(stage, done, total):
        seen.append((stage, done, total))
        if done == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        text2mammo(bundle, SDSettings(PROMPT, steps=5), seed=0, reporter=Reporter(callback, cancel))
    assert seen == [("text2mammo", 1, 5), ("text2mammo", 2, 5)]


def _cli(*argv):
    return main(["text2mammo", *map(str, argv), "--quiet"])


def test_cli_dicom_valid_synthetic_reproducible_and_mirrored(model_dir, tmp_path):
    common = ["--model", model_dir, "--vendor", "SIEMENS", "--view", "MLO", "--density", "D", "--area", "small",
              "--steps", 3, "--guidance", 6, "--negative-prompt", "blurry", "--seed", 7, "--size", 64]
    left, again, right = tmp_path / "l.dcm", tmp_path / "l2.dcm", tmp_path / "r.dcm"
    assert _cli(*common, "--out", left) == 0 and _cli(*common, "--out", again) == 0
    assert _cli(*common, "--laterality", "R", "--out", right) == 0
    assert dciodvfy_errors(left) == [] and dciodvfy_errors(right) == []
    ds = pydicom.dcmread(left)
    assert ds.SeriesDescription.startswith("SYNTHETIC") and ds.PatientName.family_name == "SYNTHETIC"
    assert ds.Modality == "MG" and ds.ViewPosition == "MLO" and ds.Laterality == "L" and ds.ConversionType == "SYN"
    assert pydicom.dcmread(right).Laterality == "R"
    image = read_mammogram(left)
    assert (image.view, image.laterality, image.rows) == ("MLO", "L", 64)
    prov = read_provenance(left)
    assert prov["prompt"] == "a siemens mammogram in MLO view with small area and very high density" and prov["negative_prompt"] == "blurry" and prov["seed"] == 7
    assert (prov["guidance"], prov["steps"], prov["sampler"]) == (6.0, 3, "dpm++")
    assert prov["model"]["role"] == "mame-text"
    pixels = ds.pixel_array
    assert np.array_equal(pixels, pydicom.dcmread(again).pixel_array)
    assert np.array_equal(pydicom.dcmread(right).pixel_array, pixels[:, ::-1])
    assert not np.array_equal(pixels, pixels[:, ::-1])


def test_cli_like_a_real_image_and_progress_json(model_dir, tmp_path, capsys):
    src = save(mammogram_dataset(synthetic_breast(256, 192), ViewPosition="CC", ImageLaterality="R",
                                 Manufacturer="HOLOGIC, Inc."), tmp_path / "src.dcm")
    out = tmp_path / "like.dcm"
    assert main(["text2mammo", "--model", str(model_dir), "--like", str(src), "--density", "B", "--steps", "2",
                 "--seed", "3", "--out", str(out), "--progress-json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["done"] for line in lines if line["type"] == "progress"] == [1, 2]
    assert lines[-1] == {"type": "result", "outputs": [str(out)], "seed": 3}
    # vendor, view, laterality and area come from the real image (its half-ellipse covers 40 % of it: "medium"),
    # the density from the option
    assert read_provenance(out)["prompt"] == "a hologic mammogram in CC view with medium area and low density"
    written = pydicom.dcmread(out)
    assert (written.ViewPosition, written.Laterality) == ("CC", "R")


def test_cli_bad_output_type_fails_before_loading(tmp_path, capsys):
    assert _cli("--model", tmp_path / "no_such_model", "--out", tmp_path / "x.jpg") == 2
    err = capsys.readouterr().err
    assert "use a .dcm, .png or .nrrd" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
