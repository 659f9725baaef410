"""The fast path end to end on the demo scene: hash grid + grid field + occupancy marching trains, prunes empty
space, and comes back from a checkpoint with the same grid."""
from __future__ import annotations

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
