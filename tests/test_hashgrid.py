"""Hash-grid encoder: tinycudann's layout and hash, exact interpolation at vertices, gradients to the table."""
from __future__ import annotations

import pytest
import torch

from nerfexp.encoders.hashgrid import HashGridEncoder, level_layout, tcnn_available


def small_grid(**kw) -> HashGridEncoder:
    args = dict(n_levels=6, n_features=2, log2_table_size=10, base_resolution=4, finest_resolution=64, bound=1.0,
                backend="torch")
    args.update(kw)
    return HashGridEncoder(**args)


def test_layout_follows_tcnn_formula():
    scales, res, sizes, offsets = level_layout(4, 12, 8, 2.0)
    assert scales.tolist() == [7.0, 15.0, 31.0, 63.0]  # base * 2^l - 1
    assert res.tolist() == [8, 16, 32, 64]  # ceil(scale) + 1
    # dense while res^3 (rounded up to 8) fits in 2^12, else the full table
    assert sizes.tolist() == [512, 4096, 4096, 4096]
    assert offsets.tolist() == [0, 512, 4608, 8704]


def test_interpolation_is_exact_at_grid_vertices():
    enc = small_grid()
    torch.manual_seed(0)
    with torch.no_grad():
        enc.table.normal_()
    vertex = torch.tensor([3.0, 1.0, 2.0])
    for level in range(enc.n_levels):
        scale = float(enc.scales[level])
        x01 = ((vertex - 0.5) / scale).unsqueeze(0)  # x * scale + 0.5 lands on the vertex (up to rounding)
        out = enc.encode_torch(x01)[0, level * 2:(level + 1) * 2]
        idx, _ = enc.grid_indices(x01)
        cell = torch.floor(x01[0] * enc.scales[level] + 0.5)
        corners = cell + enc.corners  # (8, 3) grid coordinates of the cell's corners
        at_vertex = (corners == vertex).all(-1)
        assert at_vertex.sum() == 1  # the vertex is one of the cell's corners, whichever side rounding fell
        expected = enc.table[idx[level, 0][at_vertex][0]]
        assert torch.allclose(out, expected, atol=1e-4)
        if level < enc.dense_levels:
            r = int(enc.resolutions[level])
            assert int(idx[level, 0][at_vertex]) == int(enc.offsets[level]) + 3 + r * (1 + r * 2)


def test_trilinear_between_vertices_is_the_mean_at_the_cell_centre():
    enc = small_grid()
    with torch.no_grad():
        enc.table.normal_()
    scale = float(enc.scales[0])
    x01 = torch.full((1, 3), (1.0 + 0.5 - 0.5) / scale)  # grid position 1.5 on each axis: the cell centre
    idx, frac = enc.grid_indices(x01)
    assert torch.allclose(frac[0], torch.full_like(frac[0], 0.5), atol=1e-5)
    out = enc.encode_torch(x01)[0, :2]
    assert torch.allclose(out, enc.table[idx[0, 0]].mean(0), atol=1e-5)


def test_hash_matches_32_bit_prime_hash():
    enc = small_grid()
    level = enc.n_levels - 1
    assert level >= enc.dense_levels  # the finest level is hashed
    torch.manual_seed(1)
    x01 = torch.rand(50, 3)
    idx, _ = enc.grid_indices(x01)
    pos = x01 * float(enc.scales[level]) + 0.5
    size = int(enc.sizes[level])
    for n in range(50):
        cell = [int(v) for v in torch.floor(pos[n])]
        for c in range(8):
            x, y, z = (cell[d] + ((c >> d) & 1) for d in range(3))
            h = ((x * 1) ^ (y * 2654435761) ^ (z * 805459861)) & 0xFFFFFFFF
            assert int(idx[level, n, c]) == int(enc.offsets[level]) + h % size


def test_dense_levels_have_no_collisions_and_hashed_levels_do():
    enc = small_grid()
    assert 0 < enc.dense_levels < enc.n_levels
    for level in range(enc.n_levels):
        r = int(enc.resolutions[level])
        g = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3).float()
        # a point at each vertex: grid position = vertex, so corner 0 is that vertex
        x01 = ((g - 0.5) / float(enc.scales[level])).clamp(0, 1)
        inside = (g > 0).all(-1)  # vertex 0 is clamped; skip it
        idx, _ = enc.grid_indices(x01[inside])
        rows = idx[level, :, 0]
        assert rows.min() >= enc.offsets[level] and rows.max() < enc.offsets[level] + enc.sizes[level]
        unique = len(torch.unique(rows))
        if level < enc.dense_levels:
            assert unique == len(rows)
        else:
            assert unique < len(rows)


def test_gradients_reach_only_the_looked_up_rows():
    enc = small_grid()
    x = torch.rand(7, 3) * 2 - 1
    out = enc(x)
    assert out.shape == (7, enc.out_dim)
    out.sum().backward()
    grad = enc.table.grad
    # trilinear weights sum to one per level, so each feature column's gradient sums to points x levels
    assert torch.allclose(grad.sum(0), torch.full((2,), 7.0 * enc.n_levels), atol=1e-4)
    idx, _ = enc.grid_indices(enc.normalize(x))
    touched = torch.zeros(len(grad), dtype=torch.bool)
    touched[idx.reshape(-1)] = True
    assert (grad[~touched] == 0).all()
    assert (grad[touched].abs().sum(-1) > 0).float().mean() > 0.5


def test_points_outside_the_box_are_clamped():
    enc = small_grid(bound=1.0)
    inside = torch.tensor([[1.0, -1.0, 0.25]])
    outside = torch.tensor([[3.0, -7.0, 0.25]])
    assert torch.equal(enc(inside), enc(outside))


@pytest.mark.skipif(not tcnn_available(), reason="tinycudann with CUDA is not available on this machine")
def test_tcnn_and_torch_backends_agree():
    enc = HashGridEncoder(bound=1.0, backend="torch").cuda()
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = torch.rand(4096, 3, device="cuda") * 2 - 1
    ref = enc(x)
    enc.requested_backend = "tcnn"
    assert torch.allclose(enc(x), ref, atol=1e-3)


@pytest.mark.parametrize("n_features", [1, 2, 3, 8])
def test_cpu_kernel_matches_pure_torch(n_features):
    from nerfexp.kernels import cpu_kernels

    if cpu_kernels() is None:
        pytest.skip("the C++ CPU kernel cannot be built here (no compiler); the pure-PyTorch path is tested above")
    enc = small_grid(n_features=n_features)
    with torch.no_grad():
        enc.table.normal_()
    x = torch.rand(300, 3) * 2 - 1
    # the kernel keeps 1, 2, 4 or 8 features in registers; other counts take the PyTorch code
    assert enc.backend_for(x) == ("torch" if n_features == 3 else "cpu-kernel")
    out_k = enc(x)
    (out_k * torch.linspace(0, 1, out_k.shape[1])).sum().backward()
    grad_k = enc.table.grad.clone()
    enc.table.grad = None
    out_t = enc.encode_torch(enc.normalize(x))
    (out_t * torch.linspace(0, 1, out_t.shape[1])).sum().backward()
    assert torch.allclose(out_k, out_t, atol=1e-6)
    assert torch.allclose(grad_k, enc.table.grad, atol=1e-5)


@pytest.mark.parametrize("n_points", [0, 1, 300, 20_001])
def test_encode_beside_is_the_prefix_then_the_encoding(n_points):
    """The kernel writes the prefix's columns and then the encoding in one pass (several blocks of points at
    20,001): the same values, and the same gradients to the table and the prefix, as concatenating the pure-PyTorch
    encoding after the prefix."""
    from nerfexp.encoders.base import encode_beside
    from nerfexp.kernels import cpu_kernels

    if cpu_kernels() is None:
        pytest.skip("the C++ CPU kernel cannot be built here (no compiler); the pure-PyTorch path is tested above")
    enc = small_grid()
    with torch.no_grad():
        enc.table.normal_()
    x = (torch.rand(n_points, 3) * 2 - 1).reshape(-1, 1, 3).expand(-1, 2, 3) + torch.tensor([0.0, 0.01])[:, None]
    prefix = torch.randn(*x.shape[:-1], 5, requires_grad=True)
    assert enc.backend_for(x) == "cpu-kernel"
    weights = torch.randn(5 + enc.out_dim)
    out_k = encode_beside(enc, x, prefix)
    (out_k * weights).sum().backward()
    grads_k = enc.table.grad.clone(), prefix.grad.clone()
    enc.table.grad, prefix.grad = None, None
    encoding = enc.encode_torch(enc.normalize(x.reshape(-1, 3))).reshape(*x.shape[:-1], enc.out_dim)
    out_t = torch.cat([prefix, encoding], -1)
    (out_t * weights).sum().backward()
    assert out_k.shape == (n_points, 2, 5 + enc.out_dim)
    assert torch.allclose(out_k, out_t, atol=1e-6)
    assert torch.allclose(grads_k[0], enc.table.grad, atol=1e-4)
    assert torch.equal(grads_k[1], prefix.grad)
