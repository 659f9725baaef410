"""The numbers a study publishes: the background shows where nothing is, validation is never test, the paper's
network is the paper's, NeuS evaluates as it trains, every crash keeps recent work."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import SHARED_DATA, compose_train, tiny_overrides
from nerfexp.cameras import RayBundle, box_near_far
from nerfexp.config import ConfigError, user_error_message
from nerfexp.data.splits import holdout_splits
from nerfexp.encoders.hashgrid import level_layout
from nerfexp.fields.base import FieldOutputs
from nerfexp.fields.nerf import NeRFField
from nerfexp.fields.sdf import SDFField
from nerfexp.metrics import psnr, ssim
from nerfexp.pipelines.build import build_pipeline
from nerfexp.renderers.neus import NeuSRenderer, eikonal_loss
from nerfexp.samplers.base import RaySamples
from nerfexp.train import Trainer, train


# -- the paper's network ----------------------------------------------------------------------------------------
def test_paper_network_has_the_skip_after_layer_four_and_its_parameter_count():
    cfg = compose_train(["model=nerf", "field.depth=8", "field.width=256", "field.skips=[4]"])
    pipeline = build_pipeline(cfg)
    for field in (pipeline.coarse_field, pipeline.fine_field):
        assert [layer.in_features for layer in field.trunk] == [63, 256, 256, 256, 256, 319, 256, 256]
        # nerf-pytorch's NeRF(D=8, W=256, input_ch=63, input_ch_views=27, skips=[4], use_viewdirs=True)
        assert sum(p.numel() for p in field.parameters()) == 595_844
    x = torch.randn(2, 5, 63)
    rgb, sigma = pipeline.coarse_field(x, torch.randn(2, 27))
    assert rgb.shape == (2, 5, 3) and sigma.shape == (2, 5)


def test_a_skip_after_the_last_layer_is_refused_with_the_key():
    with pytest.raises(ValueError, match=r"field\.skips"):
        NeRFField(63, 27, depth=4, width=32, skips=(3,))


def test_density_noise_goes_in_before_the_activation():
    torch.manual_seed(0)
    field = NeRFField(9, 3, depth=1, width=8, skips=(), density_activation="relu")
    with torch.no_grad():
        field.sigma_head.weight.zero_()
        field.sigma_head.bias.fill_(-5.0)  # empty space: raw density far below zero
    _, sigma = field(torch.randn(64, 32, 9), torch.randn(64, 3), density_noise_std=1.0)
    # relu(-5 + noise) is almost never positive; relu(relu(-5) + noise) would be half the time (mean ~0.4)
    assert (sigma > 0).float().mean() < 0.01 and sigma.mean() < 0.01
    _, clean = field(torch.randn(4, 3, 9), torch.randn(4, 3))
    assert torch.equal(clean, torch.zeros(4, 3))


# -- the background ---------------------------------------------------------------------------------------------
def test_rays_that_miss_the_scene_box_render_the_background_through_a_dense_field():
    cfg = compose_train(["model=nerf", "sampler.n_samples=16", "sampler.n_importance=16", "field.width=16"])
    pipeline = build_pipeline(cfg)
    for field in (pipeline.coarse_field, pipeline.fine_field):
        with torch.no_grad():
            field.sigma_head.bias.fill_(20.0)  # opaque everywhere
    o = torch.tensor([[0.0, 0.0, 4.0], [3.0, 3.0, 4.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    rays = box_near_far(RayBundle(o, d, d, torch.full((2, 1), 2.0), torch.full((2, 1), 6.0)), 1.5)
    bg = torch.tensor([0.2, 0.7, 0.4])
    with torch.no_grad():
        out = pipeline(rays, bg)
    assert out["acc"][0] > 0.99  # through the box: the dense field
    assert out["acc"][1] == 0 and torch.allclose(out["rgb"][1], bg)  # beside it: the background, exactly


def test_neus_rays_that_miss_the_sphere_show_the_background():
    cfg = compose_train(["model=neus", "encoder=frequency", "encoder.position.n_freqs=2", "dataset.bound=1.0",
                         "sampler.n_samples=16", "sampler.n_importance=16"])
    pipeline = build_pipeline(cfg)
    o = torch.tensor([[0.0, 0.0, 3.0], [2.0, 0.0, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    bg = torch.tensor([0.1, 0.2, 0.9])
    with torch.no_grad():
        out = pipeline(RayBundle(o, d, d, torch.full((2, 1), 1.0), torch.full((2, 1), 5.0)), bg)
    assert out["acc"][0] > 0.9 and out["acc"][1] == 0
    assert torch.allclose(out["rgb"][1], bg)


def test_random_background_training_learns_empty_space(demo_cache, tmp_path):
    # with random colours behind the object the model can only match them by rendering nothing there; that is
    # possible only when a ray through empty space keeps its transmittance
    cfg = compose_train(tiny_overrides(demo_cache) + ["dataset.background=random", "trainer.max_steps=300",
                                                      "trainer.val_every=0", "trainer.eval_at_end=false",
                                                      "trainer.ckpt_every=0", "seed=1"])
    trainer = Trainer(cfg, tmp_path)
    trainer.fit()
    split = trainer.val_split
    out = trainer.pipeline.render_rays_chunked(split.rays(0), torch.ones(3), 4096)
    alpha = split.alphas[0].reshape(-1)
    empty, solid = out["acc"][alpha < 0.01].mean(), out["acc"][alpha > 0.99].mean()
    # (an infinite last interval would give acc ~ 1 on every ray)
    assert empty < 0.25 and solid > empty + 0.35, (empty, solid)
    # so the same model renders the right picture on any background
    scores = []
    for bg in (torch.ones(3), torch.zeros(3)):
        pred = trainer.pipeline.render_rays_chunked(split.rays(0), bg, 4096)["rgb"].reshape(split.composited(0, bg).shape)
        scores.append(psnr(pred, split.composited(0, bg)))
    assert min(scores) > 14.0 and abs(scores[0] - scores[1]) < 3.0, scores


def test_mask_term_is_the_cross_entropy_of_opacity_and_alpha():
    from nerfexp.losses import training_loss

    acc = torch.tensor([0.5, 0.9, 0.2], requires_grad=True)
    out = {"rgb": torch.zeros(3, 3), "acc": acc}
    target = torch.full((3, 3), 0.1)
    alpha = torch.tensor([0.0, 1.0, 0.25])
    loss, mse = training_loss(out, target, mask=alpha, mask_weight=0.05)
    bce = -(math.log(0.5) + math.log(0.9) + 0.25 * math.log(0.2) + 0.75 * math.log(0.8)) / 3
    assert math.isclose(float(mse), 0.01, rel_tol=1e-5)
    assert math.isclose(loss.item(), 0.01 + 0.05 * bce, rel_tol=1e-5)
    loss.backward()
    # opacity is pulled towards the alpha: down where the pixel is empty, up where it is solid
    assert acc.grad[0] > 0 and acc.grad[1] < 0 and acc.grad[2] < 0


def test_mask_term_reads_the_alpha_of_the_batch_pixels(demo_cache, tmp_path, monkeypatch):
    import nerfexp.train as train_module

    cfg = compose_train(tiny_overrides(demo_cache) + ["dataset.background=random", "trainer.mask_loss_weight=0.1"])
    trainer = Trainer(cfg, tmp_path)
    seen = {}
    next_batch, loss_fn = trainer.batcher.next, train_module.training_loss

    def record_batch(step):
        seen["px"] = next_batch(step)
        return seen["px"]

    def record_loss(out, target, coarse_weight, mask, mask_weight):
        seen["mask"], seen["weight"] = mask, mask_weight
        return loss_fn(out, target, coarse_weight, mask, mask_weight)

    monkeypatch.setattr(trainer.batcher, "next", record_batch)
    monkeypatch.setattr(train_module, "training_loss", record_loss)
    trainer.compute_loss()
    px, alphas = seen["px"], trainer.train_pixels.alphas[..., 0]
    assert seen["weight"] == 0.1
    assert torch.equal(seen["mask"], alphas[px.image, px.j, px.i])
    assert 0 < float(seen["mask"].mean()) < 1  # a batch with empty and solid pixels: rows and columns tell apart
    assert not torch.equal(seen["mask"], alphas[px.image, px.i, px.j])


# -- NeuS -------------------------------------------------------------------------------------------------------
def test_neus_evaluation_uses_the_autograd_normals_it_trained_with():
    torch.manual_seed(0)
    field = SDFField(pos_dim=3, dir_dim=3, width=32, depth=2, normals="analytic", fd_eps=0.2)
    pts = torch.randn(50, 3) * 0.5
    encode = lambda x: x  # noqa: E731
    _, _, train_grad = field.geometry_with_gradient(pts, encode, training=True)
    with torch.no_grad():
        _, _, eval_grad = field.geometry_with_gradient(pts, encode, training=False)
    with torch.inference_mode():
        _, _, inference_grad = field.geometry_with_gradient(pts, encode, training=False)
    _, _, fd_grad = field._finite_difference(pts, encode)
    assert torch.allclose(eval_grad, train_grad.detach(), atol=1e-6)
    assert torch.allclose(inference_grad, train_grad.detach(), atol=1e-6)
    assert not torch.allclose(fd_grad, train_grad.detach(), atol=1e-3)  # the step is large: differences show


def test_eikonal_term_counts_only_points_inside_the_sphere():
    grad = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    inside = torch.tensor([True, True, False])
    assert eikonal_loss(grad, inside).item() == pytest.approx(0.5)  # ((2-1)^2 + 0) / 2; the outlier ignored
    assert eikonal_loss(grad, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_neus_sharpness_rises_when_the_surface_must_be_sharp():
    # a plane at t = 4 seen head-on; only samples within 0.05 of it have the target colour, so the rendered
    # colour matches only when the weights concentrate there: the learned s must grow
    renderer = NeuSRenderer(init_variance=0.2)
    t = torch.linspace(3.0, 5.0, 201).unsqueeze(0)
    dists = torch.full_like(t, 0.01)
    mid = t + 0.005
    sdf = 4.0 - mid
    grad = torch.tensor([0.0, 0.0, 1.0]).expand(1, 201, 3)
    rgbs = ((mid - 4.0).abs() < 0.05).float().unsqueeze(-1).expand(1, 201, 3)
    ray = RayBundle(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([[0.0, 0.0, -1.0]]),
                    torch.full((1, 1), 3.0), torch.full((1, 1), 5.0))
    opt = torch.optim.Adam(renderer.parameters(), lr=1e-2)
    s0 = renderer.inv_s().item()
    for _ in range(60):
        out = renderer(FieldOutputs(rgb=rgbs, sdf=sdf, gradient=grad), RaySamples(mid, dists), ray, torch.zeros(3),
                       True)
        loss = ((out["rgb"] - 1.0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert renderer.inv_s().item() > 2.0 * s0, (s0, renderer.inv_s().item())


# -- splits -----------------------------------------------------------------------------------------------------
def test_holdout_splits_are_disjoint_and_keep_test_every_nth():
    splits = holdout_splits(20, np.arange(0, 20, 8), 2)
    assert splits["test"].tolist() == [0, 8, 16]
    assert len(splits["val"]) == 2 and not set(splits["val"]) & set(splits["test"])
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(20))
    with pytest.raises(ValueError, match=r"dataset\.n_val=17"):
        holdout_splits(20, np.arange(0, 20, 8), 17)


@pytest.mark.parametrize("dataset, root", [
    ("blender", "nerf_synthetic/lego"), ("llff", "nerf_llff_data/fern"), ("dtu", "dtu/dtu_scan24")])
def test_real_dataset_validation_is_never_test(dataset, root):
    if not (SHARED_DATA / root).exists():
        pytest.skip(f"real dataset {SHARED_DATA / root} is not present on this machine")
    from hydra.utils import instantiate

    cfg = compose_train([f"dataset={dataset}", f"dataset.root={SHARED_DATA / root}", "dataset.downscale=8"])
    data = instantiate(cfg.dataset)
    splits = {name: set(data.load(name).sources) for name in ("train", "val", "test")}
    assert all(splits.values())
    assert not splits["val"] & splits["test"] and not splits["train"] & splits["test"]
    assert not splits["train"] & splits["val"]


def test_summary_records_disjoint_splits_and_val_psnr(demo_cache, tmp_path):
    cfg = compose_train(tiny_overrides(demo_cache) + ["trainer.max_steps=3", "trainer.val_every=0",
                                                      "trainer.ckpt_every=0", "eval.max_views=1"])
    summary = train(cfg, tmp_path)
    saved = json.loads((tmp_path / "summary.json").read_text())
    splits = saved["splits"]
    assert set(splits) == {"train", "val", "test"} and len(splits["train"]) == 20 and len(splits["test"]) == 2
    assert not set(splits["val"]) & set(splits["test"]) and not set(splits["train"]) & set(splits["test"])
    assert math.isfinite(saved["val_psnr"]) and saved["val_psnr"] == summary["val_psnr"]
    assert "val_psnr" in saved["selection"]


def test_lindisp_in_ndc_stops_before_any_work_naming_both_keys(tmp_path):
    from nerfexp.data.demo import DemoSceneSpec
    from nerfexp.data.writers import write_llff_scene

    root = write_llff_scene(tmp_path / "llff", DemoSceneSpec(resolution=16), n_views=9)
    cfg = compose_train(["model=nerf", "dataset=llff", f"dataset.root={root}", "dataset.factor=null",
                         "sampler.lindisp=true"])
    with pytest.raises(ConfigError, match=r"sampler\.lindisp=true with dataset\.ndc=true"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
    # near/far mean nothing in NDC: refused (by the loader; the CLI prints its message as one line)
    with pytest.raises(Exception) as raised:
        train(compose_train(["model=nerf", "dataset=llff", f"dataset.root={root}", "dataset.factor=null",
                            "dataset.near=0.5"]),
              tmp_path / "run2")
    assert "dataset.near=0.5" in user_error_message(raised.value) and "NDC" in user_error_message(raised.value)


# -- metrics ----------------------------------------------------------------------------------------------------
def test_psnr_and_ssim_of_hand_computed_cases():
    a, b = torch.full((16, 16, 3), 0.5), torch.full((16, 16, 3), 0.6)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    # constant images: SSIM is the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = 0.01^2
    c1 = 0.01 ** 2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1), abs=1e-5)


def test_lpips_is_null_only_with_a_logged_reason(demo_cache, tmp_path, caplog):
    from nerfexp.evaluate import evaluate_split
    from nerfexp.metrics import LPIPS

    lpips = LPIPS()
    trainer = Trainer(compose_train(tiny_overrides(demo_cache)), tmp_path)
    with caplog.at_level("WARNING"):
        metrics = evaluate_split(trainer.pipeline, trainer.val_split, "white", tmp_path / "eval", 4096,
                                 trainer.device, lpips=lpips)
    if lpips.available:
        assert metrics["lpips"] is not None and metrics["lpips_unavailable_reason"] is None
    else:
        assert metrics["lpips"] is None and metrics["lpips_unavailable_reason"] == lpips.reason != ""
        assert lpips.reason in caplog.text


def test_hash_grid_scales_are_float32_like_tiny_cuda_nn():
    per_level_scale = math.exp(math.log(2048 / 16) / 15)
    scales, res, _, _ = level_layout(16, 19, 16, per_level_scale)
    log2 = torch.log2(torch.tensor(per_level_scale, dtype=torch.float32))
    expected = torch.exp2(torch.arange(16, dtype=torch.float32) * log2) * 16.0 - 1.0
    assert scales.dtype == np.float32 and np.allclose(scales, expected.numpy(), rtol=1e-6, atol=0)
    assert res.tolist() == (np.ceil(expected.numpy()).astype(int) + 1).tolist()


# -- crash safety -----------------------------------------------------------------------------------------------
def test_checkpoints_come_by_the_clock_as_well_as_by_steps(demo_cache, tmp_path):
    base = tiny_overrides(demo_cache) + ["trainer.max_steps=3", "trainer.val_every=0", "trainer.eval_at_end=false",
                                         "trainer.ckpt_every=0", "trainer.ckpt_keep=10"]
    Trainer(compose_train(base + ["trainer.ckpt_every_s=1e-6"]), tmp_path / "clock").fit()
    assert sorted(p.name for p in (tmp_path / "clock" / "checkpoints").glob("*.pt")) == [
        "step_00000001.pt", "step_00000002.pt", "step_00000003.pt"]
    Trainer(compose_train(base + ["trainer.ckpt_every_s=null"]), tmp_path / "steps").fit()
    assert [p.name for p in (tmp_path / "steps" / "checkpoints").glob("*.pt")] == ["step_00000003.pt"]


def test_resume_of_a_run_killed_before_its_first_checkpoint_restarts_it_in_place(demo_cache, tmp_path):
    killed = tmp_path / "killed"
    killed.mkdir()
    saved = compose_train(tiny_overrides(demo_cache) + ["trainer.max_steps=4", "trainer.val_every=0",
                                                        "trainer.eval_at_end=false", "trainer.ckpt_every=0"])
    OmegaConf.save(saved, killed / "config.yaml", resolve=True)
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')  # cut by the kill
    # typed without the run's overrides: the run's own config is used, and nothing is written elsewhere
    cfg = compose_train(tiny_overrides(demo_cache) + [f"resume={killed}"])
    summary = train(cfg, tmp_path / "elsewhere")
    assert summary["steps"] == 4 and not (tmp_path / "elsewhere").exists()
    assert [p.name for p in (killed / "checkpoints").glob("*.pt")] == ["step_00000004.pt"]
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] >= 1 and steps == sorted(steps) and max(steps) == 4
