"""Offline metrics on inputs with known answers: FID/KID, MS-SSIM, KS, LPIPS, weights loading, `evaluate generation`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import write_png16
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.metrics import distances
from MammoSynthLogic.metrics.features import extract
from MammoSynthLogic.metrics.generation import evaluate_generation, feature_distances
from MammoSynthLogic.metrics.images import SummaryOptions
from MammoSynthLogic.metrics.inception import FidInceptionV3, load_inception
from MammoSynthLogic.metrics.lpips import Lpips, load_lpips

torch.set_num_threads(1)


class SmallFeatures(nn.Module):
    """A fixed random conv net: per-channel mean and std of two conv layers (32 features)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 8, 5, stride=2)
        self.b = nn.Conv2d(8, 8, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = torch.relu(self.a(x))
        h2 = torch.relu(self.b(h1))
        return torch.cat([h1.mean((2, 3)), h1.std((2, 3)), h2.mean((2, 3)), h2.std((2, 3))], 1)


def textures(n: int, seed: int, brightness: float = 0.5, grain: float = 0.1, side: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(brightness + grain * rng.standard_normal((side, side)), 0, 1).astype(np.float32) for _ in range(n)]


def save_state(module: nn.Module, path: Path, rename=lambda k: k, dtype=None) -> Path:
    save_file({rename(k): (v.to(dtype) if dtype and v.is_floating_point() else v).contiguous()
               for k, v in module.state_dict().items()}, str(path))
    return path


def test_fid_and_kid_zero_for_identical_sets_and_clearly_positive_for_different_ones():
    model = SmallFeatures().eval()
    real = list(extract(model, textures(24, 0)))
    same = feature_distances(real, real, seed=0)
    other = feature_distances(real, list(extract(model, textures(24, 1, brightness=0.3, grain=0.25))), seed=0)
    assert abs(same["fid"]) < 1e-6
    assert other["fid"] > 1e-2 and other["fid"] > 1e4 * max(abs(same["fid"]), 1e-12)
    assert abs(same["kid_mean"]) < 0.1 * other["kid_mean"]
    assert other["kid_mean"] > 0
    assert same["n_real"] == 24 and same["feature_dims"] == 32
    assert same["fid_real_split"] > abs(same["fid"])  # two halves of one set differ a little: the lower bound


def test_fid_grows_with_the_shift_between_sets():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 4))
    shifts = [distances.fid(a, a + d) for d in (0.0, 0.5, 1.0)]
    assert shifts[0] == pytest.approx(0, abs=1e-9)
    assert shifts[1] == pytest.approx(4 * 0.25, rel=1e-6)  # a pure mean shift adds |Δμ|² (4 dims × 0.5²)
    assert shifts[2] == pytest.approx(4.0, rel=1e-6)


def test_ms_ssim_is_one_for_identical_images_and_lower_for_independent_noise():
    img = textures(1, 3, side=192)[0]
    assert distances.pairwise_ms_ssim([img, img, img])["mean"] == pytest.approx(1.0, abs=1e-5)
    diverse = distances.pairwise_ms_ssim(textures(4, 4, side=192))
    assert diverse["pairs"] == 6 and diverse["mean"] < 0.5


def test_random_pairs_are_capped_and_distinct():
    pairs = distances.random_pairs(100, 50, seed=1)
    assert len(pairs) == 50 == len(set(pairs)) and all(i < j for i, j in pairs)
    assert len(distances.random_pairs(5, 50)) == 10


def test_ks_identical_distributions_p_one_and_shifted_distributions_rejected():
    x = np.random.default_rng(0).random(500)
    same = distances.ks(x, x)
    assert same["statistic"] == 0 and same["pvalue"] == pytest.approx(1.0)
    shifted = distances.ks(x, x + 0.3)
    assert shifted["statistic"] > 0.2 and shifted["pvalue"] < 1e-6


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_from_safetensors_zero_for_identical_positive_for_different(tmp_path, net):
    torch.manual_seed(0)
    reference = Lpips(net)
    for name, p in reference.named_parameters():
        if name.startswith("lin"):
            p.data = p.data.abs()  # LPIPS heads are non-negative
    # torchmetrics names SqueezeNet slices `net.slices.K`: both spellings load
    rename = (lambda k: k.replace("net.slice1.", "net.slices.0.")) if net == "squeeze" else (lambda k: k)
    model = load_lpips(save_state(reference, tmp_path / f"{net}.safetensors", rename))
    a = torch.from_numpy(np.stack(textures(2, 5))).unsqueeze(1).expand(-1, 3, -1, -1)
    b = torch.from_numpy(np.stack(textures(2, 6, brightness=0.2))).unsqueeze(1).expand(-1, 3, -1, -1)
    with torch.no_grad():
        assert torch.allclose(model(a, a), torch.zeros(2), atol=1e-6)
        assert (model(a, b) > 1e-4).all()
        assert torch.allclose(model(a, b), reference(a, b))


def test_inception_loads_from_safetensors_and_gives_2048_features(tmp_path):
    torch.manual_seed(0)
    path = save_state(FidInceptionV3(), tmp_path / "inception.safetensors", dtype=torch.float16)
    model = load_inception(path)
    with torch.no_grad():
        feats = model(torch.rand(2, 3, 64, 64))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


def test_weights_files_missing_pickled_or_foreign_are_one_line_errors(tmp_path):
    missing = tmp_path / "pt_inception.safetensors"
    with pytest.raises(MammoSynthError) as e:
        load_inception(missing)
    assert str(missing) in str(e.value) and "pytorch-fid" in str(e.value) and "\n" not in str(e.value)
    pickled = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    pickled.write_bytes(b"\x80\x04not really")
    with pytest.raises(MammoSynthError, match="pickle weight files are refused"):
        load_inception(pickled)
    foreign = save_state(SmallFeatures(), tmp_path / "small.safetensors")
    with pytest.raises(MammoSynthError, match="not Inception-v3 FID weights"):
        load_inception(foreign)
    with pytest.raises(MammoSynthError, match="not an LPIPS state dict"):
        load_lpips(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(MammoSynthError, match="not a readable safetensors file"):
        load_lpips(garbage)


def test_cli_missing_features_file_exits_with_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "pt_inception.safetensors"
    code = main(["evaluate", "generation", "--real", str(tmp_path), "--synthetic", str(tmp_path),
                 "--features", str(missing), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: ") and str(missing) in err and "weights file not found" in err


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    """real/ as DICOM; same/ the same pixels as PNG with the same names (pairs); other/ darker, coarser breasts."""
    root = tmp_path_factory.mktemp("sets")
    for i in range(4):
        pixels = synthetic_breast(240, 180, side="left" if i % 2 else "right", seed=i)
        save(mammogram_dataset(pixels), root / "real" / f"case{i}.dcm")
        write_png16(root / "same" / f"case{i}.png", pixels)
        other = (synthetic_breast(240, 180, seed=50 + i).astype(np.float32) / 65535) ** 2
        write_png16(root / "other" / f"x{i}.png", other)
    return root


OPTIONS = SummaryOptions(global_size=176, patch_size=32, patches=3, intensity_samples=2000)


def test_evaluate_generation_known_answers_on_identical_and_different_sets(image_sets):
    model, lpips = SmallFeatures().eval(), Lpips("alex")
    same = evaluate_generation(image_sets / "real", image_sets / "same", features=model, lpips=lpips, options=OPTIONS)
    assert same["synthetic"]["paired_with_real"] == 4
    for key in ("global", "patch_roi"):  # the same pixels at the same places
        assert abs(same["fid"][key]["fid"]) < 1e-6, key
    assert same["fid"]["patch_random"]["n_real"] == 12
    assert same["lpips"]["roi_pairs"]["mean"] == pytest.approx(0, abs=1e-6)
    assert same["ks"]["breast_area"]["statistic"] == 0 and same["ks"]["breast_area"]["pvalue"] == pytest.approx(1)
    assert same["ks"]["pixel_intensity"]["statistic"] < 0.05  # two random samples of the same pixels
    assert same["ms_ssim"]["synthetic"]["mean"] == pytest.approx(same["ms_ssim"]["real"]["mean"], abs=1e-6)

    other = evaluate_generation(image_sets / "real", image_sets / "other", features=model, options=OPTIONS,
                                diversity_images=3)
    assert other["ms_ssim"]["synthetic"]["pairs"] == 3  # whole-image versions kept for 3 images per set only
    assert other["fid"]["global"]["fid"] > 1e-3
    # random patches are drawn independently in each set: not 0 for the same images, but far below other images'
    assert other["fid"]["patch_random"]["fid"] > 10 * same["fid"]["patch_random"]["fid"]
    assert "skipped" in other["fid"]["patch_roi"] and "skipped" in other["lpips"]
    assert other["ks"]["pixel_intensity"]["statistic"] > 0.3
    assert any("not comparable with published FIDs" in c for c in other["caveats"])


def test_cli_evaluate_generation_writes_json_and_markdown(image_sets, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["evaluate", "generation", "--real", str(image_sets / "real"), "--synthetic", str(image_sets / "other"),
                 "--global-size", "176", "--patch-size", "32", "--out", str(out), "--quiet"])
    assert code == 0
    result = json.loads((out / "generation.json").read_text())
    assert result["evaluation"] == "generation" and result["real"]["images"] == 4
    assert "no --features given" in result["fid"]["global"]["skipped"]
    markdown = (out / "generation.md").read_text()
    assert "| KS breast pixel intensities | D = " in markdown and "MS-SSIM diversity, synthetic" in markdown
    assert "# Generation metrics" in capsys.readouterr().out
