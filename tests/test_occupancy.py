"""Occupancy-grid marching: box intersection, empty-space skipping, early termination, analytic compositing."""
from __future__ import annotations

import math

import pytest
import torch

from nerfexp.cameras import RayBundle, ray_box
from nerfexp.renderers.volume import composite
from nerfexp.samplers.front_to_back import query_front_to_back
from nerfexp.samplers.occupancy import OccupancySampler, compact


def rays_down_z(xy: list[tuple[float, float]], z: float = 4.0, near: float = 0.5, far: float = 10.0) -> RayBundle:
    """Rays from height ``z`` straight down -z at the given (x, y)."""
    n = len(xy)
    origins = torch.tensor([[x, y, z] for x, y in xy])
    dirs = torch.tensor([[0.0, 0.0, -1.0]]).repeat(n, 1)
    return RayBundle(origins, dirs, dirs, torch.full((n, 1), near), torch.full((n, 1), far))


def test_ray_box_enter_and_leave():
    rays = rays_down_z([(0.0, 0.0), (0.5, -0.5), (3.0, 0.0)])
    t0, t1 = ray_box(rays, 1.0)
    assert torch.allclose(t0[:2, 0], torch.tensor([3.0, 3.0])) and torch.allclose(t1[:2, 0], torch.tensor([5.0, 5.0]))
    assert t0[2, 0] >= t1[2, 0]  # misses the box


def test_compact_keeps_order_and_trims():
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    mask = torch.tensor([[False, True, False, True], [False, False, True, False]])
    out_t, out_m = compact(t, mask)
    assert out_t.shape == (2, 2)
    assert out_t[0].tolist() == [2.0, 4.0] and out_t[1, 0] == 7.0
    assert out_m.tolist() == [[True, True], [True, False]]


def test_empty_grid_cells_get_no_samples():
    sampler = OccupancySampler(bound=1.0, resolution=8, diagonal_steps=128, early_stop_eps=0.0)
    # occupy only the slab of cells with z in [0, 0.25)
    idx = torch.arange(8 ** 3)
    z_cell = idx // 64
    sampler.occupied.copy_(z_cell == 4)
    rays = rays_down_z([(0.1, 0.1), (-0.6, 0.3)])
    s = sampler.sample(rays, False, lambda p: torch.zeros(p.shape[:-1]))
    pts_z = (rays.origins[:, None, 2] + rays.directions[:, None, 2] * s.t)[s.mask]
    assert s.mask.any() and ((pts_z >= 0) & (pts_z < 0.25)).all()
    step = 2 * math.sqrt(3) / 128
    assert abs(s.mask.sum(-1).float().mean().item() - 0.25 / step) <= 1.0
    assert torch.allclose(s.deltas[s.mask], torch.full_like(s.deltas[s.mask], step))


def test_constant_density_slab_composites_to_analytic_opacity():
    sigma, thickness = 2.0, 0.5
    sampler = OccupancySampler(bound=1.0, resolution=16, diagonal_steps=2048, early_stop_eps=0.0)

    def density(p):
        return torch.where((p[..., 2] > -0.25) & (p[..., 2] < 0.25), sigma, 0.0) * torch.ones(p.shape[:-1])

    sampler.update(0, density)  # warm-up update: every cell evaluated once
    assert 0 < sampler.occupancy_fraction() < 0.5  # only the slab's cells
    rays = rays_down_z([(0.0, 0.0), (0.3, -0.2)])
    s = sampler.sample(rays, False, density)
    pts = rays.origins[:, None] + rays.directions[:, None] * s.t[..., None]
    sig = density(pts) * s.mask
    out = composite(torch.ones(*s.t.shape, 3), sig, s.t, s.deltas, None)
    expected = 1 - math.exp(-sigma * thickness)
    assert torch.allclose(out["acc"], torch.full((2,), expected), atol=0.01)


@pytest.mark.parametrize("training", [True, False])
def test_opaque_wall_stops_marching(training: bool):
    # in training (and with front_to_back=false when rendering) the sampler's own density pass drops the samples
    sampler = OccupancySampler(bound=1.0, resolution=8, diagonal_steps=256, early_stop_eps=1e-4, perturb=False,
                               front_to_back=False)

    def wall(p):  # very dense for z < 0.5
        return torch.where(p[..., 2] < 0.5, 1e4, 0.0) * torch.ones(p.shape[:-1])

    rays = rays_down_z([(0.0, 0.0)])
    s = sampler.sample(rays, training, wall)
    assert s.early_stop_eps is None  # nothing left for the pipeline to drop
    z = (rays.origins[:, None, 2] + rays.directions[:, None, 2] * s.t)[s.mask]
    assert z.min() > 0.45  # nothing sampled far behind the wall's front
    # the (never updated, all occupied) grid keeps the empty samples from z = 1 down to the wall, then one more
    step = 2 * math.sqrt(3) / 256
    assert s.mask.sum() <= 0.5 / step + 2


def test_grid_update_marks_the_sphere_and_decays():
    sampler = OccupancySampler(bound=1.0, resolution=16, diagonal_steps=256, warmup_steps=48, ema_decay=0.5)
    ball = lambda p: torch.where(p.norm(dim=-1) < 0.5, 50.0, 0.0)  # noqa: E731
    empty = lambda p: torch.zeros(p.shape[:-1])  # noqa: E731
    centers = sampler.cell_centers(torch.arange(16 ** 3), jitter=False)
    inside = centers.norm(dim=-1) < 0.4
    outside = centers.norm(dim=-1) > 0.6
    # in warm-up every cell is re-evaluated and the grid is the field as it is now: no memory of earlier updates
    sampler.update(0, ball)
    sampler.update(16, empty)
    assert (sampler.density == 0).all()
    sampler.update(16 * 2, ball)
    assert sampler.occupied[inside].all() and not sampler.occupied[outside].any()
    sampler.update(16 * 3, empty)  # after warm-up the ball vanished: densities halve (a decaying maximum)
    assert torch.allclose(sampler.density[inside], torch.full_like(sampler.density[inside], 25.0))
    sampler.update(5, ball)  # not an update step
    assert torch.allclose(sampler.density[inside], torch.full_like(sampler.density[inside], 25.0))


def test_cpu_kernel_marches_the_same_samples():
    import pytest

    from nerfexp.kernels import cpu_kernels

    if cpu_kernels() is None:
        pytest.skip("the C++ CPU kernels cannot be built here (no compiler); the PyTorch marcher is tested above")
    torch.manual_seed(0)
    sampler = OccupancySampler(bound=1.0, resolution=16, diagonal_steps=200, early_stop_eps=0.0)
    sampler.occupied.copy_(torch.rand(16 ** 3) < 0.3)
    n = 64
    origins = torch.randn(n, 3) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    dirs = torch.randn(n, 3) * 0.2 + torch.tensor([0.0, 0.0, -1.0])
    rays = RayBundle(origins, dirs, dirs / dirs.norm(dim=-1, keepdim=True), torch.full((n, 1), 0.1),
                     torch.full((n, 1), 8.0))
    sampler.use_cpu_kernel = False
    torch.manual_seed(1)
    ref = sampler.sample(rays, True, lambda p: torch.zeros(p.shape[:-1]))
    sampler.use_cpu_kernel = True
    torch.manual_seed(1)
    fast = sampler.sample(rays, True, lambda p: torch.zeros(p.shape[:-1]))
    assert ref.mask.any()
    assert torch.equal(ref.mask, fast.mask)
    assert torch.allclose(ref.t[ref.mask], fast.t[fast.mask], atol=1e-6)


def slab_and_ball(p: torch.Tensor) -> torch.Tensor:
    """Density: an opaque slab at z in [0.1, 0.2], a ball of radius 0.3 at (0.4, 0, 0.55) that rays cross with
    transmittance 1e-5 or less near its middle and far more near its rim, faint fog elsewhere."""
    slab = ((p[..., 2] > 0.1) & (p[..., 2] < 0.2)).float() * 150.0
    ball = ((p - torch.tensor([0.4, 0.0, 0.55])).norm(dim=-1) < 0.3).float() * 20.0
    return slab + ball + 0.05


@pytest.mark.parametrize("growth", [1, 2])
def test_front_to_back_keeps_the_samples_the_density_pass_keeps_and_queries_few_more(growth):
    torch.manual_seed(0)
    xy = (torch.rand(64, 2) * 1.6 - 0.8).tolist()
    rays = rays_down_z([tuple(v) for v in xy])
    by_pass = OccupancySampler(bound=1.0, resolution=8, diagonal_steps=128, front_to_back=False)
    marched = OccupancySampler(bound=1.0, resolution=8, diagonal_steps=128)
    expected = by_pass.sample(rays, False, slab_and_ball)
    samples = marched.sample(rays, False, slab_and_ball)
    assert samples.early_stop_eps == 1e-4 and samples.mask.sum() > 2 * expected.mask.sum()  # not yet dropped
    queried = []

    def query(rows, cols):
        pts = rays.points(samples.t[rows, cols], rows)
        queried.append(len(rows))
        return pts.abs(), slab_and_ball(pts)  # any colour that differs from sample to sample

    block = 4
    kept, rgb, density = query_front_to_back(samples, query, 1e-4, block=block, growth=growth)
    assert torch.equal(kept.mask, expected.mask)
    assert torch.allclose(kept.t[kept.mask], expected.t[expected.mask])
    assert torch.equal(kept.deltas, expected.deltas)
    # a query at every kept sample and at most one round more per ray (with rounds that grow, one round is at most
    # what the ray kept before it plus the first block), far fewer than the density pass's
    n_kept = int(expected.mask.sum())
    assert sum(queried) <= (n_kept if growth == 1 else 2 * n_kept) + block * len(rays)
    assert sum(queried) < (0.6 if growth == 1 else 0.8) * int(samples.mask.sum())
    pts = rays.points(expected.t)
    torch.testing.assert_close(density, slab_and_ball(pts) * expected.mask)
    torch.testing.assert_close(rgb, pts.abs() * expected.mask[..., None])


def test_front_to_back_in_a_uniform_medium_stops_where_transmittance_reaches_eps():
    sigma, eps = 5.0, 1e-3
    sampler = OccupancySampler(bound=1.0, resolution=4, diagonal_steps=400, early_stop_eps=eps)
    rays = rays_down_z([(0.0, 0.0), (0.5, 0.5)])
    samples = sampler.sample(rays, False, lambda p: torch.full(p.shape[:-1], sigma))
    step = sampler.step_size
    kept, _, density = query_front_to_back(
        samples, lambda rows, cols: (torch.zeros(len(rows), 3), torch.full((len(rows),), sigma)), eps, block=3)
    # the k-th sample (from 0) sees transmittance exp(-sigma * k * step): kept while that is above eps
    n_kept = math.ceil(-math.log(eps) / (sigma * step))
    assert kept.mask.sum(1).tolist() == [n_kept, n_kept]
    assert (density[kept.mask] == sigma).all() and (density[~kept.mask] == 0).all()
