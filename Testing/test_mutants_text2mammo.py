"""MAM-E text-to-mammogram: the behaviour that mutation testing (scripts/mutation.sh pipelines/text2mammo) found
unchecked — the settings' limits and their messages, each sampler built from the pipeline's own schedule without
clipping, the smallest accepted size, a quiet sampling call, the wrong-model error, and which laterality is the
mirror."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines.text2mammo import SDSettings, check_size, run_sd, sd_scheduler, text2mammo
from MammoSynthLogic.sd_bundles import load_sd_bundle
from tiny_sd import make_tiny_sd_bundle

torch.set_num_threads(1)
PROMPT = "a siemens mammogram in cc view with small area and very high density"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_sd_bundle(make_tiny_sd_bundle(tmp_path_factory.mktemp("sd") / "mame-text", "mame-text"), "mame-text")


@pytest.mark.parametrize("fields,message", [
    ({"sampler": "heun"}, "--sampler heun: choose one of dpm++, ddim, ddpm, euler, unipc"),
    ({"steps": 0}, "--steps 0: must be at least 1"),
    ({"guidance": -0.5}, "--guidance -0.5: must be 0 or more (1 = no guidance)"),
])
def test_settings_refuse_what_cannot_run_with_one_message(fields, message):
    with pytest.raises(MammoSynthError) as error:
        SDSettings(PROMPT, **fields)
    assert str(error.value) == message


def test_settings_accept_the_limits_themselves():
    assert SDSettings(PROMPT, steps=1).steps == 1
    assert SDSettings(PROMPT, guidance=0.0).guidance == 0.0 and SDSettings(PROMPT, guidance=0.5).guidance == 0.5


@pytest.mark.parametrize("name,cls", [("dpm++", "DPMSolverMultistepScheduler"), ("ddim", "DDIMScheduler"),
                                      ("ddpm", "DDPMScheduler"), ("euler", "EulerDiscreteScheduler"),
                                      ("unipc", "UniPCMultistepScheduler")])
def test_each_sampler_keeps_the_pipelines_schedule_and_never_clips_latents(name, cls):
    """A schedule of 500 steps with clipping switched on (neither is a default): every sampler keeps the schedule,
    and the ones that can clip do not (latents are not images in [-1, 1])."""
    config = {"num_train_timesteps": 500, "beta_start": 0.001, "beta_end": 0.02, "clip_sample": True,
              "_class_name": "PNDMScheduler", "_diffusers_version": "0.0"}
    scheduler = sd_scheduler(name, config)
    assert type(scheduler).__name__ == cls
    assert scheduler.config.num_train_timesteps == 500 and scheduler.config.beta_start == 0.001
    if name in ("ddim", "ddpm"):
        assert scheduler.config.clip_sample is False
    if name == "dpm++":
        assert scheduler.config.algorithm_type == "dpmsolver++"


def test_an_unknown_sampler_name_is_one_line():
    with pytest.raises(MammoSynthError) as error:
        sd_scheduler("heun", {})
    assert str(error.value) == "sampler heun: unknown sampler; choose one of dpm++, ddim, ddpm, euler, unipc"


def test_the_smallest_size_is_one_vae_step_and_others_are_refused_by_name():
    pipeline = SimpleNamespace(vae_scale_factor=8)
    assert check_size(pipeline, 8) == 8 and check_size(pipeline, 48) == 48
    with pytest.raises(MammoSynthError) as error:
        check_size(pipeline, 30)
    assert str(error.value) == "--size 30: must be a positive multiple of 8 (the VAE works on 8× smaller latents)"


def test_a_model_of_another_role_is_refused_by_its_path():
    inpainter = SimpleNamespace(role="mame-inpaint", path="<inpaint model>", pipeline=None, image_size=32)
    with pytest.raises(MammoSynthError) as error:
        text2mammo(inpainter, SDSettings(PROMPT, steps=1), seed=0)
    assert str(error.value) == ("<inpaint model>: a mame-inpaint model cannot generate from text; pass a mame-text "
                                "model")


def test_left_is_the_models_own_image_and_right_its_mirror(bundle, capsys):
    """MAM-E generates left breasts: laterality L (the default) is the sampling call's image as it is, R its mirror.
    The call prints no progress bar of its own (progress goes to the reporter)."""
    settings = SDSettings(PROMPT, steps=2)
    own = run_sd(bundle.pipeline, settings, 3, "text2mammo", height=32, width=32)
    assert capsys.readouterr().err == ""
    left, right = text2mammo(bundle, settings, seed=3), text2mammo(bundle, settings, seed=3, laterality="R")
    np.testing.assert_array_equal(left, own)  # the same call with the same seed
    np.testing.assert_array_equal(text2mammo(bundle, settings, seed=3, laterality="L"), own)
    np.testing.assert_array_equal(right, own[:, ::-1])
    assert not np.array_equal(own, own[:, ::-1])
