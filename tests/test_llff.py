"""LLFF loader: rays match the generator's cameras through every pose transform, splits, factor folders, paths."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from hydra.utils import instantiate

from nerfexp.cameras import RayBundle, ndc_rays
from nerfexp.data import show
from nerfexp.data.demo import DemoSceneSpec, focal_length, pixel_rays, trace_rays
from nerfexp.data.images import DatasetError
from nerfexp.data.llff import LLFFDataset
from nerfexp.data.render_paths import poses_avg
from nerfexp.data.writers import forward_facing_poses, surrounding_poses, write_llff_scene
from conftest import compose_train

SPEC = DemoSceneSpec(resolution=32, supersample=1)
N_VIEWS = 9
RAW = dict(factor=None, recenter=False, bd_factor=None, ndc=False)  # no pose normalisation: the file's frame


@pytest.fixture(scope="module")
def forward_scene(tmp_path_factory) -> Path:
    return write_llff_scene(tmp_path_factory.mktemp("llff") / "forward", SPEC, n_views=N_VIEWS)


@pytest.fixture(scope="module")
def surround_scene(tmp_path_factory) -> Path:
    return write_llff_scene(tmp_path_factory.mktemp("llff") / "surround", SPEC, n_views=12, layout="surround")


def generator_rays(spec: DemoSceneSpec, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rays ``(H*W, 3)`` of the generator's camera, row-major like SceneSplit.rays."""
    o, d = pixel_rays(spec, c2w)
    return o.reshape(-1, 3), d.reshape(-1, 3)


def transformed(o: np.ndarray, d: np.ndarray, dataset: LLFFDataset) -> tuple[np.ndarray, np.ndarray]:
    """Rays of the file's frame in the loader's scene frame (points by the similarity, directions by its rotation)."""
    t = dataset.world_to_scene
    return o @ t[:3, :3].T + t[:3, 3], d @ t[:3, :3].T / dataset.scene_scale


def assert_rays_equal(rays: RayBundle, o: np.ndarray, d: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(rays.origins.double().numpy(), o, atol=atol)
    np.testing.assert_allclose(rays.directions.double().numpy(), d, atol=atol)


def test_rays_equal_world_rays_without_pose_normalisation(forward_scene: Path):
    dataset = LLFFDataset(forward_scene, **RAW)
    c2w = forward_facing_poses(SPEC, N_VIEWS)
    for split in ("train", "test"):
        loaded = dataset.load(split)
        assert loaded.intrinsics.fx == pytest.approx(focal_length(SPEC))
        assert (loaded.width, loaded.height) == (32, 32) and not loaded.ndc
        for k, index in enumerate(dataset.split_indices[split]):
            assert_rays_equal(loaded.rays(k), *generator_rays(SPEC, c2w[index]))


def test_llffhold_holds_out_every_nth_image_for_test_and_val(forward_scene: Path):
    dataset = LLFFDataset(forward_scene, llffhold=4, **RAW)
    test, train = dataset.load("test"), dataset.load("train")
    assert test.names == ["image000", "image004", "image008"]
    # validation: n_val=2 views held out of the 6 others, never a test view
    assert dataset.load("val").names == ["image002", "image006"]
    assert train.names == [f"image{i:03d}" for i in (1, 3, 5, 7)]
    nearest = LLFFDataset(forward_scene, llffhold=0, **RAW)
    assert len(nearest.load("test")) == 1 and len(nearest.load("train")) == N_VIEWS - 1 - 2


def test_bd_factor_and_recenter_are_one_similarity_of_the_world(forward_scene: Path):
    dataset = LLFFDataset(forward_scene, factor=None, ndc=False)  # recenter, bd_factor 0.75
    written = np.load(forward_scene / "poses_bounds.npy")[:, 15:]
    scale = 1.0 / (0.75 * written.min())
    assert dataset.scene_scale == pytest.approx(scale)
    rot = dataset.world_to_scene[:3, :3] / scale
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(poses_avg(dataset.c2w), np.eye(4), atol=1e-9)  # recentred
    assert dataset.bounds.min() == pytest.approx(1.0 / 0.75)
    loaded = dataset.load("train")
    assert (loaded.near, loaded.far) == pytest.approx((0.9 * dataset.bounds.min(), dataset.bounds.max()))
    c2w = forward_facing_poses(SPEC, N_VIEWS)
    for k, index in enumerate(dataset.split_indices["train"][:3]):
        assert_rays_equal(loaded.rays(k), *transformed(*generator_rays(SPEC, c2w[index]), dataset))


def test_ndc_rays_are_the_ndc_map_of_the_generator_rays(forward_scene: Path):
    dataset = LLFFDataset(forward_scene, factor=None)  # defaults: recenter, bd_factor 0.75, ndc
    loaded = dataset.load("test")
    assert loaded.ndc and (loaded.near, loaded.far) == (0.0, 1.0)
    intr = loaded.intrinsics
    index = dataset.split_indices["test"][1]
    o, d = transformed(*generator_rays(SPEC, forward_facing_poses(SPEC, N_VIEWS)[index]), dataset)
    n = len(o)
    world = RayBundle(torch.from_numpy(o), torch.from_numpy(d), torch.from_numpy(d), torch.zeros(n, 1),
                      torch.ones(n, 1))
    expected = ndc_rays(world, intr.fx, intr.width, intr.height)
    rays = loaded.rays(1)
    assert_rays_equal(rays, expected.origins.numpy(), expected.directions.numpy())
    # independent of ndc_rays: each surface point seen by a pixel, mapped to NDC, lies on that pixel's NDC ray
    _, hit, t = trace_rays(*generator_rays(SPEC, forward_facing_poses(SPEC, N_VIEWS)[index]))
    mask = hit > 0
    assert mask.sum() > 100
    t_scene = t[mask] * dataset.scene_scale  # the same point, as a parameter along the unscaled scene direction
    p = o[mask] + t_scene[:, None] * d[mask]
    p_ndc = np.stack([-2 * intr.fx / intr.width * p[:, 0] / p[:, 2], -2 * intr.fx / intr.height * p[:, 1] / p[:, 2],
                      1 + 2 / p[:, 2]], -1)
    rel = p_ndc - rays.origins.double().numpy()[mask]
    rd = rays.directions.double().numpy()[mask]
    t_ndc = (rel * rd).sum(-1) / (rd * rd).sum(-1)
    np.testing.assert_allclose(rel, t_ndc[:, None] * rd, atol=1e-5)
    assert (t_ndc > 0).all() and (t_ndc < 1).all()


def test_downscale_averages_images_and_keeps_rays_through_block_centres(forward_scene: Path):
    full = LLFFDataset(forward_scene, **RAW).load("train")
    half = LLFFDataset(forward_scene, downscale=2, **RAW)
    loaded = half.load("train")
    assert (loaded.width, loaded.height) == (16, 16)
    assert loaded.intrinsics.fx == pytest.approx(focal_length(SPEC) / 2)
    blocks = full.images.reshape(len(full), 16, 2, 16, 2, 3).mean(dim=(2, 4))
    torch.testing.assert_close(loaded.images, blocks, atol=1e-6, rtol=0)
    c2w = forward_facing_poses(SPEC, N_VIEWS)
    small = replace(SPEC, resolution=16)
    for k, index in enumerate(half.split_indices["train"][:2]):
        assert_rays_equal(loaded.rays(k), *generator_rays(small, c2w[index]))


def test_factor_folder_is_made_from_images_once_and_scales_focal(forward_scene: Path, tmp_path: Path):
    root = tmp_path / "scene"
    shutil.copytree(forward_scene, root)
    dataset = LLFFDataset(root, factor=2, recenter=False, bd_factor=None, ndc=False)
    made = sorted((root / "images_2").iterdir())
    assert [p.name for p in made] == [f"image{i:03d}.png" for i in range(N_VIEWS)]
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    loaded = dataset.load("train")
    assert (loaded.width, loaded.height) == (16, 16)
    assert loaded.intrinsics.fx == pytest.approx(focal_length(SPEC) / 2)
    index = dataset.split_indices["train"][0]
    assert_rays_equal(loaded.rays(0), *generator_rays(replace(SPEC, resolution=16),
                                                      forward_facing_poses(SPEC, N_VIEWS)[index]))
    by_downscale = LLFFDataset(root, downscale=2, **RAW).load("train")
    torch.testing.assert_close(loaded.images, by_downscale.images, atol=1.5 / 255, rtol=0)  # 8-bit rounding
    stamp = made[0].stat().st_mtime_ns
    LLFFDataset(root, factor=2, recenter=False, bd_factor=None, ndc=False).load("test")
    assert made[0].stat().st_mtime_ns == stamp, "the cached images_2 was rewritten"


def test_spherify_normalises_a_360_capture(surround_scene: Path):
    with pytest.raises(ValueError, match="ndc=false"):
        LLFFDataset(surround_scene, factor=None, spherify=True)
    dataset = LLFFDataset(surround_scene, factor=None, spherify=True, ndc=False)
    centers = dataset.c2w[:, :3, 3]
    assert np.sqrt((centers ** 2).sum(-1).mean()) == pytest.approx(1.0)
    c2w = surrounding_poses(SPEC, 12)
    loaded = dataset.load("train")
    assert not loaded.ndc and loaded.near == pytest.approx(0.9 * dataset.bounds.min())
    for k, index in enumerate(dataset.split_indices["train"][:3]):
        assert_rays_equal(loaded.rays(k), *transformed(*generator_rays(SPEC, c2w[index]), dataset))
    # the demo cameras look at the origin: spherify's centre (closest point to all axes) is the origin
    np.testing.assert_allclose(dataset.world_to_scene[:3, 3], 0.0, atol=1e-9)
    path = dataset.render_path(24).double().numpy()
    assert path.shape == (24, 4, 4)
    radius, height = dataset.circle
    np.testing.assert_allclose(np.linalg.norm(path[:, :3, 3], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(path[:, 2, 3], height, atol=1e-6)
    np.testing.assert_allclose(path[:, :3, 2], path[:, :3, 3], atol=1e-6)  # +z points away from the origin


def test_render_path_is_a_spiral_of_cameras_looking_at_one_focus_point(forward_scene: Path):
    dataset = LLFFDataset(forward_scene, factor=None)
    path = dataset.render_path(30).double().numpy()
    assert path.shape == (30, 4, 4)
    for m in path:
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-6)
        assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0, abs=1e-6)
    assert (path[:, 2, 2] > 0.95).all(), "spiral cameras should look along the capture's mean direction (-z)"
    # every optical axis passes through one focus point in front of the cameras (least-squares meeting point)
    axes, centers = -path[:, :3, 2], path[:, :3, 3]
    proj = np.eye(3) - axes[:, :, None] * axes[:, None, :]
    focus = np.linalg.solve(proj.sum(0), (proj @ centers[:, :, None]).sum(0))[:, 0]
    assert np.linalg.norm(np.cross(focus - centers, axes), axis=-1).max() < 1e-5
    assert focus[2] < -1.0
    # two turns around the (recentred, identity) mean pose; the second mirrors the first's motion along z
    np.testing.assert_allclose(centers[:15, :2], centers[15:, :2], atol=1e-6)
    np.testing.assert_allclose(centers[:15, 2], -centers[15:, 2], atol=1e-6)
    assert np.abs(centers[:, 2]).max() > 1e-3


def test_rgba_images_give_premultiplied_colour_and_alpha(tmp_path: Path):
    root = write_llff_scene(tmp_path / "rgba", replace(SPEC, resolution=16), n_views=3, alpha=True)
    loaded = LLFFDataset(root, llffhold=3, n_val=1, **RAW).load("train")
    assert 0.0 < loaded.alphas.mean() < 1.0
    assert (loaded.images <= loaded.alphas + 1e-6).all()
    opaque = write_llff_scene(tmp_path / "rgb", replace(SPEC, resolution=16), n_views=3)
    assert (LLFFDataset(opaque, llffhold=3, n_val=1, **RAW).load("train").alphas == 1.0).all()


def test_config_builds_the_dataset_and_show_writes_a_png(forward_scene: Path, tmp_path: Path):
    cfg = compose_train(["dataset=llff", f"dataset.root={forward_scene}", "dataset.factor=null"])
    dataset = instantiate(cfg.dataset)
    assert isinstance(dataset, LLFFDataset) and dataset.ndc and dataset.recenter
    assert cfg.dataset.background == "white" and dataset.background == "white"
    out = show.main(["dataset=llff", f"dataset.root={forward_scene}", "dataset.factor=null",
                     f"out={tmp_path / 'cams.png'}"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("size, accepted", [((62, 46), True), ((62, 47), True), ((62, 44), False)])
def test_odd_sized_captures_downscaled_by_floor_or_round_load(tmp_path: Path, size, accepted):
    """COLMAP's undistorted images have odd sizes: 497x373 / 8 floors to 62x46 (1.2% off the aspect ratio) and
    rounds to 62x47; both are that picture, 62x44 is another one."""
    root = write_llff_scene(tmp_path / "odd", replace(SPEC, resolution=16), n_views=3)
    rows = np.load(root / "poses_bounds.npy")
    rows[:, 4], rows[:, 9], rows[:, 14] = 373.0, 497.0, 400.0  # poses_bounds' height, width, focal
    np.save(root / "poses_bounds.npy", rows)
    for path in (root / "images").iterdir():
        with Image.open(path) as image:
            image.resize(size).save(path)
    if not accepted:
        with pytest.raises(DatasetError, match="another aspect ratio"):
            LLFFDataset(root, llffhold=3, n_val=1, **RAW)
        return
    dataset = LLFFDataset(root, llffhold=3, n_val=1, **RAW)
    assert (dataset.intrinsics.width, dataset.intrinsics.height) == size
    assert dataset.intrinsics.fx == pytest.approx(400.0 * 62 / 497)
