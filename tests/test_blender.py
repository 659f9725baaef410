"""Blender loader options on a generated scene: downscale by area averaging, n_views subsets, render path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfexp.data.blender import BlenderDataset
from nerfexp.data.demo import DemoSceneSpec, camera_poses, write_demo_scene
from nerfexp.data.scene import area_downscale

SPEC = DemoSceneSpec(n_train=10, n_val=1, n_test=3, resolution=32, supersample=1)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("blender") / "scene", SPEC)


def test_downscale_composites_then_area_averages(scene):
    full = BlenderDataset(scene, background="white").load("train")
    small = BlenderDataset(scene, downscale=4, background="white").load("train")
    bg = torch.ones(3)
    composited = torch.stack([full.composited(k, bg) for k in range(len(full))])
    expected = area_downscale(composited, 4)
    got = torch.stack([small.composited(k, bg) for k in range(len(small))])
    assert got.shape == (10, 8, 8, 3)
    assert torch.allclose(got, expected, atol=1e-6)
    assert small.intrinsics.fx == pytest.approx(full.intrinsics.fx / 4)


def test_n_views_takes_evenly_spaced_training_views(scene):
    split = BlenderDataset(scene, n_views=4).load("train")
    assert split.names == ["r_0", "r_3", "r_6", "r_9"]
    np.testing.assert_allclose(split.c2w.numpy(), camera_poses(SPEC, "train")[[0, 3, 6, 9]], atol=1e-6)
    assert len(BlenderDataset(scene, n_views=4).load("test")) == 3  # held-out splits keep every view


def test_render_path_orbits_at_the_test_cameras_distance(scene):
    poses = BlenderDataset(scene).render_path(12).numpy()
    test_pos = camera_poses(SPEC, "test")[:, :3, 3]
    assert poses.shape == (12, 4, 4)
    np.testing.assert_allclose(np.linalg.norm(poses[:, :3, 3], axis=-1), np.linalg.norm(test_pos, axis=-1).mean(),
                               rtol=1e-5)
    forward = -poses[:, :3, 2]
    to_origin = -poses[:, :3, 3] / np.linalg.norm(poses[:, :3, 3], axis=-1, keepdims=True)
    np.testing.assert_allclose(forward, to_origin, atol=1e-5)
