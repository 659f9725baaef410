"""The real datasets in ../shared/data load with the expected sizes, splits and camera geometry (skipped if absent)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfexp.data.blender import BlenderDataset
from nerfexp.data.dtu import DTUDataset
from nerfexp.data.llff import LLFFDataset
from nerfexp.data.render_paths import poses_avg
from conftest import SHARED_DATA, requires_shared

LEGO = SHARED_DATA / "nerf_synthetic" / "lego"
FERN = SHARED_DATA / "nerf_llff_data" / "fern"
DTU24 = SHARED_DATA / "dtu" / "dtu_scan24"


@requires_shared("nerf_synthetic/lego")
def test_lego_at_downscale_8():
    dataset = BlenderDataset(LEGO, downscale=8)
    counts = {}
    for split in ("train", "val", "test"):
        loaded = dataset.load(split)
        counts[split] = len(loaded)
        assert (loaded.width, loaded.height) == (100, 100)
        assert loaded.intrinsics.fx == pytest.approx(138.89, abs=0.01)
        dist = loaded.c2w[:, :3, 3].norm(dim=-1)
        assert ((dist > 3.9) & (dist < 4.1)).all(), "lego cameras lie on a sphere of radius ~4"
        assert 0.05 < loaded.alphas.mean() < 0.6
    assert counts == {"train": 100, "val": 13, "test": 25}


@requires_shared("nerf_llff_data/fern")
def test_fern_factor_8_llffhold_split_in_ndc():
    dataset = LLFFDataset(FERN, factor=8)
    train, test, val = dataset.load("train"), dataset.load("test"), dataset.load("val")
    assert (len(train), len(val), len(test)) == (15, 2, 3)
    assert test.names == ["image000", "image008", "image016"]
    assert not set(val.names) & set(test.names) and not set(val.names) & set(train.names)
    for split in (train, test):
        assert (split.width, split.height) == (504, 378)
        assert split.ndc and (split.near, split.far) == (0.0, 1.0)
        assert (split.alphas == 1.0).all()
    assert train.intrinsics.fx == pytest.approx(3260.526333 / 8, rel=1e-6)  # hwf focal, scaled to 504 px wide
    np.testing.assert_allclose(poses_avg(dataset.c2w), np.eye(4), atol=1e-6)  # recentred
    assert dataset.bounds.min() == pytest.approx(1.0 / 0.75)
    rays = test.rays(0)
    assert rays.origins[:, 2].allclose(rays.origins.new_tensor(-1.0), atol=1e-5)  # NDC near plane
    assert dataset.render_path(12).shape == (12, 4, 4)


@requires_shared("dtu/dtu_scan24")
def test_dtu_scan24_at_downscale_8():
    dataset = DTUDataset(DTU24, downscale=8)
    train, test, val = dataset.load("train"), dataset.load("test"), dataset.load("val")
    assert (len(train), len(val), len(test)) == (39, 3, 7)
    assert (train.width, train.height) == (200, 150)
    for split in (train, test):
        assert 0.2 < split.alphas.mean() < 0.9, "masks cut the object out of the photos"
        assert split.alphas.min() == 0.0 and split.alphas.max() == 1.0
    # measured: cameras 2.77 .. 2.97 from the origin; near 1.77, far 3.97
    dist = np.linalg.norm(dataset.c2w[:, :3, 3], axis=-1)
    assert 2.5 < dist.min() and dist.max() < 3.5
    assert (train.near, train.far) == pytest.approx((dist.min() - 1.0, dist.max() + 1.0))
    # the centre ray of every view passes through the unit sphere (the object is in view)
    for split in (train, test):
        k, n = split.intrinsics, len(split)
        rays = split.pixel_rays(torch.arange(n), torch.full((n,), int(k.cx)), torch.full((n,), int(k.cy)))
        o, d = rays.origins.double().numpy(), rays.viewdirs.double().numpy()
        along = -(o * d).sum(-1)
        assert (along > 0).all(), "the origin is in front of every camera"
        closest = np.linalg.norm(o + along[:, None] * d, axis=-1)
        assert closest.max() < 0.6
    # independent of the decomposition: points on the rays project through world_mat @ scale_mat to the pixels
    cams = np.load(DTU24 / "cameras_sphere.npz")
    index = dataset.split_indices["test"][2]
    proj = (cams[f"world_mat_{index}"] @ cams[f"scale_mat_{index}"])[:3]
    rays = test.rays(2)
    pts = (rays.origins + 2.0 * rays.directions).double().numpy()
    uvw = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ proj.T
    uv = uvw[:, :2] / uvw[:, 2:]
    jj, ii = np.meshgrid(np.arange(150), np.arange(200), indexing="ij")
    np.testing.assert_allclose(uv[:, 0], 8 * ii.reshape(-1) + 3.5, atol=0.05)  # block centres in full-res pixels
    np.testing.assert_allclose(uv[:, 1], 8 * jj.reshape(-1) + 3.5, atol=0.05)
