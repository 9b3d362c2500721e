"""Paper-size models: parameter counts against the papers (meta device), a training and a sampling step at a reduced
spatial size on CPU with bf16 autocast and gradient checkpointing; the switches themselves checked on a tiny model."""
from __future__ import annotations

import copy
import importlib.util
import math

import pytest
import torch
from accelerate import Accelerator
from training_helpers import tiny_config

from mammosynth_training.models import build_optimizer, build_unet, enable_memory_options
from mammosynth_training.paper_scale import (PAPER_PARAMETERS, meta_parameter_counts, paper_config, parameters,
                                             role_parts, sampling_step, training_probe)


@pytest.fixture
def two_threads():
    """Both cores for the paper-size steps; the suite's one thread again afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_parameter_counts_match_the_papers():
    counts = meta_parameter_counts()
    for role in ("mambo-global", "mambo-local", "mambo-patch"):
        assert abs(counts[role] / PAPER_PARAMETERS["mambo"] - 1) < 0.01, counts[role]  # 77.4M: "78M"
    assert abs(counts["dualview"] / PAPER_PARAMETERS["celebahq"] - 1) < 0.005  # 113.7M
    assert abs(counts["sd2-base-unet"] / PAPER_PARAMETERS["sd2-base-unet"] - 1) < 0.001  # 865.9M
    assert counts["sd2-base-inpaint-unet"] - counts["sd2-base-unet"] == 320 * 5 * 3 * 3  # 5 more input channels
    assert abs(counts["sd2-base-text-encoder"] / 340.4e6 - 1) < 0.001 and abs(counts["sd-vae"] / 83.65e6 - 1) < 0.001


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paper-patch", "dualview-paper"])
def test_paper_size_training_and_sampling_step_on_cpu(name, two_threads):
    # 32 px is the 6-level U-Net's smallest input: full depth and width at 1/64 of the paper's pixels
    config = paper_config(name, image_size=32, cpu=True, gradient_checkpointing=True, init_from="", compile="no")
    result = training_probe(config, batch_size=2, steps=0)  # one optimizer step
    model = result["model"]
    assert result["parameters"] == parameters(build_unet(config)) > 77e6 and math.isfinite(result["loss"])
    assert result["weights_moved"] and any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    x = torch.randn(2, config.noised_channels, 32, 32, generator=torch.Generator().manual_seed(0))
    context = torch.rand(2, config.in_channels - config.noised_channels, 32, 32) * 2 - 1 \
        if config.in_channels > config.noised_channels else None
    out = sampling_step(model.eval(), result["scheduler"], x, context)
    assert out.shape == x.shape and torch.isfinite(out).all() and (out - x).abs().mean() > 1e-3


@pytest.mark.slow
def test_stable_diffusion_2_base_inpainting_training_and_sampling_step_on_cpu(two_threads):
    """MAM-E's inpainting role at paper size: SD-2-base's U-Net with 9 input channels, text-conditioned through the
    real (frozen) 340M text tower; the text role's U-Net differs only in conv_in's 4 input channels (checked on the
    meta device above), so it is left out: each of these runs takes ~16 GB and ~80 CPU seconds."""
    # 64 px images are 8² latents, the smallest the U-Net's three 2x downsamplings take
    config = paper_config("paper-mame-inpaint", image_size=64, cpu=True, mixed_precision="bf16",
                          gradient_checkpointing=True, init_from="", compile="no")
    config.sd.train_text_encoder = False  # the paper trains it too: AdamW on 1.2B parameters would need 19 GB
    result = training_probe(config, batch_size=1, steps=0, sd2_base=True)  # one AdamW step of the U-Net
    model = result["model"]
    counts = meta_parameter_counts()
    assert parameters(model.unet) == counts["sd2-base-inpaint-unet"] == counts["sd2-base-unet"] + 14400
    assert parameters(model.text_encoder) == counts["sd2-base-text-encoder"] and math.isfinite(result["loss"])
    assert model.unet.conv_in.in_channels == 9 and model.unet.config.cross_attention_dim == 1024
    assert result["weights_moved"] and model.unet.conv_in.weight.requires_grad  # the U-Net's first weight moved
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert any(getattr(m, "gradient_checkpointing", False) is True for m in model.unet.modules())
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.cat([torch.ones(1, 1, 8, 8), torch.randn(1, 4, 8, 8, generator=generator)], 1)  # mask, latents
    input_ids = torch.randint(0, model.text_encoder.config.vocab_size, (1, 77), generator=generator)
    out = sampling_step(model.eval(), result["scheduler"], x, context, input_ids=input_ids)
    assert out.shape == x.shape and torch.isfinite(out).all() and (out - x).abs().mean() > 1e-3


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def _grads(config, batch, checkpointing: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model, loss_fn, _, scheduler = role_parts(config, 2)
    config.gradient_checkpointing = checkpointing
    enable_memory_options(model, config)
    model.train()
    torch.manual_seed(1)
    loss_fn(model, batch, scheduler.alphas_cumprod).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    config = tiny_config(tmp_path, tmp_path, role="mambo-patch")
    batch = role_parts(config, 2)[2]
    plain, checkpointed = _grads(config, batch, False), _grads(config, batch, True)
    for name, grad in plain.items():  # the same computation, recomputed: equal up to float reordering
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_runs_on_cpu_and_stays_close_to_float32(tmp_path):
    seen = []
    losses = {}
    for precision in ("no", "bf16"):
        config = tiny_config(tmp_path, tmp_path, role="mambo-patch", mixed_precision=precision)
        torch.manual_seed(0)
        model, loss_fn, batch, scheduler = role_parts(config, 4)
        model.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        _reset_accelerate()
        accelerator = Accelerator(cpu=True, mixed_precision=precision)
        with accelerator.autocast():
            torch.manual_seed(1)
            losses[precision] = loss_fn(model, batch, scheduler.alphas_cumprod).item()
    assert seen == [torch.float32, torch.bfloat16]
    assert abs(losses["bf16"] / losses["no"] - 1) < 0.05, losses  # bf16 keeps ~3 significant digits


def test_8bit_adam_without_bitsandbytes_is_a_clear_error(tmp_path):
    if importlib.util.find_spec("bitsandbytes"):
        pytest.skip("bitsandbytes is installed")
    config = tiny_config(tmp_path, tmp_path, optimizer="adam8bit")
    with pytest.raises(ValueError, match="needs bitsandbytes"):
        build_optimizer(config, build_unet(config))


@pytest.mark.parametrize("name", ["adam8bit", "adamw8bit"])
def test_8bit_adam_trains_on_cpu_with_8bit_state_close_to_32bit_adam(tmp_path, name):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install -e 'training[adam8bit]')")
    torch.manual_seed(0)
    config = tiny_config(tmp_path, tmp_path, role="mambo-patch", optimizer=name)
    model, loss_fn, batch, scheduler = role_parts(config, 4)
    models = {name: model, name[:-4]: copy.deepcopy(model)}
    initial = copy.deepcopy(model)
    losses, optimizers = {}, {}
    for optimizer_name, net in models.items():
        config.optimizer = optimizer_name
        optimizers[optimizer_name] = optimizer = build_optimizer(config, net)
        losses[optimizer_name] = []
        for _ in range(20):  # the same noise and timesteps every step: one fixed objective
            torch.manual_seed(1)
            loss = loss_fn(net, batch, scheduler.alphas_cumprod)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[optimizer_name].append(loss.item())
    assert losses[name][-1] < 0.2 * losses[name][0], losses[name]  # 1.19 -> 0.10 measured
    large = [(p, q, p0) for p, q, p0 in zip(model.parameters(), models[name[:-4]].parameters(),
                                            initial.parameters()) if p.numel() >= 4096]  # bitsandbytes' min_8bit_size
    assert large
    for p, q, p0 in large:
        state = optimizers[name].state[p]
        assert state["state1"].dtype == state["state2"].dtype == torch.uint8 and state["state1"].shape == p.shape
        # the same path as 32-bit Adam up to the state's quantization (3 % of the distance moved measured)
        assert (p - q).norm() < 0.1 * (q - p0).norm()


def test_compiled_model_trains_checkpoints_and_exports(tmp_path, disc_cache):
    from MammoSynthLogic.bundles import load_bundle
    from mammosynth_training.fit import train

    config = tiny_config(tmp_path / "run", disc_cache, compile="eager", max_steps=2,
                         export_dir=str(tmp_path / "bundle"))  # eager: dynamo's tracing without a C++ compiler
    result = train(config, resume="none")
    assert result["step"] == 2 and math.isfinite(result["loss"])
    bundle = load_bundle(tmp_path / "bundle")  # EMA weights saved from the model without the compile wrapper
    assert parameters(bundle.unet) == parameters(build_unet(config))


def test_gradient_checkpointing_reaches_the_mam_e_unet_and_text_encoder():
    config = paper_config("tiny-cpu-mame-text", gradient_checkpointing=True, cpu=True)
    result = training_probe(config, batch_size=2, steps=0)
    model = result["model"]
    assert result["weights_moved"] and math.isfinite(result["loss"])
    for part in (model.unet, model.text_encoder):
        assert any(getattr(m, "gradient_checkpointing", False) is True for m in part.modules()), type(part).__name__
