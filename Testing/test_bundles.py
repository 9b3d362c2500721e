"""Model bundles: save/load round trip, checksums, pickle refusal, hub fallback, MAMBO set checks."""
from __future__ import annotations

import json

import pytest
import torch

from MammoSynthLogic import bundles
from MammoSynthLogic.errors import MammoSynthError
from tiny_bundles import make_tiny_bundle, make_tiny_mambo_set


def test_round_trip_keeps_weights_and_manifest(tmp_path):
    path = make_tiny_bundle(tmp_path / "g", "mambo-global", size=32)
    b = bundles.load_bundle(path)
    m = json.loads((path / "manifest.json").read_text())
    assert m["role"] == "mambo-global" and m["image_size"] == 32 and m["in_channels"] == 1 and m["k"] == 3
    assert m["schedule"]["num_train_timesteps"] == 1000 and m["schedule"]["beta_schedule"] == "linear"
    assert "unet/diffusion_pytorch_model.safetensors" in m["files"]
    assert all(len(v) == 64 for v in m["files"].values())
    assert b.scheduler_config["num_train_timesteps"] == 1000
    from tiny_bundles import tiny_unet
    ref = tiny_unet(1, 32, seed=0)
    loaded = b.unet.state_dict()
    # Storing and reading safetensors copies bytes: every weight must come back bit for bit.
    assert all(torch.equal(w, loaded[name]) for name, w in ref.state_dict().items())
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        # The loaded weights are unaligned views into a memory map, so BLAS may pick another kernel and round
        # differently (seen: 1e-6 on AMD EPYC); 1e-4 is far below any real difference between two models.
        torch.testing.assert_close(b.unet(x, 10).sample, ref(x, 10).sample, rtol=0, atol=1e-4)
    assert not list(tmp_path.glob(".*part")), "temporary folder left behind"


def test_corrupt_weights_are_refused(tmp_path):
    path = make_tiny_bundle(tmp_path / "g", "mambo-global")
    w = path / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(MammoSynthError, match="sha256"):
        bundles.load_bundle(path)


@pytest.mark.parametrize("name", ["unet/diffusion_pytorch_model.bin", "extra.ckpt", "x.pkl", "y.pt"])
def test_pickle_files_are_refused(tmp_path, name):
    path = make_tiny_bundle(tmp_path / "g", "mambo-global")
    (path / name).write_bytes(b"\x80\x04N.")
    with pytest.raises(MammoSynthError, match="pickle"):
        bundles.load_bundle(path)


def test_not_a_bundle_and_unknown_role(tmp_path):
    with pytest.raises(MammoSynthError, match="manifest.json"):
        bundles.load_bundle(tmp_path)
    from tiny_bundles import ddpm_scheduler, tiny_unet
    with pytest.raises(MammoSynthError, match="role"):
        bundles.save_bundle(tmp_path / "x", tiny_unet(1), ddpm_scheduler(), {"role": "nonsense"})


def test_offline_hub_id_gives_one_line_how_to(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(MammoSynthError) as e:
        bundles.load_bundle("someone/not-a-real-mambo-model")
    assert "huggingface-cli download" in str(e.value) and "\n" not in str(e.value)


def test_missing_local_path_is_not_a_hub_id(tmp_path):
    with pytest.raises(MammoSynthError, match="no such model folder"):
        bundles.load_bundle(tmp_path / "nowhere" / "deeper")


def test_mambo_set_from_one_folder_and_mismatch(tmp_path):
    root = make_tiny_mambo_set(tmp_path / "set", size=32, k=3)
    g, l, p = bundles.load_mambo_set([str(root)])
    assert (g.role, l.role, p.role) == bundles.MAMBO_ROLES
    assert l.manifest["in_channels"] == 3 and p.describe()["weights_sha256"]
    make_tiny_bundle(tmp_path / "p2", "mambo-patch", k=2)
    with pytest.raises(MammoSynthError, match="disagree on k"):
        bundles.check_mambo_set(g, l, bundles.load_bundle(tmp_path / "p2"))
    make_tiny_bundle(tmp_path / "p3", "mambo-patch", size=16)
    with pytest.raises(MammoSynthError, match="image size"):
        bundles.check_mambo_set(g, l, bundles.load_bundle(tmp_path / "p3"))
    with pytest.raises(MammoSynthError, match="expected a mambo-local"):
        bundles.check_mambo_set(g, p, l)


def test_missing_role_and_default_dir(tmp_path, monkeypatch):
    make_tiny_bundle(tmp_path / "only" / "mambo-global", "mambo-global")
    with pytest.raises(MammoSynthError, match="missing MAMBO bundle"):
        bundles.load_mambo_set([str(tmp_path / "only")])
    assert bundles.default_bundle_dir().parts[-2:] == ("Resources", "models")
    monkeypatch.setattr(bundles, "default_bundle_dir", lambda: tmp_path / "empty")
    with pytest.raises(MammoSynthError, match="embedded MAMBO bundles"):
        bundles.load_mambo_set(None)


def test_overwrite_is_atomic_replace(tmp_path):
    path = make_tiny_bundle(tmp_path / "g", "mambo-global", seed=0)
    first = json.loads((path / "manifest.json").read_text())["files"]
    make_tiny_bundle(tmp_path / "g", "mambo-global", seed=5)
    second = bundles.load_bundle(path).manifest["files"]
    assert first != second and sorted(p.name for p in tmp_path.iterdir()) == ["g"]
