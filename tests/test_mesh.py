"""Mesh export: marching cubes of a field's density lands on the true surface, in world coordinates."""
from __future__ import annotations

import numpy as np
import torch
from plyfile import PlyData
from torch import nn

from nerfexp.export.mesh import extract_mesh, mesh_bounds
from nerfexp.pipelines.nerf import NeRFPipeline


class SphereField(nn.Module):
    """Density 100 inside a sphere (smooth edge), colour red on +x side, blue elsewhere."""

    def __init__(self, center, radius):
        super().__init__()
        self.center, self.radius = torch.tensor(center), radius

    def density(self, x):
        d = (x - self.center).norm(dim=-1) - self.radius
        return 100.0 * torch.sigmoid(-d * 200.0)

    def forward(self, x, d_enc):
        red = (x[..., :1] > self.center[0]).float()
        rgb = torch.cat([red, torch.zeros_like(red), 1 - red], dim=-1)
        return rgb, self.density(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


def Pipeline(field: nn.Module) -> NeRFPipeline:  # noqa: N802 - reads as a class at the call sites
    return NeRFPipeline(Identity(), Identity(), field, None, sampler=None, renderer=None)


def test_sphere_mesh_has_the_right_radius_and_colours(tmp_path):
    center, radius = (0.1, -0.2, 0.05), 0.6
    info = extract_mesh(Pipeline(SphereField(center, radius)), tmp_path / "m.ply",
                        (np.full(3, -1.0), np.full(3, 1.0)), 64, 50.0, torch.device("cpu"))
    ply = PlyData.read(str(tmp_path / "m.ply"))
    v = ply["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], -1)
    r = np.linalg.norm(xyz - np.array(center), axis=-1)
    assert info["n_vertices"] == len(xyz) > 1000 and len(ply["face"]) == info["n_faces"]
    assert abs(r.mean() - radius) < 0.01 and np.abs(r - radius).max() < 2.0 / 63
    normals = np.stack([v["nx"], v["ny"], v["nz"]], -1)
    outward = (xyz - np.array(center)) / r[:, None]
    assert (np.sum(normals * outward, -1) > 0.9).mean() > 0.99
    red_side = xyz[:, 0] > center[0] + 0.05
    assert (v["red"][red_side] == 255).all() and (v["blue"][red_side] == 0).all()


def test_to_world_maps_the_unit_frame_back(tmp_path):
    scale_mat = np.diag([2.0, 2.0, 2.0, 1.0])
    scale_mat[:3, 3] = [5.0, -1.0, 3.0]
    extract_mesh(Pipeline(SphereField((0.0, 0.0, 0.0), 0.5)), tmp_path / "w.ply",
                 (np.full(3, -1.0), np.full(3, 1.0)), 48, 50.0, torch.device("cpu"), to_world=scale_mat)
    v = PlyData.read(str(tmp_path / "w.ply"))["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], -1)
    r = np.linalg.norm(xyz - np.array([5.0, -1.0, 3.0]), axis=-1)
    assert abs(r.mean() - 1.0) < 0.02  # radius 0.5 in the unit frame, scaled by 2


def test_mesh_bounds_are_the_dataset_bound():
    lo, hi = mesh_bounds(1.0)
    assert (lo == -1).all() and (hi == 1).all()
    lo, hi = mesh_bounds(1.3)
    assert (lo == -1.3).all() and (hi == 1.3).all()


def test_mesh_views_show_the_sphere_where_the_camera_sees_it(tmp_path):
    from nerfexp.cameras import Intrinsics
    from nerfexp.data.render_paths import look_at

    import imageio.v3 as iio

    radius, dist = 0.6, 4.0
    c2w = look_at(np.array([[0.0, -dist, 0.5]]), np.zeros(3), np.array([0.0, 0.0, 1.0]))[0]
    intr = Intrinsics(60.0, 60.0, 32.0, 32.0, 64, 64)
    info = extract_mesh(Pipeline(SphereField((0.0, 0.0, 0.0), radius)), tmp_path / "m.ply",
                        (np.full(3, -1.0), np.full(3, 1.0)), 48, 50.0, torch.device("cpu"),
                        views=[("front", c2w, intr)])
    img = iio.imread(info["views"][0])[..., :3].astype(float)
    assert img.shape == (128, 128, 3)  # twice the image size
    covered = (img < 250).any(-1)
    d = np.linalg.norm(c2w[:3, 3])
    r_px = 2 * 60.0 * radius / np.sqrt(d ** 2 - radius ** 2)  # the sphere's silhouette radius, at scale 2
    # within the half-pixel rim the polygon filler adds around a silhouette
    assert abs(covered.sum() / (np.pi * (r_px + 0.5) ** 2) - 1.0) < 0.05
    ys, xs = np.nonzero(covered)
    assert abs(xs.mean() - 64) < 2 and abs(ys.mean() - 64) < 2  # centred: the camera looks at the sphere
    assert img[64, 64].mean() > img[64, int(64 + 0.9 * r_px)].mean()  # head-on brighter than grazing
