"""MAM-E training: captions, inpainting samples, VAE / text / inpainting runs on tiny models (CPU, seconds)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from training_helpers import ROOT, disc_image

from mammosynth_training.cache import write_entry, write_metadata
from mammosynth_training.config import ModelConfig, TrainConfig, load_config
from mammosynth_training.checkpoints import checkpoint_dirs
from mammosynth_training.sd_data import SDDataset, caption_for, load_items, random_box
from mammosynth_training.sd_fit import build_model, build_pipeline, latent_loss, train_sd
from mammosynth_training.sd_models import inpaint_unet_from, sd_noise_scheduler
from mammosynth_training.sd_tokenizer import build_clip_tokenizer

VIEWS = ["CC", "MLO", "CC", "MLO"]
RADII = [22, 18, 24, 27]  # breast area fractions about 0.49 (of image 0's 64×48 source), 0.25, 0.44, 0.52
BOX = [30, 10, 40, 20]  # x0, y0, x1, y1 in the 64-row × 48-column source of image 0 (flipped when prepared)


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture(scope="module")
def sd_cache(tmp_path_factory):
    """Four 64² disc images; image 0 has a lesion box and a flipped 64×48 source, image 1 vendor and density."""
    root = tmp_path_factory.mktemp("sd") / "cache"
    entries = []
    for i, view in enumerate(VIEWS):
        pixels = disc_image(64, RADII[i], 32, 20)
        entry = {"id": f"img{i}", "view": view, "healthy": True, "size": 64, "vendor": None, "density": None}
        if i == 0:
            entry.update(transform={"source_shape": [64, 48], "flipped": True, "size": 64}, lesion_boxes=[BOX])
        if i == 1:
            entry.update(vendor="HOLOGIC, Inc.", density="C")
        entry.update(write_entry(root, entry["id"], pixels, pixels > 0))
        entries.append(entry)
    write_metadata(root, entries, "4 synthetic discs")
    return root


def _config(tmp_path, cache, role: str, **overrides) -> TrainConfig:
    config = TrainConfig(
        role=role, image_size=32, model=ModelConfig(
            block_out_channels=(16, 32), layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8, attention_head_dim=4),
        output_dir=str(tmp_path / role), optimizer="adamw", learning_rate=2e-3, batch_size=4, max_steps=4,
        lr_warmup_steps=1, cpu=True, num_threads=1, ema_decay=0.9, checkpoint_every=1000, preview_every=0,
        log_every=1, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    config.data.cache, config.data.intensity_jitter = str(cache), 0.0
    config.sd.vae_block_out_channels, config.sd.text_hidden_size, config.sd.max_length = (8, 16), 32, 24
    config.sd.box_min, config.sd.box_max = 0.2, 0.3
    for key, value in overrides.items():
        setattr(config, key, value)
    return config.validate()


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, sd_cache):
    """A VAE stage run of a few steps, exported (the frozen VAE of the from-scratch runs)."""
    tmp = tmp_path_factory.mktemp("vae")
    result = train_sd(_config(tmp, sd_cache, "mame-vae", max_steps=3, export_dir=str(tmp / "vae")), resume="none")
    _reset_accelerate()
    assert np.isfinite(result["loss"])
    return tmp / "vae"


def test_captions_from_metadata(sd_cache):
    assert caption_for({"view": "mlo", "vendor": "SIEMENS", "density": "D"}, 0.7) == \
        "a siemens mammogram in MLO view with big area and very high density"
    assert caption_for({"view": "ML"}, 0.45) == "a mammogram with medium area"
    items = load_items(_config(sd_cache.parent, sd_cache, "mame-text"))
    # area = breast pixels over the source frame: image 0 would be "small" over the whole padded square (0.37)
    assert [it.caption for it in items] == [
        "a mammogram in CC view with medium area",
        "a hologic mammogram in MLO view with small area and high density",
        "a mammogram in CC view with medium area", "a mammogram in MLO view with medium area"]


def test_inpainting_samples(sd_cache, tmp_path):
    config = _config(tmp_path, sd_cache, "mame-inpaint")
    config.sd.caption_dropout = 0.25
    items = load_items(config)
    lesion = np.zeros((32, 32), bool)
    lesion[5:10, 4:9] = True  # BOX mirrored in the 48-column source (x -> 48 - x), halved to 32 px
    np.testing.assert_array_equal(items[0].lesion, lesion)
    assert all(it.lesion is None for it in items[1:])
    tokenizer = build_clip_tokenizer([it.caption for it in items], 24)
    dataset = SDDataset(items, config, tokenizer)
    empty = 0
    for i in range(200):
        s = dataset[i]
        mask = s["mask"][0].numpy()
        assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 0
        image, masked = s["pixel_values"], s["masked_pixel_values"]
        assert image.shape == masked.shape == (3, 32, 32) and torch.equal(image[0], image[2])
        torch.testing.assert_close(masked, image * (1 - s["mask"]))
        assert masked[:, mask > 0].abs().max() == 0
        empty += tokenizer.decode(s["input_ids"], skip_special_tokens=True).strip() == ""
    assert 20 < empty < 80  # caption dropout 0.25 of 200
    rng = np.random.default_rng(0)
    for _ in range(50):
        box = random_box(items[1].breast, rng, 0.2, 0.3)
        rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
        assert items[1].breast[(rows[0] + rows[-1] + 1) // 2, (cols[0] + cols[-1] + 1) // 2]  # centred in the breast
        assert 6 <= rows.size <= 10 and cols.size <= 10  # sides 0.2-0.3 × 32 (columns clipped at the edge)


def test_inpainting_crops_as_the_engine(sd_cache, tmp_path):
    config = _config(tmp_path, sd_cache, "mame-inpaint")
    config.sd.crop_margin, config.data.full_size, config.sd.box_min, config.sd.box_max = 0.5, 64, 0.3, 0.4
    items = load_items(config)
    assert items[0].pixels.shape == (64, 64) and items[0].lesion.sum() == 100  # the 10×10 box at full size
    dataset = SDDataset(items, config, build_clip_tokenizer(["a mammogram"], 24))
    for i in range(40):
        s = dataset[i]
        mask = s["mask"][0].numpy() > 0
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        extent = max(rows.size, cols.size) / 32  # crop = box extent + 50 % on each side, at least the model size
        assert 0.4 <= extent <= 0.6 or extent == 10 / 32  # (image 0's 10-pixel lesion box: a 32-pixel crop)
        torch.testing.assert_close(s["masked_pixel_values"], s["pixel_values"] * (1 - s["mask"]))


def test_latent_input_has_mask_on_latent_grid(sd_cache, tmp_path, vae_dir):
    config = _config(tmp_path, sd_cache, "mame-inpaint")
    config.sd.vae_from = str(vae_dir)
    items = load_items(config)
    tokenizer = build_clip_tokenizer([it.caption for it in items], 24)
    model, vae = build_model(config, tokenizer)
    batch = {k: v[None] for k, v in SDDataset(items, config, tokenizer)[0].items() if isinstance(v, torch.Tensor)}
    seen = {}

    def fake_model(x, t, ids):
        seen["x"] = x
        return torch.zeros_like(x[:, :4])

    latent_loss(vae, inpaint=True)(fake_model, batch, sd_noise_scheduler(config).alphas_cumprod)
    x = seen["x"]
    assert x.shape == (1, 9, 16, 16)
    torch.testing.assert_close(x[0, 4], batch["mask"][0, 0, ::2, ::2])


def test_text_run_overfits_and_exports(sd_cache, tmp_path, vae_dir):
    from MammoSynthLogic.sd_bundles import load_sd_bundle
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    config = _config(tmp_path, sd_cache, "mame-text", max_steps=40, export_dir=str(tmp_path / "bundle"))
    config.sd.vae_from, config.sd.caption_dropout = str(vae_dir), 0.0
    config.data.views = ("MLO",)
    result = train_sd(config, resume="none")
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path / "mame-text" / "tokenizer")  # the run's vocabulary
    dataset = SDDataset(load_items(config), config, tokenizer)
    batch = {k: torch.stack([dataset[i][k] for i in range(8)]) for k in ("pixel_values", "input_ids")}
    initial, vae = build_model(config, tokenizer)  # seeded: the run's starting weights
    trained, _ = build_model(config, tokenizer)
    trained.load_state_dict(load_file(checkpoint_dirs(config.output_dir)[-1] / "model.safetensors"))
    loss_fn, alphas = latent_loss(vae, inpaint=False), sd_noise_scheduler(config).alphas_cumprod

    def fixed_loss(model) -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return loss_fn(model, batch, alphas).item()

    assert result["step"] == 40 and fixed_loss(trained) < 0.7 * fixed_loss(initial)

    bundle = load_sd_bundle(tmp_path / "bundle", "mame-text")
    assert bundle.manifest["step"] == 40 and bundle.image_size == 32
    assert "synthetic discs" in bundle.manifest["training_data"]
    image = bundle.pipeline("a mammogram in MLO view with medium area", num_inference_steps=3, height=32, width=32,
                            output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all() and image.std() > 0


def test_resume_continues_same_step_and_state(sd_cache, tmp_path, vae_dir):
    from safetensors.torch import load_file

    def run(name: str, steps: int, resume: str) -> dict:
        config = _config(tmp_path, sd_cache, "mame-text", max_steps=steps, checkpoint_every=2,
                         output_dir=str(tmp_path / name))
        config.sd.vae_from = str(vae_dir)
        result = train_sd(config, resume=resume)
        _reset_accelerate()
        return result

    assert run("a", 4, "none")["step"] == 4
    shutil.copytree(tmp_path / "a" / "tokenizer", tmp_path / "b" / "tokenizer")  # a learned vocabulary's ids vary
    assert run("b", 2, "latest")["step"] == 2  # no checkpoint yet: starts fresh, keeps the tokenizer
    assert run("b", 4, "latest")["step"] == 4
    last = {n: checkpoint_dirs(tmp_path / n)[-1] for n in "ab"}
    states = {n: json.loads((last[n] / "trainer_state.json").read_text()) for n in "ab"}
    assert states["a"]["step"] == states["b"]["step"] == 4 and abs(states["a"]["loss"] - states["b"]["loss"]) < 1e-6
    for name in ("model.safetensors", "ema_unet/unet/diffusion_pytorch_model.safetensors"):
        a, b = load_file(last["a"] / name), load_file(last["b"] / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    step2 = load_file(tmp_path / "b" / "checkpoints" / "step-0000002" / "model.safetensors")
    assert any(not torch.equal(step2[k], load_file(last["b"] / "model.safetensors")[k]) for k in step2)


def test_inpaint_unet_from_text_unet(sd_cache, tmp_path, vae_dir):
    config = _config(tmp_path, sd_cache, "mame-text")
    config.sd.vae_from = str(vae_dir)
    text_model, _ = build_model(config, build_clip_tokenizer(["a mammogram in CC view"], 24))
    source = text_model.unet
    unet = inpaint_unet_from(source)
    assert unet.config.in_channels == 9 and source.config.in_channels == 4
    torch.testing.assert_close(unet.conv_in.weight[:, :4], source.conv_in.weight)
    assert unet.conv_in.weight[:, 4:].abs().max() == 0
    x, hidden = torch.randn(1, 4, 16, 16), torch.randn(1, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(unet(torch.cat([x, torch.randn(1, 5, 16, 16)], 1), 10, hidden).sample,
                                   source(x, 10, hidden).sample)


def test_inpaint_fine_tune_from_sd_folder(sd_cache, tmp_path, vae_dir):
    """init_from a 4-channel Stable Diffusion folder: the inpainting run widens its U-Net and exports a bundle."""
    from MammoSynthLogic.sd_bundles import load_sd_bundle

    text = _config(tmp_path, sd_cache, "mame-text")
    text.sd.vae_from = str(vae_dir)
    tokenizer = build_clip_tokenizer(["a mammogram in CC view"], 24)
    model, vae = build_model(text, tokenizer)
    build_pipeline("mame-text", model, vae, tokenizer, sd_noise_scheduler(text)).save_pretrained(tmp_path / "sd")
    config = _config(tmp_path, sd_cache, "mame-inpaint", max_steps=2, init_from=str(tmp_path / "sd"),
                     export_dir=str(tmp_path / "inpaint"))
    assert train_sd(config, resume="none")["step"] == 2
    bundle = load_sd_bundle(tmp_path / "inpaint", "mame-inpaint")
    assert bundle.pipeline.unet.config.in_channels == 9 and bundle.manifest["base_model"] == str(tmp_path / "sd")
    image = torch.full((1, 3, 32, 32), 0.5)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    out = bundle.pipeline("a mammogram with a lesion", image=image, mask_image=mask, num_inference_steps=2,
                          height=32, width=32, output_type="np").images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_configs_load():
    paths = sorted((ROOT / "training" / "configs").glob("*-mame-*.yaml"))
    assert len(paths) == 8  # paper text + inpaint; tiny-cpu and embedded vae + text + inpaint
    for path in paths:
        config = load_config(path)
        assert config.role == "mame-" + path.stem.rsplit("-", 1)[1] and config.image_size % 8 == 0


def test_cli_tiny_configs(sd_cache, tmp_path):
    """`mame-fit` on the tiny-cpu configs (VAE, then text on its latents) and `mame-export`."""
    from MammoSynthLogic.sd_bundles import load_sd_bundle

    from mammosynth_training.cli import main

    configs = ROOT / "training" / "configs"
    common = ["--set", f"data.cache={sd_cache}", "--set", "max_steps=2", "--resume", "none"]
    assert main(["mame-fit", "--config", str(configs / "tiny-cpu-mame-vae.yaml"), "--set",
                 f"output_dir={tmp_path / 'vae'}", "--set", f"export_dir={tmp_path / 'vae' / 'out'}", *common]) == 0
    _reset_accelerate()
    assert json.loads((tmp_path / "vae" / "out" / "config.json").read_text())["scaling_factor"] > 0
    assert main(["mame-fit", "--config", str(configs / "tiny-cpu-mame-text.yaml"), "--set",
                 f"output_dir={tmp_path / 'text'}", "--set", "export_dir=null", "--set",
                 f"sd.vae_from={tmp_path / 'vae' / 'out'}", *common]) == 0
    _reset_accelerate()
    assert main(["mame-export", str(tmp_path / "text"), "--out", str(tmp_path / "bundle")]) == 0
    bundle = load_sd_bundle(tmp_path / "bundle", "mame-text")
    assert bundle.manifest["step"] == 2 and bundle.pipeline.vae.config.scaling_factor != 0.18215
