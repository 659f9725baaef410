"""Ray generation: pinhole geometry and the OpenGL camera convention."""
import math

import torch

from nerfexp.cameras import Intrinsics, RayBundle, focal_from_fov, image_rays, rays_from_pixels


def look_at(position, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    pos, tgt, upv = (torch.tensor(v, dtype=torch.float64) for v in (position, target, up))
    back = (pos - tgt) / (pos - tgt).norm()
    right = torch.linalg.cross(upv, back)
    right = right / right.norm()
    upc = torch.linalg.cross(back, right)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, upc, back, pos
    return c2w


def test_centre_ray_follows_camera_minus_z():
    c2w = look_at((3.0, -2.0, 1.5)).float()
    intr = Intrinsics(50.0, 50.0, 16.0, 16.0, 32, 32)
    # the image centre (16, 16) lies on the corner of four pixels: their mean direction is the optical axis
    rays = rays_from_pixels(c2w, intr.as_tensor(), torch.tensor([15, 16, 15, 16]), torch.tensor([15, 15, 16, 16]),
                            2.0, 6.0)
    mean_dir = rays.viewdirs.mean(0)
    assert torch.allclose(mean_dir / mean_dir.norm(), -c2w[:3, 2], atol=1e-6)
    assert torch.allclose(rays.origins, c2w[:3, 3].expand(4, 3))
    # points at t = depth lie at that depth along the optical axis
    p = rays.origins + rays.directions * 4.0
    depth = ((p - c2w[:3, 3]) @ -c2w[:3, 2])
    assert torch.allclose(depth, torch.full((4,), 4.0), atol=1e-5)


def test_pixel_rays_project_back_to_their_pixels():
    c2w = look_at((0.5, 4.0, 2.0)).float()
    intr = Intrinsics(40.0, 44.0, 11.0, 9.5, 23, 19)
    rays = image_rays(c2w, intr, 2.0, 6.0)
    pts = rays.origins + rays.directions * 3.0
    cam = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera
    u = intr.fx * cam[:, 0] / -cam[:, 2] + intr.cx
    v = -intr.fy * cam[:, 1] / -cam[:, 2] + intr.cy
    jj, ii = torch.meshgrid(torch.arange(19), torch.arange(23), indexing="ij")
    assert torch.allclose(u, ii.reshape(-1).float() + 0.5, atol=1e-4)
    assert torch.allclose(v, jj.reshape(-1).float() + 0.5, atol=1e-4)
    # +x right and +y up: the first pixel (top-left) looks left and up
    first = rays.directions[0] @ c2w[:3, :3]
    assert first[0] < 0 and first[1] > 0


def test_focal_from_fov_and_downscaled_intrinsics_keep_angles():
    f = focal_from_fov(800, 0.6911112070083618)
    assert abs(f - 1111.1110311937682) < 1e-3
    intr = Intrinsics(f, f, 400.0, 400.0, 800, 800).scaled(8)
    assert intr.width == 100 and abs(intr.fx - f / 8) < 1e-9 and intr.cx == 50.0
    assert abs(2 * math.atan(0.5 * intr.width / intr.fx) - 0.6911112070083618) < 1e-9


def test_sphere_near_far_clips_rays_to_the_sphere():
    from nerfexp.cameras import RayBundle, sphere_near_far

    o = torch.tensor([[0.0, 0.0, 3.0], [0.0, 5.0, 3.0], [0.0, 0.0, 0.5]])
    d = torch.tensor([[0.0, 0.0, -2.0], [0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    rays = RayBundle(o, d, d / d.norm(dim=-1, keepdim=True), torch.full((3, 1), 0.1), torch.full((3, 1), 9.0))
    out = sphere_near_far(rays, 1.0)
    assert torch.allclose(out.near[:, 0], torch.tensor([1.0, 0.1, 0.1]))  # hit at z=1 (t=1 with |d|=2)
    # exit at z=-1; in a bounded scene the miss has nothing to sample (it shows the background)
    assert torch.allclose(out.far[:, 0], torch.tensor([2.0, 0.1, 1.5]))
    rays.unbounded = True  # the scene goes on behind the sphere: the miss keeps its far
    assert torch.allclose(sphere_near_far(rays, 1.0).far[:, 0], torch.tensor([2.0, 9.0, 1.5]))


def test_box_near_far_clips_to_the_box_and_empties_missing_rays():
    from nerfexp.cameras import box_near_far

    o = torch.tensor([[-4.0, 0.0, 0.0], [-4.0, 3.0, 0.0], [-4.0, 0.5, 0.2]])
    d = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # t in units of the direction
    rays = box_near_far(RayBundle(o, d, d / d.norm(dim=-1, keepdim=True), torch.full((3, 1), 2.0),
                                  torch.full((3, 1), 6.0)), 1.5)
    assert torch.allclose(rays.near[:, 0], torch.tensor([2.0, 2.5, 2.5]))  # ray 0 enters at t=1.25 < near
    assert torch.allclose(rays.far[:, 0], torch.tensor([2.75, 2.5, 5.5]))
    assert rays.far[1, 0] == rays.near[1, 0]  # ray 1 misses the box: no length left to sample
