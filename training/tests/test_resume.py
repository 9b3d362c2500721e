"""An interrupted run resumed from its checkpoint ends exactly where an uninterrupted run ends."""
from __future__ import annotations

import json

import torch
from training_helpers import tiny_config
from safetensors.torch import load_file

from mammosynth_training.checkpoints import STATE_FILE, checkpoint_dirs
from mammosynth_training.fit import train


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _final(run_dir):
    last = checkpoint_dirs(run_dir)[-1]
    state = json.loads((last / STATE_FILE).read_text())
    return state, load_file(last / "model.safetensors"), load_file(last / "ema_unet" / "diffusion_pytorch_model.safetensors")


def test_resume_continues_same_step_and_state(tmp_path, disc_cache):
    common = dict(role="mambo-local", checkpoint_every=2, lr_warmup_steps=3, gradient_accumulation_steps=2)
    straight = train(tiny_config(tmp_path / "a", disc_cache, max_steps=4, **common), resume="none")
    _reset_accelerate()
    first = train(tiny_config(tmp_path / "b", disc_cache, max_steps=2, **common), resume="none")
    _reset_accelerate()
    resumed = train(tiny_config(tmp_path / "b", disc_cache, max_steps=4, **common), resume="latest")

    assert (straight["step"], first["step"], resumed["step"]) == (4, 2, 4)
    state_a, model_a, ema_a = _final(tmp_path / "a")
    state_b, model_b, ema_b = _final(tmp_path / "b")
    assert state_a["step"] == state_b["step"] == 4
    assert abs(state_a["loss"] - state_b["loss"]) < 1e-6
    for name in model_a:  # weights after the 2 resumed steps: optimizer, LR schedule, data and RNG all restored
        torch.testing.assert_close(model_a[name], model_b[name], rtol=0, atol=1e-6)
    for name in ema_a:
        torch.testing.assert_close(ema_a[name], ema_b[name], rtol=0, atol=1e-6)
    # and the resumed run did move: its weights differ from the step-2 checkpoint
    step2 = load_file(tmp_path / "b" / "checkpoints" / "step-0000002" / "model.safetensors")
    assert any(not torch.equal(step2[n], model_b[n]) for n in step2)
