"""A signed-distance field (NeuS / IDR style): a geometry MLP -> (SDF, feature), a colour MLP conditioned on
position, normal, view direction and feature. Normals are the SDF's gradient, by autograd or finite differences."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerfexp.config import check_number
from nerfexp.encoders.base import encode_beside
from nerfexp.fields.linear_relu import ReLUMLP, fusable, linear, linear_weight, on_padded_rows
from nerfexp.kernels import cpu_kernels

NORMAL_MODES = ("analytic", "finite_difference")

# a regular tetrahedron's vertices: the mean of f over them is f(x) + O(h^2), and sum_k v_k f(x + h v_k) / (4h)
# is the gradient + O(h * curvature), so four evaluations give both the SDF and its gradient (central differences
# would take seven)
_TETRA = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])


class SDFField(nn.Module):
    """``(world point, its encoding) -> (sdf, feature)``, and ``(point, normal, direction, feature) -> rgb``.

    The geometry MLP sees the raw point next to its encoding. With ``geometric_init`` its weights start so that
    ``sdf(x) ~ |x| - init_radius`` (the sphere initialisation of SAL/IDR): the encoding's input weights start at
    zero and the activation is a softplus of sharpness ``beta``, as geometric initialisation assumes.

    Args:
        pos_dim, dir_dim: sizes of the position and view-direction encodings (given by the pipeline).
        width, depth: width and number of hidden layers of the geometry MLP.
        geo_feat_dim: feature size passed to the colour MLP.
        color_width, color_depth: width and hidden layers of the colour MLP.
        init_radius: radius of the initial sphere (world units).
        geometric_init: start from the sphere (else PyTorch's default initialisation).
        weight_norm: weight normalisation on the geometry MLP's layers.
        beta: softplus sharpness.
        normals: ``analytic`` (autograd, create_graph in training) or ``finite_difference`` (four evaluations on a
            tetrahedron of size ``fd_eps``; needs no second-order gradients, so it works with encoders that only
            give gradients to their parameters, such as the hash grid's CPU kernel).
        fd_eps: finite-difference step (world units).
    """

    geometry = "sdf"

    def __init__(self, pos_dim: int, dir_dim: int, width: int = 64, depth: int = 2, geo_feat_dim: int = 15,
                 color_width: int = 64, color_depth: int = 2, init_radius: float = 0.5,
                 geometric_init: bool = True, weight_norm: bool = False, beta: float = 100.0,
                 normals: str = "analytic", fd_eps: float = 1e-3):
        super().__init__()
        for key, value, low in (("width", width, 1), ("depth", depth, 0), ("geo_feat_dim", geo_feat_dim, 0),
                                ("color_width", color_width, 1), ("color_depth", color_depth, 0)):
            check_number(key, value, int, low=low)
        for key, value in (("init_radius", init_radius), ("beta", beta), ("fd_eps", fd_eps)):
            check_number(key, value, float, low=0, low_open=True)
        if normals not in NORMAL_MODES:
            raise ValueError(f"field.normals={normals!r} is not one of {NORMAL_MODES}")
        self.geo_feat_dim, self.normals, self.fd_eps = geo_feat_dim, normals, fd_eps
        dims = [3 + pos_dim] + [width] * depth + [1 + geo_feat_dim]
        self.geo_layers = nn.ModuleList(nn.Linear(dims[k], dims[k + 1]) for k in range(len(dims) - 1))
        if geometric_init:
            self._geometric_init(init_radius)
        if weight_norm:
            self.geo_layers = nn.ModuleList(nn.utils.parametrizations.weight_norm(layer) for layer in self.geo_layers)
        self.act = nn.Softplus(beta=beta)
        self.use_cpu_kernel = True  # the softplus without gradients (rendering, sampling) on the CPU
        color: list[nn.Module] = []
        dim = 3 + 3 + dir_dim + geo_feat_dim
        for _ in range(color_depth):
            color += [nn.Linear(dim, color_width), nn.ReLU(inplace=True)]
            dim = color_width
        color.append(nn.Linear(dim, 3))
        self.color_net = ReLUMLP(*color)

    @torch.no_grad()
    def _geometric_init(self, radius: float) -> None:
        *hidden, last = self.geo_layers
        for k, layer in enumerate(hidden):
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(layer.out_features))
            nn.init.zeros_(layer.bias)
            if k == 0:
                layer.weight[:, 3:] = 0.0  # the encoding joins in as training finds it useful
        nn.init.normal_(last.weight, math.sqrt(math.pi) / math.sqrt(last.in_features), 1e-4)
        nn.init.constant_(last.bias, -radius)
        if not hidden:  # a linear "MLP" cannot represent |x|; keep at least the offset
            nn.init.zeros_(last.weight)

    def sdf_and_feature(self, pts: Tensor, encode) -> tuple[Tensor, Tensor]:
        """``pts (..., 3)`` and ``encode`` (points -> their encoding) -> sdf ``(...)``, feature
        ``(..., geo_feat_dim)``."""
        h = self._on_rows(lambda p: linear(self._hidden(p, encode), self.geo_layers[-1], second_order=True), pts)
        return h[..., 0], h[..., 1:]

    def _on_rows(self, fn, pts: Tensor) -> Tensor:
        """``fn`` over the points' rows, padded to a bucket size where its products are fused (no gradients): see
        :func:`nerfexp.fields.linear_relu.row_bucket`."""
        if torch.is_grad_enabled() or not fusable(pts, self.geo_layers[0]):
            return fn(pts)
        return on_padded_rows(fn, pts)

    def _hidden(self, pts: Tensor, encode) -> Tensor:
        """The geometry MLP's last hidden units ``(..., width)`` (its input where it has no hidden layer)."""
        h = encode_beside(encode, pts, pts)  # the MLP reads the raw point beside its encoding
        for layer in self.geo_layers[:-1]:
            h = self._activation(linear(h, layer, second_order=True))
        return h

    def _activation(self, h: Tensor) -> Tensor:
        # without gradients the C++ kernel overwrites the product in place: ATen's softplus took a third of a NeuS
        # view's rendering time, as long as the products before it
        kernels = cpu_kernels() if (self.use_cpu_kernel and not torch.is_grad_enabled() and h.device.type == "cpu"
                                    and h.dtype == torch.float32 and h.is_contiguous()) else None
        if kernels is None:
            return self.act(h)
        kernels.softplus_inplace(h, self.act.beta)
        return h

    def color(self, pts: Tensor, normals: Tensor, d_enc: Tensor, feat: Tensor) -> Tensor:
        """Colour in [0, 1] ``(..., 3)`` at ``pts`` with unit ``normals``, encoded view directions and features."""
        return torch.sigmoid(self.color_net(torch.cat([pts, normals, d_enc, feat], dim=-1)))

    def geometry_with_gradient(self, pts: Tensor, encode, training: bool) -> tuple[Tensor, Tensor, Tensor]:
        """SDF ``(...)``, feature and SDF gradient ``(..., 3)`` at world points ``pts``; ``encode`` maps points
        to their encoding. The gradient keeps its graph in training (the eikonal loss trains through it).
        Analytic normals use autograd in evaluation too (under ``no_grad`` or ``inference_mode``), so a view is
        rendered with the normals it was trained with."""
        if self.normals == "finite_difference":
            return self._finite_difference(pts, encode)
        if torch.is_inference_mode_enabled():  # autograd is off there: leave it for this call, on a normal copy
            with torch.inference_mode(False):
                return self._autograd_geometry(pts.clone(), encode, training=False)
        return self._autograd_geometry(pts, encode, training)

    def _autograd_geometry(self, pts: Tensor, encode, training: bool) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():
            x = pts.detach().requires_grad_(True) if not pts.requires_grad else pts
            sdf, feat = self.sdf_and_feature(x, encode)
            (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=training)
        if not training:
            sdf, feat = sdf.detach(), feat.detach()
        return sdf, feat, grad

    def _finite_difference(self, pts: Tensor, encode) -> tuple[Tensor, Tensor, Tensor]:
        # the last layer, the mean over the probes and their weighted differences are all linear: one product over
        # the four probes' hidden units gives the mean SDF, the mean feature and the gradient (the separate sums
        # and products took a tenth of a NeuS render's time)
        weight, bias = self._probe_head()

        def head(p: Tensor) -> Tensor:
            hidden = self._hidden(p.unsqueeze(-2) + _TETRA.to(p) * self.fd_eps, encode)  # (..., 4, width)
            return linear_weight(hidden.reshape(*hidden.shape[:-2], 4 * hidden.shape[-1]), weight, bias)

        out = self._on_rows(head, pts)  # (4 probes of a bucket of points are a bucket of rows)
        n = 1 + self.geo_feat_dim
        return out[..., 0], out[..., 1:n], out[..., n:]

    def _probe_head(self) -> tuple[Tensor, Tensor]:
        """Weight ``(1 + geo_feat_dim + 3, 4 * width)`` and bias of :meth:`_finite_difference`'s product: per probe
        k, a quarter of the last layer (the means), and the SDF row times ``_TETRA[k] / (4 fd_eps)`` (the gradient;
        its bias is zero, as the tetrahedron's vertices sum to zero)."""
        last = self.geo_layers[-1]
        w = last.weight  # (1 + geo_feat_dim, width)
        tetra = _TETRA.to(w) / (4.0 * self.fd_eps)  # (4, 3)
        mean = (w * 0.25).repeat(1, 4)
        grad = (tetra.t().unsqueeze(-1) * w[0]).reshape(3, -1)
        return torch.cat([mean, grad]), torch.cat([last.bias, last.bias.new_zeros(3)])

    def sdf(self, pts: Tensor, encode) -> Tensor:
        """SDF alone at world points ``(..., 3)`` (sampling, meshes)."""
        return self.sdf_and_feature(pts, encode)[0]
