"""Volume rendering against analytic results."""
import math

import torch

from nerfexp.renderers.volume import composite, compositing_weights
from nerfexp.samplers.base import FAR_DELTA, sample_deltas

DOWN = torch.tensor([[0.0, 0.0, -1.0]])


def test_constant_density_slab_gives_one_minus_exp():
    sigma, near, far = 0.7, 1.0, 3.5
    t = torch.linspace(near, far, 4001).unsqueeze(0)
    sig = torch.full_like(t, sigma)
    deltas = sample_deltas(t, DOWN, torch.tensor([[far]]))  # a bounded ray ends at far
    out = composite(torch.ones(1, t.shape[1], 3), sig, t, deltas, background=torch.zeros(3))
    expected = 1.0 - math.exp(-sigma * (far - near))
    assert abs(out["acc"].item() - expected) < 1e-4
    assert torch.allclose(out["rgb"], torch.full((1, 3), expected), atol=1e-4)


def test_slab_length_is_measured_along_unnormalised_directions():
    # a direction of length 2 covers twice the world distance per unit t
    t = torch.linspace(0.0, 1.0, 1001).unsqueeze(0)
    sig = torch.full_like(t, 0.5)
    deltas = sample_deltas(t, torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([[1.0]]))
    acc = composite(torch.zeros(1, 1001, 3), sig, t, deltas, None)["acc"]
    assert abs(acc.item() - (1 - math.exp(-0.5 * 2.0))) < 1e-4


def test_faint_density_everywhere_shows_a_coloured_background():
    # positive density on every sample, up to the last: a bounded ray lets exp(-sigma (far - near)) of the
    # background through; the infinite last interval of unbounded scenes would hide it completely
    sigma, near, far = 0.2, 2.0, 6.0
    t = torch.sort(torch.rand(3, 64) * (far - near) + near, dim=-1).values
    t[:, 0] = near
    rgbs = torch.tensor([0.9, 0.1, 0.1]).expand(3, 64, 3)
    bg = torch.tensor([0.1, 0.3, 0.8])
    dirs = DOWN.expand(3, 3)
    out = composite(rgbs, torch.full_like(t, sigma), t, sample_deltas(t, dirs, torch.full((3, 1), far)), bg)
    seen = 1.0 - math.exp(-sigma * (far - near))
    assert torch.allclose(out["acc"], torch.full((3,), seen), atol=1e-5)
    assert torch.allclose(out["rgb"], seen * torch.tensor([0.9, 0.1, 0.1]) + (1 - seen) * bg, atol=1e-5)
    unbounded = composite(rgbs, torch.full_like(t, sigma), t, sample_deltas(t, dirs, None), bg)
    assert torch.allclose(unbounded["acc"], torch.ones(3))


def test_raw_density_far_below_zero_leaves_the_ray_empty():
    # the shifted softplus of -20 is tiny but positive: bounded rays stay transparent
    t = torch.linspace(2.0, 6.0, 64).unsqueeze(0)
    sig = torch.nn.functional.softplus(torch.full_like(t, -21.0))
    out = composite(torch.zeros(1, 64, 3), sig, t, sample_deltas(t, DOWN, torch.tensor([[6.0]])), torch.ones(3))
    assert out["acc"].item() < 1e-6 and torch.allclose(out["rgb"], torch.ones(1, 3), atol=1e-6)


def test_opaque_wall_depth_and_background():
    t = torch.linspace(2.0, 6.0, 401).unsqueeze(0)
    sig = torch.where(t > 4.0, torch.tensor(1e4), torch.tensor(0.0))
    rgb = torch.zeros(1, 401, 3)
    rgb[..., 1] = 1.0
    deltas = sample_deltas(t, DOWN, torch.tensor([[6.0]]))
    out = composite(rgb, sig, t, deltas, background=torch.ones(3))
    assert abs(out["depth"].item() - 4.01) < 0.02  # first sample beyond the wall
    assert torch.allclose(out["rgb"], torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-4)
    empty = composite(rgb, torch.zeros_like(sig), t, deltas, background=torch.ones(3))
    assert torch.allclose(empty["rgb"], torch.ones(1, 3)) and empty["acc"].item() == 0.0


def test_last_interval_ends_at_far_or_goes_on_for_unbounded_scenes():
    t = torch.tensor([[2.0, 3.0, 5.5]])
    d = torch.tensor([[0.0, 0.0, -2.0]])
    assert torch.allclose(sample_deltas(t, d, torch.tensor([[6.0]])), torch.tensor([[2.0, 5.0, 1.0]]))
    assert sample_deltas(t, d, None)[0, -1].item() == 2.0 * FAR_DELTA


def test_weights_match_product_form():
    torch.manual_seed(0)
    sig = torch.rand(5, 16) * 3
    t = torch.sort(torch.rand(5, 16) * 4 + 2, dim=-1).values
    deltas = sample_deltas(t, torch.randn(5, 3), torch.full((5, 1), 6.0))
    w, _ = compositing_weights(sig, deltas)
    alpha = 1 - torch.exp(-sig * deltas)
    trans = torch.cumprod(torch.cat([torch.ones(5, 1), 1 - alpha[:, :-1]], dim=-1), dim=-1)
    assert torch.allclose(w, alpha * trans, atol=1e-6)
    assert (w.sum(-1) <= 1 + 1e-6).all()
