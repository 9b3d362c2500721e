"""Memory guard: sizes that cannot fit in the free RAM are refused in one line before any work."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import main
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.memory import (ANOMALY_SOURCE_BYTES_PER_PIXEL, CANVAS_BYTES_PER_PIXEL,
                                    DUALVIEW_WORK_BYTES_PER_PIXEL, EVAL_SOURCE_BYTES_PER_PIXEL,
                                    EVAL_SQUARE_BYTES_PER_PIXEL, GENERATION_SIZE_BYTES_PER_PIXEL, INCEPTION_BYTES,
                                    LPIPS_BYTES_PER_PIXEL, READER_CANVAS_BYTES_PER_PIXEL, REALISM_BYTES_PER_PIXEL,
                                    ImageSet, ModelSize, Networks, anomaly_bytes, anomaly_need, check_fits,
                                    check_terms, dualview_terms, generation_terms, header_shape, lpips_net,
                                    mambo_bytes, reader_study_bytes, realism_terms, source_bytes)
from tiny_bundles import make_tiny_bundle, make_tiny_mambo_set, tiny_unet

torch.set_num_threads(1)


@pytest.mark.parametrize("command", [["generate"], ["batch-generate", "--count", "2"]])
def test_a_huge_size_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys, command):
    out = tmp_path / ("o.dcm" if command[0] == "generate" else "batch")
    absent = tmp_path / "models"  # refused before any model is looked for, let alone loaded
    code = main([*command, "--model", str(absent), "--size", "100000", "--out", str(out), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith("error: --size 100000: needs about ") and " GB, this machine has " in err
    needed = float(err.split("needs about ")[1].split(" GB")[0])
    assert needed > 100000 ** 2 * 4 / 1e9  # at least one float32 canvas of that size
    assert list(tmp_path.iterdir()) == []


def test_the_estimate_grows_with_size_batch_and_model():
    from diffusers import UNet2DModel

    small, wide = (UNet2DModel(sample_size=32, in_channels=3, out_channels=1, block_out_channels=channels,
                               layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                               up_block_types=("UpBlock2D",) * 2) for channels in ((8, 16), (32, 64)))
    sizes = [mambo_bytes(n, [small], 32, 8) for n in (256, 1024, 2048, 4096)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert mambo_bytes(1024, [small], 32, 16) > mambo_bytes(1024, [small], 32, 8)
    assert mambo_bytes(1024, [wide], 32, 8) > mambo_bytes(1024, [small], 32, 8)
    assert source_bytes(4000, 3000) > source_bytes(2000, 3000)


def test_check_fits_compares_with_what_is_free():
    check_fits("--size 10", 1e9, available=2e9)
    with pytest.raises(MammoSynthError, match=r"^--size 10: needs about 3.0 GB, this machine has 2.0 GB free"):
        check_fits("--size 10", 3e9, available=2e9)


FREE = 8e9  # what psutil says is free in the tests below: the same on every machine


@pytest.fixture
def eight_gb_free(monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=FREE))


def huge_header(path, rows: int = 60000, columns: int = 50000):
    """A DICOM whose header announces rows x columns (its pixel data is small: the guard reads the header only)."""
    return save(mammogram_dataset(synthetic_breast(), Rows=rows, Columns=columns), path)


def refusal(capsys) -> tuple[str, float]:
    """The one error line, and the GB it says are needed."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and f"this machine has {FREE / 1e9:.1f} GB free" in err, err
    return err, float(err.split("needs about ")[1].split(" GB")[0])


def test_anomaly_refuses_a_huge_image_before_any_model_is_loaded(tmp_path, capsys, eight_gb_free):
    big = huge_header(tmp_path / "big.dcm")
    code = main(["anomaly", str(big), "--out", str(tmp_path / "a"), "--model", str(tmp_path / "absent"), "--quiet"])
    err, needed = refusal(capsys)
    assert code == 2 and err.startswith(f"error: {big}: needs about ")
    assert needed >= 60000 * 50000 * ANOMALY_SOURCE_BYTES_PER_PIXEL / 1e9  # the source frame's arrays at least
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("level", ["global", "native"])
def test_anomaly_refuses_draws_that_cannot_fit_at_both_levels(tmp_path_factory, tmp_path, capsys, eight_gb_free,
                                                              level):
    tiny = make_tiny_mambo_set(tmp_path_factory.mktemp("tiny"), size=32, k=3)
    src = save(mammogram_dataset(synthetic_breast()), tmp_path / "small.dcm")
    code = main(["anomaly", str(src), "--out", str(tmp_path / "a"), "--model", str(tiny), "--level", level,
                 "--draws", "200000", "--steps", "1", "--device", "cpu", "--quiet"])
    err, needed = refusal(capsys)
    assert code == 2 and err.startswith(f"error: {src} (--level {level}, --draws 200000): needs about ")
    assert needed > FREE / 1e9 and not (tmp_path / "a").exists()


def test_the_anomaly_estimate_follows_draws_level_and_source(tmp_path):
    tiny = ModelSize.read(make_tiny_bundle(tmp_path / "g", "mambo-global", size=32))
    weights = sum(p.numel() * 4 for p in tiny_unet(1, 32).parameters())
    assert weights <= tiny.weight_bytes <= weights + 16_000 and tiny.channels == (8, 16)  # + the file's header
    one = anomaly_need(4000 * 3000, tiny, None, "global", 1, 8)
    assert one == pytest.approx(anomaly_bytes(4000 * 3000, tiny.weight_bytes, (8, 16), 32, 1, working=32))
    assert anomaly_need(4000 * 3000, tiny, None, "global", 100, 8) > one  # draws go through the U-Net together
    assert anomaly_need(8000 * 6000, tiny, None, "global", 1, 8) - one == pytest.approx(
        ANOMALY_SOURCE_BYTES_PER_PIXEL * 36e6)
    patch = ModelSize(image_size=32, full_size=4096, channels=(8, 16), in_channels=3, weight_bytes=tiny.weight_bytes)
    native = anomaly_need(4000 * 3000, tiny, patch, "native", 1, 8)  # a 4096² working canvas and its tiles
    assert native - one > CANVAS_BYTES_PER_PIXEL * (4096 ** 2 - 32 ** 2)
    assert anomaly_need(4000 * 3000, tiny, patch, "native", 1, 64) > native  # more tiles per U-Net call


def test_reader_study_refuses_a_huge_image_or_canvas_before_reading_pixels(tmp_path, capsys, eight_gb_free):
    small = save(mammogram_dataset(synthetic_breast()), tmp_path / "syn" / "small.dcm")
    big = huge_header(tmp_path / "real" / "big.dcm")
    code = main(["reader-study", "prepare", "--real", str(big), "--synthetic", str(small), "--out",
                 str(tmp_path / "s1"), "--quiet"])
    err, needed = refusal(capsys)
    assert code == 2 and err.startswith(f"error: {big}: needs about ") and not (tmp_path / "s1").exists()
    assert needed * 1e9 == pytest.approx(reader_study_bytes(60000 * 50000, 2048 * 1638), rel=0.01)
    code = main(["reader-study", "prepare", "--real", str(small), "--synthetic", str(small), "--rows", "100000",
                 "--out", str(tmp_path / "s2"), "--quiet"])
    err, needed = refusal(capsys)
    assert code == 2 and err.startswith("error: --rows 100000 --columns 80000: needs about ")
    assert needed >= READER_CANVAS_BYTES_PER_PIXEL * 100000 * 80000 / 1e9 and not (tmp_path / "s2").exists()
    assert reader_study_bytes(4736 * 2920, 2048 * 1638) < FREE  # the CBIS-DDSM films at the default size fit


@pytest.mark.parametrize("kind", ["realism", "generation", "dualview"])
def test_evaluate_refuses_a_huge_working_size_in_one_line_before_reading_pixels(tmp_path, capsys, eight_gb_free,
                                                                               kind):
    small = save(mammogram_dataset(synthetic_breast()), tmp_path / "in" / "small.dcm")
    option = {"realism": "--size", "generation": "--size", "dualview": "--work-size"}[kind]
    sets = ([str(small), "--synthetic", str(small)] if kind == "realism" else
            ["--real", str(small.parent), "--synthetic", str(small.parent)])
    absent = ["--features", str(tmp_path / "absent.safetensors")] if kind == "generation" else []  # never loaded
    code = main(["evaluate", kind, *sets, option, "100000", *absent, "--out", str(tmp_path / "e"), "--quiet"])
    err, needed = refusal(capsys)
    assert code == 2 and err.startswith(f"error: {option} 100000: needs about ") and not (tmp_path / "e").exists()
    per_pixel = {"realism": REALISM_BYTES_PER_PIXEL, "generation": GENERATION_SIZE_BYTES_PER_PIXEL,
                 "dualview": DUALVIEW_WORK_BYTES_PER_PIXEL}[kind]
    assert needed >= per_pixel * 100000 ** 2 / 1e9


@pytest.mark.parametrize("kind", ["realism", "generation", "dualview"])
def test_evaluate_refuses_an_image_too_large_to_read_naming_it(tmp_path, capsys, eight_gb_free, kind):
    big = huge_header(tmp_path / "real" / "big.dcm")
    small = save(mammogram_dataset(synthetic_breast()), tmp_path / "syn" / "small.dcm")
    sets = ([str(big), "--synthetic", str(small)] if kind == "realism" else
            ["--real", str(big.parent), "--synthetic", str(small.parent)])
    code = main(["evaluate", kind, *sets, "--out", str(tmp_path / "e"), "--quiet"])
    err, needed = refusal(capsys)
    assert code == 2 and err.startswith(f"error: {big}: needs about ") and not (tmp_path / "e").exists()
    assert needed >= 60000 * 50000 * (EVAL_SOURCE_BYTES_PER_PIXEL + EVAL_SQUARE_BYTES_PER_PIXEL) / 1e9


def test_evaluate_dualview_counts_every_image_of_a_set_it_holds(tmp_path):
    film = ImageSet(largest=tmp_path / "f.dcm", most=4000 * 3000, longest=4000, total=4000 * 3000, count=1)
    many = dataclasses.replace(film, total=1000 * 4000 * 3000, count=1000)
    terms = dict(dualview_terms({"--real R": many, "--synthetic S": film}, 256))
    assert terms["--real R (1000 images)"] == 4.0 * 1000 * 4000 * 3000  # all read (float32) while pairs are found
    assert max(terms, key=terms.get) == "--real R (1000 images)"
    assert terms["--work-size 256"] == pytest.approx((4.0 * 1001 + DUALVIEW_WORK_BYTES_PER_PIXEL) * 256 ** 2)


def test_evaluate_names_the_option_that_weighs_most(tmp_path):
    film = ImageSet(largest=tmp_path / "f.dcm", most=4000 * 3000, longest=4000, total=2 * 4000 * 3000, count=2)
    names = [name for name, _ in generation_terms(film, 1024, 256, 50000, 4, 100)]
    assert names == ["", str(tmp_path / "f.dcm"), "--global-size 256", "--patch-size 50000 --patches 4", "--size 1024"]
    with pytest.raises(MammoSynthError, match=r"^--patch-size 50000 --patches 4: needs about "):
        check_terms(generation_terms(film, 1024, 256, 50000, 4, 100))
    with pytest.raises(MammoSynthError, match=r"^--global-size 30000: needs about "):
        check_terms(generation_terms(film, None, 30000, 256, 4, 100))
    check_terms(realism_terms(film, 1024))  # the defaults on films fit here


def test_image_headers_give_the_shape_the_readers_decode(tmp_path):
    import nrrd
    import numpy as np
    from PIL import Image

    from MammoSynthLogic.metrics.images import read_pixels

    pixels = (np.arange(90 * 70) % 251).reshape(90, 70).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    nrrd.write(str(tmp_path / "a.nrrd"), pixels.astype(np.uint16), index_order="C")
    dicom = save(mammogram_dataset(synthetic_breast(90, 70)), tmp_path / "a.dcm")
    for path in (tmp_path / "a.png", tmp_path / "a.nrrd", dicom):
        assert header_shape(path) == read_pixels(path).shape == (90, 70), path
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert header_shape(tmp_path / "broken.png") == (0, 0)  # the reader reports it later
    images = ImageSet.read([tmp_path / "a.png", dicom, tmp_path / "broken.png"])
    assert (images.most, images.longest, images.total, images.count) == (6300, 90, 12600, 3)
    assert ImageSet.read([dicom, dicom]).count == 2 and ImageSet.read([]).largest is None


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
def test_generation_counts_the_networks_it_is_given(tmp_path, net):
    from safetensors.torch import save_file

    from MammoSynthLogic.metrics.lpips import Lpips

    weights = tmp_path / f"{net}.safetensors"
    save_file({k: v.contiguous() for k, v in Lpips(net).state_dict().items()}, str(weights))
    assert lpips_net(weights) == net  # from the keys and the first kernel, as the loader tells the trunks apart
    features = tmp_path / "inception.safetensors"
    features.write_bytes(b"x" * 1000)  # only its size is read
    film = ImageSet(largest=tmp_path / "f.dcm", most=4000 * 3000, longest=4000, total=200 * 4000 * 3000, count=200)
    bare = dict(generation_terms(film, None, 256, 256, 4, 100, largest_set=100))
    both = dict(generation_terms(film, None, 256, 256, 4, 100, Networks(features, weights), largest_set=100))
    assert both[""] - bare[""] == pytest.approx(1000 + weights.stat().st_size + INCEPTION_BYTES + 4 * 16e6)
    # LPIPS compares 16 thumb pairs at a time (more than the 4 patch pairs of one image): counted there only
    assert both["--global-size 256"] - bare["--global-size 256"] == pytest.approx(
        LPIPS_BYTES_PER_PIXEL[net] * 16 * 256 ** 2)
    assert both["--patch-size 256 --patches 4"] == bare["--patch-size 256 --patches 4"]
    big_patches = dict(generation_terms(film, None, 256, 2048, 4, 100, Networks(lpips=weights), largest_set=100))
    assert big_patches["--patch-size 2048 --patches 4"] == pytest.approx(
        (24.0 * 4 + LPIPS_BYTES_PER_PIXEL[net] * 4) * 2048 ** 2)
    few = dict(generation_terms(film, None, 256, 256, 4, 100, Networks(lpips=weights), largest_set=3))  # 3 pairs
    assert few["--global-size 256"] == pytest.approx(4.0 * (2 * 100 + 4) * 256 ** 2)  # fewer than 4 patch pairs
    assert few["--patch-size 256 --patches 4"] == pytest.approx((24.0 * 4 + LPIPS_BYTES_PER_PIXEL[net] * 4) * 256 ** 2)


def test_generation_refuses_lpips_on_huge_thumbs_before_loading_it(tmp_path, capsys, eight_gb_free):
    from safetensors.torch import save_file

    from MammoSynthLogic.metrics.lpips import Lpips

    weights = tmp_path / "alex.safetensors"
    save_file({k: v.contiguous() for k, v in Lpips("alex").state_dict().items()}, str(weights))
    for i in range(6):
        save(mammogram_dataset(synthetic_breast(seed=i)), tmp_path / "in" / f"{i}.dcm")
    args = ["evaluate", "generation", "--real", str(tmp_path / "in"), "--synthetic", str(tmp_path / "in"),
            "--global-size", "2048", "--out", str(tmp_path / "e"), "--quiet"]
    assert 16 * LPIPS_BYTES_PER_PIXEL["alex"] * 2048 ** 2 > FREE > 2 * 6 * 4.0 * 2048 ** 2  # only LPIPS is too much
    absent = tmp_path / "absent.safetensors"  # refused before any weights file is opened
    code = main([*args, "--lpips-weights", str(weights), "--features", str(absent)])
    err, needed = refusal(capsys)
    assert code == 2 and err.startswith("error: --global-size 2048: needs about ") and not (tmp_path / "e").exists()
