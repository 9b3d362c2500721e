"""Memory guard: sizes that cannot fit in the free RAM are refused in one line before any work."""
from __future__ import annotations

import pytest
import torch

from MammoSynthLogic.cli import main
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.memory import check_fits, mambo_bytes, source_bytes

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
