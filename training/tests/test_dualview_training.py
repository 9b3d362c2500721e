"""Dual-view training: pairs found by patient/study/laterality or from a CSV, a few steps, the bundle it exports."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from training_helpers import ROOT, real_mammogram_paths
from mammosynth_training.config import load_config
from mammosynth_training.dualview_data import DualViewDataset, find_pairs, pairs_from_csv, pairs_from_dicoms
from mammosynth_training.dualview_fit import base_model, train_dualview
from mammosynth_training.fit import noisy_input

TINY = ROOT / "training" / "configs" / "dualview-tiny.yaml"


def breast(size: int, radius: float, side: str = "left") -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    x0 = 0 if side == "left" else size
    return np.where((yy - size / 2) ** 2 + (xx - x0) ** 2 < radius ** 2, 0.7, 0.0).astype(np.float32)


@pytest.fixture
def pair_folder(tmp_path) -> Path:
    """Two synthetic patients: one with both views of the left breast, one with only a CC (no pair)."""
    from MammoSynthLogic.dicom_io import SyntheticStudy, write_synthetic_dicom

    folder = tmp_path / "dicoms"
    a, b = SyntheticStudy.new(1), SyntheticStudy.new(2)
    for name, study, view, side, radius in (("a_cc", a, "CC", "left", 30), ("a_mlo", a, "MLO", "left", 36),
                                            ("b_cc", b, "CC", "right", 28)):
        write_synthetic_dicom(folder / f"{name}.dcm", breast(96, radius, side), provenance={"seed": 0}, view=view,
                              laterality="L" if side == "left" else "R", study=study,
                              breast_side=side)
    return folder


def test_pairs_found_by_patient_study_and_laterality(pair_folder):
    messages = []
    pairs = pairs_from_dicoms([pair_folder], log=messages.append)
    assert len(pairs) == 1
    assert pairs[0].cc.name == "a_cc.dcm" and pairs[0].mlo.name == "a_mlo.dcm" and pairs[0].key[2] == "L"
    assert any("no MLO" in m for m in messages)


def test_real_cbis_pairs():
    paths = real_mammogram_paths()
    pairs = pairs_from_dicoms(sorted({p.parent for p in paths}), log=lambda m: None)
    assert len(pairs) == 4  # 2 patients x L/R
    assert sorted(p.key[2] for p in pairs) == ["L", "L", "R", "R"]
    for pair in pairs:
        assert pair.cc != pair.mlo and pair.cc.parent == pair.mlo.parent


def test_pairs_from_csv(tmp_path, pair_folder):
    table = tmp_path / "pairs.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["patient_id", "laterality", "cc", "mlo"])
        writer.writerow(["P1", "l", "dicoms/a_cc.dcm", "dicoms/a_mlo.dcm"])
    pairs = pairs_from_csv(table)
    assert pairs[0].cc == pair_folder / "a_cc.dcm" and pairs[0].key == ("P1", "", "L")
    assert find_pairs((), str(table))[0].mlo == pair_folder / "a_mlo.dcm"
    with pytest.raises(ValueError, match="no CC/MLO pairs"):
        find_pairs([str(tmp_path / "empty")], None, log=lambda m: None)


def test_dataset_samples_are_rgb_encoded(pair_folder, tmp_path):
    dataset = DualViewDataset.from_pairs(pairs_from_dicoms([pair_folder], log=lambda m: None), 16, tmp_path / "pairs",
                                         seed=0, intensity_jitter=0.05)
    assert np.load(dataset.views[0]).shape == (2, 16, 16)  # the views on disk, read per sample
    x = dataset[3]["pixel_values"]
    assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1
    x01 = (x + 1) / 2
    torch.testing.assert_close(x01[2], (x01[0] - x01[1]).abs(), atol=1e-5, rtol=0)
    torch.testing.assert_close(dataset[3]["pixel_values"], x)  # deterministic in (seed, index)


def test_noise_on_all_channels_for_dualview_only():
    x0 = torch.zeros(2, 3, 4, 4)
    acp = torch.full((10,), 0.25)
    t = torch.tensor([1, 2])
    all3 = noisy_input(x0, acp, torch.ones(2, 3, 4, 4), t)
    first = noisy_input(x0, acp, torch.ones(2, 1, 4, 4), t)
    assert torch.allclose(all3, torch.full_like(all3, 0.75 ** 0.5))
    assert torch.allclose(first[:, 0], torch.full_like(first[:, 0], 0.75 ** 0.5)) and not first[:, 1:].any()


def test_tiny_config_trains_exports_and_loads(tmp_path, pair_folder):
    from MammoSynthLogic.bundles import load_bundle
    from MammoSynthLogic.pipelines.dualview import DualViewPipeline, DualViewSettings

    config = load_config(TINY, [f"data.dicom_dirs=[{pair_folder}]", f"output_dir={tmp_path / 'run'}",
                                f"export_dir={tmp_path / 'bundle'}", "max_steps=3"])
    assert config.optimizer == "adamw" and config.noised_channels == 3
    result = train_dualview(config, resume="none")
    assert result["step"] == 3 and np.isfinite(result["loss"])
    bundle = load_bundle(result["export_dir"])
    assert bundle.role == "dualview" and bundle.manifest["in_channels"] == bundle.manifest["out_channels"] == 3
    assert bundle.manifest["noised_channels"] == [0, 1, 2]
    assert bundle.manifest["config"]["data"]["blue_channel"] == "diff"
    pair = DualViewPipeline(bundle)(0, DualViewSettings.preset("fast", steps=2))
    assert pair.rgb.shape == (3, 16, 16)

    # fine-tuning from that bundle starts from its weights
    tuned = load_config(TINY, [f"init_from={result['export_dir']}"])
    unet = base_model(tuned)
    for name, value in bundle.unet.state_dict().items():
        torch.testing.assert_close(unet.state_dict()[name], value)


def test_grey_base_is_inflated_to_rgb_computing_the_grey_model_per_channel(tmp_path):
    """A grey (1-channel) base such as a MAMBO global bundle: the same image in R, G and B gives the grey model's
    noise prediction in every output channel, so fine-tuning starts from what the grey model knew."""
    from diffusers import UNet2DModel

    from mammosynth_training.models import grey_to_rgb

    grey = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()
    torch.nn.init.normal_(grey.conv_out.weight, std=0.1)  # diffusers starts conv_out at random; make it matter
    grey.save_pretrained(tmp_path / "grey", safe_serialization=True)
    config = load_config(TINY, [f"init_from={tmp_path / 'grey'}"])
    rgb = base_model(config).eval()
    assert (rgb.config.in_channels, rgb.config.out_channels) == (3, 3)
    assert tuple(config.model.block_out_channels) == (8, 16)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 700])
    with torch.no_grad():
        want = grey(x, t).sample
        got = rgb(x.repeat(1, 3, 1, 1), t).sample
    torch.testing.assert_close(got, want.repeat(1, 3, 1, 1), atol=1e-5, rtol=1e-4)
