"""The fast path end to end on the demo scene: hash grid + grid field + occupancy marching trains, prunes empty
space, and comes back from a checkpoint with the same grid."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_train, tiny_overrides
from nerfexp.evaluate import evaluate_split, restore_run
from nerfexp.train import Trainer

FAST = ["encoder=hashgrid", "field=grid", "sampler=occupancy", "encoder.position.n_levels=8", "encoder.position.log2_table_size=14", "encoder.position.finest_resolution=256",
        "sampler.resolution=32", "sampler.diagonal_steps=128", "sampler.warmup_steps=64", "sampler.update_every=8", "sampler.max_batch_samples=32768",
        "optim.lr=1e-2", "optim.lr_final=1e-3", "optim.eps=1e-15", "trainer.coarse_loss_weight=0",
        "dataset.background=random"]


def test_hashgrid_occupancy_training_raises_psnr_and_prunes(demo_cache, tmp_path):
    scene = [o for o in tiny_overrides(demo_cache) if not o.startswith(("field.", "sampler."))]
    overrides = scene + FAST + ["trainer.max_steps=250", "trainer.val_every=125"]
    cfg = compose_train(overrides)
    OmegaConf.save(cfg, tmp_path / "config.yaml")  # as train.py does, so evaluate can restore the run
    trainer = Trainer(cfg, tmp_path)
    test = trainer.dataset.load("test")
    before = evaluate_split(trainer.pipeline, test, "white", tmp_path / "before", 4096, trainer.device)["psnr"]
    summary = trainer.fit()
    after = summary["test_psnr"]
    assert after > before + 8.0, (before, after)
    assert after > 18.0, after
    # validation draws the marched samples of a centre ray
    assert (tmp_path / "val" / "rays_step_00000250.png").stat().st_size > 10_000
    sampler = trainer.pipeline.sampler
    # the scene fills a small part of its box: most cells must be marked empty, and rays skip them
    assert sampler.occupancy_fraction() < 0.35, sampler.occupancy_fraction()
    assert sampler.last_samples_per_ray < 0.5 * 128

    # the checkpoint carries the occupancy grid, so evaluation marches the same cells
    eval_cfg = OmegaConf.create({"run": str(tmp_path), "checkpoint": None, "device": "cpu", "dataset": {}})
    pipeline = restore_run(eval_cfg)[2]
    assert torch.equal(pipeline.sampler.occupied, sampler.occupied)
    assert not pipeline.sampler.occupied.all()


# the fast path, and an integrated frequency encoding: each ray's own footprint must reach its samples' encoding,
# in the density pass that drops samples behind opaque matter too
HASH = ["field.density_bias=1.0", "+encoder.position.init_scale=1.0"]
INTEGRATED = ["encoder=frequency", "encoder.position.integrated=true", "field.density_bias=1.0"]


@pytest.mark.parametrize("encoder", [HASH, INTEGRATED], ids=["hashgrid", "integrated-frequency"])
def test_rendering_front_to_back_gives_the_density_pass_images(encoder):
    """Evaluation queries marched samples front to back; the image is the one the density pass gives, from the
    same kept samples (the field counts the same points)."""
    from nerfexp.cameras import RayBundle
    from nerfexp.pipelines.build import build_pipeline

    torch.manual_seed(0)
    overrides = [o for o in FAST if not o.startswith("encoder.")] if encoder is INTEGRATED else FAST
    cfg = compose_train(overrides + encoder)
    pipeline = build_pipeline(cfg).eval()
    n = 512
    origins = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1) * 3.0
    dirs = torch.nn.functional.normalize(torch.randn(n, 3) * 0.3 - origins, dim=-1)
    footprint = torch.stack([torch.zeros(n), torch.rand(n) * 0.02], dim=-1)  # each ray its own
    rays = RayBundle(origins, dirs, dirs, torch.full((n, 1), 0.5), torch.full((n, 1), 6.0), footprint=footprint)
    outs, counts = {}, {}
    for front_to_back in (False, True):
        pipeline.sampler.front_to_back = front_to_back
        before = int(pipeline.points_queried)
        outs[front_to_back] = pipeline.render_rays_chunked(rays, torch.ones(3), chunk=200)
        counts[front_to_back] = int(pipeline.points_queried) - before
    stopped = (outs[True]["acc"] > 1 - 1e-4).float().mean()
    assert 0.2 < stopped < 0.8, stopped  # about half the rays turn opaque on the way: the early stop matters
    for key in ("rgb", "depth", "acc"):
        torch.testing.assert_close(outs[True][key], outs[False][key], rtol=1e-4, atol=1e-5)
    assert counts[True] == counts[False] > 0
    if encoder is INTEGRATED:  # the footprints reached the encoding: without them the image differs
        plain = pipeline.render_rays_chunked(RayBundle(origins, dirs, dirs, rays.near, rays.far), torch.ones(3), 200)
        assert (plain["rgb"] - outs[True]["rgb"]).abs().max() > 1e-3


def test_marched_samples_reach_the_field_in_bucket_sizes_and_render_the_same_image(monkeypatch):
    """Rendering gathers each round's samples to a bucket size of rows (oneDNN keeps a kernel per row count): every
    product sees a bucket size, no MLP copies its input to pad it, and the image is the one without the padding."""
    from nerfexp.cameras import RayBundle
    from nerfexp.fields import linear_relu as lr
    from nerfexp.pipelines import nerf as nerf_pipeline
    from nerfexp.pipelines.build import build_pipeline

    torch.manual_seed(1)
    pipeline = build_pipeline(compose_train(FAST + HASH)).eval()
    n = 700
    origins = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1) * 3.0
    dirs = torch.nn.functional.normalize(torch.randn(n, 3) * 0.3 - origins, dim=-1)
    rays = RayBundle(origins, dirs, dirs, torch.full((n, 1), 0.5), torch.full((n, 1), 6.0))
    with monkeypatch.context() as m:
        m.setattr(nerf_pipeline, "bucket_index", lambda index: index)
        plain = pipeline.render_rays_chunked(rays, torch.ones(3), chunk=n)
    rows, copies = [], []
    product, pad_rows = lr._product, lr.pad_rows
    monkeypatch.setattr(lr, "_product", lambda x, *args: rows.append(len(x)) or product(x, *args))
    monkeypatch.setattr(lr, "pad_rows", lambda x: copies.append(lr.row_bucket(len(x)) != len(x)) or pad_rows(x))
    out = pipeline.render_rays_chunked(rays, torch.ones(3), chunk=n)
    assert len(rows) >= 10 and all(lr.row_bucket(r) == r for r in rows)  # a few rounds, 5 layers each
    assert len(set(rows)) > 1 and copies and not any(copies)
    for key in ("rgb", "depth", "acc"):
        torch.testing.assert_close(out[key], plain[key], rtol=1e-4, atol=1e-5)
