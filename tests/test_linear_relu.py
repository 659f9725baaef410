"""The fused CPU linear + ReLU equals PyTorch's two ops, values and gradients."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nerfexp.fields import linear_relu as lr


def test_fused_linear_relu_matches_unfused_values_and_gradients():
    assert lr._FUSED, "oneDNN's fused op should be available in the CPU build"
    torch.manual_seed(0)
    layer = torch.nn.Linear(7, 16)
    x = torch.randn(4, 50, 7, requires_grad=True)
    out = lr.linear_relu(x, layer)
    assert out.grad_fn is not None and "FusedLinearReLU" in type(out.grad_fn).__name__
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


def test_linear_without_gradients_is_the_layer():
    torch.manual_seed(3)
    layer = torch.nn.Linear(35, 64)
    x = torch.randn(2, 100, 35)
    with torch.no_grad():
        torch.testing.assert_close(lr.linear(x, layer), layer(x))
    out = lr.linear(x, layer)  # with gradients: the layer itself, so they flow
    assert out.grad_fn is not None
