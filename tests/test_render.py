"""Volume rendering against analytic results."""
import math

import torch

from nerfexp.render import composite, compositing_weights, sample_deltas


def test_constant_density_slab_gives_one_minus_exp():
    sigma, near, far = 0.7, 1.0, 3.5
    t = torch.linspace(near, far, 4001).unsqueeze(0)
    sig = torch.full_like(t, sigma)
    sig[:, -1] = 0.0  # the last interval reaches to infinity: keep the slab finite
    d = torch.tensor([[0.0, 0.0, -1.0]])
    out = composite(torch.ones(1, t.shape[1], 3), sig, t, d, background=torch.zeros(3))
    expected = 1.0 - math.exp(-sigma * (far - near))
    assert abs(out["acc"].item() - expected) < 1e-4
    assert torch.allclose(out["rgb"], torch.full((1, 3), expected), atol=1e-4)


def test_slab_length_is_measured_along_unnormalised_directions():
    # a direction of length 2 covers twice the world distance per unit t
    t = torch.linspace(0.0, 1.0, 1001).unsqueeze(0)
    sig = torch.full_like(t, 0.5)
    sig[:, -1] = 0.0
    acc = composite(torch.zeros(1, 1001, 3), sig, t, torch.tensor([[0.0, 2.0, 0.0]]), None)["acc"]
    assert abs(acc.item() - (1 - math.exp(-0.5 * 2.0))) < 1e-4


def test_opaque_wall_depth_and_background():
    t = torch.linspace(2.0, 6.0, 401).unsqueeze(0)
    sig = torch.where(t > 4.0, torch.tensor(1e4), torch.tensor(0.0))
    rgb = torch.zeros(1, 401, 3)
    rgb[..., 1] = 1.0
    out = composite(rgb, sig, t, torch.tensor([[0.0, 0.0, -1.0]]), background=torch.ones(3))
    assert abs(out["depth"].item() - 4.01) < 0.02  # first sample beyond the wall
    assert torch.allclose(out["rgb"], torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-4)
    empty = composite(rgb, torch.zeros_like(sig), t, torch.tensor([[0.0, 0.0, -1.0]]), background=torch.ones(3))
    assert torch.allclose(empty["rgb"], torch.ones(1, 3)) and empty["acc"].item() == 0.0


def test_weights_match_product_form():
    torch.manual_seed(0)
    sig = torch.rand(5, 16) * 3
    t = torch.sort(torch.rand(5, 16) * 4 + 2, dim=-1).values
    deltas = sample_deltas(t, torch.randn(5, 3))
    w, _ = compositing_weights(sig, deltas)
    alpha = 1 - torch.exp(-sig * deltas)
    trans = torch.cumprod(torch.cat([torch.ones(5, 1), 1 - alpha[:, :-1]], dim=-1), dim=-1)
    assert torch.allclose(w, alpha * trans, atol=1e-6)
    assert (w.sum(-1) <= 1 + 1e-6).all()
