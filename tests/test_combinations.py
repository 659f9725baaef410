"""Every encoder works with every sampler: each combination composes from the command line and learns a batch."""
from __future__ import annotations

import pytest
import torch

from conftest import compose_train, tiny_overrides
from nerfexp.data.scene import background_color
from nerfexp.pipelines.build import build_pipeline
from nerfexp.train import Trainer

SMALL_GRID = ["encoder.position.n_levels=8", "encoder.position.log2_table_size=14",
              "encoder.position.finest_resolution=256"]


@pytest.mark.parametrize("encoder", ["frequency", "hashgrid"])
@pytest.mark.parametrize("sampler", ["hierarchical", "stratified", "occupancy"])
def test_encoder_sampler_combination_fits_a_batch(encoder, sampler, demo_cache, tmp_path):
    scene = [o for o in tiny_overrides(demo_cache) if not o.startswith("sampler.")]
    # softplus density: a tiny ReLU field can start dead on a 256-ray batch
    size = "sampler.diagonal_steps=32" if sampler == "occupancy" else "sampler.n_samples=32"
    overrides = scene + [f"encoder={encoder}", f"sampler={sampler}", size, "field.density_activation=softplus"]
    overrides += SMALL_GRID if encoder == "hashgrid" else []
    overrides += ["sampler.n_importance=16"] if sampler == "hierarchical" else []
    cfg = compose_train(overrides)
    trainer = Trainer(cfg, tmp_path)
    pipeline = build_pipeline(cfg)
    torch.manual_seed(0)
    split = trainer.train_pixels
    img = torch.randint(0, len(split), (256,))
    i, j = torch.randint(0, split.width, (256,)), torch.randint(0, split.height, (256,))
    rays = split.pixel_rays(img, i, j)
    bg = background_color("white", 256)
    target = split.pixel_colors(img, i, j, bg)
    opt = torch.optim.Adam(pipeline.parameters(), lr=1e-2 if encoder == "hashgrid" else 2e-3)
    losses = []
    for _ in range(40):
        out = pipeline(rays, bg, training=True)
        loss = torch.mean((out["rgb"] - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert out["rgb"].shape == (256, 3) and torch.isfinite(out["depth"]).all()
    assert losses[-1] < 0.6 * losses[0], losses
