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


def test_pixel_footprint_is_the_pixels_spread_where_the_ray_samples():
    """A pixel's footprint at ``t`` is the std of a square as wide as the gap to the next pixel's ray there."""
    c2w = look_at((0.5, 4.0, 2.0)).float()
    intr = Intrinsics(40.0, 50.0, 16.0, 16.0, 32, 32)
    i, j = torch.tensor([16, 17, 16]), torch.tensor([16, 16, 17])  # a pixel near the axis, its right and lower one
    rays = rays_from_pixels(c2w, intr.as_tensor(), i, j, 2.0, 6.0)
    for t in (2.0, 5.0):
        pts = rays.points(torch.full((3, 1), t))[:, 0]
        across = ((pts[1] - pts[0]).norm() * (pts[2] - pts[0]).norm()).sqrt()  # geometric mean of width, height
        std = rays.footprint_at(torch.full((3, 1), t))[0, 0, 0]
        assert abs(std * math.sqrt(12.0) - across) < 1e-3 * across
    # slicing, moving and re-clipping rays keep each ray's footprint; one sample per ray (rows) reads its own ray's
    sub = rays[1:].with_near_far(rays.near[1:], rays.far[1:]).to("cpu")
    assert torch.equal(sub.footprint, rays.footprint[1:])
    t = torch.tensor([[2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    rows = torch.tensor([2, 0])
    assert torch.equal(rays.footprint_at(t[rows, 1], rows), rays.footprint_at(t)[rows, 1])


def test_ndc_footprint_is_one_pixel_of_the_ndc_cube_at_every_depth():
    from nerfexp.cameras import ndc_rays

    intr = Intrinsics(30.0, 30.0, 20.0, 15.0, 40, 30)
    world = rays_from_pixels(torch.eye(4), intr.as_tensor(), torch.tensor([20, 21, 20]), torch.tensor([15, 15, 16]),
                             1.0, 10.0)
    rays = ndc_rays(world, intr.fx, intr.width, intr.height)
    for t in (0.1, 0.9):
        pts = rays.points(torch.full((3, 1), t))[:, 0]
        across = ((pts[1] - pts[0])[:2].norm() * (pts[2] - pts[0])[:2].norm()).sqrt()
        assert abs(across - 2.0 / math.sqrt(40 * 30)) < 1e-4
        assert abs(rays.footprint_at(torch.full((3, 1), t))[0, 0, 0] * math.sqrt(12.0) - across) < 1e-4
