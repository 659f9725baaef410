"""Mixed precision: which dtype each setting picks, and that training under autocast (bf16, fp16 + scaler) learns."""
from __future__ import annotations

import pytest
import torch

from conftest import compose_train, tiny_overrides
from nerfexp.runtime.amp import amp_dtype
from nerfexp.config import ConfigError
from nerfexp.train import Trainer


def test_amp_modes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None  # off on the CPU by default
    assert amp_dtype("off", cuda) is None
    assert amp_dtype("bf16", cpu) is torch.bfloat16
    assert amp_dtype("fp16", cuda) is torch.float16
    with pytest.raises(ConfigError, match="trainer.amp='half'"):
        amp_dtype("half", cpu)


def train_psnrs(demo_cache, run_dir, mode: str, steps: int = 100) -> tuple[Trainer, list[float]]:
    cfg = compose_train(tiny_overrides(demo_cache) + [f"trainer.amp={mode}", "trainer.val_every=0",
                                                      "trainer.eval_at_end=false", "optim.lr=2e-3",
                                                      "field.density_activation=softplus"])
    trainer = Trainer(cfg, run_dir)
    return trainer, [trainer.train_step()[1] for _ in range(steps)]


@pytest.fixture(scope="module")
def full_precision_psnrs(demo_cache, tmp_path_factory) -> list[float]:
    return train_psnrs(demo_cache, tmp_path_factory.mktemp("fp32"), "off")[1]


@pytest.mark.parametrize("mode, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_training_under_autocast_learns(demo_cache, tmp_path, mode, dtype, full_precision_psnrs):
    trainer, _ = train_psnrs(demo_cache, tmp_path, mode, steps=0)
    seen = []
    hook = trainer.pipeline.fine_field.sigma_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    psnrs = [trainer.train_step()[1] for _ in range(100)]
    hook.remove()
    assert seen[0] == dtype  # the field's layers really ran in reduced precision
    assert trainer.scaler.is_enabled() == (mode == "fp16")
    ref = full_precision_psnrs
    assert sum(psnrs[-5:]) / 5 > sum(psnrs[:5]) / 5 + 3.0, psnrs
    # reduced precision follows the float32 run's curve (it may not lag it by more than a fraction of a dB)
    assert sum(psnrs[-5:]) / 5 > sum(ref[-5:]) / 5 - 0.5, (psnrs[-5:], ref[-5:])
    state = trainer.state_dict()
    if mode == "fp16":  # the loss scale is part of the run's state, so a resume continues with it
        assert state["scaler"]["scale"] > 0
        other = Trainer(trainer.cfg, tmp_path / "resumed", checkpoint=state)
        assert other.scaler.get_scale() == trainer.scaler.get_scale()
    # evaluation renders under the same autocast and hands back float32 images
    out = trainer.pipeline.render_rays_chunked(trainer.val_split.rays(0), torch.ones(3), 4096)
    assert out["rgb"].dtype == torch.float32 and torch.isfinite(out["rgb"]).all()
