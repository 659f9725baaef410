"""Samplers: stratified bins and inverse-CDF importance sampling."""
import torch

from nerfexp.cameras import RayBundle
from nerfexp.samplers.base import RenderedPass, scatter_to_grid
from nerfexp.samplers.hierarchical import HierarchicalSampler, sample_pdf
from nerfexp.samplers.stratified import stratified_t


def test_inverse_cdf_reproduces_histogram():
    torch.manual_seed(0)
    bins = torch.linspace(0.0, 4.0, 5).expand(1, 5).contiguous()
    weights = torch.tensor([[1.0, 0.0, 3.0, 4.0]])
    s = sample_pdf(bins, weights, 200_000)
    hist = torch.histc(s, bins=4, min=0.0, max=4.0) / s.numel()
    expected = weights[0] / weights.sum()
    assert torch.allclose(hist, expected, atol=0.01), hist
    # uniform inside a bin
    inside = s[(s > 3.0) & (s < 4.0)] - 3.0
    assert abs(inside.mean().item() - 0.5) < 0.01


def test_deterministic_pdf_samples_are_quantiles():
    bins = torch.tensor([[0.0, 1.0, 2.0]])
    s = sample_pdf(bins, torch.tensor([[1.0, 1.0]]), 5, deterministic=True)
    assert torch.allclose(s, torch.tensor([[0.0, 0.5, 1.0, 1.5, 2.0]]), atol=1e-4)


def test_stratified_samples_stay_in_their_bins():
    near, far = torch.full((3, 1), 2.0), torch.full((3, 1), 6.0)
    t = stratified_t(near, far, 8)
    assert torch.allclose(t[0], torch.linspace(2.0, 6.0, 8))
    tp = stratified_t(near, far, 8, perturb=True)
    assert (tp >= 2.0).all() and (tp <= 6.0).all() and (tp.diff(dim=-1) >= 0).all()
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    assert (tp[:, 1:-1] >= mids[:, :-1]).all() and (tp[:, 1:-1] <= mids[:, 1:]).all()
    td = stratified_t(near, far, 5, lindisp=True)
    assert torch.allclose((1 / td).diff(dim=-1), torch.full((3, 4), (1 / 6 - 1 / 2) / 4), atol=1e-6)


def test_hierarchical_merges_and_concentrates_samples_near_surface():
    rays = RayBundle(torch.zeros(4, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(4, 3),
                     torch.tensor([[0.0, 0.0, -1.0]]).expand(4, 3), torch.full((4, 1), 2.0), torch.full((4, 1), 6.0))
    sampler = HierarchicalSampler(n_samples=32, n_importance=64)
    assert sampler.n_passes == 2
    coarse = sampler.sample(rays, True, None)
    t = coarse.t
    weights = torch.zeros_like(t)
    weights[:, 16] = 1.0  # all mass at one coarse sample
    fine = sampler.sample(rays, True, None, RenderedPass(coarse, weights))
    tf = fine.t
    assert tf.shape == (4, 96) and (tf.diff(dim=-1) >= 0).all()
    assert fine.importance.sum(-1).eq(64).all() and torch.equal(tf[~fine.importance].reshape(4, 32), t)
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    near_surface = ((tf >= mids[:, 15:16]) & (tf <= mids[:, 16:17])).sum(dim=-1)
    assert (near_surface >= 60).all()  # nearly all 64 importance samples in the two bins around sample 16


def test_scatter_to_grid_puts_each_value_at_its_cell_and_passes_gradients_back():
    torch.manual_seed(0)
    cells = torch.randperm(6 * 9)[:20]
    rows, cols = cells // 9, cells % 9
    values = torch.randn(20, 3, requires_grad=True)
    grid = scatter_to_grid(values, rows, cols, (6, 9))
    assert grid.shape == (6, 9, 3)
    expected = torch.zeros(6, 9, 3)
    for i in range(20):
        expected[rows[i], cols[i]] = values[i].detach()
    assert torch.equal(grid, expected)  # every other cell zero
    weight = torch.randn(6, 9, 3)
    (grad,) = torch.autograd.grad((grid * weight).sum(), [values])
    assert torch.equal(grad, weight[rows, cols])
