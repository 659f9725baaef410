"""The fused CPU linear + ReLU equals PyTorch's two ops, values and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nerfexp.fields import linear_relu as lr
from nerfexp.fields.nerf import NeRFField


def test_fused_linear_relu_matches_unfused_values_and_gradients():
    assert lr._FUSED, "oneDNN's fused op should be available in the CPU build"
    torch.manual_seed(0)
    layer = torch.nn.Linear(7, 16)
    x = torch.randn(4, 50, 7, requires_grad=True)
    out = lr.linear_relu(x, layer)
    assert out.grad_fn is not None and "FusedLinear" in type(out.grad_fn).__name__
    assert (out == 0).float().mean() > 0.2  # a fair share of inactive units, so the ReLU's mask matters
    weight = torch.randn_like(out)
    grads = torch.autograd.grad((out * weight).sum(), [x, layer.weight, layer.bias])
    ref = F.relu(F.linear(x, layer.weight, layer.bias))
    ref_grads = torch.autograd.grad((ref * weight).sum(), [x, layer.weight, layer.bias])
    assert torch.allclose(out, ref, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-5), (g - r).abs().max()


def test_input_without_gradient_and_layer_without_bias():
    torch.manual_seed(1)
    layer = torch.nn.Linear(5, 8, bias=False)
    x = torch.randn(30, 5)
    out = lr.linear_relu(x, layer)
    (gw,) = torch.autograd.grad(out.sum(), [layer.weight])
    ref = F.relu(x @ layer.weight.t())
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(gw, ((ref > 0).float()).t() @ x, atol=1e-5)


def test_relu_mlp_fuses_each_pair_and_keeps_the_sequential_keys(monkeypatch):
    torch.manual_seed(2)
    layers = [torch.nn.Linear(6, 16), torch.nn.ReLU(inplace=True), torch.nn.Linear(16, 16), torch.nn.ReLU(inplace=True),
              torch.nn.Linear(16, 4)]
    plain = torch.nn.Sequential(*layers)
    fused = lr.ReLUMLP(*layers)
    assert list(fused.state_dict()) == list(plain.state_dict())  # checkpoints of either load into the other
    calls = []
    monkeypatch.setattr(lr, "linear_relu", lambda x, layer: calls.append(layer) or F.relu(layer(x)))
    x = torch.randn(3, 20, 6)
    torch.testing.assert_close(fused(x), plain(x))
    assert calls == [layers[0], layers[2]]  # the two hidden pairs went through the fused op, the output layer not


@pytest.mark.parametrize("stable_rows", [True, False])
def test_linear_is_the_layer_in_values_and_gradients(stable_rows):
    """With gradients, ``linear`` takes the fused op only for callers whose batches keep their size (oneDNN builds a
    kernel per shape); ``linear_relu`` always, its input gradient on oneDNN or PyTorch's mm. Same values and
    gradients as the layers either way."""
    torch.manual_seed(3)
    layer = torch.nn.Linear(35, 64)
    x = torch.randn(2, 100, 35)
    with torch.no_grad():
        torch.testing.assert_close(lr.linear(x, layer, stable_rows=stable_rows), layer(x))
    x.requires_grad_(True)
    for op, ref in ((lr.linear, layer), (lr.linear_relu, lambda v: F.relu(layer(v)))):
        out = op(x, layer, stable_rows=stable_rows)
        fused = "FusedLinear" in type(out.grad_fn).__name__  # the oneDNN path, whose backward is written here
        assert fused == (stable_rows or op is lr.linear_relu)
        weight = torch.randn_like(out)
        grads = torch.autograd.grad((out * weight).sum(), [x, layer.weight, layer.bias])
        ref_grads = torch.autograd.grad((ref(x) * weight).sum(), [x, layer.weight, layer.bias])
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_second_derivatives_refuse_the_fused_op_and_take_the_layer_when_asked():
    torch.manual_seed(4)
    layer = torch.nn.Linear(3, 8)
    x = torch.randn(10, 3, requires_grad=True)
    (gx,) = torch.autograd.grad(lr.linear(x, layer, stable_rows=True).sum(), [x], create_graph=True)
    try:  # a silent zero second derivative would train an eikonal term on nothing
        gx.sum().backward()
        raised = False
    except RuntimeError:
        raised = True
    assert raised
    w = torch.nn.Linear(8, 1)
    f = lambda p: lr.linear(torch.tanh(lr.linear(p, layer, second_order=True)), w, second_order=True).sum()
    (g,) = torch.autograd.grad(f(x), [x], create_graph=True)
    (h,) = torch.autograd.grad(g.pow(2).sum(), [layer.weight])
    ref = lambda p: w(torch.tanh(layer(p))).sum()
    (g_ref,) = torch.autograd.grad(ref(x), [x], create_graph=True)
    (h_ref,) = torch.autograd.grad(g_ref.pow(2).sum(), [layer.weight])
    torch.testing.assert_close(h, h_ref)
    assert h.abs().sum() > 0


@pytest.mark.parametrize("feature_layer, use_viewdirs", [(False, True), (True, True), (False, False)])
def test_nerf_field_with_its_heads_in_one_product_is_the_papers_network(feature_layer, use_viewdirs):
    """The density head and the colour branch's first layer run as one product on stacked weights; the outputs and
    every parameter's gradient are those of the layers applied one by one."""
    torch.manual_seed(5)
    field = NeRFField(63, 27, depth=4, width=32, skips=(1,), use_viewdirs=use_viewdirs, feature_layer=feature_layer,
                      density_activation="softplus")
    x, d = torch.randn(5, 7, 63), torch.randn(5, 27)

    def reference():
        h = x
        for k, layer in enumerate(field.trunk):
            h = F.relu(layer(h))
            if k in field.skips:
                h = torch.cat([x, h], -1)
        sigma = F.softplus(field.sigma_head(h).squeeze(-1) - 1.0)
        if use_viewdirs:
            h = field.feature(h) if feature_layer else h
            h = F.relu(field.view_from_point(h) + field.view_from_dir(d).unsqueeze(-2))
        return torch.sigmoid(field.rgb_head(h)), sigma

    rgb, sigma = field(x, d)
    assert "FusedLinear" in type(rgb.grad_fn.next_functions[0][0]).__name__ or not use_viewdirs
    ref_rgb, ref_sigma = reference()
    torch.testing.assert_close(rgb, ref_rgb)
    torch.testing.assert_close(sigma, ref_sigma)
    torch.testing.assert_close(field.density(x), ref_sigma)
    params = list(field.parameters())
    grads = torch.autograd.grad(rgb.sum() + 3 * sigma.sum(), params)
    ref_grads = torch.autograd.grad(ref_rgb.sum() + 3 * ref_sigma.sum(), params)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_row_buckets_are_16_per_octave_and_waste_under_a_sixteenth():
    sizes = [lr.row_bucket(n) for n in range(1, 2 ** 17 + 1)]
    for n, b in zip(range(1, 2 ** 17 + 1), sizes):
        assert n <= b < n + max(256, n / 16), (n, b)
    assert lr.row_bucket(lr.row_bucket(30001)) == lr.row_bucket(30001) == 30720  # a bucket is its own bucket
    octave = {b for b in sizes[2 ** 14:2 ** 15]}  # n in (2^14, 2^15]
    assert len(octave) == 16


def test_marcher_sized_batches_reach_onednn_as_a_few_row_counts_with_their_own_rows_back(monkeypatch):
    """oneDNN builds and keeps a kernel per input shape, so batches whose size changes every call (a marcher's
    samples) must reach it padded to bucket sizes: every product sees a bucket, an MLP pads once (not per layer),
    and each input row gets its own output row back, with the gradients of the plain layers."""
    seen = []
    real = lr._product
    monkeypatch.setattr(lr, "_product", lambda x, *args: seen.append(len(x)) or real(x, *args))
    torch.manual_seed(6)
    layers = [torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
              torch.nn.Linear(64, 16)]
    mlp, plain = lr.ReLUMLP(*layers), torch.nn.Sequential(*layers)
    sizes = torch.randint(20000, 40000, (30,)).tolist()
    for n in sizes:
        x = torch.randn(n, 32)
        with torch.no_grad():
            torch.testing.assert_close(mlp(x), plain(x), atol=1e-5, rtol=1e-5)
    assert len(seen) == 3 * len(sizes)  # every layer one oneDNN product (no gradients)
    assert all(lr.row_bucket(r) == r for r in seen)
    assert len(set(seen)) <= 18 < len(set(sizes))  # (20000, 32768] in 1024s, then 2048s
    x = torch.randn(1001, 32, requires_grad=True)
    out = mlp(x)
    assert out.shape == (1001, 16) and seen[-1] == 1024
    weight = torch.randn_like(out)
    params = [x, *plain.parameters()]
    for g, r in zip(torch.autograd.grad((out * weight).sum(), params),
                    torch.autograd.grad((plain(x) * weight).sum(), params)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
