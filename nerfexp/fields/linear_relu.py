"""``relu(linear(x))`` as one fused oneDNN call on the CPU, with its own backward.

On the CPU the ReLU after a wide layer is a separate pass over memory that costs about half as much as the matrix
product itself (measured: 65,536 x 128 -> 128, 46 ms unfused vs 29 ms fused on 2 cores). oneDNN applies it inside
the product; PyTorch exposes that op without a derivative, so the backward is written here.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

_FUSED = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_product = torch.ops.mkldnn._linear_pointwise if _FUSED else None  # the one oneDNN call (a name tests can watch)
_MIN_ROW_STEP = 256


def row_bucket(n: int) -> int:
    """The row count a fused product of ``n`` rows runs with: ``n`` rounded up to a multiple of 1/32 of the power of
    two above it (at least 256), so 16 sizes per octave, and under 1/16 of the rows (about 1/48 on average) wasted.

    oneDNN builds and caches a kernel per input shape. Batches whose size changes every call (a marcher's samples, a
    front-to-back round's) would build a new one each time and grow the process without bound (in use memory rose 24
    MB per lego test view): measured on 2 cores, 30,000 x 32 -> 64 -> 64 -> 16, 14.3 ms per call with a new row count
    each time against 4.4 ms with a fixed one and 5.5 ms padded to these sizes."""
    step = max(_MIN_ROW_STEP, (1 << max(n - 1, 0).bit_length()) >> 5)
    return -(-n // step) * step


def pad_rows(x: Tensor) -> Tensor:
    """``x (..., D)`` as ``(row_bucket(N), D)`` rows: its ``N`` rows, then zeros (``x`` flattened when ``N`` is
    already a bucket size). Differentiable."""
    flat = x.reshape(-1, x.shape[-1])
    extra = row_bucket(len(flat)) - len(flat)
    return torch.cat([flat, flat.new_zeros(extra, flat.shape[-1])]) if extra else flat


def bucket_index(index: Tensor) -> Tensor:
    """A gather index ``(N,)`` lengthened to :func:`row_bucket` entries by repeating its first, where products are
    fused (CPU): what is gathered by it reaches the field's MLPs with a bucket size of rows, and no MLP copies its
    input to pad it. Callers keep the first ``N`` outputs."""
    extra = row_bucket(len(index)) - len(index)
    if not _FUSED or index.device.type != "cpu" or not extra or not len(index):
        return index
    return torch.cat([index, index[:1].expand(extra)])


def on_padded_rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn`` over ``x``'s rows padded to :func:`row_bucket` (``fn`` maps ``(B, D)`` rows to ``(B, ...)`` rows, each
    from its own), then the first ``N`` output rows in ``x``'s leading shape: the fused products inside ``fn`` then
    see a bucket size and pad nothing themselves (one copy of ``x``, not one per layer)."""
    shape = x.shape[:-1]
    out = fn(pad_rows(x))
    return out[:shape.numel()].reshape(*shape, *out.shape[1:])


def _onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None, act: str) -> Tensor:
    """oneDNN's ``act(x @ weight.T + bias)`` on ``x``'s rows padded to :func:`row_bucket`."""
    return on_padded_rows(lambda rows: _product(rows, weight, bias, act, [], ""), x)


class _FusedLinear(torch.autograd.Function):
    """``act(x @ weight.T + bias)`` for ``act`` in {"relu", "none"} as one oneDNN product, with a first-order
    backward (second derivatives, e.g. an SDF's eikonal term through analytic normals, need PyTorch's layer).

    With ``onednn_grad`` the input gradient ``g @ weight`` runs as a oneDNN linear on the transposed weight too
    (1.4x PyTorch's mm for 65,536 x 96 -> 96 on 2 cores). That pays where a layer sees the same number of rows every
    step (dense samples per ray); for a marcher's batches, whose size changes every step, it does not (the fast
    path's training steps: 0.8x as fast before rows were padded to :func:`row_bucket` sizes, 1.0x since), so there
    the input gradient is PyTorch's mm.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, act: str, onednn_grad: bool) -> Tensor:
        out = _onednn_linear(x, weight, bias, act)
        ctx.save_for_backward(x, weight, out if act == "relu" else None)
        ctx.has_bias, ctx.onednn_grad = bias is not None, onednn_grad
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, out = ctx.saved_tensors
        g = grad if out is None else torch.ops.aten.threshold_backward(grad, out, 0)
        g2 = g.reshape(-1, g.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(g, weight.t().contiguous(), None, "none") if ctx.onednn_grad else g @ weight
        if ctx.needs_input_grad[1]:
            grad_w = g2.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)
        return grad_x, grad_w, grad_b, None, None


def fusable(x: Tensor, layer: torch.nn.Linear | Tensor) -> bool:
    """Whether products of ``x`` with ``layer`` (or a weight) run as one oneDNN call (float32 CPU tensors, no
    autocast)."""
    # under autocast PyTorch's layer runs in reduced precision, which the fused float32 op would bypass
    weight = layer if isinstance(layer, Tensor) else layer.weight
    return (_FUSED and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu"))


def linear_relu(x: Tensor, layer: torch.nn.Linear, stable_rows: bool = False) -> Tensor:
    """``relu(layer(x))``; fused on float32 CPU tensors when oneDNN is available, PyTorch's ops otherwise.
    ``stable_rows``: the caller's batches have the same number of rows every step, so the backward's input gradient
    runs on oneDNN too (see :class:`_FusedLinear`)."""
    if fusable(x, layer):
        return _FusedLinear.apply(x, layer.weight, layer.bias, "relu", stable_rows)
    return F.relu(layer(x))


def linear(x: Tensor, layer: torch.nn.Linear, second_order: bool = False, stable_rows: bool = False) -> Tensor:
    """``layer(x)`` as one oneDNN call on float32 CPU tensors, which adds the bias inside the product (PyTorch's
    addmm first copies the bias into every output row: a tenth of a NeuS render's time). With gradients on, only for
    ``stable_rows`` callers (see :class:`_FusedLinear`); ``second_order=True`` keeps PyTorch's layer whenever
    gradients are on, for callers whose loss differentiates gradients (an SDF's analytic normals)."""
    if fusable(x, layer) and (not torch.is_grad_enabled() or (stable_rows and not second_order)):
        return _FusedLinear.apply(x, layer.weight, layer.bias, "none", stable_rows)
    return layer(x)


def linear_weight(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` for a weight that is not a layer's own; one oneDNN call without gradients (as
    :func:`linear`)."""
    if fusable(x, weight) and not torch.is_grad_enabled():
        return _FusedLinear.apply(x, weight, bias, "none", False)
    return F.linear(x, weight, bias)


def linear_heads(x: Tensor, layers: list[torch.nn.Linear]) -> list[Tensor]:
    """``[layer(x) for layer in layers]`` as one oneDNN product on the layers' stacked weights, for callers whose
    batches have ``stable_rows`` (the NeRF MLP): one pass over ``x`` and one input gradient instead of one per layer
    plus their sum (a 1-wide density head beside a 48-wide branch: 45 vs 60-90 ms forward + backward for 65,536
    points on 2 cores)."""
    if not all(fusable(x, layer) for layer in layers) or any(layer.bias is None for layer in layers):
        return [layer(x) for layer in layers]
    weight = torch.cat([layer.weight for layer in layers])
    bias = torch.cat([layer.bias for layer in layers])
    out = _FusedLinear.apply(x, weight, bias, "none", True)
    return list(out.split([layer.out_features for layer in layers], dim=-1))


class ReLUMLP(torch.nn.Sequential):
    """Linear layers with ReLUs between them, each Linear + ReLU pair run as one :func:`linear_relu` call (1.45x
    faster for the grid field's 64-wide MLPs on 2 cores, forward and backward). Children and state-dict keys are a
    plain ``nn.Sequential``'s, so checkpoints load either way."""

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if isinstance(self[0], torch.nn.Linear) and fusable(x, self[0]):
            return on_padded_rows(self._layers, x)
        return self._layers(x)

    def _layers(self, x: Tensor) -> Tensor:
        layers = list(self)
        k = 0
        while k < len(layers):
            layer = layers[k]
            if isinstance(layer, torch.nn.Linear) and k + 1 < len(layers) and isinstance(layers[k + 1], torch.nn.ReLU):
                x, k = linear_relu(x, layer), k + 2
            elif isinstance(layer, torch.nn.Linear):
                x, k = linear(x, layer), k + 1
            else:
                x, k = layer(x), k + 1
        return x
