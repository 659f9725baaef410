"""DTU (NeuS format) loader: projection decomposition, rays against the generator and the written projections."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from nerfexp.data.demo import DemoSceneSpec, focal_length, pixel_rays
from nerfexp.data.dtu import DTUDataset, decompose_projection
from nerfexp.data.render_paths import azimuths
from nerfexp.data.writers import surrounding_poses, write_dtu_scene
from conftest import compose_train

SPEC = DemoSceneSpec(resolution=32, supersample=1)
N_VIEWS = 10
SCALE, CENTER = 1.7, np.array([0.1, -0.2, 0.05])


@pytest.fixture(scope="module")
def unit_scene(tmp_path_factory) -> Path:
    """scale_mat = identity: the normalised frame is the demo's world frame."""
    return write_dtu_scene(tmp_path_factory.mktemp("dtu") / "unit", SPEC, scale=1.0, n_views=N_VIEWS)


@pytest.fixture(scope="module")
def scaled_scene(tmp_path_factory) -> Path:
    return write_dtu_scene(tmp_path_factory.mktemp("dtu") / "scaled", SPEC, scale=SCALE, center=tuple(CENTER),
                           n_views=N_VIEWS, mask_channels=1, image_folder="images")


def generator_rays(spec: DemoSceneSpec, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o, d = pixel_rays(spec, c2w)
    return o.reshape(-1, 3), d.reshape(-1, 3)


def assert_rays_equal(rays, o: np.ndarray, d: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(rays.origins.double().numpy(), o, atol=atol)
    np.testing.assert_allclose(rays.directions.double().numpy(), d, atol=atol)


def test_decomposition_recovers_intrinsics_and_camera_to_world():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))  # a proper rotation (world -> camera)
    center = rng.normal(size=3) * 3
    k = np.array([[500.0, 0.0, 310.0], [0.0, 480.0, 250.0], [0.0, 0.0, 1.0]])
    p = k @ np.concatenate([rot, -rot @ center[:, None]], axis=1)
    for factor in (1.0, -2.5):  # a projection is only defined up to scale, sign included
        k_out, c2w = decompose_projection(factor * p)
        np.testing.assert_allclose(k_out, k, atol=1e-9)
        np.testing.assert_allclose(c2w[:3, :3], rot.T, atol=1e-12)
        np.testing.assert_allclose(c2w[:3, 3], center, atol=1e-9)


def test_rays_equal_world_rays_with_identity_scale_mat(unit_scene: Path):
    dataset = DTUDataset(unit_scene)
    c2w = surrounding_poses(SPEC, N_VIEWS)
    for split in ("train", "test"):
        loaded = dataset.load(split)
        assert loaded.intrinsics.fx == pytest.approx(focal_length(SPEC))
        assert (loaded.intrinsics.cx, loaded.intrinsics.cy) == pytest.approx((16.0, 16.0))
        for k, index in enumerate(dataset.split_indices[split]):
            assert_rays_equal(loaded.rays(k), *generator_rays(SPEC, c2w[index]))


def test_scale_mat_moves_rays_into_the_unit_sphere_frame(scaled_scene: Path):
    dataset = DTUDataset(scaled_scene)
    loaded = dataset.load("train")
    c2w = surrounding_poses(SPEC, N_VIEWS)
    for k, index in enumerate(dataset.split_indices["train"][:4]):
        o, d = generator_rays(SPEC, c2w[index])
        assert_rays_equal(loaded.rays(k), (o - CENTER) / SCALE, d)
    dist = np.linalg.norm(dataset.c2w[:, :3, 3], axis=-1)
    assert loaded.near == pytest.approx(max(dist.min() - 1.0, 0.05))
    assert loaded.far == pytest.approx(dist.max() + 1.0)


def test_rays_project_back_to_their_pixels_through_the_written_projection(scaled_scene: Path):
    """Independent of the axis flip and the half-pixel shift: OpenCV puts pixel (i, j)'s centre at (i, j)."""
    dataset = DTUDataset(scaled_scene, downscale=2)
    cams = np.load(scaled_scene / "cameras_sphere.npz")
    loaded = dataset.load("test")
    for k, index in enumerate(dataset.split_indices["test"]):
        proj = (cams[f"world_mat_{index}"] @ cams[f"scale_mat_{index}"])[:3]
        rays = loaded.rays(k)
        pts = (rays.origins + 2.5 * rays.directions).double().numpy()
        uvw = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ proj.T
        uv = uvw[:, :2] / uvw[:, 2:]
        assert (uvw[:, 2] > 0).all(), "points along the rays must be in front of the camera"
        jj, ii = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
        # pixel (i, j) of the 2x downscaled image covers full-res pixels 2i, 2i+1: its centre is at 2i + 0.5
        np.testing.assert_allclose(uv[:, 0], 2 * ii.reshape(-1) + 0.5, atol=1e-4)
        np.testing.assert_allclose(uv[:, 1], 2 * jj.reshape(-1) + 0.5, atol=1e-4)


def test_masks_become_alpha_and_premultiply_the_photo(unit_scene: Path, scaled_scene: Path):
    for root in (unit_scene, scaled_scene):  # 3-channel and 1-channel masks
        masked = DTUDataset(root).load("train")
        photo = DTUDataset(root, use_mask_as_alpha=False).load("train")
        assert set(masked.alphas.unique().tolist()) == {0.0, 1.0}
        assert 0.1 < masked.alphas.mean() < 0.9
        assert (photo.alphas == 1.0).all()
        torch.testing.assert_close(masked.images, photo.images * masked.alphas)
    black = torch.zeros(3)
    assert (masked.composited(0, black)[masked.alphas[0, ..., 0] == 0] == 0).all()


def test_downscale_keeps_rays_through_block_centres(unit_scene: Path):
    dataset = DTUDataset(unit_scene, downscale=2)
    loaded = dataset.load("train")
    assert (loaded.width, loaded.height) == (16, 16)
    assert loaded.intrinsics.fx == pytest.approx(focal_length(SPEC) / 2)
    c2w = surrounding_poses(SPEC, N_VIEWS)
    for k, index in enumerate(dataset.split_indices["train"][:3]):
        assert_rays_equal(loaded.rays(k), *generator_rays(replace(SPEC, resolution=16), c2w[index]))


def test_split_holds_out_every_eighth_view(unit_scene: Path):
    dataset = DTUDataset(unit_scene)
    assert dataset.load("test").names == ["000000", "000008"]
    # validation: n_val=3 views spread over the 8 others, never a test view
    assert dataset.load("val").names == ["000002", "000005", "000007"]
    assert dataset.load("train").names == [f"{i:06d}" for i in (1, 3, 4, 6, 9)]
    assert len(DTUDataset(unit_scene, test_every=3).load("test")) == 4


def test_render_path_orbits_the_origin_looking_at_it(unit_scene: Path):
    dataset = DTUDataset(unit_scene)
    path = dataset.render_path(16).double().numpy()
    assert path.shape == (16, 4, 4)
    centers = path[:, :3, 3]
    dist = np.linalg.norm(centers, axis=-1)
    np.testing.assert_allclose(dist, dist[0], atol=1e-6)  # a circle around an axis through the origin
    camera_dist = np.linalg.norm(dataset.c2w[:, :3, 3], axis=-1)
    assert camera_dist.min() - 1e-6 <= dist[0] <= camera_dist.max() + 1e-6
    np.testing.assert_allclose(path[:, :3, 2], centers / dist[:, None], atol=1e-6)  # looks at the origin
    # it stays on the captured side: every path azimuth within the cameras' azimuth range
    up = dataset.c2w[:, :3, 1].sum(0)
    ref = dataset.c2w[:, :3, 3].mean(0)
    cam_az = azimuths(dataset.c2w[:, :3, 3], up, ref)
    path_az = azimuths(centers, up, ref)
    assert cam_az.min() - 1e-6 <= path_az.min() and path_az.max() <= cam_az.max() + 1e-6
    assert path_az.max() - path_az.min() > 0.9 * (cam_az.max() - cam_az.min())  # and sweeps all of it


def test_config_builds_the_dataset(unit_scene: Path):
    cfg = compose_train(["dataset=dtu", f"dataset.root={unit_scene}", "dataset.downscale=2"])
    dataset = instantiate(cfg.dataset)
    assert isinstance(dataset, DTUDataset) and dataset.downscale == 2 and dataset.use_mask_as_alpha
    assert cfg.dataset.background == dataset.background
